/**
 * The SQLite keystore schema as an ordered list of migrations.
 *
 * The schema version lives in `PRAGMA user_version` (in the database header,
 * written by the same transaction as the migration, so a crash leaves either
 * the old schema with the old number or the new schema with the new number).
 * `PRAGMA application_id` marks the file as a cryptod keystore so that
 * pointing the daemon at some other SQLite database fails clearly.
 *
 * Rules: a migration, once released, is never edited; changes are new
 * migrations appended with the next version. A database whose version is
 * newer than the last migration here was written by a newer cryptod and is
 * refused (opening it could silently drop what the newer schema means).
 */
import type Database from 'better-sqlite3';
import { ConfigError } from '../../protocol/errors.js';

/** 'cryd' as a big-endian 32-bit integer. */
export const APPLICATION_ID = 0x63727964;

export interface Migration {
  readonly version: number;
  readonly description: string;
  readonly up: (db: Database.Database) => void;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'keys, key versions, meta, generation and change log',
    up(db) {
      db.exec(`
        CREATE TABLE meta (
          key   TEXT PRIMARY KEY,
          value TEXT NOT NULL
        ) WITHOUT ROWID;

        -- One row: the committed generation (design note 3) and the newest
        -- generation the change log no longer covers.
        CREATE TABLE store_state (
          id              INTEGER PRIMARY KEY CHECK (id = 1),
          generation      INTEGER NOT NULL CHECK (generation >= 0),
          changelog_floor INTEGER NOT NULL CHECK (changelog_floor >= 0)
        );
        INSERT INTO store_state (id, generation, changelog_floor) VALUES (1, 0, 0);

        CREATE TABLE keys (
          name       TEXT PRIMARY KEY,
          type       TEXT NOT NULL,
          policy     TEXT NOT NULL,
          created_at INTEGER NOT NULL,
          updated_at INTEGER NOT NULL,
          disabled   INTEGER NOT NULL CHECK (disabled IN (0, 1))
        ) WITHOUT ROWID;

        CREATE TABLE key_versions (
          name        TEXT NOT NULL REFERENCES keys (name) ON DELETE CASCADE,
          version     INTEGER NOT NULL CHECK (version >= 1),
          state       TEXT NOT NULL CHECK (state IN ('active', 'decrypt-only', 'disabled', 'destroyed')),
          created_at  INTEGER NOT NULL,
          not_before  INTEGER NOT NULL,
          not_after   INTEGER,
          wrapped     BLOB,
          kek_id      TEXT NOT NULL,
          encryptions INTEGER NOT NULL CHECK (encryptions >= 0),
          PRIMARY KEY (name, version),
          -- The material is gone exactly when the version is destroyed.
          CHECK ((state = 'destroyed') = (wrapped IS NULL))
        ) WITHOUT ROWID;

        -- kind: 'key' (name is a key name) or 'meta' (name is a meta key).
        CREATE TABLE changes (
          generation INTEGER NOT NULL,
          kind       TEXT NOT NULL CHECK (kind IN ('key', 'meta')),
          name       TEXT NOT NULL,
          PRIMARY KEY (generation, kind, name)
        ) WITHOUT ROWID;
      `);
      db.pragma(`application_id = ${APPLICATION_ID}`);
    },
  },
  {
    version: 2,
    description: 'token clients (src/auth/client-registry.ts)',
    up(db) {
      db.exec(`
        -- One row per issued token; only its SHA-256 is kept. A name has at
        -- most one active (not revoked) row; revoked rows stay as history.
        CREATE TABLE clients (
          token_id   TEXT PRIMARY KEY,
          name       TEXT NOT NULL,
          token_hash BLOB NOT NULL CHECK (length(token_hash) = 32),
          uid        INTEGER CHECK (uid IS NULL OR uid >= 0),
          created_at INTEGER NOT NULL,
          revoked_at INTEGER
        ) WITHOUT ROWID;
        CREATE UNIQUE INDEX clients_active_name ON clients (name) WHERE revoked_at IS NULL;
      `);
    },
  },
  {
    version: 3,
    description: 'fleet leases (src/store/lease.ts)',
    up(db) {
      db.exec(`
        CREATE TABLE leases (
          name       TEXT PRIMARY KEY,
          holder     TEXT NOT NULL,
          expires_at INTEGER NOT NULL,
          generation INTEGER NOT NULL CHECK (generation >= 1)
        ) WITHOUT ROWID;
      `);
    },
  },
  {
    version: 4,
    description: 'fleet members and their heartbeats (src/store/members.ts)',
    up(db) {
      db.exec(`
        CREATE TABLE members (
          id              TEXT PRIMARY KEY,
          host            TEXT NOT NULL,
          pid             INTEGER NOT NULL,
          seen_generation INTEGER NOT NULL,
          expires_at      INTEGER NOT NULL
        ) WITHOUT ROWID;
      `);
    },
  },
];

export const LATEST_SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0;

/**
 * Read the header fields and refuse files that are not (or not yet) ours.
 * One read transaction: read one by one, another process's first migration
 * could commit between the version and the table count, and a keystore
 * being created would look like a foreign database.
 */
export function checkSchema(db: Database.Database, file: string): number {
  return db.transaction(() => readSchema(db, file))();
}

function readSchema(db: Database.Database, file: string): number {
  const version = db.pragma('user_version', { simple: true }) as number;
  const appId = db.pragma('application_id', { simple: true }) as number;
  if (appId !== 0 && appId !== APPLICATION_ID) {
    throw new ConfigError(`${file} is an SQLite database but not a cryptod keystore (application_id ${appId})`);
  }
  if (version > LATEST_SCHEMA_VERSION) {
    throw new ConfigError(
      `the keystore ${file} has schema version ${version}, newer than this cryptod supports (${LATEST_SCHEMA_VERSION}); ` +
        'upgrade cryptod, or restore a backup made by this version',
      { detail: { schemaVersion: version, supported: LATEST_SCHEMA_VERSION } },
    );
  }
  if (version === 0 && appId === 0) {
    const tables = db.prepare("SELECT count(*) AS n FROM sqlite_schema WHERE type = 'table'").get() as { n: number };
    if (tables.n > 0) throw new ConfigError(`${file} is an SQLite database with tables but not a cryptod keystore`);
  }
  return version;
}

/**
 * Apply every migration newer than the database's version. The caller holds
 * the write lock (BEGIN IMMEDIATE) and commits: the version is re-read here,
 * under the lock, because another process may have migrated meanwhile.
 * Returns the versions applied.
 */
export function applyMigrations(db: Database.Database, file: string): number[] {
  const current = checkSchema(db, file);
  const applied: number[] = [];
  for (const m of MIGRATIONS) {
    if (m.version <= current) continue;
    m.up(db);
    db.pragma(`user_version = ${m.version}`);
    applied.push(m.version);
  }
  return applied;
}
