/**
 * The SQLite keystore backend (better-sqlite3, one file in the data directory).
 *
 *   process ──▶ writer connection ── SerialQueue ── BEGIN IMMEDIATE … COMMIT / ROLLBACK
 *           └─▶ reader pool (read-only connections) ── BEGIN (snapshot) … COMMIT, one per read()
 *
 * - Async transactions over a synchronous driver: the writer's queue lets one
 *   transaction at a time use the connection, across its awaits, so no other
 *   statement can slip into it. `BEGIN IMMEDIATE` takes SQLite's write lock up
 *   front, which serializes writers across processes (design note 3) and
 *   rules out SQLITE_BUSY_SNAPSHOT half-way through a transaction.
 * - Waiting for another process's write lock is done by retrying BEGIN with
 *   short async sleeps, not with a long busy_timeout: the driver is
 *   synchronous and would freeze the event loop (every client of the daemon)
 *   for the whole wait.
 * - Reads use separate read-only connections. WAL lets them read the last
 *   committed state while a write transaction is open, so reads never see
 *   uncommitted writes and never wait for a writer. Each read() takes its
 *   own connection from a small pool rather than queueing on one: a queued
 *   read could wait on a read that waits on a transaction that waits on the
 *   first read (a cycle no queue order can break).
 * - Durability: WAL with synchronous=FULL fsyncs the WAL at every commit.
 *   NORMAL would be faster but can lose the last commits on power loss; a
 *   lost key version means data already encrypted under it is lost, so FULL.
 * - secure_delete overwrites freed content (destroyed key material) in the
 *   file; after a destroying commit a TRUNCATE checkpoint also empties the WAL
 *   of old page images. Both are best effort: what really protects a wrapped
 *   key is the KEK.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { ConfigError, CryptodError, InternalError, InvalidArgumentError, StoreBusyError, StoreError } from '../../protocol/errors.js';
import type { ChangeSet, Keystore, KeystoreReader, KeystoreTx } from '../keystore.js';
import { assertCount } from '../records.js';
import { SerialQueue } from '../serial-queue.js';
import { DEFAULT_DATABASE_FILE, openDatabaseFile } from './database-file.js';
import { ReadStatements, WriteStatements } from './statements.js';
import { driverCall, SqliteReaderView, SqliteTxView } from './views.js';

export interface SqliteKeystoreOptions {
  /** Directory for the database (created 0700; an existing one must not be group/world accessible). */
  dataDir: string;
  /** File name inside dataDir. Default `keystore.sqlite`. */
  fileName?: string;
  /** How long a transaction waits for another process's write lock before failing. Default 10 000 ms. */
  lockTimeoutMs?: number;
  /** Generations of change log kept for `changesSince`. Default 100 000. */
  changeLogLimit?: number;
}

/** Each BEGIN attempt may block the event loop this long before we sleep and retry. */
const BEGIN_BUSY_MS = 20;
/** At open (at least; a migration waits up to lockTimeoutMs), and for readers: SQLite's own wait (only WAL recovery or a TRUNCATE checkpoint hold them up). */
const OPEN_BUSY_MS = 5_000;

/** Idle read connections kept open; more are opened on demand and closed when returned. */
const MAX_IDLE_READERS = 4;

interface Reader {
  db: Database.Database;
  statements: ReadStatements;
}

/** Open (creating and migrating if needed) the keystore in `options.dataDir`. */
export async function openSqliteKeystore(options: SqliteKeystoreOptions): Promise<SqliteKeystore> {
  return SqliteKeystore.open(options);
}

export class SqliteKeystore implements Keystore {
  readonly backend = 'sqlite';
  /** Absolute path of the database file. */
  readonly file: string;
  readonly #writer: Database.Database;
  readonly #w: WriteStatements;
  readonly #writeQueue = new SerialQueue();
  /** Marks the async context of a running transaction, so nesting fails instead of deadlocking. */
  readonly #inTransaction = new AsyncLocalStorage<{ active: boolean }>();
  readonly #idleReaders: Reader[] = [];
  readonly #activeReads = new Set<Promise<unknown>>();
  readonly #lockTimeoutMs: number;
  readonly #changeLogLimit: number;
  /** `PRAGMA data_version` on the writer: moves only when another connection committed (own commits do not move it). */
  readonly #dataVersion: Database.Statement;
  #seenDataVersion: unknown;
  #closing = false;

