/**
 * `node --import tsx bench/vault-http-workers.ts`: transit encrypt 1 KiB over
 * HTTP with 64 concurrent keep-alive connections, `cryptod serve --workers 1`
 * against `--workers 2` (each a real `cryptod serve --http tcp://127.0.0.1:0`
 * process tree with its own data directory), written to
 * docs/benchmarks-vault-workers.md.
 *
 * Interleaved rounds (workers 1, workers 2, workers 1, …), the median of
 * BENCH_ROUNDS (default 5, at least 5) each. The daemon's CPU per request is
 * summed over every process of the daemon (/proc: the primary and its
 * workers), the figure that holds on a loaded machine; throughput is
 * reported beside it, and on a 2-core machine shared with the client and
 * other work it says how many cores were left over, not what a core can do.
 * The 64 connections are opened once per daemon: the primary hands them to
 * its workers round robin (32 each with two), and STATUS's per-worker HTTP
 * counts at the end show how the requests were spread.
 *
 * Options: BENCH_SECONDS (per round, default 2), BENCH_ROUNDS, BENCH_OUT.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from '../src/client/client.js';
import { openSqliteClientRegistry } from '../src/store/sqlite/client-registry.js';
import { measurePipelined } from './measure.js';
import { fmtOps } from './report.js';
import { RawHttpPool, buildRequest } from './raw-http-client.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 2);
const ROUNDS = Math.max(5, Number(process.env.BENCH_ROUNDS ?? 5));
const CONCURRENT = 64;
const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..');
const OUT = process.env.BENCH_OUT ?? join(repo, 'docs/benchmarks-vault-workers.md');

/** CPU seconds a process has used (utime + stime, /proc/PID/stat; USER_HZ is 100 on Linux). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

interface Daemon {
  workers: number;
  /** Every process of the daemon: the primary and its workers, or the one process. */
  pids: number[];
  port: number;
  socket: string;
  pool: RawHttpPool;
  request: Buffer;
  stop(): Promise<void>;
}

