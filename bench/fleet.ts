/**
 * `npm run bench:fleet`: several processes on one keystore (README "Several
 * processes on one host"), written to docs/benchmarks-fleet.md.
 *
 *   1. the freshness check's cost: managed HMAC through one daemon with and
 *      without the start-of-operation check (bench/no-freshness.ts), and the
 *      check alone in-process
 *   2. `--workers 1` against `--workers 2`, two client processes, and the
 *      daemon CPU time per operation (/proc utime + stime of every daemon process)
 *   3. cached managed HMAC with and without a writer rotating the key every
 *      100 ms through another daemon on the same file
 *   4. from a rotation committed through one daemon to its first use by the
 *      other (p50, p90), with the check and with polling alone
 *
 * A/B comparisons run in interleaved rounds (A, B, A, B, …) and report the
 * median of each side and the ratio of medians. Daemons run from src/ through
 * tsx, each in its own process; this process drives the clients (2. uses two
 * client processes, bench/fleet-client.ts). BENCH_SECONDS (default 2) per
 * round, BENCH_ROUNDS (default 5) per side, BENCH_OUT.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, type Client } from '../src/client/client.js';
import { parseHeader } from '../src/protocol/managed-format.js';
import { openSqliteKeystore } from '../src/store/sqlite/sqlite-store.js';
import { measurePipelined } from './measure.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 2);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..');
const OUT = process.env.BENCH_OUT ?? join(repo, 'docs/benchmarks-fleet.md');
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());
const MSG = randomBytes(64);

interface Served {
  proc: ChildProcess;
  socket: string;
  /** The daemon's processes: the primary and, with workers, each worker. */
  pids(): Promise<number[]>;
  stop(): Promise<void>;
}

const tmp = mkdtempSync(join(tmpdir(), 'cdfleet-'));

async function serve(name: string, dataDir: string, options: { workers?: number; noFreshness?: boolean } = {}): Promise<Served> {
  const socket = join(tmp, `${name}.sock`);
  const args = ['--import', 'tsx', ...(options.noFreshness === true ? ['--import', join(repo, 'bench/no-freshness.ts')] : []),
    join(repo, 'src/cli/main.ts'), 'serve', '--data-dir', dataDir, '--socket', socket, '--log-level', 'warn', '--max-inflight', '4096',
    ...(options.workers === undefined ? [] : ['--workers', String(options.workers)])];
  const proc = spawn(process.execPath, args, { cwd: repo, stdio: ['ignore', 'inherit', 'inherit'] });
  const want = options.workers ?? 1;
  const deadline = Date.now() + 120_000;
  const pids = async (): Promise<number[]> => {
    const c = await connect({ socket, clientName: 'probe' });
    try {
      const s = (await c.status()) as { daemon: { pid: number }; workers?: Array<{ pid: number }> };
      return [...new Set([proc.pid!, ...(s.workers?.map((w) => w.pid) ?? [s.daemon.pid])])];
    } finally {
      await c.close();
    }
  };
  for (;;) {
    try {
      if ((await pids()).length === (want === 1 ? 1 : want + 1)) break;
    } catch (err) {
      if (Date.now() > deadline || proc.exitCode !== null) throw err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    proc, socket, pids,
    async stop() {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
    },
  };
}

function cpuSeconds(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    // Fields after the command's closing parenthesis: state is 3rd, utime the 14th, stime the 15th.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks += Number(f[11]) + Number(f[12]);
  }
  return ticks / CLK_TCK;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const quantile = (xs: number[], q: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]!;
const ops = (n: number): string => Math.round(n).toLocaleString('en-US');
/** The spread of the rounds behind a median: on a shared machine it is part of the result. */
const spread = (xs: number[]): string => `rounds ${ops(Math.min(...xs))}–${ops(Math.max(...xs))}`;
const rows: string[] = [];
const row = (...cells: string[]): void => {
  rows.push(`| ${cells.join(' | ')} |`);
  console.log(cells.join('  '));
};

/** Interleaved rounds of `a` and `b`; the medians. */
async function ab(a: () => Promise<number>, b: () => Promise<number>): Promise<{ a: number; b: number; as: number[]; bs: number[] }> {
  const as: number[] = [];
  const bs: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    as.push(await a());
    bs.push(await b());
  }
  return { a: median(as), b: median(bs), as, bs };
}

async function adminClient(socket: string): Promise<Client> {
  return connect({ socket, clientName: 'bench-admin' });
}

