/**
 * The key manager's keystore writes, each run inside one transaction by
 * management.ts. Material is generated and wrapped before the transaction starts
 * (the transaction holds the store's write lock for every process); checks
 * that depend on stored state run inside it, against what it reads.
 */
import type { KeystoreTx, KeyVersionRecord, ManagedKeyRecord } from '../store/keystore.js';
import { decodeRecord, sameSpec, storedPolicy, type DecodedRecord, type KeyOrigin, type ParsedDefinition } from './definition.js';
import { formatDuration } from './duration.js';
import { epochAt } from './epoch.js';
import { iso } from './model.js';
import { checkTransition, type KeyPolicy, type PolicyIssue, type PolicySpec } from './policy.js';
import { KeyDisabledError, InvalidArgumentError } from '../protocol/errors.js';
import { planManual, planPolicyChange, planScheduled, type RotationPlan, type Window } from './rotation.js';
import { selectOutbound } from './selection.js';

/** A new key's first version, prepared outside the transaction. */
export interface PreparedVersion {
  blob: Buffer;
  kekId: string;
  /** Encryptions reserved at creation (AES-GCM), else 0. */
  granted: number;
  window: Window;
}

export interface ConfigChanges {
  created: string[];
  updated: string[];
  enabled: string[];
  disabled: string[];
  unchanged: string[];
}

interface NewSettings {
  type: ParsedDefinition['type'];
  policy: KeyPolicy;
  derived: { epochStart: number } | null;
  /** Compared when given (a definition); a policy change leaves it out. */
  provider?: string | null;
}

/**
 * Problems with changing key `name` from `old` to `next`: what cannot change
 * at all (type, derivation, epoch length), what is irreversible (exportable),
 * and a minimum decryption version that would strand data encrypted now.
 */
export function changeIssues(name: string, old: DecodedRecord, next: NewSettings, versions: readonly KeyVersionRecord[], now: number): PolicyIssue[] {
  const issues: PolicyIssue[] = checkTransition(old.policy, next.policy, old.neverExportable).map((i) => ({ ...i, key: name }));
  const add = (field: string, message: string): void => void issues.push({ key: name, field, message });
  if (old.type !== next.type) add('type', `the type of an existing key cannot change (it is ${old.type}, got ${next.type}); create a new key`);
  if (old.provider !== null && next.policy.exportable) {
    add('exportable', `key '${name}' is held in the token of '${old.provider}' and never leaves it; it cannot be made exportable`);
  }
  if (next.provider !== undefined && next.provider !== old.provider) {
    add('provider', `where an existing key's versions are held cannot change (${old.provider === null ? 'cryptod' : `the token of '${old.provider}'`}, got ${next.provider === null ? 'cryptod' : `'${next.provider}'`}): token keys never leave the token; create a new key`);
  }
  const oldStart = old.derived?.epochStart ?? null;
  const newStart = next.derived?.epochStart ?? null;
  if (oldStart !== newStart) {
    add('derived', oldStart === null
      ? 'an existing stored key cannot become a derived epoch key; create a new key'
      : newStart === null
        ? 'a derived epoch key cannot become a stored key; create a new key'
        : `the epoch start of a derived key cannot change (it is ${iso(oldStart)}): every epoch's key would change`);
  } else if (old.derived !== null && next.policy.rotationPeriod !== old.derived.period) {
    add('rotationPeriod', `the epoch length (rotationPeriod) of a derived key cannot change (it is ${formatDuration(old.derived.period)}): every epoch's key would change`);
  }
  if (old.derived !== null && next.policy.gracePeriod === null) {
    add('gracePeriod', 'a derived epoch key needs gracePeriod: past epochs are held in memory only that long');
  }
  const min = next.policy.minDecryptionVersion;
  if (min > 0) {
    let current: number | null = null;
    if (old.derived !== null) current = epochAt(old.derived, now);
    else {
      try {
        current = selectOutbound(name, versions, { minDecryptionVersion: 0 }, now).version;
      } catch {
        current = versions.reduce((m, v) => Math.max(m, v.version), 0);
      }
    }
    if (min > current) {
      add('minDecryptionVersion', `minDecryptionVersion ${min} is above the current version ${current} of key '${name}': data encrypted now could not be decrypted`);
    }
  }
  return issues;
}

export async function writeNewKey(
  tx: KeystoreTx, name: string, def: NewSettings & { spec: PolicySpec }, origin: KeyOrigin, prepared: PreparedVersion, now: number,
  neverExportable = false,
): Promise<void> {
  await tx.putKey({ name, type: def.type, policy: storedPolicy(def.spec, origin, def.derived, neverExportable, def.provider ?? null), createdAt: now, updatedAt: now, disabled: false });
  await tx.putVersion({
    name, version: 1, state: 'active', createdAt: now, notBefore: prepared.window.notBefore, notAfter: prepared.window.notAfter,
    wrapped: prepared.blob, kekId: prepared.kekId, encryptions: prepared.granted,
  });
}

