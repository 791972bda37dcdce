/**
 * The token-client registry on SQLite: the `clients` table (migration 2) in
 * the same database file as the keystore, on its own connection.
 *
 * Both the daemon (reads: verify at HELLO, re-check of live connections) and
 * `cryptod client add|revoke|list` (writes, run as the daemon's user against
 * the data directory) open it. WAL lets the daemon read while the CLI writes,
 * and a revocation committed by the CLI is visible to the daemon's next read,
 * so it takes effect for the next HELLO with no signal or reload.
 *
 * Writes are rare administrator actions: they wait for the write lock with
 * SQLite's own busy timeout (blocking), which is fine in a CLI process and
 * would be wrong on the daemon's event loop for anything frequent.
 */
import Database from 'better-sqlite3';
import { assertClientName, assertUid, type ClientRecord, type ClientRegistry, type VerifiedClient } from '../../auth/client-registry.js';
import { DECOY_DIGEST, digestsMatch, issueToken, parseToken } from '../../auth/tokens.js';
import { ConfigError, CryptodError, InternalError, InvalidArgumentError, NotFoundError, StoreError } from '../../protocol/errors.js';
import { openDatabaseFile } from './database-file.js';

export interface SqliteClientRegistryOptions {
  /** The data directory (same rules as the keystore's: created 0700, refused when group/world accessible). */
  dataDir: string;
  /** File name inside dataDir. Default `keystore.sqlite` (the keystore's file). */
  fileName?: string;
  /** How long a write waits for another process's write lock. Default 5000 ms. */
  busyTimeoutMs?: number;
}

interface Row {
  token_id: string;
  name: string;
  token_hash: Buffer;
  uid: number | null;
  created_at: number;
  revoked_at: number | null;
}

/** Open (creating and migrating the database if needed) the registry in `options.dataDir`. */
export function openSqliteClientRegistry(options: SqliteClientRegistryOptions): SqliteClientRegistry {
  // The file, its pragmas and its migrations: database-file.ts, shared with the keystore.
  const { db } = openDatabaseFile({
    dataDir: options.dataDir, purpose: 'client registry in',
    ...(options.fileName === undefined ? {} : { fileName: options.fileName }),
    ...(options.busyTimeoutMs === undefined ? {} : { busyTimeoutMs: options.busyTimeoutMs }),
  });
  try {
    return new SqliteClientRegistry(db);
  } catch (err) {
    db.close();
    throw new ConfigError(`cannot open the client registry: ${(err as Error).message}`, { cause: err });
  }
}

export class SqliteClientRegistry implements ClientRegistry {
  readonly #db: Database.Database;
  readonly #byId: Database.Statement<[string], Row>;
  readonly #byActiveName: Database.Statement<[string], Row>;
  readonly #all: Database.Statement<[], Row>;
  readonly #insert: Database.Statement<[string, string, Buffer, number | null, number]>;
  readonly #revoke: Database.Statement<[number, string]>;
  #closed = false;

  /** @internal use {@link openSqliteClientRegistry} */
  constructor(db: Database.Database) {
    this.#db = db;
    this.#byId = db.prepare<[string], Row>('SELECT * FROM clients WHERE token_id = ?');
    this.#byActiveName = db.prepare<[string], Row>('SELECT * FROM clients WHERE name = ? AND revoked_at IS NULL');
    this.#all = db.prepare<[], Row>('SELECT * FROM clients ORDER BY created_at, name, token_id');
    this.#insert = db.prepare<[string, string, Buffer, number | null, number]>('INSERT INTO clients (token_id, name, token_hash, uid, created_at) VALUES (?, ?, ?, ?, ?)');
    this.#revoke = db.prepare<[number, string]>('UPDATE clients SET revoked_at = ? WHERE token_id = ?');
  }

  async add(name: string, options: { uid?: number } = {}): Promise<{ token: string; client: ClientRecord }> {
    assertClientName(name);
    const uid = options.uid === undefined ? null : assertUid(options.uid);
    return this.#call('add a client', () =>
      this.#db.transaction(() => {
        if (this.#byActiveName.get(name) !== undefined) {
          throw new InvalidArgumentError(`a client named "${name}" already has an active token; revoke it first (cryptod client revoke ${name})`, {
            detail: { field: 'name' },
          });
        }
        // The id is 72 random bits: a clash is astronomically rare, but a
        // clash would make the insert fail, so draw again rather than rely on luck.
        for (;;) {
          const issued = issueToken();
          if (this.#byId.get(issued.id) !== undefined) continue;
          const createdAt = Date.now();
          this.#insert.run(issued.id, name, issued.hash, uid, createdAt);
          return { token: issued.token, client: { name, uid, createdAt, revokedAt: null } };
        }
      }).immediate(),
    );
  }

  async revoke(name: string): Promise<ClientRecord> {
    assertClientName(name);
    return this.#call('revoke a client', () =>
      this.#db.transaction(() => {
        const row = this.#byActiveName.get(name);
        if (row === undefined) {
          throw new NotFoundError(`no client named "${name}" has an active token`, { detail: { name } });
        }
        const revokedAt = Date.now();
        this.#revoke.run(revokedAt, row.token_id);
        return { ...record(row), revokedAt };
      }).immediate(),
    );
  }

  async list(): Promise<ClientRecord[]> {
    return this.#call('list clients', () => this.#all.all().map(record));
  }

  async verify(token: string): Promise<VerifiedClient | null> {
    const parsed = parseToken(token);
    if (parsed === null) return null;
    const row = this.#call('verify a token', () => this.#byId.get(parsed.id));
    // Always one constant-time comparison, so a miss and a wrong secret cost the same.
    const match = digestsMatch(parsed.hash, row?.token_hash ?? DECOY_DIGEST);
    parsed.hash.fill(0);
    if (row === undefined || !match || row.revoked_at !== null) return null;
    return { name: row.name, uid: row.uid, tokenId: row.token_id };
  }

  async stillValid(tokenIds: readonly string[]): Promise<Set<string>> {
    const valid = new Set<string>();
    this.#call('check tokens', () => {
      for (const id of new Set(tokenIds)) {
        const row = this.#byId.get(id);
        if (row !== undefined && row.revoked_at === null) valid.add(id);
      }
    });
    return valid;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#db.close();
  }

  /** Run a driver call; driver failures become StoreError (the driver's message stays in `cause`). */
  #call<T>(what: string, f: () => T): T {
    if (this.#closed) throw new InternalError('the client registry is closed');
    try {
      return f();
    } catch (err) {
      if (err instanceof CryptodError) throw err;
      throw new StoreError(`the client registry failed to ${what}`, { cause: err });
    }
  }
}

function record(row: Row): ClientRecord {
  return { name: row.name, uid: row.uid, createdAt: row.created_at, revokedAt: row.revoked_at };
}
