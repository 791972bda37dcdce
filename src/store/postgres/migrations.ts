/**
 * The PostgreSQL keystore schema as an ordered list of migrations: the same
 * tables as SQLite's (src/store/sqlite/migrations.ts), in PostgreSQL types.
 *
 * Several daemons may start at the same moment on one empty database. Each
 * runs `migrate()`, which takes a transaction-scoped advisory lock first:
 *
 *   BEGIN ─▶ pg_advisory_xact_lock(MIGRATION_LOCK) ─▶ read cryptod_schema
 *         ─▶ apply what is missing, record each ─▶ COMMIT (lock released)
 *
 * The second daemon waits on the lock, then reads the version the first one
 * committed and applies nothing: every migration runs exactly once. DDL is
 * transactional in PostgreSQL, so a crash leaves the old schema or the new.
 *
 * Names and text columns use the "C" collation: key names are ordered by
 * UTF-8 bytes, as on SQLite, whatever the database's locale.
 *
 * Rules (as on SQLite): a released migration is never edited; a database
 * from a newer cryptod is refused.
 */
import type { PoolClient } from 'pg';
import { ConfigError } from '../../protocol/errors.js';

/** Advisory lock key for migrations: 'cryd' 'migr' as two 32-bit integers. */
export const MIGRATION_LOCK: readonly [number, number] = [0x63727964, 0x6d696772];

export interface PgMigration {
  readonly version: number;
  readonly description: string;
  readonly sql: string;
}

export const PG_MIGRATIONS: readonly PgMigration[] = [
  {
    version: 1,
    description: 'keys, key versions, meta, generation and change log',
    sql: `
      CREATE TABLE meta (
        key   TEXT COLLATE "C" PRIMARY KEY,
        value TEXT NOT NULL
      );
      -- One row: the committed generation (design note 3), the newest
      -- generation the change log no longer covers. Writers lock this row
      -- first (SELECT … FOR UPDATE): it is the store's write lock.
      CREATE TABLE store_state (
        id              INTEGER PRIMARY KEY CHECK (id = 1),
        generation      BIGINT NOT NULL CHECK (generation >= 0),
        changelog_floor BIGINT NOT NULL CHECK (changelog_floor >= 0)
      );
      INSERT INTO store_state (id, generation, changelog_floor) VALUES (1, 0, 0);
      CREATE TABLE keys (
        name       TEXT COLLATE "C" PRIMARY KEY,
        type       TEXT NOT NULL,
        policy     TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        disabled   BOOLEAN NOT NULL
      );
      CREATE TABLE key_versions (
        name        TEXT COLLATE "C" NOT NULL REFERENCES keys (name) ON DELETE CASCADE,
        version     BIGINT NOT NULL CHECK (version >= 1),
        state       TEXT NOT NULL CHECK (state IN ('active', 'decrypt-only', 'disabled', 'destroyed')),
        created_at  BIGINT NOT NULL,
        not_before  BIGINT NOT NULL,
        not_after   BIGINT,
        wrapped     BYTEA,
        kek_id      TEXT NOT NULL,
        encryptions BIGINT NOT NULL CHECK (encryptions >= 0),
        PRIMARY KEY (name, version),
        CHECK ((state = 'destroyed') = (wrapped IS NULL))
      );
      CREATE TABLE changes (
        generation BIGINT NOT NULL,
        kind       TEXT NOT NULL CHECK (kind IN ('key', 'meta')),
        name       TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (generation, kind, name)
      );
    `,
  },
  {
    version: 2,
    description: 'token clients (src/auth/client-registry.ts)',
    sql: `
      CREATE TABLE clients (
        token_id   TEXT COLLATE "C" PRIMARY KEY,
        name       TEXT COLLATE "C" NOT NULL,
        token_hash BYTEA NOT NULL CHECK (length(token_hash) = 32),
        uid        BIGINT CHECK (uid IS NULL OR uid >= 0),
        created_at BIGINT NOT NULL,
        revoked_at BIGINT
      );
      CREATE UNIQUE INDEX clients_active_name ON clients (name) WHERE revoked_at IS NULL;
    `,
  },
  {
    version: 3,
    description: 'fleet leases (src/store/lease.ts)',
    sql: `
      CREATE TABLE leases (
        name       TEXT COLLATE "C" PRIMARY KEY,
        holder     TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        generation BIGINT NOT NULL CHECK (generation >= 1)
      );
    `,
  },
  {
    version: 4,
    description: 'fleet members and their heartbeats (src/store/members.ts)',
    sql: `
      CREATE TABLE members (
        id              TEXT COLLATE "C" PRIMARY KEY,
        host            TEXT NOT NULL,
        pid             BIGINT NOT NULL,
        seen_generation BIGINT NOT NULL,
        expires_at      BIGINT NOT NULL
      );
    `,
  },
];

export const PG_LATEST_SCHEMA_VERSION = PG_MIGRATIONS[PG_MIGRATIONS.length - 1]?.version ?? 0;

/**
 * Bring the schema up to date on `client` (not in a transaction). Returns
 * the versions this call applied (empty when another process did).
 *
 * @throws ConfigError for a database from a newer cryptod, or one with
 *   tables of its own but no cryptod schema record.
 */
export async function migrate(client: PoolClient, where: string): Promise<number[]> {
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock($1, $2)', [MIGRATION_LOCK[0], MIGRATION_LOCK[1]]);
    await client.query(`CREATE TABLE IF NOT EXISTS cryptod_schema (
      version     INTEGER PRIMARY KEY,
      description TEXT NOT NULL,
      applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
    )`);
    const { rows } = await client.query<{ v: number | null }>('SELECT max(version) AS v FROM cryptod_schema');
    const current = rows[0]?.v ?? 0;
    if (current > PG_LATEST_SCHEMA_VERSION) {
      throw new ConfigError(
        `the keystore ${where} has schema version ${current}, newer than this cryptod supports (${PG_LATEST_SCHEMA_VERSION}); upgrade cryptod`,
        { detail: { schemaVersion: current, supported: PG_LATEST_SCHEMA_VERSION } },
      );
    }
    if (current === 0) {
      const { rows: found } = await client.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = current_schema() AND table_name IN ('keys', 'key_versions', 'meta', 'store_state')",
      );
      if ((found[0]?.n ?? 0) > 0) throw new ConfigError(`${where} has keystore-like tables but no cryptod schema record; point cryptod at an empty database`);
    }
    const applied: number[] = [];
    for (const m of PG_MIGRATIONS) {
      if (m.version <= current) continue;
      await client.query(m.sql);
      await client.query('INSERT INTO cryptod_schema (version, description) VALUES ($1, $2)', [m.version, m.description]);
      applied.push(m.version);
    }
    await client.query('COMMIT');
    return applied;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
