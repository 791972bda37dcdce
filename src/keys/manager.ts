/**
 * The key manager (design note 4 on the keystore of design note 3): managed
 * keys by name, their versions and validity windows, rotation, reload, and
 * readers that never wait.
 *
 *   readers ── acquire() ─▶ SnapshotCell ─▶ immutable KeySnapshot      (O(1), never waits)
 *
 *   management (one at a time, the seed's "management lock"):
 *     create · rotate · setPolicy · applyConfig · trim · destroy    (management.ts)
 *     reload · refresh                                              (refresher.ts)
 *     timers                                                        (timers.ts)
 *        └─▶ keystore transaction ─▶ read back ─▶ build entries ─▶ swap
 *
 *   timers (KeyTimers on a WakeScheduler on the injected Clock):
 *     notAfter − prefetch ─▶ scheduled rotation (retried with backoff on failure)
 *     epoch boundaries    ─▶ derive the next epoch, drop the old one
 *     notAfter + grace    ─▶ drop material nothing can use any more
 *
 *   AES-GCM budgets (budget.ts): readers take invocations synchronously;
 *   reservations (reservations.ts) and the threshold rotation (timers.ts)
 *   run in the background.
 *
 * This class owns the snapshot, its sequence number and the queue; the parts
 * get narrow callbacks (keys, publish, run), never the fields. Every swap
 * replaces whole entries; a reader keeps the snapshot it acquired until it
 * releases it, and replaced material is zeroed only after that (snapshot.ts).
 * A failed management step leaves the current snapshot as it was.
 */
import { silentLogger, type Logger } from '../observe/logger.js';
import type { KekProvider } from '../kek/provider.js';
import type { TokenKeys } from '../kek/token-keys.js';
import { ConfigError, InternalError, NotFoundError, ShuttingDownError } from '../protocol/errors.js';
import type { Keystore } from '../store/keystore.js';
import { SerialQueue } from '../store/serial-queue.js';
import { budgetOptions, type BudgetOptions } from './budget.js';
import { systemClock, type Clock } from './clock.js';
import type { KeyDefinition } from './definition.js';
import { describeEntry, type KeyDescription } from './describe.js';
import { Freshness } from './freshness.js';
import { KeyManagement, type CreateOptions } from './management.js';
import type { PolicyInput } from './policy.js';
import { Refresher, type DamagedVersion } from './refresher.js';
import { Reservations } from './reservations.js';
import { retryOptions, type RetryOptions } from './scheduler.js';
import { KeySnapshot, SnapshotCell, type KeyEntry, type SnapshotLease } from './snapshot.js';
import { KeyTimers, type AutoRotation } from './timers.js';
import { manualPlanner, type ConfigChanges } from './writes.js';
import type { TransferKey } from './transfer.js';

export type { ConfigChanges } from './writes.js';
export type { KeyDescription } from './describe.js';
export { MIN_REFRESH_GAP_MS, type DamagedVersion } from './refresher.js';
export type { AutoRotation } from './timers.js';

/** What `setPolicy` did. */
export interface PolicyChange {
  description: KeyDescription;
  /** The change made the key exportable (false → true); the caller audits it as its own event. */
  madeExportable: boolean;
  /** The change allowed backups (allowBackup false → true); audited like `madeExportable`. */
  allowedBackup: boolean;
}

export interface KeyManagerOptions {
  store: Keystore;
  kek: KekProvider;
  /** Where keys declared with `provider:` keep their versions (absent: no such key can be created or loaded). */
  tokens?: TokenKeys;
  clock?: Clock;
  logger?: Logger;
  budget?: Partial<BudgetOptions>;
  retry?: Partial<RetryOptions>;
  /**
   * Told after the manager created a version on its own — the rotation
   * schedule or the encryption-count threshold — so the daemon can audit it.
   * Not called for `rotate()`: its caller knows, and audits it with the
   * client that asked (one event per rotation). Must not throw.
   */
  onRotated?: (event: AutoRotation) => void;
  /**
   * Told when a version's stored material fails to load (loader.ts
   * loadOrDamage): the key's other versions and every other key are served, the
   * damaged version answers CRYPTOD_ERR_KEY_DAMAGED. Must not throw.
   */
  onDamaged?: (event: DamagedVersion) => void;
  /** Where the keystore is (its file), named in damage reports. */
  storeFile?: string;
  /**
   * Whether this process may do the fleet-wide work now — it holds the fleet
   * lease (src/store/lease.ts): that tenure's signal, aborted when the lease
   * is lost, or null while another process holds it. Absent: always (a
   * daemon alone on its store).
   */
  fleetWork?: () => AbortSignal | null;
}

