/**
 * Cost that should stay flat as work grows, against a daemon in its own
 * process (dist/, limits raised for the bench through the ordinary flags):
 *
 * - HMAC-SHA256 64 B and CONTEXT_UPDATE (a registry lookup of one context
 *   among all) latency, 1 in flight, with 1, 10,000 and 1,000,000 live nodes
 *   (hash contexts) of the bench's client — the registry is meant to be O(1);
 * - daemon RSS per live node (STATUS `process.rssBytes`);
 * - throughput and p99 with 1, 100 and 1,000 connections, each with one
 *   HMAC request in flight;
 * - RSS of an idle connection (1,000 connections after HELLO);
 * - the 1,000,000-node figure against the 1-node one in interleaved rounds
 *   (bench/interleave.ts), the fair comparison on a shared machine: a fresh
 *   daemon whose client owns 1 node, a second client with 1 node on the
 *   daemon holding the million, and the client owning the million,
 *   alternated round by round (median of ≥ 5), with each daemon's CPU per op.
 *
 * Returns a markdown section for docs/benchmarks.md; also runnable alone
 * after `npm run build`: node dist/bench/flat-cost.js
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, type Client } from '../src/client/client.js';
import { Op } from '../src/protocol/ops.js';
import type { CryptoKey } from '../src/client/subtle.js';
import { interleave, ROUNDS, spread, type Interleaved, type Spread } from './interleave.js';
import { measureLoop, type CpuProbe, type Result } from './measure.js';
import { stopChild } from './tools.js';

const NODE_COUNTS = (process.env.BENCH_NODES ?? '1,10000,1000000').split(',').map(Number);
const CONNECTION_COUNTS = [1, 100, 1000];
const SECONDS = Number(process.env.BENCH_SECONDS ?? 1);

async function rss(c: Client): Promise<number> {
  return ((await c.status()) as { process: { rssBytes: number } }).process.rssBytes;
}

async function startDaemon(main: string): Promise<{ child: ChildProcess; socket: string; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'cdb-flat-'));
  const socket = join(dir, 's.sock');
  // A .ts entry (a run from src/ through tsx) needs the loader in the child too.
  const loader = main.endsWith('.ts') ? ['--import', 'tsx'] : [];
  const child = spawn(process.execPath, [...loader, main, 'serve', '--data-dir', dir, '--socket', socket, '--log-level', 'warn',
    '--max-nodes-per-client', '2000000', '--max-context-memory', String(2 ** 36), '--max-context-memory-per-client', String(2 ** 36),
    '--max-connections', '3000', '--max-connections-per-client', '3000', '--max-connections-per-uid', '2500'], { stdio: ['ignore', 'inherit', 'inherit'] });
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      const c = await connect({ socket, clientName: 'probe' });
      await c.close();
      return { child, socket, dir };
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

export async function flatCostSection(main: string, log: (s: string) => void = console.log): Promise<string> {
  const { child, socket, dir } = await startDaemon(main);
  const lines: string[] = [];
  try {
    const c = await connect({ socket, clientName: 'flat' });
    const key = await c.subtle.importKey('raw', randomBytes(32), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    const msg = randomBytes(64);
    const probe = (await c.request(Op.HASH_CREATE, { algorithm: 'SHA-256' })) as { handle: string };
    const chunk = Buffer.alloc(64, 1);
    let live = 1;
    const rows: string[] = [];
    // Warm-up (JIT, caches) so that the first row is not the coldest.
    await measureLoop(SECONDS, () => c.subtle.sign('HMAC', key, msg));
    await measureLoop(SECONDS, () => c.request(Op.CONTEXT_UPDATE, { handle: probe.handle, data: chunk }));
    let rss1 = 0;
    for (const n of NODE_COUNTS) {
      // Grow the population to n hash contexts, 1,000 requests in flight.
      while (live < n) {
        const batch = Math.min(1000, n - live);
        await Promise.all(Array.from({ length: batch }, () => c.request(Op.HASH_CREATE, { algorithm: 'SHA-256' })));
        live += batch;
      }
      const mem = await rss(c);
      if (n === NODE_COUNTS[0]) rss1 = mem;
      const hmac = await measureLoop(SECONDS, () => c.subtle.sign('HMAC', key, msg));
      const update = await measureLoop(SECONDS, () => c.request(Op.CONTEXT_UPDATE, { handle: probe.handle, data: chunk }));
      const perNode = n > NODE_COUNTS[0]! ? `${((mem - rss1) / (n - NODE_COUNTS[0]!)).toFixed(0)} B` : '';
      log(`flat: ${n} nodes: HMAC p50 ${(hmac.p50 / 1000).toFixed(1)} µs, update p50 ${(update.p50 / 1000).toFixed(1)} µs, rss ${(mem / 2 ** 20).toFixed(0)} MiB`);
      rows.push(`| ${n.toLocaleString('en-US')} | ${(hmac.p50 / 1000).toFixed(1)} µs | ${(hmac.p99 / 1000).toFixed(1)} µs | ${(update.p50 / 1000).toFixed(1)} µs | ${(mem / 2 ** 20).toFixed(0)} MiB | ${perNode} |`);
    }
    // The same million, measured fairly: interleaved with 1-node clients.
    const ix = await interleavedNodes(main, socket, c, key, probe.handle, live, log);
    lines.push(
      '## Cost as work grows',
      '',
      `bench/flat-cost.ts, against a daemon in its own process with limits raised through its flags. Live nodes are hash contexts (HASH_CREATE) of the measuring client; each figure is one ${SECONDS} s measurement, 1 in flight, so it includes the socket round trip (see the floor above). RSS per node: the daemon's RSS growth from the first population, divided by the nodes added (STATUS \`process.rssBytes\`; it includes OpenSSL's digest state of each context).`,
      '',
      '| live nodes | HMAC-SHA256 64 B p50 | p99 | CONTEXT_UPDATE 64 B p50 | daemon RSS | RSS per node |',
      '|---:|---:|---:|---:|---:|---:|',
      ...rows,
      '',
      ix,
    );
    await c.close();

    // Connections: each with one HMAC request in flight, all at once.
    const connRows: string[] = [];
    const base = await connect({ socket, clientName: 'flat-conns' });
    const idleBefore = await rss(base);
    for (const k of CONNECTION_COUNTS) {
      const clients: Client[] = [];
      for (let i = 0; i < k; i++) clients.push(await connect({ socket, clientName: 'flat-conns' }));
      const keys = await Promise.all(clients.map((cl) => cl.subtle.importKey('raw', Buffer.alloc(32, 3), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign'])));
      const lat: number[] = [];
      let stop = false;
      const t0 = process.hrtime.bigint();
      const end = t0 + BigInt(Math.round(SECONDS * 2e9));
      await Promise.all(clients.map(async (cl, i) => {
        while (!stop) {
          const a = process.hrtime.bigint();
          await cl.subtle.sign('HMAC', keys[i]!, msg);
          const b = process.hrtime.bigint();
          lat.push(Number(b - a));
          if (b >= end) stop = true;
        }
      }));
      const s = Number(process.hrtime.bigint() - t0) / 1e9;
      lat.sort((x, y) => x - y);
      const p = (q: number): string => `${((lat[Math.min(lat.length - 1, Math.floor(q * lat.length))] ?? NaN) / 1000).toFixed(1)} µs`;
      log(`flat: ${k} connections: ${Math.round(lat.length / s)} ops/s p50 ${p(0.5)} p99 ${p(0.99)}`);
      connRows.push(`| ${k.toLocaleString('en-US')} | ${Math.round(lat.length / s).toLocaleString('en-US')} | ${p(0.5)} | ${p(0.99)} |`);
      if (k === CONNECTION_COUNTS[CONNECTION_COUNTS.length - 1]) {
        // Idle memory: the same connections, keys released, nothing in flight.
        await Promise.all(keys.map((kk) => kk.release()));
        const idle = await rss(base);
        lines.push(
          '',
          `Concurrent connections, each with one HMAC-SHA256 64 B request in flight (this one client process drives them all, so it shares the machine with the daemon):`,
          '',
          '| connections | ops/s | p50 | p99 |',
          '|---:|---:|---:|---:|',
          ...connRows,
          '',
          `Idle connection: the daemon's RSS grew by ${((idle - idleBefore) / k / 1024).toFixed(1)} KiB per connection with ${k.toLocaleString('en-US')} connections open after HELLO, nothing in flight (RSS also holds garbage not yet collected, so this is an upper bound).`,
        );
      }
      await Promise.all(clients.map((cl) => cl.close()));
    }
    await base.close();
  } finally {
    await stopChild(child);
    rmSync(dir, { recursive: true, force: true });
  }
  return lines.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  // From dist/ the compiled entry; from src/ through tsx (node --import tsx bench/flat-cost.ts) the .ts one.
  const main = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? '../src/cli/main.ts' : '../src/cli/main.js', import.meta.url));
  console.log(await flatCostSection(main));
}

/** Daemon CPU time (µs) so far, from STATUS `process`: the steadiest per-op figure on a loaded machine. */
function daemonCpu(c: Client): CpuProbe {
  return async () => {
    const st = (await c.status()) as { process: { cpuUserUs: number; cpuSystemUs: number } };
    return st.process.cpuUserUs + st.process.cpuSystemUs;
  };
}