async function startDaemon(workers: number): Promise<Daemon> {
  const dir = mkdtempSync(join(tmpdir(), `cd-bench-hw${workers}-`));
  const socket = join(dir, 'run', 'cryptod.sock');
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--data-dir', join(dir, 'data'), '--socket', socket,
    '--http', 'tcp://127.0.0.1:0', '--admin-client', 'bench', '--workers', String(workers), '--log-level', 'info'], { cwd: repo, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const deadline = Date.now() + 90_000;
  const ready = (): boolean => (workers === 1 ? /"frontDoor":"http tcp/.test(stderr) : /"msg":"workers started"/.test(stderr));
  while (!ready()) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`cryptod serve --workers ${workers} did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const port = Number(/"frontDoor":"http tcp:\/\/127\.0\.0\.1:(\d+)/.exec(stderr)![1]);
  const pids = workers === 1 ? [child.pid!] : [child.pid!, ...(JSON.parse(/"workers":(\[[0-9,]+\])/.exec(stderr)![1]!) as number[])];
  const registry = openSqliteClientRegistry({ dataDir: join(dir, 'data') });
  const { token } = await registry.add('bench');
  await registry.close();
  const setup = await RawHttpPool.open(port, 1);
  const created = await setup.request(buildRequest('/v1/transit/keys/bench-aes', token, JSON.stringify({ type: 'aes256-gcm96' })));
  setup.close();
  if (created.status !== 200) throw new Error(`creating the key: ${created.status} ${created.body.toString()}`);
  const pool = await RawHttpPool.open(port, CONCURRENT);
  const request = buildRequest('/v1/transit/encrypt/bench-aes', token, JSON.stringify({ plaintext: Buffer.alloc(1024, 7).toString('base64') }));
  const check = JSON.parse((await pool.request(request)).body.toString()) as { data?: { ciphertext?: string } };
  if (check.data?.ciphertext?.startsWith('vault:v1:') !== true) throw new Error(`unexpected reply ${JSON.stringify(check)}`);
  return {
    workers, pids, port, socket, pool, request,
    async stop() {
      pool.close();
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

interface Series {
  ops: number[];
  cpuUs: number[];
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const spread = (xs: readonly number[], fmt: (x: number) => string): string => `${fmt(median(xs))} (${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))})`;
const us = (x: number): string => `${x.toFixed(1)} µs`;

async function main(): Promise<void> {
  const loadStart = loadavg();
  const daemons = [await startDaemon(1), await startDaemon(2)];
  const series = new Map<number, Series>(daemons.map((d) => [d.workers, { ops: [], cpuUs: [] }]));
  const spreadNote: string[] = [];
  try {
    // Warm both (JIT, the key, the token check) before the first round.
    for (const d of daemons) await measurePipelined(1, CONCURRENT, () => d.pool.request(d.request));
    for (let i = 0; i < ROUNDS; i++) {
      for (const d of daemons) {
        const cpu = (): number => d.pids.reduce((n, pid) => n + cpuSeconds(pid), 0);
        const before = cpu();
        const r = await measurePipelined(SECONDS, CONCURRENT, () => d.pool.request(d.request));
        const cpuUs = ((cpu() - before) * 1e6) / r.ops;
        series.get(d.workers)!.ops.push(r.opsPerSec);
        series.get(d.workers)!.cpuUs.push(cpuUs);
        console.log(`round ${i + 1} --workers ${d.workers}: ${fmtOps(r.opsPerSec)} requests/s, daemon CPU ${cpuUs.toFixed(1)} µs/request`);
      }
    }
    // How the primary spread the 64 connections' requests over the workers.
    const d2 = daemons[1]!;
    const c = await connect({ socket: d2.socket, clientName: 'bench-status' });
    const s = (await c.status()) as unknown as { workers: Array<{ pid: number; http?: { connections: number; requests: number } }> };
    await c.close();
    for (const w of s.workers) spreadNote.push(`pid ${w.pid}: ${w.http?.connections ?? 0} connections, ${fmtOps(w.http?.requests ?? 0)} requests`);
    console.log('--workers 2, per worker:', spreadNote.join('; '));
  } finally {
    for (const d of daemons) await d.stop();
  }
  const one = series.get(1)!;
  const two = series.get(2)!;
  const text = [
    '# Benchmarks: the HTTP API under --workers',
    '',
    `Generated by \`node --import tsx bench/vault-http-workers.ts\` on ${new Date().toISOString().slice(0, 10)}, ${cpus().length} CPU(s) (${cpus()[0]?.model ?? 'unknown'}), Node.js ${process.version}; load average ${loadStart.map((l) => l.toFixed(1)).join(' ')} at the start of the run, ${loadavg().map((l) => l.toFixed(1)).join(' ')} at the end.`,
    '',
    `Transit encrypt 1 KiB over HTTP (\`cryptod serve --http tcp://127.0.0.1:0\`), ${CONCURRENT} concurrent keep-alive connections from one raw client process (bench/raw-http-client.ts) on the same machine; ${ROUNDS} interleaved rounds of ${SECONDS} s (--workers 1, --workers 2, --workers 1, …), median (lowest–highest). Daemon CPU per request is summed over every process of the daemon (the primary and its workers).`,
    '',
    '| workload | daemon | requests/s | daemon CPU per request |',
    '|---|---|---|---|',
    `| transit encrypt 1 KiB, HTTP, ${CONCURRENT} concurrent | --workers 1 | ${spread(one.ops, fmtOps)} | ${spread(one.cpuUs, us)} |`,
    `| transit encrypt 1 KiB, HTTP, ${CONCURRENT} concurrent | --workers 2 | ${spread(two.ops, fmtOps)} | ${spread(two.cpuUs, us)} |`,
    `| --workers 2 / --workers 1 (medians) | | ${(median(two.ops) / median(one.ops)).toFixed(2)}× | ${(median(two.cpuUs) / median(one.cpuUs)).toFixed(2)}× |`,
    '',
    `--workers 2 at the end of the run, per worker: ${spreadNote.join('; ')}.`,
    '',
    'Reading it: one worker is one core, so its throughput is capped near 1e6 / (its CPU per request). Two workers can use both cores, but on this machine the load generator needs a core too, and every other process on the machine competes for the same two: the throughput ratio says how much CPU was left over, the CPU per request says what a request costs (it does not depend on the number of cores, though contention raises it for every busy process).',
    '',
  ].join('\n');
  writeFileSync(OUT, text);
  console.log(`wrote ${OUT}`);
}

await main();
