/**
 * `npm run bench:stores`: the keystore backends side by side, written to
 * docs/benchmarks-stores.md.
 *
 *   1. managed HMAC-SHA256 through a daemon on SQLite (the embedded default)
 *      and through one on PostgreSQL (`--store postgres://…`), in interleaved
 *      rounds: ops/s and the daemon's CPU time per operation (STATUS
 *      `process.cpuUserUs + cpuSystemUs` before and after each window)
 *   2. the time from a rotation committed in one daemon to its first use by
 *      another, on SQLite and on PostgreSQL with notifications
 *      (bench/store-propagation.ts)
 *
 * The daemons run from src/ through tsx, each in its own process on its own
 * Unix socket; this process is the client. PostgreSQL: $CRYPTOD_TEST_PG_URL,
 * else a throwaway server started here (scripts/pg-test-server.mjs) and
 * stopped at the end. Options: BENCH_SECONDS (default 2) per round,
 * BENCH_ROUNDS (default and minimum 5), BENCH_ROTATIONS (per propagation
 * round, default 20), BENCH_OUT.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { connect, type Client } from '../src/client/client.js';
import { interleave, ROUNDS, type Interleaved } from './interleave.js';
import { measurePipelined } from './measure.js';
import { propagationRows } from './store-propagation.js';
// @ts-expect-error: a plain .mjs script without type declarations
import { startServer, stopServer } from '../scripts/pg-test-server.mjs';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 2);
const WINDOW = 64;
const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..');
const OUT = process.env.BENCH_OUT ?? join(repo, 'docs/benchmarks-stores.md');
const MSG = randomBytes(64);
const tmp = mkdtempSync(join(tmpdir(), 'cdstores-'));

interface Served { proc: ChildProcess; client: Client; stop(): Promise<void> }

async function serve(name: string, store?: string): Promise<Served> {
  const socket = join(tmp, `${name}.sock`);
  const args = ['--import', 'tsx', join(repo, 'src/cli/main.ts'), 'serve', '--data-dir', join(tmp, name), '--socket', socket,
    '--log-level', 'warn', '--max-inflight', '4096', ...(store === undefined ? [] : ['--store', store])];
  const proc = spawn(process.execPath, args, { cwd: repo, stdio: ['ignore', 'inherit', 'inherit'] });
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      const client = await connect({ socket, clientName: `bench-${name}` });
      return {
        proc, client,
        async stop() {
          await client.close();
          const exited = new Promise((r) => proc.once('exit', r));
          proc.kill('SIGTERM');
          await exited;
        },
      };
    } catch (err) {
      if (Date.now() > deadline || proc.exitCode !== null) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** The daemon's cumulative CPU time (µs), as STATUS reports it. */
async function daemonCpu(c: Client): Promise<number> {
  const s = (await c.status()) as { process: { cpuUserUs: number; cpuSystemUs: number } };
  return s.process.cpuUserUs + s.process.cpuSystemUs;
}

const ops = (n: number): string => Math.round(n).toLocaleString('en-US');

function macRow(x: Interleaved): string {
  const cpu = x.cpuPerOpNs === undefined ? '' : `${(x.cpuPerOpNs.median / 1000).toFixed(1)} µs (rounds ${(x.cpuPerOpNs.min / 1000).toFixed(1)}–${(x.cpuPerOpNs.max / 1000).toFixed(1)})`;
  const ratio = x.ratio === undefined ? '1.00× (reference)' : `${x.ratio.median.toFixed(2)}× (rounds ${x.ratio.min.toFixed(2)}–${x.ratio.max.toFixed(2)})`;
  return `| ${x.mode} | ${ops(x.opsPerSec.median)} (rounds ${ops(x.opsPerSec.min)}–${ops(x.opsPerSec.max)}) | ${cpu} | ${ratio} |`;
}

