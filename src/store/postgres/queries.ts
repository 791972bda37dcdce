/**
 * The keystore's SQL on PostgreSQL and the mapping between rows and records.
 * Unguarded: callers (views.ts) validate arguments, check that their
 * transaction is still open and track what changed.
 *
 * BIGINT columns come back as JS numbers (the pool's type parser, pg-store.ts):
 * every value stored is a safe integer, checked on the way in (records.ts).
 */
import type { ChangeSet, KeyVersionRecord, KeyVersionState, ManagedKeyRecord } from '../keystore.js';
import { decodePolicy } from '../records.js';

/** What a query runs on: a pool client inside a transaction. */
export interface Queryable {
  query<R extends object = Record<string, unknown>>(text: string, values?: unknown[]): Promise<{ rows: R[]; rowCount: number | null }>;
}

/** The NOTIFY channel of committed generations (pg-store.ts, notifications.ts). */
export const CHANGES_CHANNEL = 'cryptod_changes';

interface KeyRow { name: string; type: string; policy: string; created_at: number; updated_at: number; disabled: boolean }
interface VersionRow {
  name: string; version: number; state: KeyVersionState; created_at: number; not_before: number;
  not_after: number | null; wrapped: Buffer | null; kek_id: string; encryptions: number;
}

const KEY_COLUMNS = 'name, type, policy, created_at, updated_at, disabled';
const VERSION_COLUMNS = 'name, version, state, created_at, not_before, not_after, wrapped, kek_id, encryptions';

function toKey(row: KeyRow): ManagedKeyRecord {
  return { name: row.name, type: row.type, policy: decodePolicy(row.policy), createdAt: row.created_at, updatedAt: row.updated_at, disabled: row.disabled };
}

