/**
 * The management writes behind KeyManager's create, rotate, setPolicy,
 * applyConfig, trim and destroy. Each one runs inside the manager's queue
 * (one at a time, the seed's "management lock"):
 *
 *   check the input ─▶ generate and wrap material ─▶ keystore transaction ─▶ reload (refresher.ts)
 *                      (outside the transaction,    (writes.ts; checks that
 *                       which holds the store's      depend on stored state
 *                       write lock for every         run here, against what
 *                       process)                     it reads)
 *
 * A step that fails before its transaction commits destroys the material it
 * made and leaves the snapshot as it was; material handed to the reload is
 * held by the new entries and destroyed here only if nothing took it.
 *
 * Once COMMIT has returned the write is done, and the caller is told so even
 * when the reload after it fails (the store went away in between, a KEK that
 * does not answer): reporting a committed write as failed makes the caller
 * repeat it, or believe a destroy did not happen. See #loadCommitted.
 */
import type { KekProvider } from '../kek/provider.js';
import type { TokenKeys } from '../kek/token-keys.js';
import type { Logger } from '../observe/logger.js';
import {
  CryptodError, ForbiddenError, InternalError, InvalidArgumentError, NotExtractableError, NotFoundError, UnsupportedError,
} from '../protocol/errors.js';
import type { Keystore } from '../store/keystore.js';
import type { BudgetOptions } from './budget.js';
import type { Clock } from './clock.js';
import { decodeRecord, parseDefinition, type KeyDefinition, type KeyOrigin, type ParsedDefinition } from './definition.js';
import { EPOCH_MASTER_BYTES } from './epoch.js';
import { newMasterMaterial, newTokenVersion, newVersionMaterial, tokenRefOf, type KeyMaterial } from './material.js';
import { keyTypeInfo, type ManagedKeyType } from './model.js';
import { effectivePolicy, KeyConfigError, parsePolicyInput, policyArgumentError, POLICY_FIELDS, type PolicyInput, type PolicyIssue } from './policy.js';
import { readBack, type FreshMap, type StoredKey } from './refresher.js';
import { readForTransfer, writeTransfer, type TransferKey } from './transfer.js';
import { firstWindow } from './rotation.js';
import { selectOutbound } from './selection.js';
import {
  applyDefinitions, changeIssues, writeNewKey, writePolicy, writeRotation,
  type ConfigChanges, type Planner, type PreparedVersion,
} from './writes.js';

/** How often a rotation may find that another process changed the key under it before giving up. */
const ROTATION_RACES = 3;

/** What the management writes need from the manager; the snapshot stays the manager's. */
export interface ManagementContext {
  store: Keystore;
  kek: KekProvider;
  tokens: TokenKeys | undefined;
  clock: Clock;
  log: Logger;
  budget: BudgetOptions;
  /** The current snapshot holds key `name`. */
  has(name: string): boolean;
  /** Read keys back from the keystore and swap them in, taking over `fresh` material. */
  reload(names: readonly string[], fresh?: FreshMap, stored?: readonly StoredKey[]): Promise<void>;
  /** Drop keys from the snapshot (their next reload starts from nothing). */
  forget(names: readonly string[]): void;
}

export interface CreateOptions {
  material?: Uint8Array;
  origin?: KeyOrigin;
  neverExportable?: boolean;
}

export class KeyManagement {
  readonly #c: ManagementContext;

  constructor(context: ManagementContext) {
    this.#c = context;
  }

