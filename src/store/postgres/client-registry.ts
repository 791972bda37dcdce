/**
 * The token-client registry on PostgreSQL: the `clients` table (migration 2)
 * in the keystore's database, on the keystore's pool or a pool of its own
 * (`cryptod client add --store …`). The same contract as the SQLite registry
 * (src/store/sqlite/client-registry.ts): only SHA-256 digests are stored, a
 * name has at most one active token, and a revocation committed anywhere is
 * seen by every daemon's next HELLO.
 */
import pg from 'pg';
import { assertClientName, assertUid, type ClientRecord, type ClientRegistry, type VerifiedClient } from '../../auth/client-registry.js';
import { DECOY_DIGEST, digestsMatch, issueToken, parseToken } from '../../auth/tokens.js';
import { CryptodError, InternalError, InvalidArgumentError, NotFoundError } from '../../protocol/errors.js';
import { redactUrl } from './connection-string.js';
import { guardClient, inTransaction, storeError } from './pg-errors.js';
import { PG_DEFAULTS, openMigratedPool } from './pg-store.js';

export interface PostgresClientRegistryOptions {
  url: string;
  /** Default 4: registry traffic is a HELLO now and then and rare administrator writes. */
  poolSize?: number;
  connectTimeoutMs?: number;
  queryTimeoutMs?: number;
}

interface Row {
  token_id: string;
  name: string;
  token_hash: Buffer;
  uid: number | null;
  created_at: number;
  revoked_at: number | null;
}

/** Open (creating or migrating the schema if needed) the registry at `options.url`. */
export async function openPostgresClientRegistry(options: PostgresClientRegistryOptions): Promise<PostgresClientRegistry> {
  const where = redactUrl(options.url);
  let pool: pg.Pool;
  try {
    pool = await openMigratedPool(options.url, where, {
      poolSize: options.poolSize ?? 4,
      connectTimeoutMs: options.connectTimeoutMs ?? PG_DEFAULTS.connectTimeoutMs,
      queryTimeoutMs: options.queryTimeoutMs ?? PG_DEFAULTS.queryTimeoutMs,
    });
  } catch (err) {
    throw storeError('open the client registry', where, err);
  }
  return new PostgresClientRegistry(pool, where);
}

export class PostgresClientRegistry implements ClientRegistry {
  readonly #pool: pg.Pool;
  readonly #where: string;
  #closed = false;

  /** @internal use {@link openPostgresClientRegistry} */
  constructor(pool: pg.Pool, where: string) {
    this.#pool = pool;
    this.#where = where;
  }

  async add(name: string, options: { uid?: number } = {}): Promise<{ token: string; client: ClientRecord }> {
    assertClientName(name);
    const uid = options.uid === undefined ? null : assertUid(options.uid);
    return this.#tx('add a client', async (c) => {
      // Serializes adds of one name across processes (the unique index would too, with a less helpful error).
      await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`cryptod.client.${name}`]);
      const active = await c.query('SELECT 1 FROM clients WHERE name = $1 AND revoked_at IS NULL', [name]);
      if ((active.rowCount ?? 0) > 0) {
        throw new InvalidArgumentError(`a client named "${name}" already has an active token; revoke it first (cryptod client revoke ${name})`, {
          detail: { field: 'name' },
        });
      }
      for (;;) {
        const issued = issueToken();
        const createdAt = Date.now();
        const inserted = await c.query(
          'INSERT INTO clients (token_id, name, token_hash, uid, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (token_id) DO NOTHING',
          [issued.id, name, issued.hash, uid, createdAt],
        );
        if ((inserted.rowCount ?? 0) === 0) continue; // an id clash: astronomically rare, draw again
        return { token: issued.token, client: { name, uid, createdAt, revokedAt: null } };
      }
    });
  }

  async revoke(name: string): Promise<ClientRecord> {
    assertClientName(name);
    return this.#tx('revoke a client', async (c) => {
      const revokedAt = Date.now();
      const { rows } = await c.query<Row>('UPDATE clients SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL RETURNING *', [revokedAt, name]);
      const row = rows[0];
      if (row === undefined) throw new NotFoundError(`no client named "${name}" has an active token`, { detail: { name } });
      return record(row);
    });
  }

  async list(): Promise<ClientRecord[]> {
    return (await this.#query<Row>('list clients', 'SELECT * FROM clients ORDER BY created_at, name, token_id')).map(record);
  }

  async verify(token: string): Promise<VerifiedClient | null> {
    const parsed = parseToken(token);
    if (parsed === null) return null;
    const row = (await this.#query<Row>('verify a token', 'SELECT * FROM clients WHERE token_id = $1', [parsed.id]))[0];
    // Always one constant-time comparison, so a miss and a wrong secret cost the same.
    const match = digestsMatch(parsed.hash, row?.token_hash ?? DECOY_DIGEST);
    parsed.hash.fill(0);
    if (row === undefined || !match || row.revoked_at !== null) return null;
    return { name: row.name, uid: row.uid, tokenId: row.token_id };
  }

  async stillValid(tokenIds: readonly string[]): Promise<Set<string>> {
    const ids = [...new Set(tokenIds)];
    if (ids.length === 0) return new Set();
    const rows = await this.#query<{ token_id: string }>('check tokens', 'SELECT token_id FROM clients WHERE token_id = ANY($1::text[]) AND revoked_at IS NULL', [ids]);
    return new Set(rows.map((r) => r.token_id));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#pool.end();
  }

  async #query<R extends object>(what: string, text: string, values?: unknown[]): Promise<R[]> {
    if (this.#closed) throw new InternalError('the client registry is closed');
    try {
      return (await this.#pool.query<R>(text, values)).rows;
    } catch (err) {
      throw storeError(`the client registry failed to ${what}`, this.#where, err);
    }
  }

  async #tx<T>(what: string, f: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    if (this.#closed) throw new InternalError('the client registry is closed');
    let client: pg.PoolClient;
    try {
      client = guardClient(await this.#pool.connect());
    } catch (err) {
      throw storeError(`the client registry failed to ${what}`, this.#where, err);
    }
    return inTransaction(client, f, (err) => (err instanceof CryptodError ? err : storeError(`the client registry failed to ${what}`, this.#where, err)));
  }
}

function record(row: Row): ClientRecord {
  return { name: row.name, uid: row.uid, createdAt: row.created_at, revokedAt: row.revoked_at };
}
