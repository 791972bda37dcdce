/**
 * The key manager (design note 4 on the keystore of design note 3): managed
 * keys by name, their versions and validity windows, rotation, reload, and
 * readers that never wait.
 *
 *   readers ── acquire() ─▶ SnapshotCell ─▶ immutable KeySnapshot      (O(1), never waits)
 *
 *   management (one at a time, the seed's "management lock"):
 *     create · rotate · setPolicy · applyConfig · reload · timers
 *        └─▶ keystore transaction ─▶ read back ─▶ build entries ─▶ swap
 *
 *   timers (WakeScheduler on the injected Clock):
 *     notAfter − prefetch ─▶ scheduled rotation (retried with backoff on failure)
 *     epoch boundaries    ─▶ derive the next epoch, drop the old one
 *     notAfter + grace    ─▶ drop material nothing can use any more
 *
 *   AES-GCM budgets (budget.ts): readers take invocations synchronously;
 *   reservations and the threshold rotation run in the background.
 *
 * Every swap replaces whole entries; a reader keeps the snapshot it acquired
 * until it releases it, and replaced material is zeroed only after that
 * (snapshot.ts). A failed management step leaves the current snapshot as it
 * was.
 */
import { silentLogger, type Logger } from '../observe/logger.js';
import type { KekProvider } from '../kek/provider.js';
import {
  ConfigError, ForbiddenError, InternalError, InvalidArgumentError, NotExtractableError, NotFoundError, ShuttingDownError, UnsupportedError,
} from '../protocol/errors.js';
import type { Keystore } from '../store/keystore.js';
import { SerialQueue } from '../store/serial-queue.js';
import { budgetOptions, type BudgetOptions, type InvocationBudget } from './budget.js';
import { systemClock, type Clock } from './clock.js';
import { decodeRecord, parseDefinition, type KeyDefinition, type KeyOrigin, type ParsedDefinition } from './definition.js';
import { describeEntry, type KeyDescription } from './describe.js';
import { EPOCH_MASTER_BYTES, nextEpochChange } from './epoch.js';
import { refreshEntry } from './loader.js';
import { newMasterMaterial, newVersionMaterial, type KeyMaterial } from './material.js';
import { keyTypeInfo, type ManagedKeyType } from './model.js';
import { effectivePolicy, KeyConfigError, parsePolicyInput, policyArgumentError, POLICY_FIELDS, type PolicyInput, type PolicyIssue } from './policy.js';
import { firstWindow, planScheduled } from './rotation.js';
import { Refresher, type DamagedVersion, type FreshMap } from './refresher.js';
import { errorText, Reservations } from './reservations.js';
import { backoffDelay, retryOptions, WakeScheduler, type RetryOptions } from './scheduler.js';
import { inboundUntil, selectOutbound } from './selection.js';
import { KeySnapshot, SnapshotCell, type KeyEntry, type SnapshotLease } from './snapshot.js';
import {
  applyDefinitions, changeIssues, manualPlanner, scheduledPlanner, thresholdPlanner, writeNewKey, writePolicy, writeRotation,
  type ConfigChanges, type Planner, type PreparedVersion,
} from './writes.js';

export type { ConfigChanges } from './writes.js';
export type { KeyDescription } from './describe.js';
export { MIN_REFRESH_GAP_MS, type DamagedVersion } from './refresher.js';

/** What `setPolicy` did. */
export interface PolicyChange {
  description: KeyDescription;
  /** The change made the key exportable (false → true); the caller audits it as its own event. */
  madeExportable: boolean;
}

export interface KeyManagerOptions {
  store: Keystore;
  kek: KekProvider;
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
}

/** A rotation the manager did by itself. */
export interface AutoRotation {
  readonly key: string;
  readonly version: number;
  /** The version that was current before, if any. */
  readonly previousVersion: number | null;
  readonly reason: 'schedule' | 'usage-limit';
}

/** How often a rotation may find that another process changed the key under it before giving up. */
const ROTATION_RACES = 3;

export class KeyManager {
  readonly #store: Keystore;
  readonly #kek: KekProvider;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #budget: BudgetOptions;
  readonly #retry: RetryOptions;
  readonly #onRotated: ((event: AutoRotation) => void) | undefined;
  readonly #queue = new SerialQueue();
  readonly #cell: SnapshotCell;
  readonly #scheduler: WakeScheduler;
  readonly #reservations: Reservations;
  /** Keys whose scheduled rotation failed: attempts in a row and when to try again. */
  readonly #failing = new Map<string, { attempts: number; at: number }>();
  readonly #refresher: Refresher;
  #seq = 0;
  #pending = 0;
  #closed = false;

