/**
 * transit/keys/… and transit/export/…: managed-key administration through
 * KEY_LIST, KEY_DESCRIBE, KEY_PUBLIC, KEY_CREATE, KEY_SET_POLICY,
 * KEY_ROTATE, KEY_TRIM, KEY_DESTROY and KEY_EXPORT (docs/vault-compat.md).
 */
import type { CborValue } from '../protocol/cbor.js';
import { Op } from '../protocol/ops.js';
import { KEY_TYPES, type ManagedKeyDescription, type ManagedKeyType } from '../protocol/messages/managed.js';
import { CryptodError } from '../protocol/errors.js';
import { keyTypeInfo } from '../keys/model.js';
import { parseDuration } from '../keys/duration.js';
import type { Body, Caller } from './transit.js';
import { NO_CONTENT, VaultHttpError, badRequest, envelope, type VaultReply } from './vault-reply.js';
import { VAULT_TYPES, kindOf, optBool, optInt, optString, vaultTypeOf } from './vault-values.js';

export async function listKeys(call: Caller): Promise<VaultReply> {
  const r = (await call.run(Op.KEY_LIST, undefined)) as { keys: ManagedKeyDescription[] };
  const keys = r.keys.filter((k) => !deleted(k)).map((k) => k.name).sort();
  // Vault answers an empty list with 404; a list of nothing is still a list here (docs/vault-compat.md).
  return envelope({ keys });
}

export async function describe(call: Caller, name: string): Promise<ManagedKeyDescription> {
  const d = (await call.run(Op.KEY_DESCRIBE, { name })) as unknown as ManagedKeyDescription;
  if (deleted(d)) throw new VaultHttpError(404, `key '${name}' was deleted (cryptod keeps its name reserved, so it cannot be created again)`);
  return d;
}

/** KEY_DESTROY leaves a disabled tombstone with every version destroyed: to Vault clients the key is gone. */
function deleted(d: ManagedKeyDescription): boolean {
  return d.disabled && d.versions.every((v) => v.state === 'destroyed');
}

export async function readKey(call: Caller, name: string): Promise<Record<string, unknown>> {
  const d = await describe(call, name);
  const info = keyTypeInfo(d.type);
  const keys: Record<string, unknown> = {};
  const live = d.versions.filter((v) => v.state !== 'destroyed');
  for (const v of live) {
    const created = Math.floor(Date.parse(v.createdAt) / 1000);
    if (info.kind === 'secret') {
      keys[String(v.version)] = created;
    } else {
      const pub = (await call.run(Op.KEY_PUBLIC, { name, version: v.version })) as { spki: Buffer };
      keys[String(v.version)] = { name: vaultTypeOf(d.type), public_key: publicKeyText(d.type, pub.spki), creation_time: v.createdAt };
    }
  }
  const minAvailable = live.length === 0 ? 0 : Math.min(...live.map((v) => v.version));
  const rotation = d.policy.rotationPeriod;
  return {
    name: d.name,
    type: vaultTypeOf(d.type),
    keys,
    latest_version: d.currentVersion ?? 0,
    min_available_version: minAvailable,
    min_decryption_version: Math.max(1, d.policy.minDecryptionVersion),
    min_encryption_version: 0,
    deletion_allowed: !d.policy.deletionProtection,
    exportable: d.policy.exportable,
    allow_plaintext_backup: false,
    auto_rotate_period: rotation === null ? 0 : Math.floor(parseDuration(rotation, 'rotationPeriod') / 1000),
    derived: false,
    convergent_encryption: false,
    imported_key: false,
    supports_encryption: info.ops.includes('encrypt'),
    supports_decryption: info.ops.includes('decrypt'),
    supports_derivation: false,
    supports_signing: info.ops.includes('sign'),
    cryptod_type: d.type,
  };
}

function publicKeyText(type: ManagedKeyType, spki: Buffer): string {
  // Vault gives Ed25519 public keys as base64 of the 32 raw bytes, the others as PEM.
  if (type === 'ed25519') return spki.subarray(spki.length - 32).toString('base64');
  const b64 = spki.toString('base64').replace(/.{64}/g, '$&\n');
  return `-----BEGIN PUBLIC KEY-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END PUBLIC KEY-----\n`;
}

