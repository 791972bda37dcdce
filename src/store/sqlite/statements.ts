/**
 * Prepared statements and the mapping between SQLite rows and keystore
 * records. Synchronous and unguarded: callers (views.ts) validate arguments,
 * check that their transaction is still open and track what changed.
 */
import type Database from 'better-sqlite3';
import type { ChangeSet, KeyVersionRecord, KeyVersionState, ManagedKeyRecord } from '../keystore.js';
import { decodePolicy } from '../records.js';

interface KeyRow {
  name: string;
  type: string;
  policy: string;
  created_at: number;
  updated_at: number;
  disabled: number;
}

interface VersionRow {
  name: string;
  version: number;
  state: KeyVersionState;
  created_at: number;
  not_before: number;
  not_after: number | null;
  wrapped: Buffer | null;
  kek_id: string;
  encryptions: number;
}

const KEY_COLUMNS = 'name, type, policy, created_at, updated_at, disabled';
const VERSION_COLUMNS = 'name, version, state, created_at, not_before, not_after, wrapped, kek_id, encryptions';

function toKey(row: KeyRow): ManagedKeyRecord {
  return {
    name: row.name,
    type: row.type,
    policy: decodePolicy(row.policy),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    disabled: row.disabled === 1,
  };
}

function toVersion(row: VersionRow): KeyVersionRecord {
  return {
    name: row.name,
    version: row.version,
    state: row.state,
    createdAt: row.created_at,
    notBefore: row.not_before,
    notAfter: row.not_after,
    wrapped: row.wrapped,
    kekId: row.kek_id,
    encryptions: row.encryptions,
  };
}

/** better-sqlite3 binds Buffers, not plain Uint8Arrays; a view avoids a copy. */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Statements valid on any connection, including the read-only one. */
export class ReadStatements {
  readonly #getKey: Database.Statement<[string], KeyRow>;
  readonly #listKeys: Database.Statement<[], KeyRow>;
  readonly #getVersions: Database.Statement<[string], VersionRow>;
  readonly #getVersion: Database.Statement<[string, number], VersionRow>;
  readonly #getMeta: Database.Statement<[string], { value: string }>;
  readonly #state: Database.Statement<[], { generation: number; changelog_floor: number }>;
  readonly #changes: Database.Statement<[number], { kind: 'key' | 'meta'; name: string }>;

  constructor(db: Database.Database) {
    this.#getKey = db.prepare(`SELECT ${KEY_COLUMNS} FROM keys WHERE name = ?`);
    this.#listKeys = db.prepare(`SELECT ${KEY_COLUMNS} FROM keys ORDER BY name`);
    this.#getVersions = db.prepare(`SELECT ${VERSION_COLUMNS} FROM key_versions WHERE name = ? ORDER BY version`);
    this.#getVersion = db.prepare(`SELECT ${VERSION_COLUMNS} FROM key_versions WHERE name = ? AND version = ?`);
    this.#getMeta = db.prepare('SELECT value FROM meta WHERE key = ?');
    this.#state = db.prepare('SELECT generation, changelog_floor FROM store_state WHERE id = 1');
    this.#changes = db.prepare('SELECT DISTINCT kind, name FROM changes WHERE generation > ? ORDER BY kind, name');
  }

  getKey(name: string): ManagedKeyRecord | undefined {
    const row = this.#getKey.get(name);
    return row === undefined ? undefined : toKey(row);
  }

  listKeys(): ManagedKeyRecord[] {
    return this.#listKeys.all().map(toKey);
  }

  getVersions(name: string): KeyVersionRecord[] {
    return this.#getVersions.all(name).map(toVersion);
  }

  getVersion(name: string, version: number): KeyVersionRecord | undefined {
    const row = this.#getVersion.get(name, version);
    return row === undefined ? undefined : toVersion(row);
  }

  getMeta(key: string): string | undefined {
    return this.#getMeta.get(key)?.value;
  }

  generation(): number {
    return this.#stateRow().generation;
  }

  /** Run inside one read transaction so the state row and the log agree. */
  changesSince(since: number): ChangeSet {
    const { generation, changelog_floor: floor } = this.#stateRow();
    if (since > generation || since < floor) return { generation, names: [], metaKeys: [], truncated: true };
    const names: string[] = [];
    const metaKeys: string[] = [];
    for (const row of this.#changes.all(since)) (row.kind === 'key' ? names : metaKeys).push(row.name);
    return { generation, names, metaKeys, truncated: false };
  }

  #stateRow(): { generation: number; changelog_floor: number } {
    const row = this.#state.get();
    // Only a damaged or foreign file lacks it; migrations insert it.
    if (row === undefined) throw new Error('store_state row is missing');
    return row;
  }
}