  /** KeyManager.create, up to the reload; the caller describes the key. */
  async create(name: string, def: KeyDefinition, options: CreateOptions): Promise<void> {
    const { parsed, issues } = parseDefinition(name, def);
    if (parsed === undefined) throw policyArgumentError(issues);
    const neverExportable = options.neverExportable === true;
    if (neverExportable && parsed.policy.exportable) {
      throw new NotExtractableError('a non-extractable key cannot become an exportable managed key', { detail: { key: name } });
    }
    const now = this.#c.clock.now();
    const { prepared, material } = await this.#prepareFirst(name, parsed, now, options.material);
    let stored: StoredKey[];
    try {
      stored = await this.#c.store.transaction(async (tx) => {
        if ((await tx.getKey(name)) !== undefined) throw new InvalidArgumentError(`a managed key named '${name}' already exists`, { detail: { key: name } });
        await writeNewKey(tx, name, parsed, options.origin ?? 'api', prepared, now, neverExportable);
        return readBack(tx, [name]);
      });
    } catch (err) {
      await this.#discard(name, 1, material, err);
      throw err;
    }
    const failed = await this.#loadCommitted('create', stored, 'keep', new Map([[name, new Map([[1, { material, granted: prepared.granted }]])]]));
    if (material.holders === 0) material.destroy();
    if (failed !== null) throw committedButNotLoaded('created', name, failed);
  }

  /** KeyManager.setPolicy, up to the reload. Resolves to whether the key became exportable, and backup-able. */
  async setPolicy(name: string, patch: PolicyInput, options: { mayMakeExportable?: boolean }): Promise<{ madeExportable: boolean; allowedBackup: boolean }> {
    if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) throw new InvalidArgumentError('expected a policy object');
    const unknown = Object.keys(patch).filter((f) => !(POLICY_FIELDS as readonly string[]).includes(f));
    if (unknown.length > 0) {
      throw policyArgumentError(unknown.map((f) => ({ key: name, field: f, message: `unknown policy field '${f}'; known: ${POLICY_FIELDS.join(', ')}` })));
    }
    const now = this.#c.clock.now();
    const flipped = await this.#c.store.transaction(async (tx) => {
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
      // allowBackup false → true lets the key's material reach another
      // daemon (src/keys/backup.ts): the same administrators-only step as exportable.
      const allowsBackup = issues.length === 0 && !old.policy.allowBackup && policy.allowBackup;
      if (allowsBackup && options.mayMakeExportable !== true) {
        throw new ForbiddenError(
          `only a daemon administrator may allow backups of key '${name}'; the key's admin right does not include it (README "Who may do what")`,
          { detail: { key: name, op: 'admin', field: 'allowBackup' } },
        );
      }
      const derived = old.derived === null ? null : { epochStart: old.derived.epochStart };
      if (issues.length === 0) issues.push(...changeIssues(name, old, { type: old.type, policy, derived }, versions, now));
      if (issues.length > 0) throw policyArgumentError(issues.map((i) => ({ ...i, key: name })));
      await writePolicy(tx, record, old, spec, policy, old.origin, versions, now);
      return { change: { madeExportable: flips, allowedBackup: allowsBackup }, stored: await readBack(tx, [name]) };
    });
    await this.#loadCommitted('setPolicy', flipped.stored, 'forget');
    return flipped.change;
  }

  /** KeyManager.applyConfig. */
  async applyConfig(defs: Readonly<Record<string, KeyDefinition>>): Promise<ConfigChanges> {
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

    const now = this.#c.clock.now();
    const prepared = new Map<string, PreparedVersion>();
    const fresh: FreshMap = new Map();
    let created: readonly string[] = [];
    try {
      for (const [name, def] of parsed) {
        if (this.#c.has(name)) continue;
        const p = await this.#prepareFirst(name, def, now);
        prepared.set(name, p.prepared);
        fresh.set(name, new Map([[1, { material: p.material, granted: p.prepared.granted }]]));
      }
      const changes = await this.#c.store.transaction(async (tx) => {
        const r = await applyDefinitions(tx, parsed, prepared, now);
        if (r.issues.length > 0) throw new KeyConfigError(r.issues);
        if (r.missing.length > 0) throw new InternalError(`keys ${r.missing.join(', ')} vanished from the keystore during the reload; retry`);
        const c = r.changes;
        return { ...c, stored: await readBack(tx, [...c.created, ...c.updated, ...c.enabled, ...c.disabled]) };
      });
      created = changes.created;
      if (changes.stored.length > 0) await this.#loadCommitted('applyConfig', changes.stored, 'forget', fresh);
      const { stored: _, ...applied } = changes;
      this.#c.log.info('key configuration applied', { ...applied });
      return applied;
    } finally {
      for (const [name, versions] of fresh) {
        for (const [v, f] of versions) {
          // A token object made for a key that was not written (a failure, or another process created the key first): nothing refers to it.
          if (f.material.kind === 'token' && !created.includes(name)) await this.#discard(name, v, f.material);
          else if (f.material.holders === 0) f.material.destroy();
        }
      }
    }
  }

  /** KeyManager.trim. */
  async trim(name: string, below: number): Promise<number[]> {
    if (!Number.isSafeInteger(below) || below < 1 || below > 0xffff_ffff) {
      throw new InvalidArgumentError(`expected 'below' to be a version number from 1 to 4294967295, got ${String(below)}`, { detail: { key: name, field: 'below' } });
    }
    const now = this.#c.clock.now();
    const trimmed = await this.#c.store.transaction(async (tx) => {
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
      const out: Array<{ version: number; wrapped: Uint8Array | null }> = [];
      for (const v of versions) {
        if (v.version >= below || v.state === 'destroyed') continue;
        await tx.destroyVersionMaterial(name, v.version);
        out.push({ version: v.version, wrapped: decoded.provider === null ? null : v.wrapped });
      }
      return { out, stored: out.length > 0 ? await readBack(tx, [name]) : [] };
    });
    if (trimmed.out.length > 0) await this.#loadCommitted('trim', trimmed.stored, 'forget');
    const destroyed = trimmed.out;
    await this.#destroyTokenObjects(name, destroyed);
    this.#c.log.info('key trimmed', { key: name, below, destroyed: destroyed.length });
    return destroyed.map((d) => d.version);
  }

  /** KeyManager.destroy. */
  async destroy(name: string): Promise<number[]> {
    const now = this.#c.clock.now();
    const written = await this.#c.store.transaction(async (tx) => {
      const record = await tx.getKey(name);
      if (record === undefined) throw new NotFoundError(`no managed key named '${name}'`, { detail: { key: name } });
      if (decodeRecord(record).policy.deletionProtection) {
        throw new ForbiddenError(`key '${name}' has deletion protection: set deletionProtection to false first`, { detail: { key: name, op: 'destroy' } });
      }
      const held = decodeRecord(record).provider !== null;
      const out: Array<{ version: number; wrapped: Uint8Array | null }> = [];
      for (const v of await tx.getVersions(name)) {
        if (v.state === 'destroyed') continue;
        await tx.destroyVersionMaterial(name, v.version);
        out.push({ version: v.version, wrapped: held ? v.wrapped : null });
      }
      await tx.putKey({ ...record, disabled: true, updatedAt: now });
      return { out, stored: await readBack(tx, [name]) };
    });
    await this.#loadCommitted('destroy', written.stored, 'forget');
    const destroyed = written.out;
    await this.#destroyTokenObjects(name, destroyed);
    this.#c.log.info('key destroyed', { key: name, versions: destroyed.length });
    return destroyed.map((d) => d.version);
  }

  /** KeyManager.readForBackup: every version of `name` unwrapped (transfer.ts). */
  readForBackup(name: string): Promise<TransferKey> {
    return readForTransfer(this.#c.store, this.#c.kek, name);
  }

  /** KeyManager.restore: write `k` under this daemon's KEK, then load it. Resolves to whether a key was replaced. */
  async restore(k: TransferKey, force: boolean): Promise<boolean> {
    const { replaced, stored } = await writeTransfer(this.#c.store, this.#c.kek, k, force, this.#c.clock.now());
    // A replaced key's versions share numbers with the ones held now, not bytes.
    if (replaced) this.#c.forget([k.name]);
    const failed = await this.#loadCommitted('restore', stored, 'forget');
    if (failed !== null) throw committedButNotLoaded('restored', k.name, failed);
    this.#c.log.info('key restored', { key: k.name, versions: k.versions.length, replaced });
    return replaced;
  }

  /**
   * Load what a committed write wrote, from the rows its transaction read
   * back (no second trip to a store that may have gone away since the
   * COMMIT). The write is durable from COMMIT on, so a load that fails now
   * (a KEK that does not answer) must not fail the call as if nothing had
   * happened: the caller would repeat a write that happened. The generation
   * this process has caught up with is still below the write's, so the next
   * refresh (poll, NOTIFY, or a request's miss) loads the keys anyway. Until then, `keep` leaves the entries held as they were —
   * a create or rotation only adds, and the old current version is still
   * valid, as it is in every daemon that has not caught up yet — and
   * `forget` drops them, because a key held in its old form must not outlive
   * a destroy, trim, disable or policy change that committed. Resolves to
   * the load's error, or null.
   */
  async #loadCommitted(op: string, stored: readonly StoredKey[], onFailure: 'keep' | 'forget', fresh?: FreshMap): Promise<unknown> {
    const names = stored.map((k) => k.name);
    try {
      await this.#c.reload(names, fresh, stored);
      return null;
    } catch (err) {
      if (onFailure === 'forget') this.#c.forget(names);
      this.#c.log.warn(`${op} committed, but the keys could not be loaded; the next refresh loads them`, {
        keys: names, held: onFailure === 'keep' ? 'as before' : 'dropped until then', error: (err as Error).message,
      });
      return err;
    }
  }

  /** Generate (or import) and wrap version 1 of a new key, before its transaction. */
  async #prepareFirst(name: string, def: ParsedDefinition, now: number, imported?: Uint8Array): Promise<{ prepared: PreparedVersion; material: KeyMaterial }> {
    if (def.provider !== null && imported !== undefined) {
      throw new InvalidArgumentError(`key '${name}' is held in a token (provider: ${def.provider}): its material is generated there and cannot be imported`, { detail: { key: name, field: 'provider' } });
    }
    const { blob, material } = def.derived !== null
      ? await newMasterMaterial(this.#c.kek, name, EPOCH_MASTER_BYTES, imported)
      : def.provider !== null
        ? await newTokenVersion(this.#c.kek, this.#c.tokens, def.provider, name, 1)
        : await newVersionMaterial(this.#c.kek, def.type, name, 1, imported);
    const window = def.derived !== null ? { notBefore: def.derived.epochStart, notAfter: null } : firstWindow(def.policy, now);
    const granted = def.derived === null ? this.#initialGrant(def.type) : 0;
    return { prepared: { blob, kekId: this.#c.kek.id, granted, window }, material };
  }

  /**
   * Drop material that no keystore row refers to: zeroed, and a token
   * object destroyed in the token (best effort: a token away now leaves an
   * orphan object, logged with its label so it can be removed by hand).
   */
  async #discard(name: string, version: number, material: KeyMaterial, failure?: unknown): Promise<void> {
    const held = material.kind === 'token' && !material.destroyed ? material.token : null;
    material.destroy();
    if (held === null || this.#c.tokens === undefined) return;
    if (failure instanceof CryptodError && failure.detail?.commitUnknown === true) {
      // The row naming this object may have been committed: destroying the object could break a stored version.
      this.#c.log.warn('token object of a version whose commit is unknown kept in the token', { key: name, version, provider: held.ref.provider });
      return;
    }
    await this.#c.tokens.destroy(held.ref, name, version).catch((err: unknown) => {
      this.#c.log.warn('token object of an unwritten version left in the token', { key: name, version, provider: held.ref.provider, error: (err as Error).message });
    });
  }

  /**
   * After trim/destroy committed: C_DestroyObject for each token-held
   * version (`wrapped` is the reference blob as it was stored). The keystore
   * no longer refers to them, so they are unusable either way; a token that
   * is away leaves the objects behind, logged with their provider and
   * version (docs: README "KEK providers").
   */
  async #destroyTokenObjects(name: string, destroyed: ReadonlyArray<{ version: number; wrapped: Uint8Array | null }>): Promise<void> {
    for (const d of destroyed) {
      if (d.wrapped === null || this.#c.tokens === undefined) continue;
      try {
        const ref = await tokenRefOf(this.#c.kek, name, d.version, d.wrapped);
        const found = await this.#c.tokens.destroy(ref, name, d.version);
        this.#c.log.info('token object destroyed', { key: name, version: d.version, provider: ref.provider, found });
      } catch (err) {
        this.#c.log.warn('token object not destroyed: the token did not answer; it stays there, unreferenced', { key: name, version: d.version, error: (err as Error).message });
      }
    }
  }

  #initialGrant(type: ManagedKeyType): number {
    return keyTypeInfo(type).invocationLimit === null ? 0 : Math.min(this.#c.budget.block, this.#c.budget.limit);
  }

  /**
   * Add a version planned by `plan` from the stored versions. Material is
   * generated and wrapped for the planned number before the transaction; the
   * transaction plans again from what it reads and writes only if the plan is
   * unchanged (otherwise another process rotated first: plan again, or stop
   * when there is nothing left to do). Resolves to the new version, or null.
   */
  async addVersion(name: string, plan: Planner): Promise<number | null> {
    for (let race = 0; race < ROTATION_RACES; race++) {
      const { record, versions } = await this.#c.store.read(async (r) => ({ record: await r.getKey(name), versions: await r.getVersions(name) }));
      if (record === undefined) throw new NotFoundError(`no managed key named '${name}'`, { detail: { key: name } });
      const now = this.#c.clock.now();
      const p = plan(versions, record, now);
      if (p === null) {
        await this.#c.reload([name]);
        return null;
      }
      const { type, provider } = decodeRecord(record);
      const { blob, material } = provider === null
        ? await newVersionMaterial(this.#c.kek, type, name, p.version)
        : await newTokenVersion(this.#c.kek, this.#c.tokens, provider, name, p.version);
      const granted = this.#initialGrant(type);
      let written: StoredKey[] | null;
      try {
        written = await this.#c.store.transaction(async (tx) => {
          const rec = await tx.getKey(name);
          const vs = await tx.getVersions(name);
          const again = rec === undefined ? null : plan(vs, rec, now);
          if (again === null || JSON.stringify(again) !== JSON.stringify(p)) return null;
          await writeRotation(tx, name, p, vs, blob, this.#c.kek.id, granted, now);
          return readBack(tx, [name]);
        });
      } catch (err) {
        await this.#discard(name, p.version, material, err);
        throw err;
      }
      if (written === null) {
        await this.#discard(name, p.version, material);
        continue;
      }
      this.#c.log.info('key rotated', { key: name, version: p.version, notBefore: p.window.notBefore, notAfter: p.window.notAfter });
      await this.#loadCommitted('rotate', written, 'keep', new Map([[name, new Map([[p.version, { material, granted }]])]]));
      if (material.holders === 0) material.destroy();
      return p.version;
    }
    throw new InternalError(`rotation of key '${name}' kept racing with other processes; retry`);
  }
}

/**
 * A create or restore whose COMMIT returned but whose key could not be
 * loaded, so there is no description to answer with: the load's error, said
 * to be after the commit (`detail.committed`), so that nobody repeats it.
 */
function committedButNotLoaded(done: string, name: string, err: unknown): CryptodError {
  const cause = err instanceof CryptodError ? err : new InternalError('the key could not be loaded', { cause: err });
  return new CryptodError(
    cause.code,
    `key '${name}' was ${done} (committed), but this daemon could not load it yet: ${cause.message}; it is loaded by the next refresh — do not repeat the write`,
    { cause: err, detail: { ...cause.detail, key: name, committed: true } },
  );
}