const SUPPORTED_TYPES = `${Object.keys(VAULT_TYPES).join(', ')} (and cryptod's own names: ${KEY_TYPES.join(', ')})`;

export async function createKey(call: Caller, name: string, body: Body): Promise<VaultReply> {
  const vaultType = optString(body, 'type') ?? 'aes256-gcm96';
  let type: ManagedKeyType | undefined = VAULT_TYPES[vaultType] ?? ((KEY_TYPES as readonly string[]).includes(vaultType) ? (vaultType as ManagedKeyType) : undefined);
  if (type === undefined) throw badRequest(`key type '${vaultType}' is not supported by cryptod; supported: ${SUPPORTED_TYPES}`);
  const size = optInt(body, 'key_size');
  if (type === 'hmac-sha256' && size !== undefined && size !== 32) {
    if (size === 64) type = 'hmac-sha512';
    else throw badRequest(`key_size ${size} is not supported for hmac keys: cryptod's HMAC keys are 32 bytes (HMAC-SHA-256) or 64 bytes (HMAC-SHA-512)`);
  } else if (size !== undefined && vaultType !== 'hmac') throw badRequest(`key_size applies to hmac keys only; a ${vaultType} key has a fixed size`);
  for (const f of ['derived', 'convergent_encryption', 'allow_plaintext_backup'] as const) {
    if (optBool(body, f) === true) throw badRequest(`${f} is not supported by cryptod (docs/vault-compat.md)`);
  }
  if (optString(body, 'managed_key_name') !== undefined || optString(body, 'managed_key_id') !== undefined) throw badRequest('managed_key keys are not supported by cryptod');
  const exportable = optBool(body, 'exportable') ?? false;
  const period = rotatePeriod(body);
  // The creating client gets every right on the new key; Vault-created keys keep Vault's default deletion_allowed=false.
  const rights = [...keyTypeInfo(type).ops, 'admin', ...(exportable ? ['export'] : [])];
  const definition: Record<string, CborValue> = { type, exportable, deletionProtection: true, clients: { [call.clientId]: rights } };
  if (period !== undefined && period !== null) definition.rotationPeriod = period;
  await call.run(Op.KEY_CREATE, { name, definition });
  return envelope(await readKey(call, name));
}

/** auto_rotate_period: seconds or a duration ("24h"); 0 turns rotation off (null); Vault's minimum is one hour. */
function rotatePeriod(body: Body): string | null | undefined {
  const v = body.auto_rotate_period;
  if (v === undefined || v === null || v === '') return undefined;
  if (v === 0 || v === '0' || v === '0s') return null;
  let ms: number;
  try {
    ms = typeof v === 'number' ? v * 1000 : /^[0-9]+$/.test(String(v)) ? Number(v) * 1000 : parseDuration(v, 'auto_rotate_period');
  } catch (err) {
    throw badRequest(`'auto_rotate_period' must be seconds or a duration such as 24h or 30d, got ${kindOf(v)}${err instanceof CryptodError ? ` (${err.message})` : ''}`);
  }
  if (!Number.isSafeInteger(ms) || ms < 3_600_000) throw badRequest(`'auto_rotate_period' must be 0 (off) or at least one hour, got ${kindOf(v)}`);
  return `${Math.floor(ms / 1000)}s`;
}

