/**
 * The PostgreSQL keystore backend (pg, a connection pool), for daemons on
 * several hosts sharing one keystore (design note 3; README "Running several
 * daemons").
 *
 *   process ──▶ SerialQueue ──▶ pool client: BEGIN · lock_timeout · SELECT … store_state FOR UPDATE
 *                                            … writes … generation+1, change log, pg_notify · COMMIT
 *           └─▶ pool client per read(): BEGIN REPEATABLE READ READ ONLY … COMMIT (one snapshot)
 *           └─▶ one LISTEN connection, opened by the first onCommit() subscriber (notifications.ts)
 *
 * - The write lock is the row lock on `store_state`: every writer, in every
 *   process, takes it first, so writers run one at a time across the fleet
 *   and a transaction's reads see everything committed before it — the
 *   equivalent of SQLite's BEGIN IMMEDIATE. `lock_timeout` bounds the wait
 *   (StoreBusyError, as on SQLite).
 * - Reads are REPEATABLE READ snapshots on their own pool connections: they
 *   never see uncommitted writes and never wait for a writer (MVCC).
 * - Outages: connecting is bounded by `connectTimeoutMs`, every statement by
 *   `queryTimeoutMs`; past them, or when the server goes away, the caller gets
 *   StoreUnavailableError (pg-errors.ts), never a hang. A client that saw a
 *   connection error is destroyed, not returned to the pool; the pool opens
 *   fresh ones when the server is back, so recovery needs nothing from us.
 * - A write is acknowledged only when COMMIT returned. If the connection
 *   drops during COMMIT the outcome is unknown; the error says so
 *   (`detail.commitUnknown`).
 * - The connection string is a secret (its password): only its redacted
 *   form (connection-string.ts) appears in messages.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { ConfigError, CryptodError, InternalError, InvalidArgumentError } from '../../protocol/errors.js';
import type { ChangeSet, Keystore, KeystoreReader, KeystoreTx } from '../keystore.js';
import { assertCount } from '../records.js';
import { SerialQueue } from '../serial-queue.js';
import { redactUrl } from './connection-string.js';
import { migrate } from './migrations.js';
import { ChangeNotifications } from './notifications.js';
import { guardClient, inTransaction, isUnavailable, storeError } from './pg-errors.js';
import * as sql from './queries.js';
import { PgReaderView, PgTxView } from './views.js';

export interface PostgresKeystoreOptions {
  /** postgres://user:password@host:port/database (resolve env:/file: with connection-string.ts first). */
  url: string;
  /** Connections in the pool (≥ 2: a read may run while a transaction holds one). Default 10. */
  poolSize?: number;
  /** How long getting a connection may take before StoreUnavailableError. Default 5000 ms. */
  connectTimeoutMs?: number;
  /** How long one statement may take before StoreUnavailableError. Default 10 000 ms. */
  queryTimeoutMs?: number;
  /** How long a transaction waits for another process's write lock before StoreBusyError. Default 10 000 ms. */
  lockTimeoutMs?: number;
  /** Generations of change log kept for `changesSince`. Default 100 000. */
  changeLogLimit?: number;
}

export const PG_DEFAULTS = {
  poolSize: 10,
  connectTimeoutMs: 5_000,
  queryTimeoutMs: 10_000,
  lockTimeoutMs: 10_000,
  changeLogLimit: 100_000,
} as const;

/** int8 (OID 20) as a JS number: every BIGINT the keystore stores is a safe integer (records.ts). */
const INT8_OID = 20;
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

/** The pg client configuration of a store (shared with the client registry and the LISTEN connection). */
export function pgClientConfig(url: string, connectTimeoutMs: number, queryTimeoutMs: number): pg.ClientConfig {
  return {
    connectionString: url,
    connectionTimeoutMillis: connectTimeoutMs,
    // Both sides: the server cancels a long statement, the client gives up
    // on a server that stopped answering at all.
    statement_timeout: queryTimeoutMs,
    query_timeout: queryTimeoutMs + 1_000,
    keepAlive: true,
    types,
    application_name: 'cryptod',
  };
}

