/**
 * Building a snapshot's KeyEntry from keystore records, and bringing an entry
 * up to date with the clock.
 *
 * Material is reused from the entry being replaced whenever the same version
 * is still held (a version's material never changes: rewrap re-encrypts the
 * same bytes under another KEK), so a reload unwraps only what is new, and
 * material that stays in use is never copied or zeroed.
 *
 * Which versions hold material: those that can still serve something
 * (selection.ts `stillUsable`): active or decrypt-only, not below the
 * minimum decryption version, not past notAfter + grace. Disabled keys hold
 * none. Everything else keeps only its metadata, for describe and for
 * precise refusals.
 */
import type { KekProvider } from '../kek/provider.js';
import type { TokenKeys } from '../kek/token-keys.js';
import { DataError, DecryptError } from '../protocol/errors.js';
import type { KeyVersionRecord, ManagedKeyRecord } from '../store/keystore.js';
import { InvocationBudget, type BudgetOptions } from './budget.js';
import { decodeRecord } from './definition.js';
import { deriveEpochKey, EPOCH_MASTER_BYTES, epochsHeld, epochVersion } from './epoch.js';
import { KeyMaterial, unwrapMaterial, unwrapSecret, unwrapTokenMaterial } from './material.js';
import { keyTypeInfo } from './model.js';
import { stillUsable } from './selection.js';
import type { KeyEntry, VersionEntry } from './snapshot.js';

/** The version of a derived key's record that holds its wrapped master secret. */
export const MASTER_VERSION = 1;

/** Material this process just generated for a version it wrote, and what it reserved for it. */
export interface FreshVersion {
  material: KeyMaterial;
  /** Encryptions reserved in the creating transaction (AES-GCM), else 0. */
  granted: number;
}

export interface BuildContext {
  kek: KekProvider;
  /** Token-held keys (`provider:`): their stored blobs are references, resolved here. */
  tokens: TokenKeys | undefined;
  now: number;
  budget: BudgetOptions;
  onBudgetLow(b: InvocationBudget): void;
  /** The keystore's location, named in damage reports. */
  storeFile: string;
  /** A version (or a derived key's master, MASTER_VERSION) whose material did not load; called once per newly damaged version. */
  onDamaged(key: string, version: number, reason: string): void;
}

/**
 * Unwrap, or the reason it failed when the stored bytes are at fault (not
 * authentic under this KEK and this key's AAD, or malformed after unwrap):
 * one damaged blob then marks its version instead of refusing every key.
 */
async function loadOrDamage<T>(ctx: BuildContext, load: () => Promise<T>): Promise<{ value: T } | { damaged: string }> {
  try {
    return { value: await load() };
  } catch (err) {
    if (!(err instanceof DecryptError) && !(err instanceof DataError)) throw err;
    const why = err instanceof DecryptError ? 'its wrapped material in the keystore does not unwrap (altered bytes, or wrapped by another KEK)' : (err as Error).message;
    return { damaged: `${why} [${ctx.storeFile}]; restore the keystore from a backup or destroy the version; \`cryptod keystore check\` lists all damage` };
  }
}

export interface BuiltEntry {
  entry: KeyEntry;
  /** New budgets that still need their first reservation. */
  reserve: InvocationBudget[];
  /** Material created by this build (to be destroyed if the build is abandoned). */
  created: KeyMaterial[];
}

