/**
 * The key manager's state as immutable snapshots, read without ever blocking
 * (design note 4, "Readers never block").
 *
 *   readers ──acquire()──▶ cell.current ──▶ snapshot S2 { name ─▶ KeyEntry ─▶ versions ─▶ material }
 *                                 ▲ swap (one assignment)
 *   manager: build S3 from S2 ────┘     S2 retired: its material that S3 does not share is
 *                                       zeroed when the last reader of S2 (and older) releases
 *
 * Mapping the seed's RCU onto one event loop:
 * - "lock-free RW hash table": a reader's acquire is a property read and an
 *   increment; the manager's swap is one assignment. JavaScript runs one
 *   callback at a time, so neither can observe the other half-done.
 * - "worker passes through the quiescent state": a reader releasing its
 *   lease. A reader may hold a lease across `await`s (that is the point: a
 *   whole operation sees one consistent snapshot), so a retired snapshot can
 *   still have readers long after the swap.
 * - "after each worker has passed through the quiescent state, the removed
 *   entries are freed": each KeyMaterial counts the snapshots holding it
 *   (the current one, and retired ones with readers). A retired snapshot whose
 *   reader count reaches zero drops its holds; material whose count reaches
 *   zero is zeroed. Material the new snapshot still uses is never touched,
 *   and material of an old snapshot is never zeroed under a reader of an
 *   even older snapshot, because that snapshot holds it too.
 */
import { BusyError, type CryptodError, InternalError, InvalidKeyError, KeyDamagedError, KeyDisabledError, NotFoundError } from '../protocol/errors.js';
import type { InvocationBudget } from './budget.js';
import { epochVersion, type EpochSchedule } from './epoch.js';
import type { KeyOrigin } from './definition.js';
import type { KeyMaterial } from './material.js';
import { keyTypeInfo, typeAllows, type InboundOp, type ManagedKeyType, type OutboundOp, type VersionInfo } from './model.js';
import type { KeyPolicy } from './policy.js';
import { findVersion, refusal, selectInbound, selectOutbound } from './selection.js';

export interface VersionEntry extends VersionInfo {
  readonly createdAt: number;
  /** Store count of encryptions when loaded (AES-GCM); the live figure is `budget.reserved`. */
  readonly encryptions: number;
  /** Null when this process holds no material for it (disabled, destroyed, retired by time or minimum). */
  readonly material: KeyMaterial | null;
  /** AES-GCM versions that can still encrypt. */
  readonly budget: InvocationBudget | null;
  /** Why the stored material could not be loaded (then `material` is null); null when healthy. */
  readonly damaged: string | null;
}

export interface KeyEntry {
  readonly name: string;
  readonly type: ManagedKeyType;
  readonly policy: KeyPolicy;
  readonly origin: KeyOrigin;
  readonly disabled: boolean;
  readonly createdAt: number;
  readonly updatedAt: number;
  /** Epoch schedule of a derived key; its `versions` are the epochs held now. */
  readonly derived: EpochSchedule | null;
  /** The master secret of a derived key. */
  readonly master: KeyMaterial | null;
  /** The provider whose token holds every version (`provider:`); absent or null: held by cryptod. */
  readonly provider?: string | null;
  /** A derived key whose master secret could not be loaded: why (every epoch is unusable). */
  readonly damaged: string | null;
  /** Ordered by version. */
  readonly versions: readonly VersionEntry[];
}

export class KeySnapshot {
  /** Increases by one at every swap; for logs and tests. */
  readonly seq: number;
  readonly keys: ReadonlyMap<string, KeyEntry>;
  /** Every material the snapshot references, once. */
  readonly materials: ReadonlySet<KeyMaterial>;
  readers = 0;
  retired = false;
  released = false;

  constructor(seq: number, keys: ReadonlyMap<string, KeyEntry>) {
    this.seq = seq;
    this.keys = keys;
    const all = new Set<KeyMaterial>();
    for (const k of keys.values()) {
      if (k.master !== null) all.add(k.master);
      for (const v of k.versions) if (v.material !== null) all.add(v.material);
    }
    this.materials = all;
  }
}

/** What a lease needs from the manager. */
export interface ReaderContext {
  now(): number;
}

/** A version chosen for one operation, with its material. */
export interface UsableVersion {
  readonly key: KeyEntry;
  readonly version: VersionEntry;
  readonly material: KeyMaterial;
}

/** Holds the current snapshot and swaps it. */
export class SnapshotCell {
  #current: KeySnapshot;
  readonly #ctx: ReaderContext;
  /** Retired snapshots that still have readers (for stats and tests). */
  readonly #draining = new Set<KeySnapshot>();

  constructor(initial: KeySnapshot, ctx: ReaderContext) {
    this.#ctx = ctx;
    this.#current = initial;
    hold(initial);
  }

  get current(): KeySnapshot {
    return this.#current;
  }