/**
 * A connection pool on `url` whose schema is up to date (migrations.ts: applied
 * under an advisory lock, so exactly once across processes). On failure the
 * pool is ended and the error rethrown as it came, for the caller to name.
 */
export async function openMigratedPool(url: string, where: string, o: { poolSize: number; connectTimeoutMs: number; queryTimeoutMs: number }): Promise<pg.Pool> {
  const pool = new pg.Pool({ ...pgClientConfig(url, o.connectTimeoutMs, o.queryTimeoutMs), max: o.poolSize, idleTimeoutMillis: 30_000 });
  // An idle connection that dies (server restart) is an 'error' event on the
  // pool; unhandled, it would crash the daemon. The pool drops that client.
  pool.on('error', () => undefined);
  try {
    const client = await pool.connect();
    try {
      await migrate(client, where);
    } finally {
      client.release();
    }
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw err;
  }
  return pool;
}

/** Open the keystore at `options.url`, creating or migrating its schema (exactly once across processes). */
export async function openPostgresKeystore(options: PostgresKeystoreOptions): Promise<PostgresKeystore> {
  return PostgresKeystore.open(options);
}

export class PostgresKeystore implements Keystore {
  readonly backend = 'postgres';
  /** The connection URL without its password, for messages, logs and status. */
  readonly where: string;
  readonly #pool: pg.Pool;
  readonly #config: pg.ClientConfig;
  readonly #writeQueue = new SerialQueue();
  readonly #inTransaction = new AsyncLocalStorage<{ active: boolean }>();
  readonly #activeReads = new Set<Promise<unknown>>();
  readonly #lockTimeoutMs: number;
  readonly #changeLogLimit: number;
  /** Tags this process's notifications, so its own commits are not reported back to it. */
  readonly #origin = randomBytes(8).toString('hex');
  #notifications: ChangeNotifications | null = null;
  #closing = false;

  private constructor(where: string, config: pg.ClientConfig, pool: pg.Pool, lockTimeoutMs: number, changeLogLimit: number) {
    this.where = where;
    this.#config = config;
    this.#pool = pool;
    this.#lockTimeoutMs = lockTimeoutMs;
    this.#changeLogLimit = changeLogLimit;
  }

  static async open(options: PostgresKeystoreOptions): Promise<PostgresKeystore> {
    if (options === null || typeof options !== 'object' || typeof options.url !== 'string') throw new ConfigError('expected keystore options with a postgres:// url');
    const o = { ...PG_DEFAULTS, ...definedOnly(options) };
    const where = redactUrl(options.url);
    checkInt('poolSize', o.poolSize, 2);
    checkInt('connectTimeoutMs', o.connectTimeoutMs, 1);
    checkInt('queryTimeoutMs', o.queryTimeoutMs, 1);
    checkInt('lockTimeoutMs', o.lockTimeoutMs, 0);
    checkInt('changeLogLimit', o.changeLogLimit, 1);
    let pool: pg.Pool;
    try {
      pool = await openMigratedPool(options.url, where, o);
    } catch (err) {
      if (err instanceof CryptodError) throw err;
      if (isUnavailable(err)) throw storeError('open', where, err);
      // Refused credentials, a missing database, no permission: the server's
      // message says which (it never contains the password).
      throw new ConfigError(`cannot open the keystore ${where}: ${(err as Error).message}`, { cause: err });
    }
    return new PostgresKeystore(where, pgClientConfig(options.url, o.connectTimeoutMs, o.queryTimeoutMs), pool, o.lockTimeoutMs, o.changeLogLimit);
  }