export async function buildEntry(
  ctx: BuildContext,
  record: ManagedKeyRecord,
  versions: readonly KeyVersionRecord[],
  prev: KeyEntry | undefined,
  fresh: ReadonlyMap<number, FreshVersion> = new Map(),
): Promise<BuiltEntry> {
  const created: KeyMaterial[] = [];
  try {
    const d = decodeRecord(record);
    const base = {
      name: record.name, type: d.type, policy: d.policy, origin: d.origin, disabled: record.disabled,
      createdAt: record.createdAt, updatedAt: record.updatedAt, derived: d.derived, provider: d.provider,
    };
    let keyDamaged: string | null = null;
    if (d.derived !== null) {
      let master: KeyMaterial | null = null;
      if (!record.disabled) {
        master = fresh.get(MASTER_VERSION)?.material ?? (prev?.master && !prev.master.destroyed ? prev.master : null);
        if (master === null) {
          const row = versions.find((v) => v.version === MASTER_VERSION);
          if (row?.wrapped == null) throw new DataError(`derived key '${record.name}' has no master secret in the keystore`, { detail: { key: record.name } });
          const r = await loadOrDamage(ctx, () => unwrapSecret(ctx.kek, record.name, MASTER_VERSION, row.wrapped!, EPOCH_MASTER_BYTES));
          if ('value' in r) {
            master = r.value;
            created.push(master);
          } else {
            keyDamaged = r.damaged;
            if (prev?.damaged == null) ctx.onDamaged(record.name, MASTER_VERSION, r.damaged);
          }
        }
      }
      const entry: KeyEntry = { ...base, master, damaged: keyDamaged, versions: [] };
      const derived = deriveVersions(entry, prev, ctx.now, created);
      return { entry: freeze({ ...entry, versions: derived }), reserve: [], created };
    }

    const info = keyTypeInfo(d.type);
    const reserve: InvocationBudget[] = [];
    const out: VersionEntry[] = [];
    const prevByVersion = new Map((prev?.versions ?? []).map((v) => [v.version, v]));
    for (const r of [...versions].sort((a, b) => a.version - b.version)) {
      const old = prevByVersion.get(r.version);
      let material: KeyMaterial | null = null;
      let damaged: string | null = null;
      if (!record.disabled && r.wrapped !== null && stillUsable(r, d.policy, ctx.now)) {
        material = fresh.get(r.version)?.material ?? (old?.material && !old.material.destroyed ? old.material : null);
        if (material === null) {
          const wrapped = r.wrapped;
          const provider = d.provider;
          const got = await loadOrDamage(ctx, () => provider === null
            ? unwrapMaterial(ctx.kek, d.type, record.name, r.version, wrapped)
            : unwrapTokenMaterial(ctx.kek, ctx.tokens, provider, record.name, r.version, wrapped));
          if ('value' in got) {
            material = got.value;
            created.push(material);
          } else {
            damaged = got.damaged;
            if (old?.damaged == null) ctx.onDamaged(record.name, r.version, damaged);
          }
        }
      }
      let budget: InvocationBudget | null = null;
      if (material !== null && info.invocationLimit !== null && r.state === 'active' && (r.notAfter === null || ctx.now < r.notAfter)) {
        budget = old?.budget ?? null;
        if (budget === null) {
          const f = fresh.get(r.version);
          budget = new InvocationBudget(record.name, r.version, f === undefined ? r.encryptions : 0, ctx.budget, ctx.onBudgetLow);
          if (f !== undefined && f.granted > 0) budget.grant(f.granted, f.granted);
          else reserve.push(budget);
        }
      }
      out.push(Object.freeze({
        version: r.version, state: r.state, createdAt: r.createdAt, notBefore: r.notBefore, notAfter: r.notAfter,
        encryptions: r.encryptions, material, budget, damaged,
      }));
    }
    return { entry: freeze({ ...base, master: null, damaged: null, versions: out }), reserve, created };
  } catch (err) {
    for (const m of created) m.destroy();
    throw err;
  }
}

/** The epochs a derived key holds at `now`, reusing what `prev` derived. */
function deriveVersions(entry: KeyEntry, prev: KeyEntry | undefined, now: number, created: KeyMaterial[]): VersionEntry[] {
  const s = entry.derived!;
  if (entry.master === null) return [];
  const length = keyTypeInfo(entry.type).secretBytes;
  return epochsHeld(s, entry.policy, now).map((n) => {
    const old = prev?.master === entry.master ? prev.versions.find((v) => v.version === n) : undefined;
    let material = old?.material && !old.material.destroyed ? old.material : null;
    if (material === null) {
      material = KeyMaterial.secret(deriveEpochKey(entry.master!.secret, entry.name, n, length));
      created.push(material);
    }
    const w = epochVersion(s, n);
    return Object.freeze({ ...w, createdAt: w.notBefore, encryptions: 0, material, budget: null, damaged: null });
  });
}

/**
 * `entry` as of `now` without touching the keystore: a derived key moves to
 * the epochs it should hold; a stored key drops material and budgets that
 * time has retired. Returns `entry` itself when nothing changes.
 */
export function refreshEntry(entry: KeyEntry, now: number): KeyEntry {
  if (entry.disabled) return entry;
  if (entry.derived !== null) {
    const held = entry.versions.map((v) => v.version).join(',');
    if (epochsHeld(entry.derived, entry.policy, now).join(',') === held) return entry;
    return freeze({ ...entry, versions: deriveVersions(entry, entry, now, []) });
  }
  let changed = false;
  const versions = entry.versions.map((v) => {
    const keep = v.material !== null && stillUsable(v, entry.policy, now);
    const budget = v.budget !== null && (v.notAfter === null || now < v.notAfter) ? v.budget : null;
    if (keep === (v.material !== null) && budget === v.budget) return v;
    changed = true;
    return Object.freeze({ ...v, material: keep ? v.material : null, budget });
  });
  return changed ? freeze({ ...entry, versions }) : entry;
}

function freeze(e: KeyEntry): KeyEntry {
  return Object.freeze({ ...e, versions: Object.freeze([...e.versions]) });
}
