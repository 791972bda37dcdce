/**
 * How long a rotation committed by one daemon takes to reach another
 * (its key manager holds the new version), on SQLite (one data directory,
 * the one-second change-log poll) and on PostgreSQL (LISTEN/NOTIFY).
 * Two key managers in this process, each on its own store connection(s),
 * as two daemons; rounds interleaved (SQLite, PostgreSQL, SQLite, …), the
 * median of the per-round medians reported.
 *
 *   node --import tsx bench/store-propagation.ts
 *
 * PostgreSQL: $CRYPTOD_TEST_PG_URL, else a throwaway server
 * (scripts/pg-test-server.mjs). Options: BENCH_ROUNDS (default 5),
 * BENCH_ROTATIONS per round (default 20). Run alone it prints the table;
 * bench/store-backends.ts calls {@link propagationRows} for its page.
 */
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { openManagedKeys, type OpenedManagedKeys } from '../src/daemon/managed-keys.js';
// @ts-expect-error: a plain .mjs script without type declarations
import { startServer, stopServer } from '../scripts/pg-test-server.mjs';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const ROTATIONS = Number(process.env.BENCH_ROTATIONS ?? 20);

interface Pair { a: OpenedManagedKeys; b: OpenedManagedKeys; close(): Promise<void> }

async function sqlitePair(): Promise<Pair> {
  const dir = mkdtempSync(join(tmpdir(), 'cdbp-'));
  const a = await openManagedKeys({ dataDir: join(dir, 'data') });
  const b = await openManagedKeys({ dataDir: join(dir, 'data') });
  return { a, b, async close() { await b.close(); await a.close(); rmSync(dir, { recursive: true, force: true }); } };
}

async function postgresPair(url: string): Promise<Pair> {
  const dir = mkdtempSync(join(tmpdir(), 'cdbp-'));
  const name = `cryptod_bench_${process.pid}_${Date.now()}`;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const u = new URL(url);
  u.pathname = `/${name}`;
  const a = await openManagedKeys({ dataDir: join(dir, 'a'), postgres: { url: u.toString() } });
  mkdirSync(join(dir, 'b'), { mode: 0o700 });
  copyFileSync(join(dir, 'a', 'root.key'), join(dir, 'b', 'root.key'));
  const b = await openManagedKeys({ dataDir: join(dir, 'b'), postgres: { url: u.toString() } });
  return {
    a, b,
    async close() {
      await b.close();
      await a.close();
      await admin.query(`DROP DATABASE ${name} WITH (FORCE)`);
      await admin.end();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Milliseconds from each rotation's commit on A to B holding the new version. */
async function round(p: Pair, key: string): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < ROTATIONS; i++) {
    const v = await p.a.manager.rotate(key);
    const t0 = performance.now();
    while (p.b.manager.entry(key)?.versions.some((x) => x.version === v) !== true) await new Promise((r) => setImmediate(r));
    out.push(performance.now() - t0);
  }
  return out;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.floor(s.length / 2)]!;
};
const p95 = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.min(xs.length - 1, Math.floor(xs.length * 0.95))]!;

/** The table's rows (markdown), measured on a PostgreSQL server at `url` and a SQLite file of its own. */
export async function propagationRows(url: string, log: (line: string) => void = () => {}): Promise<string[]> {
  const pairs = { sqlite: await sqlitePair(), postgres: await postgresPair(url) };
  try {
    for (const p of Object.values(pairs)) {
      await p.a.manager.create('bench-rot', { type: 'hmac-sha256' });
      while (p.b.manager.entry('bench-rot') === undefined) await p.b.manager.refresh();
    }
    const results: Record<'sqlite' | 'postgres', { p50: number[]; p95: number[] }> = { sqlite: { p50: [], p95: [] }, postgres: { p50: [], p95: [] } };
    for (let r = 0; r < ROUNDS; r++) {
      for (const k of ['sqlite', 'postgres'] as const) {
        const xs = await round(pairs[k], 'bench-rot');
        results[k].p50.push(median(xs));
        results[k].p95.push(p95(xs));
        log(`  round ${r + 1}/${ROUNDS}  ${k.padEnd(8)} p50 ${median(xs).toFixed(1)} ms  p95 ${p95(xs).toFixed(1)} ms`);
      }
    }
    const range = (xs: number[]): string => `rounds ${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)}`;
    return [
      '| store | rotation committed → held by another daemon (its next operation uses it), p50 | p95 | rounds × rotations |',
      '|---|---:|---:|---:|',
      ...(['sqlite', 'postgres'] as const).map((k) =>
        `| ${k === 'sqlite' ? 'SQLite, one host (1 s change-log poll)' : 'PostgreSQL (LISTEN/NOTIFY)'} | ${median(results[k].p50).toFixed(1)} ms (${range(results[k].p50)}) | ${median(results[k].p95).toFixed(1)} ms | ${ROUNDS} × ${ROTATIONS} |`),
    ];
  } finally {
    await pairs.sqlite.close();
    await pairs.postgres.close();
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const own = process.env.CRYPTOD_TEST_PG_URL ? null : await (startServer as () => Promise<{ url: string; dir: string }>)();
  try {
    const rows = await propagationRows(process.env.CRYPTOD_TEST_PG_URL ?? own!.url);
    process.stdout.write(`${rows.join('\n')}\n`);
  } finally {
    if (own !== null) (stopServer as (d: string) => void)(own.dir);
  }
}