const own = process.env.CRYPTOD_TEST_PG_URL ? null : await (startServer as () => Promise<{ url: string; dir: string }>)();
const url = process.env.CRYPTOD_TEST_PG_URL ?? own!.url;
// A database of its own, so a shared server (CRYPTOD_TEST_PG_URL) keeps nothing of this run.
const dbName = `cryptod_bench_stores_${process.pid}_${Date.now()}`;
const admin = new pg.Client({ connectionString: url });
await admin.connect();
await admin.query(`CREATE DATABASE ${dbName}`);
const dbUrl = new URL(url);
dbUrl.pathname = `/${dbName}`;
try {
  const loadAtStart = loadavg()[0]!;
  const daemons = { sqlite: await serve('sqlite'), postgres: await serve('postgres', dbUrl.toString()) };
  let mac: Interleaved[];
  try {
    for (const d of Object.values(daemons)) await d.client.keys.create('bench-mac', { type: 'hmac-sha256' });
    console.log(`managed HMAC-SHA256 64 B, pipelined (${WINDOW}): SQLite vs PostgreSQL`);
    mac = await interleave(
      (['sqlite', 'postgres'] as const).map((k) => ({
        workload: 'managed HMAC-SHA256 64 B',
        mode: k === 'sqlite' ? 'SQLite keystore (embedded default)' : 'PostgreSQL keystore (`--store postgres://…`)',
        kind: 'cryptod' as const,
        run: () => measurePipelined(SECONDS, WINDOW, () => daemons[k].client.mac('bench-mac', MSG), undefined, () => daemonCpu(daemons[k].client)),
      })),
      console.log,
    );
  } finally {
    await daemons.sqlite.stop();
    await daemons.postgres.stop();
  }
  console.log('rotation committed in one daemon → first use by another');
  const propagation = await propagationRows(url, console.log);
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  const page = [
    '# Benchmarks: SQLite and PostgreSQL keystores',
    '',
    'Generated by `npm run bench:stores` (bench/store-backends.ts); do not edit by hand.',
    '',
    `- Date: ${new Date().toISOString().slice(0, 10)}`,
    `- Machine: ${cpus().length} × ${cpu}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node.js ${process.version}, ${process.platform}`,
    `- PostgreSQL: ${own === null ? 'the server at $CRYPTOD_TEST_PG_URL' : 'a throwaway server on this machine (scripts/pg-test-server.mjs), over TCP on 127.0.0.1'}, a database of its own for the run.`,
    `- Load average: ${loadAtStart.toFixed(1)} (1 min) when the run started; ${loadavg().map((x) => x.toFixed(1)).join(', ')} (1, 5, 15 min) when it ended, on ${cpus().length} cores. Other work on the machine moves every figure; the spread of the rounds is shown beside each median.`,
    '',
    '## Managed MAC on each backend',
    '',
    `One daemon per backend, each in its own process; HMAC-SHA256 over 64 B on a managed key, ${WINDOW} requests in flight on one connection. ${ROUNDS} interleaved rounds of ${SECONDS} s (SQLite, PostgreSQL, SQLite, …) after a warm-up; the median round with the slowest–fastest round in brackets. **CPU/op** is the daemon's CPU time (user + system, from STATUS \`process\` before and after the window) divided by the operations of the window. **vs SQLite** is the median of the per-round ratios.`,
    '',
    'A cached managed key is served from the key manager\'s memory on either backend; the store is consulted only when something changed (SQLite: one `PRAGMA data_version` look per batch of requests; PostgreSQL: none per operation — its notifications arrive on their own connection). Where the rounds\' ops/s spreads overlap, this run does not tell the backends apart by throughput; the CPU time per operation is the steadier figure.',
    '',
    '| backend | ops/s | daemon CPU/op | vs SQLite |',
    '|---|---:|---:|---:|',
    ...mac.map(macRow),
    '',
    '## Rotation committed in one daemon → first use by another',
    '',
    'Two key managers in one process, each on its own store connection(s), as two daemons: on SQLite one data directory (the change log polled every second; a daemon serving requests also looks at `PRAGMA data_version` before each batch, see docs/benchmarks-fleet.md for that figure through real daemons), on PostgreSQL one database with LISTEN/NOTIFY. The time from `rotate` returning on one to the other holding the new version; rounds interleaved, the median of the per-round p50s with their spread, and the median of the per-round p95s. Target with notifications: p50 under 50 ms.',
    '',
    ...propagation,
    '',
  ].join('\n');
  writeFileSync(OUT, page);
  console.log(`\nwrote ${OUT}`);
} finally {
  await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`).catch(() => {});
  await admin.end();
  rmSync(tmp, { recursive: true, force: true });
  if (own !== null) (stopServer as (d: string) => void)(own.dir);
}
