/**
 * The keystore: the one persistent-storage interface every backend implements
 * (`sqlite/` now, `postgres/` later). Nothing here knows about SQL.
 *
 * What it stores
 *
 *   keys          name ─▶ ManagedKeyRecord            (one row per managed key)
 *   key versions  (name, version) ─▶ KeyVersionRecord  (wrapped material + window)
 *   meta          string ─▶ string                     (KEK parameters, schema info)
 *   change log    generation ─▶ names it changed       (design note 3)
 *
 * Generations (design note 3). Every committed transaction that changed
 * something increments one persistent counter, the *generation*, and records
 * the key names and meta keys it touched under that generation. A process that
 * caches keystore data remembers the generation its cache reflects; when it
 * learns (through the cross-process lease, or by polling) that the generation
 * moved, `changesSince(seen)` tells it exactly which entries to drop instead
 * of flushing everything:
 *
 *     gen 41 ──tx: put "billing"──▶ gen 42 ──tx: meta kek.local──▶ gen 43
 *     changesSince(41) = { generation: 43, names: ["billing"], metaKeys: ["kek.local"] }
 *
 * The log is bounded; when it no longer reaches back to `seen`,
 * `truncated: true` says "drop everything".
 *
 * Why every method is async: a PostgreSQL backend cannot answer anything
 * synchronously, and for callers of the store a read is "just another async
 * fallible operation" (design note 3). The SQLite backend answers at once but
 * keeps the same shape so the key manager is written once.
 */

/** Lifecycle of one key version. `destroyed` is terminal: the material is gone. */
export type KeyVersionState = 'active' | 'decrypt-only' | 'disabled' | 'destroyed';

export const KEY_VERSION_STATES: readonly KeyVersionState[] = ['active', 'decrypt-only', 'disabled', 'destroyed'];

/** A named managed key. Times are epoch milliseconds. */
export interface ManagedKeyRecord {
  name: string;
  /** Algorithm family, e.g. `aes-256-gcm`, `ed25519`; interpreted by the key manager. */
  type: string;
  /** Rotation and usage policy; must survive a JSON round trip. */
  policy: Record<string, unknown>;
  createdAt: number;
  updatedAt: number;
  disabled: boolean;
}

/** One version of a managed key: its validity window and its wrapped material. */
export interface KeyVersionRecord {
  name: string;
  /** 1, 2, 3…; unique per key. */
  version: number;
  state: KeyVersionState;
  createdAt: number;
  notBefore: number;
  /** End of the validity window; `null` means open-ended. */
  notAfter: number | null;
  /** Key material wrapped by the KEK named in `kekId`; `null` exactly when `state` is `destroyed`. */
  wrapped: Uint8Array | null;
  /** Which KEK (provider id, see `KekProvider.id`) wrapped the material. */
  kekId: string;
  /** How many encryptions this version has done (usage limits, e.g. AES-GCM nonce budget). */
  encryptions: number;
}

/** What changed after a generation; see the header comment. */
export interface ChangeSet {
  /** The generation the store is at now. */
  generation: number;
  /** Key names changed in (since, generation], sorted, without duplicates. */
  names: string[];
  /** Meta keys changed in (since, generation], sorted, without duplicates. */
  metaKeys: string[];
  /**
   * True when the log cannot answer exactly (it was pruned past `since`, or
   * `since` is ahead of the store, e.g. after a restore): drop all cached data.
   */
  truncated: boolean;
}

/**
 * Reads inside one consistent snapshot: everything a reader returns reflects
 * the same committed state, including `generation()`, so a cache can store
 * data together with the generation it was read at.
 */
export interface KeystoreReader {
  getKey(name: string): Promise<ManagedKeyRecord | undefined>;
  /** All keys, ordered by name (UTF-8 byte order). */
  listKeys(): Promise<ManagedKeyRecord[]>;
  /** All versions of a key, ordered by version; empty when the key does not exist. */
  getVersions(name: string): Promise<KeyVersionRecord[]>;
  getVersion(name: string, version: number): Promise<KeyVersionRecord | undefined>;
  getMeta(key: string): Promise<string | undefined>;
  /** The committed generation this snapshot reflects. */
  generation(): Promise<number>;
}

