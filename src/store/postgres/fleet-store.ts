/**
 * The fleet's rows on PostgreSQL: the lease (src/store/lease.ts) and the
 * members (src/store/members.ts).
 *
 * The lease on PostgreSQL: the `leases` table
 * (migration 3), each attempt one short transaction on the keystore's pool
 * (not a keystore write: no generation, no change log, no NOTIFY).
 */
import { ACQUIRE_SQL, type LeaseRow, type LeaseStore } from '../lease.js';
import type { MemberRow, MemberStore } from '../members.js';
import type { PostgresKeystore } from './pg-store.js';

interface Row { name: string; holder: string; expires_at: number; generation: number }

/** ACQUIRE_SQL with PostgreSQL's numbered placeholders. */
const ACQUIRE_PG = ((): string => {
  let n = 0;
  return ACQUIRE_SQL.replace(/\?/g, () => `$${++n}`);
})();

export class PostgresLeaseStore implements LeaseStore {
  readonly #store: PostgresKeystore;

  constructor(store: PostgresKeystore) {
    this.#store = store;
  }

  tryAcquire(name: string, holder: string, now: number, periodMs: number): Promise<{ acquired: boolean; row: LeaseRow }> {
    return this.#store.withConnection('take the lease', async (q) => {
      const taken = (await q.query<Row>(ACQUIRE_PG, [name, holder, now + periodMs, now, now])).rows[0];
      if (taken !== undefined) return { acquired: true, row: toRow(taken) };
      const row = (await q.query<Row>('SELECT name, holder, expires_at, generation FROM leases WHERE name = $1', [name])).rows[0];
      if (row === undefined) throw new Error('lease row vanished inside its transaction');
      return { acquired: false, row: toRow(row) };
    });
  }

  async release(name: string, holder: string): Promise<void> {
    await this.#store.withConnection('release the lease', (q) => q.query('UPDATE leases SET expires_at = 0 WHERE name = $1 AND holder = $2', [name, holder]));
  }

  read(name: string): Promise<LeaseRow | undefined> {
    return this.#store.withConnection('read the lease', async (q) => {
      const row = (await q.query<Row>('SELECT name, holder, expires_at, generation FROM leases WHERE name = $1', [name])).rows[0];
      return row === undefined ? undefined : toRow(row);
    });
  }
}

function toRow(r: Row): LeaseRow {
  return { name: r.name, holder: r.holder, expiresAt: r.expires_at, generation: r.generation };
}

interface MemberDbRow { id: string; host: string; pid: number; seen_generation: number; expires_at: number }

/** Fleet members (src/store/members.ts) on PostgreSQL: the `members` table (migration 4), on the keystore's pool. */
export class PostgresMemberStore implements MemberStore {
  readonly #store: PostgresKeystore;

  constructor(store: PostgresKeystore) {
    this.#store = store;
  }

  async heartbeat(r: MemberRow): Promise<void> {
    await this.#store.withConnection('heartbeat', (q) => q.query(
      `INSERT INTO members (id, host, pid, seen_generation, expires_at) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, seen_generation = excluded.seen_generation, expires_at = excluded.expires_at`,
      [r.id, r.host, r.pid, r.seenGeneration, r.expiresAt],
    ));
  }

  live(now: number): Promise<MemberRow[]> {
    return this.#store.withConnection('list members', async (q) =>
      (await q.query<MemberDbRow>('SELECT id, host, pid, seen_generation, expires_at FROM members WHERE expires_at > $1 ORDER BY id', [now])).rows
        .map((m) => ({ id: m.id, host: m.host, pid: m.pid, seenGeneration: m.seen_generation, expiresAt: m.expires_at })));
  }

  async leave(id: string): Promise<void> {
    await this.#store.withConnection('leave', (q) => q.query('DELETE FROM members WHERE id = $1', [id]));
  }
}