export class KeyManager {
  readonly #clock: Clock;
  readonly #queue = new SerialQueue();
  readonly #cell: SnapshotCell;
  readonly #timers: KeyTimers;
  readonly #refresher: Refresher;
  readonly #management: KeyManagement;
  readonly #freshness: Freshness;
  #seq = 0;
  /** Told after every swap (onChange). */
  readonly #listeners = new Set<() => void>();
  /** Told after every catch-up with other processes' commits (onCaughtUp). */
  readonly #caughtUp = new Set<() => void>();
  #pending = 0;
  #closed = false;

  private constructor(o: KeyManagerOptions) {
    if (o === null || typeof o !== 'object' || o.store === undefined || o.kek === undefined) {
      throw new ConfigError('expected key manager options with a keystore (store) and a KEK provider (kek)');
    }
    const { store, kek } = o;
    const clock = o.clock ?? systemClock;
    this.#clock = clock;
    const log = o.logger ?? silentLogger;
    const budget = budgetOptions(o.budget);
    const retry = retryOptions(o.retry);
    const keys = (): ReadonlyMap<string, KeyEntry> => this.#cell.current.keys;
    const publish = (next: ReadonlyMap<string, KeyEntry>): void => this.#publish(next);
    this.#cell = new SnapshotCell(new KeySnapshot(0, new Map()), { now: () => clock.now() });
    this.#timers = new KeyTimers({
      clock, log, retry, onRotated: o.onRotated, keys, publish, fleetWork: o.fleetWork,
      run: (task) => this.#run(task),
      addVersion: (name, plan) => this.#management.addVersion(name, plan),
    });
    const reservations = new Reservations({
      store, clock, log, retry,
      track: (p) => void this.#track(p),
      onThreshold: (b) => this.#timers.onThreshold(b),
      closed: () => this.#closed,
    });
    this.#refresher = new Refresher({
      store, kek, tokens: o.tokens, clock, log, budget, reservations, keys, publish,
      storeFile: o.storeFile ?? `the ${store.backend} keystore`,
      onDamaged: o.onDamaged,
      plan: (name) => this.#timers.plan(name),
      refresh: () => this.refresh(),
    });
    this.#freshness = new Freshness({
      store, log,
      seen: () => this.#refresher.generation,
      catchUp: (target) => this.#run(() => this.#refresher.apply(target())),
      caughtUp: () => {
        for (const l of this.#caughtUp) l();
      },
    });
    this.#management = new KeyManagement({
      store, kek, tokens: o.tokens, clock, log, budget,
      has: (name) => this.#cell.current.keys.has(name),
      reload: (names, fresh, stored) => this.#refresher.reload(names, fresh, stored),
      forget: (names) => this.#refresher.forget(names),
    });
  }

  /**
   * Load every managed key from the keystore and start the timers.
   *
   * @example
   *   const keys = await KeyManager.open({ store, kek });
   *   using lease = keys.acquire();
   *   const { version, material } = lease.outbound('orders', 'encrypt');
   */
  static async open(options: KeyManagerOptions): Promise<KeyManager> {
    const m = new KeyManager(options);
    await m.#run(() => m.#refresher.reloadAll());
    return m;
  }

  // ── readers ─────────────────────────────────────────────────────────────

  /** The current snapshot, held until the lease is disposed. O(1); never waits. */
  acquire(): SnapshotLease {
    if (this.#closed) throw new ShuttingDownError('the key manager is closed');
    return this.#cell.acquire();
  }

  describe(name: string): KeyDescription {
    const e = this.#cell.current.keys.get(name);
    if (e === undefined) throw new NotFoundError(`no managed key named '${name}'`, { detail: { key: name } });
    return describeEntry(e, this.#clock.now());
  }

  /** Every damaged version held now (for `status`), ordered by key and version. */
  damaged(): DamagedVersion[] {
    const out: DamagedVersion[] = [];
    for (const e of [...this.#cell.current.keys.values()].sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (e.damaged !== null) out.push({ key: e.name, version: 1, reason: e.damaged });
      for (const v of e.versions) if (v.damaged !== null) out.push({ key: e.name, version: v.version, reason: v.damaged });
    }
    return out;
  }

  list(): KeyDescription[] {
    const now = this.#clock.now();
    return [...this.#cell.current.keys.values()].sort((a, b) => (a.name < b.name ? -1 : 1)).map((e) => describeEntry(e, now));
  }

  /** Snapshot sequence number, retired snapshots still read, pending background work. */
  stats(): { seq: number; keys: number; draining: number; pending: number } {
    return { seq: this.#cell.current.seq, keys: this.#cell.current.keys.size, draining: this.#cell.draining, pending: this.#pending };
  }

  // ── management ──────────────────────────────────────────────────────────

  /**
   * Create a managed key. `material` imports one ("bring your own key"): the
   * raw secret, PKCS#8 DER for asymmetric types, or a derived key's 32-byte
   * master. It is copied; zeroing the caller's buffer is the caller's job.
   * `neverExportable`: the material was non-extractable where it came from
   * (KEY_PERSIST of such a handle); the key can then never be exportable.
   *
   * @example
   *   await keys.create('sessions', { type: 'hmac-sha256', rotationPeriod: '1h', gracePeriod: '10m' });
   */
  create(name: string, def: KeyDefinition, options: CreateOptions = {}): Promise<KeyDescription> {
    return this.#run(async () => {
      await this.#management.create(name, def, options);
      return this.describe(name);
    });
  }

  /** Rotate by hand: a new version, current from now. Resolves to its number. */
  rotate(name: string): Promise<number> {
    return this.#run(async () => {
      const v = await this.#management.addVersion(name, manualPlanner(name));
      if (v === null) throw new InternalError(`rotation of key '${name}' produced no version`);
      return v;
    });
  }

  /**
   * Change some policy fields; `null` resets a field to its default.
   * Making the key exportable (false → true) needs `mayMakeExportable` (the
   * caller is a daemon administrator, managed-auth.ts) and is refused for
   * ever on `neverExportable` material; both are decided inside the
   * transaction, against the stored record, so no other daemon's change can
   * slip between the check and the write.
   */
  setPolicy(name: string, patch: PolicyInput, options: { mayMakeExportable?: boolean } = {}): Promise<PolicyChange> {
    return this.#run(async () => {
      const flipped = await this.#management.setPolicy(name, patch, options);
      return { description: this.describe(name), ...flipped };
    });
  }

  /**
   * Make the managed keys match a declarative set (the configuration file's
   * `keys:`). Refused as a whole, with every problem named by key and field,
   * when anything is invalid; the running state is then unchanged.
   */
  applyConfig(defs: Readonly<Record<string, KeyDefinition>>): Promise<ConfigChanges> {
    return this.#run(() => this.#management.applyConfig(defs));
  }

  /**
   * Destroy every version below `below` (`keys.trim`): the wrapped material
   * is erased in the keystore and, once readers let go, zeroed in memory;
   * data those versions made is refused with reason `destroyed`. The current
   * version (or, without one, the latest) always stays. Resolves to the
   * versions destroyed by this call.
   */
  trim(name: string, below: number): Promise<number[]> {
    return this.#run(() => this.#management.trim(name, below));
  }

  /**
   * Destroy a key (`keys.destroy`): every version's material is erased and the
   * key is disabled; its name stays taken so nothing can be created in its
   * place and decrypt someone's old data. Refused while deletion protection
   * is on. Resolves to the versions destroyed by this call.
   */
  destroy(name: string): Promise<number[]> {
    return this.#run(() => this.#management.destroy(name));
  }

  /**
   * Every version of key `name` with its plaintext, for a backup (backup.ts);
   * refused unless its policy has `allowBackup`. The caller zeroes the result
   * (transfer.ts `zeroTransfer`) as soon as it is sealed.
   */
  readForBackup(name: string): Promise<TransferKey> {
    return this.#management.readForBackup(name);
  }

  /**
   * Write a key read from a backup into the keystore under this daemon's KEK
   * and load it. An existing key of that name is refused unless `force`.
   * Resolves to whether a key was replaced. `k` stays the caller's to zero.
   */
  restore(k: TransferKey, options: { force?: boolean } = {}): Promise<{ description: KeyDescription; replaced: boolean }> {
    return this.#run(async () => {
      const replaced = await this.#management.restore(k, options.force === true);
      return { description: this.describe(k.name), replaced };
    });
  }

  /** Re-read keys from the keystore (all of them without `names`). */
  reload(names?: readonly string[]): Promise<void> {
    return this.#run(() => (names === undefined ? this.#refresher.reloadAll() : this.#refresher.reload([...names])));
  }

  /** The keystore generation this manager has caught up with, and its refreshes so far (for metrics). */
  keystoreStats(): { generation: number; refreshes: number; refreshFailures: number } {
    return this.#refresher.stats();
  }

  /** Re-read exactly what other processes changed since the last refresh (design note 3). */
  /** The keystore generation this manager has caught up with (refresh() moves it). */
  seenGeneration(): number {
    return this.#refresher.generation;
  }

  refresh(): Promise<string[]> {
    return this.#run(() => this.#refresher.refresh());
  }

  /**
   * Catch up with other processes for a request that found a key or version
   * this process does not hold — another daemon on the keystore may have
   * made it a moment ago. Resolves after a refresh that *started after this
   * call*, so it sees every change committed before the request looked.
   * Callers until that refresh starts share it, and refreshes start at least
   * MIN_REFRESH_GAP_MS apart. Never rejects: a failed refresh is logged and
   * the request answers from what this process holds.
   */
  refreshSoon(): Promise<void> {
    return this.#refresher.soon();
  }

  /**
   * For an operation about to start on key `key` (the request chain's
   * authorize phase; undefined for one that names no key): null when the
   * snapshot already has every change another process committed to it
   * before now — one synchronous store check, the common case — else a
   * promise that resolves, never rejecting, once the changed keys are
   * re-read (freshness.ts). A request on a key nobody changed never waits
   * for another key's reload. Operations already running keep their snapshot.
   */
  freshen(key?: string): Promise<void> | null {
    if (this.#closed) return null;
    return this.#freshness.check(key);
  }

  /**
   * Call `fn` after every catch-up a store push (PostgreSQL NOTIFY) started:
   * the daemon's fleet heartbeat reports the new generation then, so a
   * destroy elsewhere is acknowledged at once. Returns the unsubscribe.
   */
  onCaughtUp(fn: () => void): () => void {
    this.#caughtUp.add(fn);
    return () => this.#caughtUp.delete(fn);
  }

  /** Catch-ups freshen() and store pushes have started (tests, benchmarks). */
  get catchUps(): number {
    return this.#freshness.catchUps;
  }

  /** Resolves when no management work or reservation is queued or running (tests). */
  async settle(): Promise<void> {
    for (let quiet = 0; quiet < 2; ) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      await this.#queue.idle();
      quiet = this.#pending === 0 ? quiet + 1 : 0;
    }
  }

  /** Stop the timers, finish queued work, and release every key (zeroed once readers are done). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#freshness.close();
    this.#timers.close();
    await this.#queue.idle();
    while (this.#pending > 0) await new Promise<void>((resolve) => setImmediate(resolve));
    this.#publish(new Map());
  }

  // ── internals ───────────────────────────────────────────────────────────

  #run<T>(task: () => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(new ShuttingDownError('the key manager is closed'));
    return this.#track(this.#queue.run(task));
  }

  #track<T>(p: Promise<T>): Promise<T> {
    this.#pending++;
    return p.finally(() => {
      this.#pending--;
    });
  }

  /** Swap in a snapshot of exactly `keys`; the replaced one is released once its readers are done. */
  #publish(keys: ReadonlyMap<string, KeyEntry>): void {
    this.#cell.swap(new KeySnapshot(++this.#seq, keys));
    for (const fn of this.#listeners) {
      try {
        fn();
      } catch {
        // a listener's failure must not undo or hold up the swap
      }
    }
  }

  /**
   * Call `fn` after every new snapshot — a key created, rotated, disabled,
   * trimmed or destroyed, here or by another daemon — so what depends on
   * key versions (the data-key cache) drops what they no longer allow at
   * once. Returns the unsubscribe. `fn` must not throw.
   */
  onChange(fn: () => void): () => void {
    this.#listeners.add(fn);
    return () => {
      this.#listeners.delete(fn);
    };
  }

  /** Entry of `name` in the current snapshot (for tests and the operations layer). */
  entry(name: string): KeyEntry | undefined {
    return this.#cell.current.keys.get(name);
  }
}
