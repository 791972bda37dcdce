/**
 * A real PostgreSQL server for the tests.
 *
 *   $CRYPTOD_TEST_PG_URL set (.ci/run starts one)  ─▶ use it
 *   else the PostgreSQL binaries are here          ─▶ start a private server for this test file
 *   else CI=true                                   ─▶ fail: never skipped in CI
 *   else                                           ─▶ a loud SKIPPED line, and the suites skip
 *
 * Each store gets a database of its own (`freshDatabase()`), so test files
 * and tests never see each other's keys, and parallel runs never clash.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
// @ts-expect-error: a plain .mjs script without type declarations
import { findPgBin, pgCtl, startServer, stopServer } from '../../scripts/pg-test-server.mjs';

export interface PgServer {
  /** The server's URL (with its password). */
  readonly url: string;
  /** The server's directory when this process started it (stop/start for outage tests), else null. */
  readonly dir: string | null;
  /** A new empty database; `drop()` removes it (closing whatever is still connected). */
  freshDatabase(): Promise<{ url: string; name: string; drop(): Promise<void> }>;
  /** pg_ctl stop / start (only on a server this process started). */
  stop(): void;
  start(): void;
  /** Stop and remove a server this process started; nothing for a shared one. */
  shutdown(): Promise<void>;
}

let shared: Promise<PgServer | null> | null = null;

/** The server for this test process, or null (after a loud SKIPPED line) when there is none and this is not CI. */
export function postgresForTests(): Promise<PgServer | null> {
  shared ??= open();
  return shared;
}

async function open(): Promise<PgServer | null> {
  const given = process.env.CRYPTOD_TEST_PG_URL;
  if (given !== undefined && given !== '') return server(given, null);
  if ((findPgBin as () => string | null)() !== null) {
    const s = await (startServer as () => Promise<{ url: string; dir: string }>)();
    return server(s.url, s.dir);
  }
  if (process.env.CI === 'true') {
    throw new Error('CI=true but no PostgreSQL: set CRYPTOD_TEST_PG_URL or install the PostgreSQL binaries (initdb, pg_ctl); the PostgreSQL tests are never skipped in CI');
  }
  process.stderr.write(
    '\n' + '!'.repeat(78) + '\n' +
      '!!! SKIPPED: PostgreSQL keystore tests — no CRYPTOD_TEST_PG_URL and no initdb/pg_ctl on this machine.\n' +
      '!!! Install PostgreSQL 15 (or export CRYPTOD_TEST_PG_URL) to run them; CI always does.\n' +
      '!'.repeat(78) + '\n\n',
  );
  return null;
}

/**
 * A server of this process's own, whatever CRYPTOD_TEST_PG_URL says: for
 * tests that stop and restart it (outages). Null (after the SKIPPED line)
 * only off CI without the binaries.
 */
export async function privatePostgres(): Promise<PgServer | null> {
  if ((findPgBin as () => string | null)() !== null) {
    const s = await (startServer as () => Promise<{ url: string; dir: string }>)();
    return server(s.url, s.dir);
  }
  if (process.env.CI === 'true') throw new Error('CI=true but no PostgreSQL binaries (initdb, pg_ctl): the outage tests need a server of their own');
  process.stderr.write('\n' + '!'.repeat(78) + '\n!!! SKIPPED: PostgreSQL outage tests — no initdb/pg_ctl on this machine.\n' + '!'.repeat(78) + '\n\n');
  return null;
}

function server(url: string, dir: string | null): PgServer {
  return {
    url,
    dir,
    async freshDatabase() {
      const name = `cryptod_t_${randomBytes(6).toString('hex')}`;
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      try {
        await admin.query(`CREATE DATABASE ${name}`);
      } finally {
        await admin.end();
      }
      const u = new URL(url);
      u.pathname = `/${name}`;
      return {
        url: u.toString(),
        name,
        async drop() {
          const c = new pg.Client({ connectionString: url });
          try {
            await c.connect();
            await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
          } catch {
            // The server may be stopped by the test; its directory goes with it.
          } finally {
            await c.end().catch(() => undefined);
          }
        },
      };
    },
    stop() {
      if (dir === null) throw new Error('stop() needs a server this process started');
      (pgCtl as (d: string, a: string) => void)(dir, 'stop');
    },
    start() {
      if (dir === null) throw new Error('start() needs a server this process started');
      (pgCtl as (d: string, a: string) => void)(dir, 'start');
    },
    async shutdown() {
      if (dir !== null) (stopServer as (d: string) => void)(dir);
    },
  };
}