/**
 * A write transaction. Inside it, reads see the transaction's own writes.
 * The object is only valid until the transaction ends; using it afterwards throws.
 */
export interface KeystoreTx extends KeystoreReader {
  /** Insert or replace a key. */
  putKey(record: ManagedKeyRecord): Promise<void>;
  /**
   * Insert or replace a version (replace serves rewrap). The key must exist
   * (NotFoundError); a destroyed version cannot be replaced (InvalidArgumentError).
   */
  putVersion(record: KeyVersionRecord): Promise<void>;
  /** Change a version's state; `destroyed` also erases its material (as destroyVersionMaterial). */
  setVersionState(name: string, version: number, state: KeyVersionState): Promise<void>;
  /**
   * Add `n` (a positive integer) to a version's encryption count; returns the
   * new count. It is a change like any other (generation + change log), so
   * callers should count locally and flush in batches, not per encryption.
   */
  addEncryptions(name: string, version: number, n: number): Promise<number>;
  /** Erase the wrapped material and mark the version `destroyed`. Idempotent. */
  destroyVersionMaterial(name: string, version: number): Promise<void>;
  setMeta(key: string, value: string): Promise<void>;
}

/**
 * A persistent keystore.
 *
 * @example
 *   const store = await openSqliteKeystore({ dataDir: '/var/lib/cryptod' });
 *   await store.transaction(async (tx) => {
 *     await tx.putKey({ name: 'billing', type: 'aes-256-gcm', policy: {}, createdAt: now, updatedAt: now, disabled: false });
 *     await tx.putVersion({ name: 'billing', version: 1, state: 'active', createdAt: now, notBefore: now,
 *                           notAfter: null, wrapped: blob, kekId: kek.id, encryptions: 0 });
 *   });
 *   const versions = await store.read((r) => r.getVersions('billing'));
 */
export interface Keystore {
  /** Backend name, for logs and `cryptod status` (e.g. `sqlite`). */
  readonly backend: string;
  /**
   * Run `fn` in a write transaction. Transactions of this process run one at a
   * time, in call order; across processes the backend's lock serializes them.
   * All or nothing: if `fn` throws (or rejects), nothing it wrote is kept and
   * the error is rethrown as is. A commit that changed something increments
   * the generation by exactly one. Keep `fn` short (wrap keys before, not
   * inside): it holds the store's write lock for every process while it runs.
   * Calling `transaction` from inside `fn` throws (it would wait on itself).
   */
  transaction<T>(fn: (tx: KeystoreTx) => Promise<T> | T): Promise<T>;
  /**
   * Run `fn` against one consistent snapshot of committed data. Never sees
   * the uncommitted writes of a transaction in progress, and never waits for one.
   */
  read<T>(fn: (r: KeystoreReader) => Promise<T> | T): Promise<T>;
  /** The committed generation now. */
  generation(): Promise<number>;
  /** Which key names and meta keys changed after generation `since`. */
  changesSince(since: number): Promise<ChangeSet>;
  /**
   * Whether another process may have committed since the last call: a cheap,
   * synchronous look (SQLite's `PRAGMA data_version`) made when a managed
   * operation starts, so a change another daemon committed before the
   * operation began is caught up with before it runs. True at most once per
   * change seen; a false positive costs one `changesSince`. Absent where the
   * store cannot tell without a round trip (then `onCommit` and polling).
   */
  maybeChanged?(): boolean;
  /**
   * `changesSince`, synchronously, where the store can answer without a
   * round trip (SQLite: the change log in the local file). When
   * `maybeChanged` says yes, the freshness check reads which keys changed at
   * once, so that only requests for those keys wait for their reload, and a
   * commit that changed no key (another process's heartbeat or lease
   * renewal in the same file) costs no catch-up at all.
   */
  changesSinceNow?(since: number): ChangeSet;
  /** Pushes the store's generation when another process commits (PostgreSQL LISTEN/NOTIFY); absent where the store cannot. */
  onCommit?(listener: (generation: number) => void): () => void;
  /** Wait for queued work, then close. Every later call throws. */
  close(): Promise<void>;
}