  transaction<T>(fn: (tx: KeystoreTx) => Promise<T> | T): Promise<T> {
    if (typeof fn !== 'function') return Promise.reject(new InvalidArgumentError('expected a transaction callback'));
    if (this.#closing) return Promise.reject(closedError());
    if (this.#inTransaction.getStore()?.active === true) {
      return Promise.reject(new InternalError('keystore.transaction() called inside a transaction of the same store; use the tx you were given'));
    }
    return this.#writeQueue.run(() => this.#runTransaction(fn));
  }

  read<T>(fn: (r: KeystoreReader) => Promise<T> | T): Promise<T> {
    if (typeof fn !== 'function') return Promise.reject(new InvalidArgumentError('expected a read callback'));
    if (this.#closing) return Promise.reject(closedError());
    const run = this.#snapshot((client) => this.#readWith(client, fn));
    const tracked = run.catch(() => undefined);
    this.#activeReads.add(tracked);
    void tracked.then(() => this.#activeReads.delete(tracked));
    return run;
  }

  generation(): Promise<number> {
    return this.read((r) => r.generation());
  }

  changesSince(since: number): Promise<ChangeSet> {
    if (this.#closing) return Promise.reject(closedError());
    try {
      assertCount('a generation', since, 0);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#snapshot(async (client) => {
      try {
        return await sql.changesSince(client, since);
      } catch (err) {
        throw storeError('changesSince', this.where, err);
      }
    });
  }

  /** Pushes the store's generation when another process commits (PostgreSQL LISTEN/NOTIFY); absent where the store cannot. */
  onCommit(listener: (generation: number) => void): () => void {
    if (typeof listener !== 'function') throw new InvalidArgumentError('expected a listener function');
    if (this.#closing) return () => undefined;
    this.#notifications ??= new ChangeNotifications(this.#config, this.#origin);
    return this.#notifications.subscribe(listener);
  }

  /**
   * Run `f` on a pool connection in a transaction of its own (not the
   * keystore's write transaction, and no generation): for tables that change
   * for their own reasons, such as the lease and the members (lease.ts).
   */
  async withConnection<T>(op: string, f: (q: sql.Queryable) => Promise<T>): Promise<T> {
    if (this.#closing) throw closedError();
    const client = await this.#connect(op);
    return inTransaction(client, f, (err) => storeError(op, this.where, err));
  }

  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    await this.#writeQueue.idle();
    await Promise.all(this.#activeReads);
    await this.#notifications?.close();
    await this.#pool.end();
  }

  async #connect(op: string): Promise<pg.PoolClient> {
    try {
      return guardClient(await this.#pool.connect());
    } catch (err) {
      throw storeError(op, this.where, err);
    }
  }

  async #runTransaction<T>(fn: (tx: KeystoreTx) => Promise<T> | T): Promise<T> {
    const client = await this.#connect('begin');
    const view = new PgTxView(client, this.where);
    const marker = { active: true };
    let broken = false;
    let committing = false;
    try {
      try {
        await client.query('BEGIN');
        await client.query(`SET LOCAL lock_timeout = ${this.#lockTimeoutMs}`);
        await sql.lockForWrite(client);
      } catch (err) {
        throw storeError('begin', this.where, err);
      }
      const result = await this.#inTransaction.run(marker, () => fn(view));
      try {
        if (view.changed) await sql.logGeneration(client, view.changedNames, view.changedMeta, this.#changeLogLimit, this.#origin);
        committing = true;
        await client.query('COMMIT');
      } catch (err) {
        throw storeError('commit', this.where, err, { commitUnknown: committing });
      }
      return result;
    } catch (err) {
      broken = isUnavailable(err);
      if (!broken) await client.query('ROLLBACK').catch(() => { broken = true; });
      throw err;
    } finally {
      marker.active = false;
      view.end();
      client.release(broken);
    }
  }

  async #snapshot<T>(f: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.#connect('read');
    let broken = false;
    try {
      try {
        await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      } catch (err) {
        throw storeError('read', this.where, err);
      }
      return await f(client);
    } catch (err) {
      broken = isUnavailable(err);
      throw err;
    } finally {
      // Ending the snapshot releases it (a held one keeps VACUUM from cleaning up).
      if (!broken) await client.query('COMMIT').catch(() => { broken = true; });
      client.release(broken);
    }
  }

  async #readWith<T>(client: pg.PoolClient, fn: (r: KeystoreReader) => Promise<T> | T): Promise<T> {
    const view = new PgReaderView(client, this.where, 'read');
    try {
      return await fn(view);
    } finally {
      view.end();
    }
  }
}

function checkInt(name: string, value: number, min: number): void {
  if (!Number.isSafeInteger(value) || value < min) throw new ConfigError(`expected ${name} to be an integer >= ${min}, got ${String(value)}`);
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function closedError(): CryptodError {
  return new InternalError('the keystore is closed');
}