export async function configKey(call: Caller, name: string, body: Body): Promise<VaultReply> {
  const policy: Record<string, CborValue> = {};
  const minDecrypt = optInt(body, 'min_decryption_version');
  if (minDecrypt !== undefined) policy.minDecryptionVersion = minDecrypt;
  const minEncrypt = optInt(body, 'min_encryption_version');
  if (minEncrypt !== undefined && minEncrypt !== 0) {
    const d = await describe(call, name);
    if (minEncrypt !== d.currentVersion) {
      throw badRequest(`min_encryption_version ${minEncrypt} is not supported: cryptod always encrypts with the latest version (${d.currentVersion ?? 'none'}); give 0 or the latest version`);
    }
  }
  const deletion = optBool(body, 'deletion_allowed');
  if (deletion !== undefined) policy.deletionProtection = !deletion;
  const exportable = optBool(body, 'exportable');
  if (exportable !== undefined) policy.exportable = exportable;
  const period = rotatePeriod(body);
  if (period !== undefined) policy.rotationPeriod = period;
  if (optBool(body, 'allow_plaintext_backup') === true) throw badRequest('allow_plaintext_backup is not supported by cryptod (no per-key backup)');
  if (Object.keys(policy).length > 0) await call.run(Op.KEY_SET_POLICY, { name, policy });
  return envelope(await readKey(call, name));
}

export async function rotateKey(call: Caller, name: string): Promise<VaultReply> {
  await call.run(Op.KEY_ROTATE, { name });
  return envelope(await readKey(call, name));
}

export async function trimKey(call: Caller, name: string, body: Body): Promise<VaultReply> {
  const below = optInt(body, 'min_available_version');
  if (below === undefined || below < 1) throw badRequest("missing 'min_available_version': the oldest version to keep (versions below it are destroyed)");
  await call.run(Op.KEY_TRIM, { name, below });
  return envelope(await readKey(call, name));
}

export async function deleteKey(call: Caller, name: string): Promise<VaultReply> {
  try {
    await call.run(Op.KEY_DESTROY, { name });
  } catch (err) {
    if (err instanceof CryptodError && err.code === 'CRYPTOD_ERR_FORBIDDEN' && err.detail?.op === 'destroy') {
      throw badRequest(`deletion is not allowed for key '${name}': set deletion_allowed=true with transit/keys/${name}/config first`);
    }
    throw err;
  }
  return NO_CONTENT;
}

const EXPORT_TYPES = ['encryption-key', 'signing-key', 'hmac-key', 'public-key'] as const;

export async function exportKey(call: Caller, exportType: string, name: string, version: string | undefined): Promise<VaultReply> {
  if (!(EXPORT_TYPES as readonly string[]).includes(exportType)) throw badRequest(`export type '${exportType}' is not supported; use ${EXPORT_TYPES.join(', ')}`);
  const d = await describe(call, name);
  const info = keyTypeInfo(d.type);
  const fits = exportType === 'encryption-key' ? info.ops.includes('encrypt') : exportType === 'hmac-key' ? info.ops.includes('mac') : info.kind === 'asymmetric';
  if (!fits) throw badRequest(`a ${vaultTypeOf(d.type)} key cannot be exported as ${exportType} by cryptod`);
  let versions: number[];
  if (version === undefined) versions = d.versions.filter((v) => v.state !== 'destroyed').map((v) => v.version);
  else if (version === 'latest') versions = d.currentVersion === null ? [] : [d.currentVersion];
  else if (/^[1-9][0-9]*$/.test(version)) versions = [Number(version)];
  else throw badRequest(`version '${version}' must be a number or latest`);
  const keys: Record<string, string> = {};
  for (const v of versions) {
    if (exportType === 'public-key') {
      const pub = (await call.run(Op.KEY_PUBLIC, { name, version: v })) as { spki: Buffer };
      keys[String(v)] = publicKeyText(d.type, pub.spki);
      continue;
    }
    const r = (await call.run(Op.KEY_EXPORT, { name, version: v })) as { material: Buffer; format: string };
    // JavaScript cannot wipe the string made here (README "What JavaScript cannot promise"); the buffer is zeroed.
    keys[String(v)] = r.format === 'raw' ? r.material.toString('base64') : pem('PRIVATE KEY', r.material);
    r.material.fill(0);
  }
  return envelope({ name, type: vaultTypeOf(d.type), keys });
}

function pem(label: string, der: Buffer): string {
  const b64 = der.toString('base64').replace(/.{64}/g, '$&\n');
  return `-----BEGIN ${label}-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END ${label}-----\n`;
}