/** Store a new policy and the window changes it implies (rotation.ts planPolicyChange). */
export async function writePolicy(
  tx: KeystoreTx, record: ManagedKeyRecord, old: DecodedRecord, spec: PolicySpec, policy: KeyPolicy, origin: KeyOrigin,
  versions: readonly KeyVersionRecord[], now: number, disabled = record.disabled,
): Promise<void> {
  const derived = old.derived === null ? null : { epochStart: old.derived.epochStart };
  await tx.putKey({ ...record, policy: storedPolicy(spec, origin, derived, old.neverExportable, old.provider), updatedAt: now, disabled });
  if (old.derived !== null) return;
  for (const c of planPolicyChange(versions, policy, now)) {
    const v = versions.find((x) => x.version === c.version);
    if (v !== undefined) await tx.putVersion({ ...v, notAfter: c.notAfter });
  }
}

/**
 * Plans a rotation from what the keystore holds, for KeyManagement's
 * `addVersion` (management.ts), which calls it once before and once inside the transaction
 * (rotation.ts). Null: nothing to do (typically: another process did it).
 */
export type Planner = (versions: readonly KeyVersionRecord[], record: ManagedKeyRecord, now: number) => RotationPlan | null;

/** `rotate`: always a new version, for a stored key that is not disabled. */
export function manualPlanner(name: string): Planner {
  return (versions, record, now) => {
    if (record.disabled) throw new KeyDisabledError(`key '${name}' is disabled; it cannot be rotated`, { detail: { key: name } });
    const d = decodeRecord(record);
    if (d.derived !== null) {
      throw new InvalidArgumentError(`key '${name}' is a derived epoch key: its version changes every epoch and cannot be rotated by hand`, {
        detail: { key: name },
      });
    }
    return planManual(versions, d.policy, now);
  };
}

/** Timer: the successor in the chain, once due. */
export const scheduledPlanner: Planner = (versions, record, now) => {
  if (record.disabled) return null;
  const d = decodeRecord(record);
  if (d.derived !== null) return null;
  const s = planScheduled(versions, d.policy, now);
  return s !== null && s.due <= now ? s.plan : null;
};

/** Encryption threshold: rotate now, but only if `version` is still the current one. */
export function thresholdPlanner(name: string, version: number): Planner {
  return (versions, record, now) => {
    if (record.disabled) return null;
    const d = decodeRecord(record);
    try {
      if (selectOutbound(name, versions, d.policy, now).version !== version) return null;
    } catch {
      return null;
    }
    return planManual(versions, d.policy, now);
  };
}

/** Apply a rotation plan: cut, demote, then add the new version. */
export async function writeRotation(
  tx: KeystoreTx, name: string, plan: RotationPlan, versions: readonly KeyVersionRecord[], blob: Buffer, kekId: string, granted: number, now: number,
): Promise<void> {
  for (const t of plan.truncate) {
    const v = versions.find((x) => x.version === t.version);
    if (v !== undefined) await tx.putVersion({ ...v, notAfter: t.notAfter });
  }
  for (const d of plan.demote) await tx.setVersionState(name, d, 'decrypt-only');
  await tx.putVersion({
    name, version: plan.version, state: 'active', createdAt: now, notBefore: plan.window.notBefore, notAfter: plan.window.notAfter,
    wrapped: blob, kekId, encryptions: granted,
  });
}

/**
 * Make the keystore match a declarative set of keys (design note 4, "Update
 * AS List"): create what is new, apply changed policies, re-enable what is
 * declared again, disable config-declared keys no longer declared (never
 * destroy: data encrypted under them may come back). All or nothing: any
 * issue throws from inside the transaction, which rolls it back.
 */
export async function applyDefinitions(
  tx: KeystoreTx, defs: ReadonlyMap<string, ParsedDefinition>, prepared: ReadonlyMap<string, PreparedVersion>, now: number,
): Promise<{ changes: ConfigChanges; issues: PolicyIssue[]; missing: string[] }> {
  const changes: ConfigChanges = { created: [], updated: [], enabled: [], disabled: [], unchanged: [] };
  const issues: PolicyIssue[] = [];
  const missing: string[] = [];
  const existing = new Map((await tx.listKeys()).map((r) => [r.name, r]));
  for (const [name, def] of defs) {
    const record = existing.get(name);
    if (record === undefined) {
      const p = prepared.get(name);
      if (p === undefined) missing.push(name);
      else {
        await writeNewKey(tx, name, def, 'config', p, now);
        changes.created.push(name);
      }
      continue;
    }
    let old: DecodedRecord;
    try {
      old = decodeRecord(record);
    } catch (err) {
      issues.push({ key: name, field: 'type', message: (err as Error).message });
      continue;
    }
    const versions = await tx.getVersions(name);
    const found = changeIssues(name, old, def, versions, now);
    if (found.length > 0) {
      issues.push(...found);
      continue;
    }
    const changed = !sameSpec(old.spec, def.spec) || old.origin !== 'config';
    if (!changed && !record.disabled) {
      changes.unchanged.push(name);
      continue;
    }
    await writePolicy(tx, record, old, def.spec, def.policy, 'config', versions, now, false);
    (record.disabled ? changes.enabled : changes.updated).push(name);
  }
  for (const record of existing.values()) {
    if (defs.has(record.name) || record.disabled) continue;
    let origin: KeyOrigin;
    try {
      origin = decodeRecord(record).origin;
    } catch {
      continue; // unreadable records are not ours to change
    }
    if (origin !== 'config') continue;
    await tx.putKey({ ...record, disabled: true, updatedAt: now });
    changes.disabled.push(record.name);
  }
  return { changes, issues, missing };
}
