/**
 * The keystore side of key backups: every version of one key read out of
 * this daemon's keystore (unwrapped under its KEK) and written into another
 * one (wrapped under that daemon's KEK). What travels between the two, and
 * how it is protected, is backup.ts; this file never sees a backup file.
 *
 *   sender:   keystore ─▶ kek.unwrap(blob, aad(name, v)) ─▶ TransferKey ─▶ backup.ts seal ─▶ zeroed
 *   receiver: backup.ts open ─▶ TransferKey ─▶ check ─▶ kek.wrap(bytes, aad(name, v)) ─▶ one transaction
 *
 * The record's policy travels as stored (spec, derived schedule,
 * neverExportable), so a restored key keeps every promise made about it; its
 * origin becomes `api`: the receiver's configuration did not declare it,
 * and a reload there must not disable it. Encryption counts travel too: the
 * AES-GCM invocation budget (model.ts) is a property of the key bytes, not
 * of the daemon that holds them.
 */
import { keyVersionAad, type KekProvider } from '../kek/provider.js';
import { DataError, InvalidArgumentError, NotExtractableError, NotFoundError } from '../protocol/errors.js';
import type { Keystore, KeyVersionRecord, KeyVersionState } from '../store/keystore.js';
import { assertNewKeyName, decodeRecord } from './definition.js';
import { EPOCH_MASTER_BYTES } from './epoch.js';
import { materialFromBytes, wrapMaterial } from './material.js';
import type { ManagedKeyType } from './model.js';
import { readBack, type StoredKey } from './refresher.js';

/** One version as it travels; `material` is null exactly for destroyed versions. */
export interface TransferVersion {
  version: number;
  state: KeyVersionState;
  createdAt: number;
  notBefore: number;
  notAfter: number | null;
  encryptions: number;
  /** Plaintext key bytes (raw secret, PKCS#8 DER, or a derived key's master): owned by the holder, zeroed by `zeroTransfer`. */
  material: Buffer | null;
}

/** A whole key as it travels between two daemons. */
export interface TransferKey {
  name: string;
  type: ManagedKeyType;
  /** The keystore record's policy as stored (definition.ts storedPolicy). */
  policy: Record<string, unknown>;
  createdAt: number;
  disabled: boolean;
  versions: TransferVersion[];
}

/** Zero every version's material. Idempotent. */
export function zeroTransfer(k: TransferKey): void {
  for (const v of k.versions) v.material?.fill(0);
}

/**
 * Read key `name` with every version's plaintext, for a backup. Refused
 * (NOT_EXTRACTABLE) unless the key's policy has `allowBackup: true`.
 */
export async function readForTransfer(store: Keystore, kek: KekProvider, name: string): Promise<TransferKey> {
  const { record, versions } = await store.read(async (r) => ({ record: await r.getKey(name), versions: await r.getVersions(name) }));
  if (record === undefined) throw new NotFoundError(`no managed key named '${name}'`, { detail: { key: name } });
  const d = decodeRecord(record);
  if (!d.policy.allowBackup) {
    throw new NotExtractableError(`key '${name}' may not be backed up (its policy has allowBackup: false; an administrator may set it with \`cryptod key set-policy ${name} --allow-backup\`)`, {
      detail: { key: name, field: 'allowBackup' },
    });
  }
  const out: TransferKey = { name, type: d.type, policy: structuredClone(record.policy), createdAt: record.createdAt, disabled: record.disabled, versions: [] };
  try {
    for (const v of versions) {
      let material: Buffer | null = null;
      if (v.wrapped !== null) {
        const plain = await kek.unwrap(v.wrapped, keyVersionAad(name, v.version));
        material = Buffer.alloc(plain.length);
        plain.copy(material);
        plain.fill(0);
      }
      out.versions.push({ version: v.version, state: v.state, createdAt: v.createdAt, notBefore: v.notBefore, notAfter: v.notAfter, encryptions: v.encryptions, material });
    }
  } catch (err) {
    zeroTransfer(out);
    throw err;
  }
  return out;
}

/**
 * Write `k` into the keystore under this daemon's KEK, in one transaction.
 * An existing key of that name is refused unless `force`; forced, the key
 * record is replaced, every version of the backup is written, and stored
 * versions the backup lacks are destroyed, so the key becomes the backup's.
 * The caller keeps (and zeroes) `k`. Resolves to whether a key was replaced.
 */
export async function writeTransfer(store: Keystore, kek: KekProvider, k: TransferKey, force: boolean, now: number): Promise<{ replaced: boolean; stored: StoredKey[] }> {
  const { name } = k;
  assertNewKeyName(name);
  const record = { name, type: k.type, policy: { ...k.policy, origin: 'api' }, createdAt: k.createdAt, updatedAt: now, disabled: k.disabled };
  const d = decodeRecord(record);
  const rows: KeyVersionRecord[] = [];
  for (const v of k.versions) {
    if ((v.material === null) !== (v.state === 'destroyed')) {
      throw new DataError(`version ${v.version} of key '${name}' in the backup is ${v.state} but ${v.material === null ? 'has no' : 'has'} material`, { detail: { key: name, version: v.version } });
    }
    let wrapped: Buffer | null = null;
    if (v.material !== null) {
      checkMaterial(name, d.type, d.derived !== null, v.version, v.material);
      wrapped = await wrapMaterial(kek, name, v.version, v.material);
    }
    rows.push({ name, version: v.version, state: v.state, createdAt: v.createdAt, notBefore: v.notBefore, notAfter: v.notAfter, wrapped, kekId: kek.id, encryptions: v.encryptions });
  }
  return store.transaction(async (tx) => {
    const existing = await tx.getKey(name);
    if (existing !== undefined && !force) {
      throw new InvalidArgumentError(`a managed key named '${name}' already exists; restore with --force (restore({ force: true })) to replace it with the backup`, {
        detail: { key: name, field: 'force' },
      });
    }
    const stored = existing === undefined ? [] : await tx.getVersions(name);
    for (const r of rows) {
      const s = stored.find((x) => x.version === r.version);
      if (s?.state === 'destroyed' && r.state !== 'destroyed') {
        throw new InvalidArgumentError(`version ${r.version} of key '${name}' is destroyed here and cannot come back; restore under another daemon or destroy nothing`, {
          detail: { key: name, version: r.version },
        });
      }
    }
    await tx.putKey(record);
    for (const s of stored) if (!rows.some((r) => r.version === s.version)) await tx.destroyVersionMaterial(name, s.version);
    for (const r of rows) {
      // A destroyed version is written too: its number stays taken, so no
      // later rotation can reuse it.
      if (r.state === 'destroyed' && stored.some((s) => s.version === r.version)) await tx.destroyVersionMaterial(name, r.version);
      else await tx.putVersion(r);
    }
    return { replaced: existing !== undefined, stored: await readBack(tx, [name]) };
  });
}

/** The bytes of a version must load as what the record says it is (checked before anything is written). */
function checkMaterial(name: string, type: ManagedKeyType, derived: boolean, version: number, bytes: Buffer): void {
  if (derived) {
    if (bytes.length !== EPOCH_MASTER_BYTES) throw new DataError(`expected a ${EPOCH_MASTER_BYTES}-byte master secret for derived key '${name}', got ${bytes.length} bytes`);
    return;
  }
  const copy = Buffer.alloc(bytes.length);
  bytes.copy(copy);
  try {
    materialFromBytes(type, copy).destroy();
  } catch (err) {
    copy.fill(0);
    throw new DataError(`version ${version} of key '${name}' in the backup is not ${type} material`, { cause: err, detail: { key: name, version } });
  }
}