/** Statements for the write connection. */
export class WriteStatements extends ReadStatements {
  readonly #putKey: Database.Statement<unknown[]>;
  readonly #putVersion: Database.Statement<unknown[]>;
  readonly #setState: Database.Statement<[KeyVersionState, string, number]>;
  readonly #addEncryptions: Database.Statement<[number, string, number], { encryptions: number }>;
  readonly #destroy: Database.Statement<[string, number]>;
  readonly #setMeta: Database.Statement<[string, string]>;
  readonly #bump: Database.Statement<[], { generation: number }>;
  readonly #logChange: Database.Statement<[number, 'key' | 'meta', string]>;
  readonly #prune: Database.Statement<[number]>;
  readonly #raiseFloor: Database.Statement<[number]>;

  constructor(db: Database.Database) {
    super(db);
    // Upserts, never INSERT OR REPLACE: REPLACE deletes the old row first,
    // and with foreign keys on, ON DELETE CASCADE would take every version
    // of the key with it.
    this.#putKey = db.prepare(
      `INSERT INTO keys (${KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET type = excluded.type, policy = excluded.policy,
         created_at = excluded.created_at, updated_at = excluded.updated_at, disabled = excluded.disabled`,
    );
    this.#putVersion = db.prepare(
      `INSERT INTO key_versions (${VERSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (name, version) DO UPDATE SET state = excluded.state, created_at = excluded.created_at,
         not_before = excluded.not_before, not_after = excluded.not_after, wrapped = excluded.wrapped,
         kek_id = excluded.kek_id, encryptions = excluded.encryptions`,
    );
    this.#setState = db.prepare('UPDATE key_versions SET state = ? WHERE name = ? AND version = ?');
    this.#addEncryptions = db.prepare(
      'UPDATE key_versions SET encryptions = encryptions + ? WHERE name = ? AND version = ? RETURNING encryptions',
    );
    this.#destroy = db.prepare("UPDATE key_versions SET state = 'destroyed', wrapped = NULL WHERE name = ? AND version = ?");
    this.#setMeta = db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value');
    this.#bump = db.prepare('UPDATE store_state SET generation = generation + 1 WHERE id = 1 RETURNING generation');
    this.#logChange = db.prepare('INSERT OR IGNORE INTO changes (generation, kind, name) VALUES (?, ?, ?)');
    this.#prune = db.prepare('DELETE FROM changes WHERE generation <= ?');
    this.#raiseFloor = db.prepare('UPDATE store_state SET changelog_floor = max(changelog_floor, ?) WHERE id = 1');
  }

  putKey(r: ManagedKeyRecord, policyJson: string): void {
    this.#putKey.run(r.name, r.type, policyJson, r.createdAt, r.updatedAt, r.disabled ? 1 : 0);
  }

  putVersion(r: KeyVersionRecord): void {
    const wrapped = r.wrapped === null ? null : asBuffer(r.wrapped);
    this.#putVersion.run(r.name, r.version, r.state, r.createdAt, r.notBefore, r.notAfter, wrapped, r.kekId, r.encryptions);
  }

  setState(name: string, version: number, state: KeyVersionState): void {
    this.#setState.run(state, name, version);
  }

  /** Returns the new count, or undefined when the version does not exist. */
  addEncryptions(name: string, version: number, n: number): number | undefined {
    return this.#addEncryptions.get(n, name, version)?.encryptions;
  }

  destroy(name: string, version: number): void {
    this.#destroy.run(name, version);
  }

  setMeta(key: string, value: string): void {
    this.#setMeta.run(key, value);
  }

  /**
   * Record one committed change set (design note 3): the next generation and
   * what it touched; then forget log entries older than `keep` generations.
   */
  logGeneration(names: Iterable<string>, metaKeys: Iterable<string>, keep: number): number {
    const row = this.#bump.get();
    if (row === undefined) throw new Error('store_state row is missing');
    const gen = row.generation;
    for (const name of names) this.#logChange.run(gen, 'key', name);
    for (const key of metaKeys) this.#logChange.run(gen, 'meta', key);
    const floor = gen - keep;
    if (floor > 0) {
      this.#prune.run(floor);
      this.#raiseFloor.run(floor);
    }
    return gen;
  }
}