/**
 * `many` (a client of the big daemon owning `live` nodes) against 1-node
 * clients, in interleaved rounds: one on a fresh daemon (the whole daemon
 * grew: registry, heap, GC) and one on the big daemon (the registry lookup
 * alone: same process, same heap). Per round, each p50 is divided by the
 * fresh daemon's; the table gives the median ratio and its spread.
 */
async function interleavedNodes(main: string, socket: string, many: Client, manyKey: CryptoKey, manyProbe: string, live: number, log: (s: string) => void): Promise<string> {
  const fresh = await startDaemon(main);
  try {
    const f = await connect({ socket: fresh.socket, clientName: 'flat-fresh' });
    const one = await connect({ socket, clientName: 'flat-one' });
    const msg = randomBytes(64);
    const chunk = Buffer.alloc(64, 1);
    const setup = async (cl: Client): Promise<{ key: CryptoKey; probe: string }> => ({
      key: await cl.subtle.importKey('raw', randomBytes(32), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']),
      probe: ((await cl.request(Op.HASH_CREATE, { algorithm: 'SHA-256' })) as { handle: string }).handle,
    });
    const fs = await setup(f);
    const os = await setup(one);
    const who = [
      { label: 'fresh daemon, client owning 1 node', cl: f, key: fs.key, probe: fs.probe, cpu: daemonCpu(f) },
      { label: `same daemon as the ${live.toLocaleString('en-US')}, client owning 1 node`, cl: one, key: os.key, probe: os.probe, cpu: daemonCpu(many) },
      { label: `client owning ${live.toLocaleString('en-US')} nodes`, cl: many, key: manyKey, probe: manyProbe, cpu: daemonCpu(many) },
    ];
    const out: string[] = [
      `**${live.toLocaleString('en-US')} live nodes, interleaved.** The sequential rows above are measured minutes apart; here three clients alternate round by round (${ROUNDS} rounds of ${SECONDS} s, 1 in flight): one owning 1 node on a fresh daemon, one owning 1 node on the daemon that holds the million, and the one owning the million. "p50 ÷ fresh" is the median of the per-round ratios to the fresh daemon's p50 (slowest–fastest round in brackets); CPU/op is the daemon's (STATUS).`,
      '',
      '| operation | client | p50 | p50 ÷ fresh | p99 | daemon CPU/op |',
      '|---|---|---:|---:|---:|---:|',
    ];
    for (const [op, run] of [
      ['HMAC-SHA256 64 B', (w: (typeof who)[number]) => w.cl.subtle.sign('HMAC', w.key, msg)],
      ['CONTEXT_UPDATE 64 B', (w: (typeof who)[number]) => w.cl.request(Op.CONTEXT_UPDATE, { handle: w.probe, data: chunk })],
    ] as const) {
      // The fresh daemon's code is cold (the big one ran the sequential rows): warm every side up once, unmeasured.
      for (const w of who) await measureLoop(SECONDS, () => run(w));
      const perRound: Result[][] = who.map(() => []);
      const ixs: Interleaved[] = await interleave(
        who.map((w, i) => ({
          workload: op, mode: w.label, kind: 'cryptod' as const,
          run: async () => {
            const r = await measureLoop(SECONDS, () => run(w), undefined, w.cpu);
            perRound[i]!.push(r);
            return r;
          },
        })),
        (l) => log(`flat: ${l.trim()}`),
      );
      ixs.forEach((x, i) => {
        const ratio: Spread = spread(perRound[i]!.map((r, k) => r.p50 / perRound[0]![k]!.p50));
        const cpu = x.cpuPerOpNs === undefined ? '' : `${(x.cpuPerOpNs.median / 1000).toFixed(2)} µs`;
        const line = `| ${op} | ${x.mode} | ${(x.p50.median / 1000).toFixed(1)} (${(x.p50.min / 1000).toFixed(1)}–${(x.p50.max / 1000).toFixed(1)}) µs | ${i === 0 ? '1.00×' : `${ratio.median.toFixed(3)}× (${ratio.min.toFixed(3)}–${ratio.max.toFixed(3)})`} | ${(x.r.p99 / 1000).toFixed(1)} µs | ${cpu} |`;
        log(`flat: ${line}`);
        out.push(line);
      });
    }
    await f.close();
    await one.close();
    return out.join('\n');
  } finally {
    await stopChild(fresh.child);
    rmSync(fresh.dir, { recursive: true, force: true });
  }
}
