/**
 * The fleet lease (src/store/lease.ts) on PostgreSQL: the `leases` table
 * (migration 3), each attempt one short transaction on the keystore's pool
 * (not a keystore write: no generation, no change log, no NOTIFY).
 */
import { ACQUIRE_SQL, type LeaseRow, type LeaseStore } from '../lease.js';
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