// ── 1. the freshness check's cost ─────────────────────────────────────────
async function checkCost(): Promise<void> {
  const dir = join(tmp, 'check');
  const store = await openSqliteKeystore({ dataDir: dir });
  const N = 1_000_000;
  const perCall: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < N; i++) store.maybeChanged();
    perCall.push(Number(process.hrtime.bigint() - t0) / N);
  }
  await store.close();
  row('one look at the store (SqliteKeystore.maybeChanged: PRAGMA data_version), in-process; made once per batch of requests read together', `${median(perCall).toFixed(0)} ns per look`, '', '');

  const on = await serve('check-on', join(tmp, 'check-on'));
  const off = await serve('check-off', join(tmp, 'check-off'), { noFreshness: true });
  try {
    const cOn = await adminClient(on.socket);
    const cOff = await adminClient(off.socket);
    await cOn.keys.create('bench-mac', { type: 'hmac-sha256' });
    await cOff.keys.create('bench-mac', { type: 'hmac-sha256' });
    const r = await ab(
      async () => (await measurePipelined(SECONDS, 64, () => cOn.mac('bench-mac', MSG))).opsPerSec,
      async () => (await measurePipelined(SECONDS, 64, () => cOff.mac('bench-mac', MSG))).opsPerSec,
    );
    row('managed HMAC-SHA256 64 B, pipelined (64), one daemon', `with the check ${ops(r.a)} ops/s (${spread(r.as)})`, `without (bench/no-freshness.ts) ${ops(r.b)} ops/s (${spread(r.bs)})`, `${(r.a / r.b).toFixed(3)}×`);
    await cOn.close();
    await cOff.close();
  } finally {
    await on.stop();
    await off.stop();
  }
}