  /** O(1), never waits. Release with `using` (or `[Symbol.dispose]()`). */
  acquire(): SnapshotLease {
    const s = this.#current;
    s.readers++;
    return new SnapshotLease(s, this, this.#ctx);
  }

  /** Publish `next`; the replaced snapshot is released once its readers are done. */
  swap(next: KeySnapshot): void {
    const old = this.#current;
    if (next === old) return;
    hold(next); // before the old one lets go: shared material never touches zero
    this.#current = next;
    old.retired = true;
    if (old.readers === 0) this.#release(old);
    else this.#draining.add(old);
  }

  /** Called by a lease. */
  leave(s: KeySnapshot): void {
    if (s.readers <= 0) throw new InternalError('snapshot reader count below zero');
    s.readers--;
    if (s.readers === 0 && s.retired) this.#release(s);
  }

  #release(s: KeySnapshot): void {
    if (s.released) return;
    s.released = true;
    this.#draining.delete(s);
    for (const m of s.materials) {
      m.holders--;
      if (m.holders === 0) m.destroy();
    }
  }

  /** Retired snapshots still held by readers. */
  get draining(): number {
    return this.#draining.size;
  }
}

function hold(s: KeySnapshot): void {
  for (const m of s.materials) m.holders++;
}

/**
 * A reader's hold on one snapshot. Everything read through it (entries,
 * versions, material) stays valid and unchanged until it is disposed.
 *
 * @example
 *   using lease = manager.acquire();
 *   const { version, material } = lease.outbound('orders', 'encrypt');
 *   // … encrypt with material.secret, write version into the ciphertext
 */
export class SnapshotLease implements Disposable {
  #snapshot: KeySnapshot | null;
  readonly #cell: SnapshotCell;
  readonly #ctx: ReaderContext;

  constructor(snapshot: KeySnapshot, cell: SnapshotCell, ctx: ReaderContext) {
    this.#snapshot = snapshot;
    this.#cell = cell;
    this.#ctx = ctx;
  }

  get snapshot(): KeySnapshot {
    if (this.#snapshot === null) throw new InternalError('snapshot lease used after it was released');
    return this.#snapshot;
  }

  /** A key usable for data operations: it exists and is not disabled. */
  key(name: string): KeyEntry {
    const k = this.snapshot.keys.get(name);
    if (k === undefined) throw new NotFoundError(`no managed key named '${name}'`, { detail: { key: name } });
    if (k.disabled) throw new KeyDisabledError(`key '${name}' is disabled`, { detail: { key: name } });
    if (k.damaged !== null) throw damagedError(name, null, k.damaged);
    return k;
  }

  /**
   * The current version for one outbound operation. For AES-GCM `encrypt`
   * this also takes one invocation from the version's budget (budget.ts).
   */
  outbound(name: string, op: OutboundOp): UsableVersion {
    const key = this.#keyFor(name, op);
    const now = this.#ctx.now();
    const v = selectOutbound(name, key.versions, key.policy, now) as VersionEntry;
    if (op === 'encrypt' && v.budget !== null) {
      const r = v.budget.take(now);
      if (r === 'exhausted') {
        throw refusal(
          name, v.version, 'exhausted',
          `version ${v.version} of key '${name}' has reached its limit of ${v.budget.options.limit} encryptions ` +
            `(${key.type === 'aes256-gcm' ? 'the AES-GCM random-nonce bound of NIST SP 800-38D §8.3' : 'the random 96-bit nonce bound, as for AES-GCM,'} is 2^32); rotate the key`,
        );
      }
      if (r === 'empty') {
        throw new BusyError(`the encryption budget of version ${v.version} of key '${name}' is being renewed; retry`, {
          detail: { key: name, version: v.version },
        });
      }
    }
    return usable(key, v);
  }

  /** Version `version` (named by the data) for one inbound operation. */
  inbound(name: string, version: number, op: InboundOp): UsableVersion {
    const key = this.#keyFor(name, op);
    const now = this.#ctx.now();
    if (key.derived !== null && findVersion(key.versions, version) === undefined) {
      // An epoch not held: say why from its computed window.
      const info = Number.isSafeInteger(version) && version >= 0 ? [epochVersion(key.derived, version)] : [];
      selectInbound(name, info, key.policy, version, now);
      throw refusal(name, version, 'unknown', `version ${version} of key '${name}' is not held`);
    }
    return usable(key, selectInbound(name, key.versions, key.policy, version, now) as VersionEntry);
  }

  #keyFor(name: string, op: OutboundOp | InboundOp): KeyEntry {
    const key = this.key(name);
    if (!typeAllows(key.type, op)) {
      throw new InvalidKeyError(`key '${name}' (${key.type}) cannot be used to ${op}; it allows ${keyTypeInfo(key.type).ops.join(', ')}`, {
        detail: { key: name, op },
      });
    }
    return key;
  }

  [Symbol.dispose](): void {
    const s = this.#snapshot;
    if (s === null) return;
    this.#snapshot = null;
    this.#cell.leave(s);
  }
}

/** CRYPTOD_ERR_KEY_DAMAGED for `version` of `key` (null: a derived key's master secret). */
export function damagedError(key: string, version: number | null, why: string): CryptodError {
  const what = version === null ? `the master secret of key '${key}'` : `version ${version} of key '${key}'`;
  return new KeyDamagedError(`${what} is damaged: ${why}`, { detail: { key, version } });
}

function usable(key: KeyEntry, v: VersionEntry): UsableVersion {
  if (v.damaged !== null) throw damagedError(key.name, v.version, v.damaged);
  if (v.material === null || v.material.destroyed) {
    // Selection and the material kept in memory follow the same rules (selection.ts stillUsable).
    throw new InternalError(`version ${v.version} of key '${key.name}' passed selection but holds no material`);
  }
  return { key, version: v, material: v.material };
}