  private constructor(o: KeyManagerOptions) {
    if (o === null || typeof o !== 'object' || o.store === undefined || o.kek === undefined) {
      throw new ConfigError('expected key manager options with a keystore (store) and a KEK provider (kek)');
    }
    this.#store = o.store;
    this.#kek = o.kek;
    this.#clock = o.clock ?? systemClock;
    this.#log = o.logger ?? silentLogger;
    this.#budget = budgetOptions(o.budget);
    this.#retry = retryOptions(o.retry);
    this.#onRotated = o.onRotated;
    this.#cell = new SnapshotCell(new KeySnapshot(0, new Map()), { now: () => this.#clock.now() });
    this.#scheduler = new WakeScheduler(this.#clock, (names) => this.#onDue(names));
    this.#reservations = new Reservations({
      store: this.#store, clock: this.#clock, log: this.#log, retry: this.#retry,
      track: (p) => void this.#track(p),
      onThreshold: (b) => this.#onThreshold(b),
      closed: () => this.#closed,
    });
    this.#refresher = new Refresher({
      store: this.#store, kek: this.#kek, clock: this.#clock, log: this.#log, budget: this.#budget,
      storeFile: o.storeFile ?? `the ${o.store.backend} keystore`, onDamaged: o.onDamaged, reservations: this.#reservations,
      keys: () => this.#cell.current.keys,
      publish: (keys) => this.#publish(keys),
      plan: (name) => this.#plan(name),
      refresh: () => this.refresh(),
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
  create(name: string, def: KeyDefinition, options: { material?: Uint8Array; origin?: KeyOrigin; neverExportable?: boolean } = {}): Promise<KeyDescription> {
    return this.#run(async () => {
      const { parsed, issues } = parseDefinition(name, def);
      if (parsed === undefined) throw policyArgumentError(issues);
      const neverExportable = options.neverExportable === true;
      if (neverExportable && parsed.policy.exportable) {
        throw new NotExtractableError('a non-extractable key cannot become an exportable managed key', { detail: { key: name } });
      }
      const now = this.#clock.now();
      const { prepared, material } = await this.#prepareFirst(name, parsed, now, options.material);
      try {
        await this.#store.transaction(async (tx) => {
          if ((await tx.getKey(name)) !== undefined) throw new InvalidArgumentError(`a managed key named '${name}' already exists`, { detail: { key: name } });
          await writeNewKey(tx, name, parsed, options.origin ?? 'api', prepared, now, neverExportable);
        });
      } catch (err) {
        material.destroy();
        throw err;
      }
      await this.#refresher.reload([name], new Map([[name, new Map([[1, { material, granted: prepared.granted }]])]]));
      return this.describe(name);
    });
  }

  /** Rotate by hand: a new version, current from now. Resolves to its number. */
  rotate(name: string): Promise<number> {
    return this.#run(async () => {
      const v = await this.#addVersion(name, manualPlanner(name));
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
      if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) throw new InvalidArgumentError('expected a policy object');
      const unknown = Object.keys(patch).filter((f) => !(POLICY_FIELDS as readonly string[]).includes(f));
      if (unknown.length > 0) {
        throw policyArgumentError(unknown.map((f) => ({ key: name, field: f, message: `unknown policy field '${f}'; known: ${POLICY_FIELDS.join(', ')}` })));
      }
      const now = this.#clock.now();
      const madeExportable = await this.#store.transaction(async (tx) => {
        const record = await tx.getKey(name);
        if (record === undefined) throw new NotFoundError(`no managed key named '${name}'`, { detail: { key: name } });
        const old = decodeRecord(record);
        const { spec, issues } = parsePolicyInput(old.type, patch, old.spec);
        const versions = await tx.getVersions(name);
        const policy = effectivePolicy(old.type, spec);
        const flips = issues.length === 0 && !old.policy.exportable && policy.exportable;
        if (flips && old.neverExportable) {
          throw new NotExtractableError(
            `key '${name}' holds material that was non-extractable when it entered the daemon; it can never be made exportable`,
            { detail: { key: name, field: 'exportable' } },
          );
        }
        if (flips && options.mayMakeExportable !== true) {
          throw new ForbiddenError(
            `only a daemon administrator may make key '${name}' exportable; the key's admin right does not include it (README "Who may do what")`,
            { detail: { key: name, op: 'admin', field: 'exportable' } },
          );
        }
        const derived = old.derived === null ? null : { epochStart: old.derived.epochStart };
        if (issues.length === 0) issues.push(...changeIssues(name, old, { type: old.type, policy, derived }, versions, now));
        if (issues.length > 0) throw policyArgumentError(issues.map((i) => ({ ...i, key: name })));
        await writePolicy(tx, record, old, spec, policy, old.origin, versions, now);
        return flips;
      });
      await this.#refresher.reload([name]);
      return { description: this.describe(name), madeExportable };
    });
  }

  /**
   * Make the managed keys match a declarative set (the configuration file's
   * `keys:`). Refused as a whole, with every problem named by key and field,
   * when anything is invalid; the running state is then unchanged.
   */
  applyConfig(defs: Readonly<Record<string, KeyDefinition>>): Promise<ConfigChanges> {
    return this.#run(async () => {
      if (defs === null || typeof defs !== 'object' || Array.isArray(defs)) {
        throw new KeyConfigError([{ field: 'keys', message: 'expected keys to map key names to definitions' }]);
      }
      const parsed = new Map<string, ParsedDefinition>();
      const issues: PolicyIssue[] = [];
      for (const [name, def] of Object.entries(defs)) {
        const r = parseDefinition(name, def);
        if (r.parsed === undefined) issues.push(...r.issues);
        else parsed.set(name, r.parsed);
      }
      if (issues.length > 0) throw new KeyConfigError(issues);

      const now = this.#clock.now();
      const prepared = new Map<string, PreparedVersion>();
      const fresh: FreshMap = new Map();
      try {
        for (const [name, def] of parsed) {
          if (this.#cell.current.keys.has(name)) continue;
          const p = await this.#prepareFirst(name, def, now);
          prepared.set(name, p.prepared);
          fresh.set(name, new Map([[1, { material: p.material, granted: p.prepared.granted }]]));
        }
        const changes = await this.#store.transaction(async (tx) => {
          const r = await applyDefinitions(tx, parsed, prepared, now);
          if (r.issues.length > 0) throw new KeyConfigError(r.issues);
          if (r.missing.length > 0) throw new InternalError(`keys ${r.missing.join(', ')} vanished from the keystore during the reload; retry`);
          return r.changes;
        });
        const touched = [...changes.created, ...changes.updated, ...changes.enabled, ...changes.disabled];
        if (touched.length > 0) await this.#refresher.reload(touched, fresh);
        this.#log.info('key configuration applied', { ...changes });
        return changes;
      } finally {
        for (const versions of fresh.values()) for (const f of versions.values()) if (f.material.holders === 0) f.material.destroy();
      }
    });
  }

  /**
   * Destroy every version below `below` (`keys.trim`): the wrapped material
   * is erased in the keystore and, once readers let go, zeroed in memory;
   * data those versions made is refused with reason `destroyed`. The current
   * version (or, without one, the latest) always stays. Resolves to the
   * versions destroyed by this call.
   */
  trim(name: string, below: number): Promise<number[]> {
    return this.#run(async () => {
      if (!Number.isSafeInteger(below) || below < 1 || below > 0xffff_ffff) {
        throw new InvalidArgumentError(`expected 'below' to be a version number from 1 to 4294967295, got ${String(below)}`, { detail: { key: name, field: 'below' } });
      }
      const now = this.#clock.now();
      const destroyed = await this.#store.transaction(async (tx) => {
        const record = await tx.getKey(name);
        if (record === undefined) throw new NotFoundError(`no managed key named '${name}'`, { detail: { key: name } });
        const decoded = decodeRecord(record);
        if (decoded.derived !== null) throw new UnsupportedError(`key '${name}' is a derived epoch key: its versions are computed, not stored, and cannot be trimmed`, { detail: { key: name } });
        const versions = await tx.getVersions(name);
        let keep: number;
        try {
          keep = selectOutbound(name, versions, decoded.policy, now).version;
        } catch {
          keep = versions[versions.length - 1]?.version ?? 0;
        }
        if (below > keep) {
          throw new InvalidArgumentError(`cannot trim key '${name}' below version ${below}: version ${keep} is its current version and must stay (rotate first)`, {
            detail: { key: name, field: 'below', current: keep },
          });
        }
        const out: number[] = [];
        for (const v of versions) {
          if (v.version >= below || v.state === 'destroyed') continue;
          await tx.destroyVersionMaterial(name, v.version);
          out.push(v.version);
        }
        return out;
      });
      if (destroyed.length > 0) await this.#refresher.reload([name]);
      this.#log.info('key trimmed', { key: name, below, destroyed: destroyed.length });
      return destroyed;
    });
  }

  /**
   * Destroy a key (`keys.destroy`): every version's material is erased and the
   * key is disabled; its name stays taken so nothing can be created in its
   * place and decrypt someone's old data. Refused while deletion protection
   * is on. Resolves to the versions destroyed by this call.
   */
  destroy(name: string): Promise<number[]> {
    return this.#run(async () => {
      const now = this.#clock.now();
      const destroyed = await this.#store.transaction(async (tx) => {
        const record = await tx.getKey(name);
        if (record === undefined) throw new NotFoundError(`no managed key named '${name}'`, { detail: { key: name } });
        if (decodeRecord(record).policy.deletionProtection) {
          throw new ForbiddenError(`key '${name}' has deletion protection: set deletionProtection to false first`, { detail: { key: name, op: 'destroy' } });
        }
        const out: number[] = [];
        for (const v of await tx.getVersions(name)) {
          if (v.state === 'destroyed') continue;
          await tx.destroyVersionMaterial(name, v.version);
          out.push(v.version);
        }
        await tx.putKey({ ...record, disabled: true, updatedAt: now });
        return out;
      });
      await this.#refresher.reload([name]);
      this.#log.info('key destroyed', { key: name, versions: destroyed.length });
      return destroyed;
    });
  }

  /** Re-read keys from the keystore (all of them without `names`). */
  reload(names?: readonly string[]): Promise<void> {
    return this.#run(() => (names === undefined ? this.#refresher.reloadAll() : this.#refresher.reload([...names])));
  }

  /** Re-read exactly what other processes changed since the last refresh (design note 3). */
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
    this.#scheduler.close();
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

  /** Generate (or import) and wrap version 1 of a new key, before its transaction. */
  async #prepareFirst(name: string, def: ParsedDefinition, now: number, imported?: Uint8Array): Promise<{ prepared: PreparedVersion; material: KeyMaterial }> {
    const { blob, material } = def.derived !== null
      ? await newMasterMaterial(this.#kek, name, EPOCH_MASTER_BYTES, imported)
      : await newVersionMaterial(this.#kek, def.type, name, 1, imported);
    const window = def.derived !== null ? { notBefore: def.derived.epochStart, notAfter: null } : firstWindow(def.policy, now);
    const granted = def.derived === null ? this.#initialGrant(def.type) : 0;
    return { prepared: { blob, kekId: this.#kek.id, granted, window }, material };
  }

  #initialGrant(type: ManagedKeyType): number {
    return keyTypeInfo(type).invocationLimit === null ? 0 : Math.min(this.#budget.block, this.#budget.limit);
  }

  /**
   * Add a version planned by `plan` from the stored versions. Material is
   * generated and wrapped for the planned number before the transaction; the
   * transaction plans again from what it reads and writes only if the plan is
   * unchanged (otherwise another process rotated first: plan again, or stop
   * when there is nothing left to do). Resolves to the new version, or null.
   */
  async #addVersion(name: string, plan: Planner): Promise<number | null> {
    for (let race = 0; race < ROTATION_RACES; race++) {
      const { record, versions } = await this.#store.read(async (r) => ({ record: await r.getKey(name), versions: await r.getVersions(name) }));
      if (record === undefined) throw new NotFoundError(`no managed key named '${name}'`, { detail: { key: name } });
      const now = this.#clock.now();
      const p = plan(versions, record, now);
      if (p === null) {
        await this.#refresher.reload([name]);
        return null;
      }
      const type = decodeRecord(record).type;
      const { blob, material } = await newVersionMaterial(this.#kek, type, name, p.version);
      const granted = this.#initialGrant(type);
      let written: boolean;
      try {
        written = await this.#store.transaction(async (tx) => {
          const rec = await tx.getKey(name);
          const vs = await tx.getVersions(name);
          const again = rec === undefined ? null : plan(vs, rec, now);
          if (again === null || JSON.stringify(again) !== JSON.stringify(p)) return false;
          await writeRotation(tx, name, p, vs, blob, this.#kek.id, granted, now);
          return true;
        });
      } catch (err) {
        material.destroy();
        throw err;
      }
      if (!written) {
        material.destroy();
        continue;
      }
      this.#log.info('key rotated', { key: name, version: p.version, notBefore: p.window.notBefore, notAfter: p.window.notAfter });
      await this.#refresher.reload([name], new Map([[name, new Map([[p.version, { material, granted }]])]]));
      if (material.holders === 0) material.destroy();
      return p.version;
    }
    throw new InternalError(`rotation of key '${name}' kept racing with other processes; retry`);
  }

  /** Swap in a snapshot of exactly `keys`; the replaced one is released once its readers are done. */
  #publish(keys: ReadonlyMap<string, KeyEntry>): void {
    this.#cell.swap(new KeySnapshot(++this.#seq, keys));
  }

  /** At the rotateAt threshold, rotate — if the version is still the current one (another process may have rotated). */
  #onThreshold(b: InvocationBudget): void {
    const { key, version } = b;
    this.#run(() => this.#addVersion(key, thresholdPlanner(key, version))).then(
      (v) => {
        if (v === null) return; // another process rotated first: its audit, not ours
        this.#log.info('key rotated at its encryption threshold', { key, version: v, reserved: b.reserved });
        this.#told({ key, version: v, previousVersion: version, reason: 'usage-limit' });
      },
      (err: unknown) => {
        b.rotationRequested = false; // asked again at the next reservation
        this.#log.warn('threshold rotation failed', { key, version, error: errorText(err) });
      },
    );
  }

  #onDue(names: string[]): void {
    for (const name of names) {
      this.#run(() => this.#tick(name)).catch((err: unknown) => this.#log.error('key timer failed', { key: name, error: errorText(err) }));
    }
  }

  /** Timer work for one key: scheduled rotation if due, then bring the entry up to date with the clock. */
  async #tick(name: string): Promise<void> {
    const entry = this.#cell.current.keys.get(name);
    if (entry === undefined) return;
    const now = this.#clock.now();
    if (!entry.disabled && entry.derived === null) {
      const s = planScheduled(entry.versions, entry.policy, now);
      const failing = this.#failing.get(name);
      if (s !== null && s.due <= now && (failing === undefined || failing.at <= now)) {
        try {
          // The newest version, not the current one: with prefetch the new version follows the newest.
          const previous = entry.versions.at(-1)?.version ?? null;
          const v = await this.#addVersion(name, scheduledPlanner);
          this.#failing.delete(name);
          if (v !== null) this.#told({ key: name, version: v, previousVersion: previous, reason: 'schedule' });
        } catch (err) {
          const attempts = (failing?.attempts ?? 0) + 1;
          const at = this.#clock.now() + backoffDelay(attempts, this.#retry);
          this.#failing.set(name, { attempts, at });
          this.#log.warn('scheduled rotation failed; the current version stays in use', { key: name, attempts, retryAt: at, error: errorText(err) });
        }
      }
    }
    const cur = this.#cell.current.keys.get(name);
    if (cur !== undefined) {
      const next = refreshEntry(cur, this.#clock.now());
      if (next !== cur) this.#publish(new Map(this.#cell.current.keys).set(name, next));
    }
    this.#plan(name);
  }

  /** Hand an automatic rotation to the listener; its failure must not fail the rotation, which is done. */
  #told(event: AutoRotation): void {
    if (this.#onRotated === undefined) return;
    try {
      this.#onRotated(event);
    } catch (err) {
      this.#log.error('rotation listener failed', { key: event.key, version: event.version, error: errorText(err) });
    }
  }

  /** Set the key's next wake-up: rotation, retry, epoch change or material to drop, whichever is first. */
  #plan(name: string): void {
    const e = this.#cell.current.keys.get(name);
    if (e === undefined || e.disabled) {
      this.#scheduler.set(name, null);
      return;
    }
    const now = this.#clock.now();
    let at = Infinity;
    if (e.derived !== null) at = nextEpochChange(e.derived, e.policy, now);
    else {
      const s = planScheduled(e.versions, e.policy, now);
      if (s !== null) at = Math.max(s.due, this.#failing.get(name)?.at ?? -Infinity);
      for (const v of e.versions) {
        if (v.material === null) continue;
        const until = inboundUntil(v, e.policy);
        if (until > now && until < at) at = until;
      }
    }
    this.#scheduler.set(name, at === Infinity ? null : at);
  }

  /** Entry of `name` in the current snapshot (for tests and the operations layer). */
  entry(name: string): KeyEntry | undefined {
    return this.#cell.current.keys.get(name);
  }
}