// ── 2. --workers 1 against --workers 2 ────────────────────────────────────
function clientProcess(socket: string): Promise<{ ops: number; seconds: number }> {
  return new Promise((res, rej) => {
    const p = spawn(process.execPath, ['--import', 'tsx', join(repo, 'bench/fleet-client.ts'), socket, 'bench-mac', String(SECONDS), '32', '2'], { cwd: repo, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    p.on('error', rej);
    p.on('exit', (code) => (code === 0 ? res(JSON.parse(out) as { ops: number; seconds: number }) : rej(new Error(`client exited ${code}`))));
  });
}

async function workers(): Promise<void> {
  const one = await serve('w1', join(tmp, 'w1'), { workers: 1 });
  const two = await serve('w2', join(tmp, 'w2'), { workers: 2 });
  try {
    for (const d of [one, two]) {
      const c = await adminClient(d.socket);
      await c.keys.create('bench-mac', { type: 'hmac-sha256' });
      await c.close();
    }
    const cpuPerOp: Record<string, number[]> = { one: [], two: [] };
    const round = async (d: Served, label: 'one' | 'two'): Promise<number> => {
      const pids = await d.pids();
      const cpu0 = cpuSeconds(pids);
      const results = await Promise.all([clientProcess(d.socket), clientProcess(d.socket)]);
      const cpu = cpuSeconds(pids) - cpu0;
      const total = results.reduce((n, r) => n + r.ops, 0);
      // Client processes measure their own window; the daemon's CPU covers their warm-up too, so divide by every op it served.
      const served = total * (1 + 300 / (SECONDS * 1000));
      cpuPerOp[label]!.push((cpu / served) * 1e6);
      return results.reduce((n, r) => n + r.ops / r.seconds, 0);
    };
    const r = await ab(() => round(one, 'one'), () => round(two, 'two'));
    row('managed HMAC-SHA256 64 B, 2 client processes × 2 connections × 32 in flight', `--workers 1: ${ops(r.a)} ops/s (${spread(r.as)})`, `--workers 2: ${ops(r.b)} ops/s (${spread(r.bs)})`, `${(r.b / r.a).toFixed(2)}×`);
    row('daemon CPU time per operation (all daemon processes, utime + stime)', `--workers 1: ${median(cpuPerOp.one!).toFixed(1)} µs`, `--workers 2: ${median(cpuPerOp.two!).toFixed(1)} µs`, '');
  } finally {
    await one.stop();
    await two.stop();
  }
}

// ── 3. cached operations with a writer rotating every 100 ms ──────────────
async function underRotation(): Promise<void> {
  const data = join(tmp, 'shared');
  const reader = await serve('reader', data);
  const writer = await serve('writer', data);
  try {
    const w = await adminClient(writer.socket);
    await w.keys.create('bench-mac', { type: 'hmac-sha256', gracePeriod: '1h' });
    const c = await adminClient(reader.socket);
    let rotations = 0;
    // The reader's own CPU time per operation: what a rotation costs the reader, apart from the writer's CPU on the same cores.
    const readerCpu = { quiet: [] as number[], rotating: [] as number[] };
    const readerCpuUs = (): number => cpuSeconds([reader.proc.pid!]) * 1e6;
    let side: 'quiet' | 'rotating' = 'quiet';
    const quiet = async (): Promise<number> => {
      const r = await measurePipelined(SECONDS, 64, () => c.mac('bench-mac', MSG), undefined, readerCpuUs);
      readerCpu[side].push(r.cpuPerOpNs! / 1000);
      return r.opsPerSec;
    };
    const rotating = async (): Promise<number> => {
      side = 'rotating';
      let stop = false;
      const loop = (async () => {
        while (!stop) {
          await new Promise((r) => setTimeout(r, 100));
          if (stop) break;
          await w.keys.rotate('bench-mac');
          rotations++;
        }
      })();
      try {
        return await quiet();
      } finally {
        side = 'quiet';
        stop = true;
        await loop;
      }
    };
    const r = await ab(quiet, rotating);
    row('managed HMAC-SHA256 64 B, pipelined (64), reader daemon', `quiet ${ops(r.a)} ops/s (${spread(r.as)})`, `writer rotating the key every 100 ms through another daemon: ${ops(r.b)} ops/s (${spread(r.bs)}; ${rotations} rotations)`, `${(r.b / r.a).toFixed(3)}×`);
    row('reader daemon CPU time per operation (its process alone, utime + stime)', `quiet ${median(readerCpu.quiet).toFixed(1)} µs`, `writer rotating every 100 ms: ${median(readerCpu.rotating).toFixed(1)} µs`, `${(median(readerCpu.rotating) / median(readerCpu.quiet)).toFixed(2)}×`);
    await w.close();
    await c.close();
  } finally {
    await reader.stop();
    await writer.stop();
  }
}

// ── 4. from a rotation committed in one daemon to its first use in another ─
async function rotationToUse(noFreshness: boolean): Promise<void> {
  const data = join(tmp, noFreshness ? 'latency-poll' : 'latency');
  const writer = await serve(noFreshness ? 'lw-poll' : 'lw', data, { noFreshness });
  const reader = await serve(noFreshness ? 'lr-poll' : 'lr', data, { noFreshness });
  try {
    const w = await adminClient(writer.socket);
    await w.keys.create('lat', { type: 'hmac-sha256', gracePeriod: '1h' });
    const c = await adminClient(reader.socket);
    let stop = false;
    const seen: Array<{ at: number; version: number }> = [];
    const user = (async () => {
      while (!stop) {
        const mac = await c.mac('lat', MSG);
        seen.push({ at: performance.now(), version: parseHeader(mac, 'mac').header.version });
      }
    })();
    const fromReply: number[] = [];
    const fromRequest: number[] = [];
    const n = noFreshness ? 10 : 40;
    for (let i = 0; i < n; i++) {
      await new Promise((r) => setTimeout(r, 50 + Math.random() * 50));
      const sent = performance.now();
      const v = await w.keys.rotate('lat');
      const acked = performance.now();
      for (;;) {
        const first = seen.find((s) => s.version >= v);
        if (first !== undefined) {
          fromReply.push(first.at - acked);
          fromRequest.push(first.at - sent);
          break;
        }
        await new Promise((r) => setTimeout(r, 1));
      }
      seen.length = 0;
    }
    stop = true;
    await user;
    const ms = (x: number): string => `${x.toFixed(2)} ms`;
    row(`rotation committed in one daemon → first use by another (SQLite, ${noFreshness ? 'polling every 1 s alone' : 'with the freshness check'}; ${n} rotations, the other daemon serving one request at a time)`,
      `p50 ${ms(quantile(fromReply, 0.5))}, p90 ${ms(quantile(fromReply, 0.9))} from the rotation's reply`,
      `p50 ${ms(quantile(fromRequest, 0.5))} from its request`, '');
    await w.close();
    await c.close();
  } finally {
    await reader.stop();
    await writer.stop();
  }
}

async function main(): Promise<void> {
  try {
    await checkCost();
    await workers();
    await underRotation();
    await rotationToUse(false);
    await rotationToUse(true);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  const out = [
    '# Benchmarks: several processes on one keystore',
    '',
    'Generated by `npm run bench:fleet` (bench/fleet.ts); do not edit by hand.',
    '',
    `- Date: ${new Date().toISOString().slice(0, 10)}`,
    `- Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node.js ${process.version}, ${process.platform}`,
    `- A/B rows: ${ROUNDS} interleaved rounds of ${SECONDS} s per side (A, B, A, B, …), the median of each side, and the ratio of medians.`,
    '- The daemons run in their own processes from src/ (tsx) on Unix sockets; the clients run in this process, except the workers rows (two client processes).',
    '- On a 2-core machine the client processes compete with the workers for the same cores: the CPU time per operation is the figure that does not depend on the core count.',
    `- Load average when the run ended: ${loadavg().map((x) => x.toFixed(1)).join(', ')} on ${cpus().length} cores. Other work on the machine moves every figure; the spread of the rounds is shown beside each median.`,
    '',
    '| what | A | B | ratio |',
    '|---|---|---|---:|',
    ...rows,
    '',
  ].join('\n');
  writeFileSync(OUT, out);
  console.log(`wrote ${OUT}`);
}

await main();