  private constructor(file: string, writer: Database.Database, lockTimeoutMs: number, changeLogLimit: number) {
    this.file = file;
    this.#writer = writer;
    this.#w = new WriteStatements(writer);
    this.#lockTimeoutMs = lockTimeoutMs;
    this.#changeLogLimit = changeLogLimit;
    this.#dataVersion = writer.prepare('PRAGMA data_version').pluck();
    this.#seenDataVersion = this.#dataVersion.get();
  }

  static async open(options: SqliteKeystoreOptions): Promise<SqliteKeystore> {
    if (options === null || typeof options !== 'object') throw new ConfigError('expected keystore options');
    const fileName = options.fileName ?? DEFAULT_DATABASE_FILE;
    const lockTimeoutMs = options.lockTimeoutMs ?? 10_000;
    const changeLogLimit = options.changeLogLimit ?? 100_000;
    if (!Number.isSafeInteger(lockTimeoutMs) || lockTimeoutMs < 0) throw new ConfigError(`expected lockTimeoutMs >= 0, got ${lockTimeoutMs}`);
    if (!Number.isSafeInteger(changeLogLimit) || changeLogLimit < 1) throw new ConfigError(`expected changeLogLimit >= 1, got ${changeLogLimit}`);

    // The file, its pragmas and its migrations: database-file.ts, shared with the client registry.
    const { db: writer, file } = openDatabaseFile({
      dataDir: options.dataDir, fileName, purpose: 'keystore', busyTimeoutMs: Math.max(OPEN_BUSY_MS, lockTimeoutMs),
    });
    try {
      writer.pragma(`busy_timeout = ${BEGIN_BUSY_MS}`);
      const store = new SqliteKeystore(file, writer, lockTimeoutMs, changeLogLimit);
      store.#idleReaders.push(store.#openReader()); // fail at open, not at the first read
      return store;
    } catch (err) {
      writer.close();
      if (err instanceof CryptodError) throw err;
      throw new ConfigError(`cannot open the keystore ${file}: ${(err as Error).message}`, { cause: err });
    }
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
    const run = this.#runRead(fn);
    const tracked = run.catch(() => undefined);
    this.#activeReads.add(tracked);
    void tracked.then(() => this.#activeReads.delete(tracked));
    return run;
  }

  generation(): Promise<number> {
    return this.read((r) => r.generation());
  }

  changesSince(since: number): Promise<ChangeSet> {
    return this.#withReader((reader) => {
      assertCount('a generation', since, 0);
      return driverCall('changesSince', () => reader.statements.changesSince(since));
    });
  }

  /**
   * Keystore.changesSinceNow: `changesSince` on an idle reader connection,
   * inside one read transaction, without leaving the current task (the
   * driver is synchronous). Never on the writer: a transaction of ours may
   * be open there, and its uncommitted changes are not another process's.
   */
  changesSinceNow(since: number): ChangeSet {
    if (this.#closing) throw closedError();
    assertCount('a generation', since, 0);
    const reader = this.#idleReaders.pop() ?? driverCall('read', () => this.#openReader());
    let healthy = true;
    try {
      return driverCall('changesSince', () => reader.db.transaction(() => reader.statements.changesSince(since))());
    } catch (err) {
      healthy = reader.db.open && !reader.db.inTransaction;
      throw err;
    } finally {
      if (healthy && !this.#closing && this.#idleReaders.length < MAX_IDLE_READERS) this.#idleReaders.push(reader);
      else reader.db.close();
    }
  }

  /**
   * Keystore.maybeChanged: one `PRAGMA data_version` on the writer connection
   * (about a microsecond; no file I/O beyond the shared-memory WAL index).
   * Asked on the writer, not a reader, so that this process's own commits
   * (already published by the key manager) do not count as someone else's.
   * A statement on the writer while a transaction of ours is open is safe:
   * it writes nothing, and no other process can commit meanwhile.
   */
  maybeChanged(): boolean {
    if (this.#closing) return false;
    let v: unknown;
    try {
      v = this.#dataVersion.get();
    } catch {
      return true; // cannot tell: let the caller ask the change log, which reports the failure properly
    }
    if (v === this.#seenDataVersion) return false;
    this.#seenDataVersion = v;
    return true;
  }

  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    await this.#writeQueue.idle();
    await Promise.all(this.#activeReads);
    for (const reader of this.#idleReaders.splice(0)) reader.db.close();
    // The last connection to close checkpoints the WAL into the file and removes -wal and -shm.
    this.#writer.close();
  }

  async #runTransaction<T>(fn: (tx: KeystoreTx) => Promise<T> | T): Promise<T> {
    await this.#begin();
    const view = new SqliteTxView(this.#w);
    const marker = { active: true };
    let result: T;
    try {
      result = await this.#inTransaction.run(marker, () => fn(view));
      if (view.changed) {
        driverCall('commit', () => this.#w.logGeneration(view.changedNames, view.changedMeta, this.#changeLogLimit));
      }
      driverCall('commit', () => this.#writer.exec('COMMIT'));
    } catch (err) {
      this.#rollback();
      throw err;
    } finally {
      marker.active = false;
      // An enabled AsyncLocalStorage makes Node 20 run a hook on every promise
      // in the process (a few µs per request on the hot paths); transactions
      // are one at a time (#writeQueue), so none is left to mark.
      this.#inTransaction.disable();
      view.end();
    }
    if (view.destroyedMaterial) this.#checkpointAfterDestroy();
    return result;
  }

  #runRead<T>(fn: (r: KeystoreReader) => Promise<T> | T): Promise<T> {
    return this.#withReader(async (reader) => {
      const view = new SqliteReaderView(reader.statements, 'read');
      try {
        return await fn(view);
      } finally {
        view.end();
      }
    });
  }

  /** Lend a reader connection inside one read transaction (one snapshot) for the duration of `f`. */
  async #withReader<T>(f: (reader: Reader) => Promise<T> | T): Promise<T> {
    if (this.#closing) throw closedError();
    const reader = this.#idleReaders.pop() ?? driverCall('read', () => this.#openReader());
    let healthy = true;
    try {
      driverCall('read', () => reader.db.exec('BEGIN'));
      return await f(reader);
    } finally {
      // Ending the read transaction releases its snapshot (a held snapshot keeps the WAL from being checkpointed).
      try {
        if (reader.db.inTransaction) reader.db.exec('COMMIT');
      } catch {
        healthy = false;
      }
      if (healthy && !this.#closing && this.#idleReaders.length < MAX_IDLE_READERS) this.#idleReaders.push(reader);
      else reader.db.close();
    }
  }

  #openReader(): Reader {
    const db = new Database(this.file, { readonly: true, fileMustExist: true, timeout: OPEN_BUSY_MS });
    try {
      db.pragma('query_only = ON');
      return { db, statements: new ReadStatements(db) };
    } catch (err) {
      db.close();
      throw err;
    }
  }

  /** BEGIN IMMEDIATE, waiting asynchronously while another process holds the write lock. */
  async #begin(): Promise<void> {
    const deadline = Date.now() + this.#lockTimeoutMs;
    let pause = 2;
    for (;;) {
      try {
        this.#writer.exec('BEGIN IMMEDIATE');
        return;
      } catch (err) {
        if (!isBusy(err)) throw new StoreError('keystore begin failed', { cause: err });
        if (Date.now() >= deadline) {
          throw new StoreBusyError(`the keystore is locked by another process; gave up after ${this.#lockTimeoutMs} ms`, {
            cause: err,
            detail: { lockTimeoutMs: this.#lockTimeoutMs },
          });
        }
        await sleep(pause + Math.random() * pause);
        pause = Math.min(pause * 2, 50);
      }
    }
  }

  #rollback(): void {
    // Some errors (I/O, disk full) make SQLite roll back by itself.
    if (!this.#writer.inTransaction) return;
    try {
      this.#writer.exec('ROLLBACK');
    } catch {
      // The caller's error says what went wrong; a failed ROLLBACK leaves the
      // connection in the transaction and the next BEGIN reports it.
    }
  }

  #checkpointAfterDestroy(): void {
    try {
      this.#writer.pragma('wal_checkpoint(TRUNCATE)');
    } catch {
      // Best effort (see the header); readers in other processes may hold it up.
    }
  }
}

function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code === 'SQLITE_BUSY' || code.startsWith('SQLITE_BUSY_') || code === 'SQLITE_LOCKED');
}

function closedError(): CryptodError {
  return new InternalError('the keystore is closed');
}
