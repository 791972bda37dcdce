/**
 * The fleet's rows on SQLite: the lease (src/store/lease.ts) and the members
 * (src/store/members.ts).
 *
 * The lease (src/store/lease.ts) on SQLite: the `leases` table
 * (migration 3) in the data directory's file, on a connection of its own so
 * that taking or renewing the lease never waits behind a keystore
 * transaction's queue, and never bumps the keystore's generation.
 *
 * Each attempt is one BEGIN IMMEDIATE with a short busy timeout: it runs on
 * the event loop (the driver is synchronous), so it must not wait long; a
 * busy attempt fails and the lease retries it with backoff.
 */
import type Database from 'better-sqlite3';
import { CryptodError, StoreError } from '../../protocol/errors.js';
import { ACQUIRE_SQL, type LeaseRow, type LeaseStore } from '../lease.js';
import type { MemberRow, MemberStore } from '../members.js';
import { openDatabaseFile } from './database-file.js';

interface Row { name: string; holder: string; expires_at: number; generation: number }

const LEASE_BUSY_MS = 50;

export class SqliteLeaseStore implements LeaseStore {
  readonly #db: Database.Database;
  readonly #acquire: Database.Statement<[string, string, number, number, number], Row>;
  readonly #select: Database.Statement<[string], Row>;
  readonly #release: Database.Statement<[string, string]>;

  constructor(options: { dataDir: string; fileName?: string }) {
    const { db } = openDatabaseFile({ dataDir: options.dataDir, purpose: 'lease store in', busyTimeoutMs: 5_000, ...(options.fileName === undefined ? {} : { fileName: options.fileName }) });
    db.pragma(`busy_timeout = ${LEASE_BUSY_MS}`);
    this.#db = db;
    this.#acquire = db.prepare(ACQUIRE_SQL);
    this.#select = db.prepare('SELECT name, holder, expires_at, generation FROM leases WHERE name = ?');
    this.#release = db.prepare('UPDATE leases SET expires_at = 0 WHERE name = ? AND holder = ?');
  }

  async tryAcquire(name: string, holder: string, now: number, periodMs: number): Promise<{ acquired: boolean; row: LeaseRow }> {
    return this.#call('take the lease', () => this.#db.transaction(() => {
      const taken = this.#acquire.get(name, holder, now + periodMs, now, now);
      if (taken !== undefined) return { acquired: true, row: toRow(taken) };
      const row = this.#select.get(name);
      if (row === undefined) throw new Error('lease row vanished inside its transaction');
      return { acquired: false, row: toRow(row) };
    }).immediate());
  }

  async release(name: string, holder: string): Promise<void> {
    this.#call('release the lease', () => this.#release.run(name, holder));
  }

  async read(name: string): Promise<LeaseRow | undefined> {
    const row = this.#call('read the lease', () => this.#select.get(name));
    return row === undefined ? undefined : toRow(row);
  }

  close(): void {
    this.#db.close();
  }

  #call<T>(what: string, f: () => T): T {
    try {
      return f();
    } catch (err) {
      if (err instanceof CryptodError) throw err;
      throw new StoreError(`failed to ${what}`, { cause: err });
    }
  }
}

function toRow(r: Row): LeaseRow {
  return { name: r.name, holder: r.holder, expiresAt: r.expires_at, generation: r.generation };
}

interface MemberDbRow { id: string; host: string; pid: number; seen_generation: number; expires_at: number }

/** Fleet members (src/store/members.ts) on SQLite: the `members` table (migration 4), on a connection of its own, as the lease. */
export class SqliteMemberStore implements MemberStore {
  readonly #db: Database.Database;
  readonly #upsert: Database.Statement<[string, string, number, number, number]>;
  readonly #live: Database.Statement<[number], MemberDbRow>;
  readonly #leave: Database.Statement<[string]>;

  constructor(options: { dataDir: string; fileName?: string }) {
    const { db } = openDatabaseFile({ dataDir: options.dataDir, purpose: 'member store in', busyTimeoutMs: 5_000, ...(options.fileName === undefined ? {} : { fileName: options.fileName }) });
    db.pragma(`busy_timeout = ${LEASE_BUSY_MS}`);
    this.#db = db;
    this.#upsert = db.prepare(`INSERT INTO members (id, host, pid, seen_generation, expires_at) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, seen_generation = excluded.seen_generation, expires_at = excluded.expires_at`);
    this.#live = db.prepare('SELECT id, host, pid, seen_generation, expires_at FROM members WHERE expires_at > ? ORDER BY id');
    this.#leave = db.prepare('DELETE FROM members WHERE id = ?');
  }

  async heartbeat(r: MemberRow): Promise<void> {
    sqliteCall('heartbeat', () => this.#upsert.run(r.id, r.host, r.pid, r.seenGeneration, r.expiresAt));
  }

  async live(now: number): Promise<MemberRow[]> {
    return sqliteCall('list members', () => this.#live.all(now)).map((m) => ({ id: m.id, host: m.host, pid: m.pid, seenGeneration: m.seen_generation, expiresAt: m.expires_at }));
  }

  async leave(id: string): Promise<void> {
    sqliteCall('leave', () => this.#leave.run(id));
  }

  close(): void {
    this.#db.close();
  }
}

function sqliteCall<T>(what: string, f: () => T): T {
  try {
    return f();
  } catch (err) {
    if (err instanceof CryptodError) throw err;
    throw new StoreError(`failed to ${what}`, { cause: err });
  }
}
