/**
 * Opening the data directory's SQLite file: the one place that does it, for
 * the keystore (sqlite-store.ts) and the client registry (client-registry.ts),
 * which share the file on their own connections.
 *
 *   data directory 0700 ─▶ file created 0600 (or its mode checked)
 *     ─▶ schema checked (a foreign or too-new file is refused before anything
 *        changes it) ─▶ WAL, pragmas ─▶ migrations under the write lock
 *
 * - WAL lets readers (the daemon's reads, `cryptod client list`) read the last
 *   commit while a writer writes, across processes.
 * - synchronous=FULL fsyncs the WAL at every commit: NORMAL can lose the last
 *   commits on power loss, and a lost key version loses the data encrypted
 *   under it.
 * - secure_delete overwrites freed content (destroyed key material, revoked
 *   token digests) in the file.
 * - trusted_schema=OFF: the file is data, never code to run.
 *
 * Opening is synchronous: it runs once, before anything is served, and a
 * migration waits for another process's write lock with SQLite's own busy
 * timeout. In one process no other connection can hold the lock meanwhile:
 * a file that still needs migrating has not been opened by anyone yet.
 */
import path from 'node:path';
import Database from 'better-sqlite3';
import { ConfigError, CryptodError } from '../../protocol/errors.js';
import { ensurePrivateDir, ensurePrivateFile } from '../../files/private-files.js';
import { applyMigrations, checkSchema, LATEST_SCHEMA_VERSION } from './migrations.js';

/** The file's name in the data directory unless told otherwise. */
export const DEFAULT_DATABASE_FILE = 'keystore.sqlite';

export interface DatabaseFileOptions {
  /** The data directory (created 0700; an existing one must not be group/world accessible). */
  dataDir: string;
  /** File name inside dataDir. Default `keystore.sqlite`. */
  fileName?: string;
  /** How long opening and migrating wait for another process's lock (SQLite's busy timeout, ms). Default 5000. */
  busyTimeoutMs?: number;
  /** Named in errors: "cannot open the keystore …". */
  purpose: string;
}

/** The absolute path `options` name, checked: a plain file name inside a private data directory. */
export function databasePath(options: Pick<DatabaseFileOptions, 'dataDir' | 'fileName'>): string {
  const fileName = options.fileName ?? DEFAULT_DATABASE_FILE;
  if (typeof fileName !== 'string' || fileName === '' || fileName !== path.basename(fileName) || fileName.startsWith('.')) {
    throw new ConfigError(`expected the keystore file name to be a plain file name, got "${String(fileName)}"`);
  }
  return path.join(ensurePrivateDir(options.dataDir), fileName);
}

/**
 * Open (creating and migrating it if needed) the database file; the caller
 * owns the connection and closes it.
 *
 * @throws ConfigError naming the file when it cannot be opened, is not a
 *   cryptod database, or was written by a newer cryptod.
 */
export function openDatabaseFile(options: DatabaseFileOptions): { db: Database.Database; file: string } {
  const file = databasePath(options);
  // Created 0600 before SQLite touches it; SQLite gives -wal and -shm the
  // same mode as the database file.
  ensurePrivateFile(file);
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { fileMustExist: true, timeout: options.busyTimeoutMs ?? 5_000 });
    checkSchema(db, file);
    const mode = db.pragma('journal_mode = WAL', { simple: true });
    if (mode !== 'wal') throw new ConfigError(`cannot switch ${file} to WAL mode (got ${String(mode)})`);
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    db.pragma('secure_delete = ON');
    db.pragma('trusted_schema = OFF');
    migrate(db, file);
    return { db, file };
  } catch (err) {
    db?.close();
    if (err instanceof CryptodError) throw err;
    throw new ConfigError(`cannot open the ${options.purpose} ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/** Bring the schema up to date; BEGIN IMMEDIATE waits for a process migrating at the same time, and applyMigrations re-reads the version under the lock. */
function migrate(db: Database.Database, file: string): void {
  if (checkSchema(db, file) >= LATEST_SCHEMA_VERSION) return;
  db.exec('BEGIN IMMEDIATE');
  try {
    applyMigrations(db, file);
    db.exec('COMMIT');
  } catch (err) {
    if (db.inTransaction) db.exec('ROLLBACK');
    throw err;
  }
}
