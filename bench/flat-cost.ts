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
 * - RSS of an idle connection (1,000 connections after HELLO).
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
import { measureLoop } from './measure.js';
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
  const child = spawn(process.execPath, [main, 'serve', '--data-dir', dir, '--socket', socket, '--log-level', 'warn',
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
    lines.push(
      '## Cost as work grows',
      '',
      `bench/flat-cost.ts, against a daemon in its own process with limits raised through its flags. Live nodes are hash contexts (HASH_CREATE) of the measuring client; each figure is one ${SECONDS} s measurement, 1 in flight, so it includes the socket round trip (see the floor above). RSS per node: the daemon's RSS growth from the first population, divided by the nodes added (STATUS \`process.rssBytes\`; it includes OpenSSL's digest state of each context).`,
      '',
      '| live nodes | HMAC-SHA256 64 B p50 | p99 | CONTEXT_UPDATE 64 B p50 | daemon RSS | RSS per node |',
      '|---:|---:|---:|---:|---:|---:|',
      ...rows,
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
  const main = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
  console.log(await flatCostSection(main));
}