function toVersion(row: VersionRow): KeyVersionRecord {
  return {
    name: row.name, version: row.version, state: row.state, createdAt: row.created_at, notBefore: row.not_before,
    notAfter: row.not_after, wrapped: row.wrapped, kekId: row.kek_id, encryptions: row.encryptions,
  };
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export async function getKey(q: Queryable, name: string): Promise<ManagedKeyRecord | undefined> {
  const { rows } = await q.query<KeyRow>(`SELECT ${KEY_COLUMNS} FROM keys WHERE name = $1`, [name]);
  return rows[0] === undefined ? undefined : toKey(rows[0]);
}

export async function listKeys(q: Queryable): Promise<ManagedKeyRecord[]> {
  return (await q.query<KeyRow>(`SELECT ${KEY_COLUMNS} FROM keys ORDER BY name COLLATE "C"`)).rows.map(toKey);
}

export async function getVersions(q: Queryable, name: string): Promise<KeyVersionRecord[]> {
  return (await q.query<VersionRow>(`SELECT ${VERSION_COLUMNS} FROM key_versions WHERE name = $1 ORDER BY version`, [name])).rows.map(toVersion);
}

export async function getVersion(q: Queryable, name: string, version: number): Promise<KeyVersionRecord | undefined> {
  const { rows } = await q.query<VersionRow>(`SELECT ${VERSION_COLUMNS} FROM key_versions WHERE name = $1 AND version = $2`, [name, version]);
  return rows[0] === undefined ? undefined : toVersion(rows[0]);
}

export async function getMeta(q: Queryable, key: string): Promise<string | undefined> {
  return (await q.query<{ value: string }>('SELECT value FROM meta WHERE key = $1', [key])).rows[0]?.value;
}

async function stateRow(q: Queryable): Promise<{ generation: number; changelog_floor: number }> {
  const row = (await q.query<{ generation: number; changelog_floor: number }>('SELECT generation, changelog_floor FROM store_state WHERE id = 1')).rows[0];
  if (row === undefined) throw new Error('store_state row is missing');
  return row;
}

export async function generation(q: Queryable): Promise<number> {
  return (await stateRow(q)).generation;
}

/** Run inside one snapshot (REPEATABLE READ) so the state row and the log agree. */
export async function changesSince(q: Queryable, since: number): Promise<ChangeSet> {
  const { generation: gen, changelog_floor: floor } = await stateRow(q);
  if (since > gen || since < floor) return { generation: gen, names: [], metaKeys: [], truncated: true };
  const { rows } = await q.query<{ kind: 'key' | 'meta'; name: string }>(
    'SELECT DISTINCT kind, name FROM changes WHERE generation > $1 ORDER BY kind, name', [since],
  );
  const names: string[] = [];
  const metaKeys: string[] = [];
  for (const row of rows) (row.kind === 'key' ? names : metaKeys).push(row.name);
  return { generation: gen, names, metaKeys, truncated: false };
}

/** Take the store's write lock: every writer locks the one state row first, so writers across processes run one at a time. */
export async function lockForWrite(q: Queryable): Promise<void> {
  await q.query('SELECT generation FROM store_state WHERE id = 1 FOR UPDATE');
}

export async function putKey(q: Queryable, r: ManagedKeyRecord, policyJson: string): Promise<void> {
  await q.query(
    `INSERT INTO keys (${KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (name) DO UPDATE SET type = excluded.type, policy = excluded.policy,
       created_at = excluded.created_at, updated_at = excluded.updated_at, disabled = excluded.disabled`,
    [r.name, r.type, policyJson, r.createdAt, r.updatedAt, r.disabled],
  );
}

export async function putVersion(q: Queryable, r: KeyVersionRecord): Promise<void> {
  await q.query(
    `INSERT INTO key_versions (${VERSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
     ON CONFLICT (name, version) DO UPDATE SET state = excluded.state, created_at = excluded.created_at,
       not_before = excluded.not_before, not_after = excluded.not_after, wrapped = excluded.wrapped,
       kek_id = excluded.kek_id, encryptions = excluded.encryptions`,
    [r.name, r.version, r.state, r.createdAt, r.notBefore, r.notAfter, r.wrapped === null ? null : asBuffer(r.wrapped), r.kekId, r.encryptions],
  );
}

export async function setState(q: Queryable, name: string, version: number, state: KeyVersionState): Promise<void> {
  await q.query('UPDATE key_versions SET state = $1 WHERE name = $2 AND version = $3', [state, name, version]);
}

export async function addEncryptions(q: Queryable, name: string, version: number, n: number): Promise<number | undefined> {
  const { rows } = await q.query<{ encryptions: number }>(
    'UPDATE key_versions SET encryptions = encryptions + $1 WHERE name = $2 AND version = $3 RETURNING encryptions', [n, name, version],
  );
  return rows[0]?.encryptions;
}

export async function destroy(q: Queryable, name: string, version: number): Promise<void> {
  await q.query("UPDATE key_versions SET state = 'destroyed', wrapped = NULL WHERE name = $1 AND version = $2", [name, version]);
}

export async function setMeta(q: Queryable, key: string, value: string): Promise<void> {
  await q.query('INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value', [key, value]);
}

/**
 * Record one committed change set (design note 3): the next generation and
 * what it touched, the log pruned to `keep` generations, and a notification
 * that PostgreSQL delivers to every listener only if and when this
 * transaction commits. The payload is `<generation> <origin>`: listeners
 * skip their own process's commits by the origin.
 */
export async function logGeneration(q: Queryable, names: Iterable<string>, metaKeys: Iterable<string>, keep: number, origin: string): Promise<number> {
  const row = (await q.query<{ generation: number }>('UPDATE store_state SET generation = generation + 1 WHERE id = 1 RETURNING generation')).rows[0];
  if (row === undefined) throw new Error('store_state row is missing');
  const gen = row.generation;
  const kinds: string[] = [];
  const keys: string[] = [];
  for (const name of names) { kinds.push('key'); keys.push(name); }
  for (const key of metaKeys) { kinds.push('meta'); keys.push(key); }
  if (keys.length > 0) {
    await q.query('INSERT INTO changes (generation, kind, name) SELECT $1, k, n FROM unnest($2::text[], $3::text[]) AS t(k, n) ON CONFLICT DO NOTHING', [gen, kinds, keys]);
  }
  const floor = gen - keep;
  if (floor > 0) {
    await q.query('DELETE FROM changes WHERE generation <= $1', [floor]);
    await q.query('UPDATE store_state SET changelog_floor = greatest(changelog_floor, $1) WHERE id = 1', [floor]);
  }
  await q.query('SELECT pg_notify($1, $2)', [CHANGES_CHANNEL, `${gen} ${origin}`]);
  return gen;
}
