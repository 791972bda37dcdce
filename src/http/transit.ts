/**
 * Vault's transit secrets engine (https://developer.hashicorp.com/vault/api-docs/secret/transit),
 * each endpoint mapped onto the managed-key operations (docs/vault-compat.md
 * has the table). Nothing here does cryptography with a key: every request
 * becomes one operation (or one per key version, for a key's public keys)
 * run through the daemon's chain by `call`.
 *
 *   keys            LIST/GET ?list ─▶ KEY_LIST      POST ─▶ KEY_CREATE
 *   keys/:name      GET ─▶ KEY_DESCRIBE (+ KEY_PUBLIC)   DELETE ─▶ KEY_DESTROY
 *     …/config ─▶ KEY_SET_POLICY   …/rotate ─▶ KEY_ROTATE   …/trim ─▶ KEY_TRIM
 *   encrypt decrypt rewrap ─▶ MANAGED_ENCRYPT / _DECRYPT / _REWRAP (batch: items)
 *   sign verify hmac ─▶ MANAGED_SIGN / _VERIFY / _MAC / _VERIFY_MAC
 *   hash ─▶ DIGEST   random (no key)   export ─▶ KEY_EXPORT / KEY_PUBLIC
 *
 * Ciphertexts are `vault:v<N>:` + base64 of cryptod's managed ciphertext
 * (docs/formats.md), which names key and version itself. Signatures and
 * MACs are `vault:v<N>:` + the bare signature or tag, as Vault gives them,
 * so outside verifiers can check them with the public key; cryptod's header
 * is rebuilt from the key's type and N to verify.
 */
import { randomBytes } from 'node:crypto';
import type { CborValue } from '../protocol/cbor.js';
import { Op, type OpCode } from '../protocol/ops.js';
import { encodeHeader, parseHeader } from '../protocol/managed-format.js';
import { KEY_TYPES, type ManagedKeyDescription, type ManagedKeyType } from '../protocol/messages/managed.js';
import { keyTypeInfo } from '../keys/model.js';
import { parseDuration } from '../keys/duration.js';
import { CryptodError } from '../protocol/errors.js';
import { NO_CONTENT, VaultHttpError, badRequest, envelope, messageOf, statusOf, type VaultReply } from './vault-reply.js';
import {
  HASHES, VAULT_TYPES, derToP1363, fromBase64, hashOfType, kindOf, optBool, optInt, optString, p1363ToDer, parseVaultValue, reqString, vaultTypeOf, vaultValue,
} from './vault-values.js';

/** Runs one operation as the authenticated client (src/ops/front-door.ts `run`). */
export interface Caller {
  readonly clientId: string;
  run(op: OpCode, args: CborValue): Promise<CborValue>;
  /** Key types seen lately, by name (KeyTypes): sign, verify and hmac need the type before the operation. */
  readonly types: KeyTypes;
}

/**
 * Key types by name, remembered for a second: a key's type never changes,
 * but its name may come back as another key after a configuration reload
 * removed it. A remembered type only shapes the request (which hash, how
 * to rebuild the header): the operation still authorizes the key itself.
 */
export class KeyTypes {
  readonly #types = new Map<string, { type: ManagedKeyType; until: number }>();

  get(name: string): ManagedKeyType | undefined {
    const e = this.#types.get(name);
    return e !== undefined && e.until > Date.now() ? e.type : undefined;
  }

  set(name: string, type: ManagedKeyType): void {
    if (this.#types.size >= 4096) this.#types.clear();
    this.#types.set(name, { type, until: Date.now() + 1000 });
  }
}

export interface TransitRequest {
  /** GET, POST, PUT, DELETE, or LIST (also GET with ?list=true). */
  readonly method: string;
  /** Path segments after the mount: ['keys', 'orders', 'rotate']. */
  readonly path: readonly string[];
  readonly body: Record<string, unknown>;
}

type Body = Record<string, unknown>;

/** Endpoints served, for the 404 that names them. */
const ENDPOINTS = 'keys, keys/:name, keys/:name/config, keys/:name/rotate, keys/:name/trim, encrypt/:name, decrypt/:name, rewrap/:name, sign/:name, verify/:name, hmac/:name, hash, random, export/:type/:name';

export async function transit(call: Caller, req: TransitRequest): Promise<VaultReply> {
  const [head, name, sub, extra] = req.path;
  const m = req.method;
  switch (head) {
    case 'keys':
      if (name === undefined) {
        if (m === 'LIST') return listKeys(call);
        throw methodNotAllowed(m, 'transit/keys', ['LIST']);
      }
      if (sub === undefined) {
        if (m === 'GET') return envelope(await readKey(call, name));
        if (m === 'POST' || m === 'PUT') return createKey(call, name, req.body);
        if (m === 'DELETE') return deleteKey(call, name);
        throw methodNotAllowed(m, `transit/keys/${name}`, ['GET', 'POST', 'DELETE']);
      }
      if (extra !== undefined) break;
      if (m !== 'POST' && m !== 'PUT') throw methodNotAllowed(m, `transit/keys/${name}/${sub}`, ['POST']);
      if (sub === 'config') return configKey(call, name, req.body);
      if (sub === 'rotate') return rotateKey(call, name);
      if (sub === 'trim') return trimKey(call, name, req.body);
      if (sub === 'import' || sub === 'import_version') throw badRequest(`transit/keys/${name}/${sub} is not supported: cryptod imports keys with \`cryptod key import\` (KEY_IMPORT), not Vault's wrapped import`);
      break;
    case 'encrypt':
    case 'decrypt':
    case 'rewrap':
    case 'sign':
    case 'verify':
    case 'hmac':
      if (name === undefined) break;
      if (m !== 'POST' && m !== 'PUT') throw methodNotAllowed(m, `transit/${head}/${name}`, ['POST']);
      if (head === 'sign' || head === 'verify' || head === 'hmac') {
        if (extra !== undefined) break;
        if (sub !== undefined) req.body[head === 'hmac' ? 'algorithm' : 'hash_algorithm'] ??= sub; // sign/:name/:hash_algorithm
      } else if (sub !== undefined) break;
      return dataOperation(call, head, name, req.body);
    case 'hash':
      if (m !== 'POST' && m !== 'PUT') throw methodNotAllowed(m, 'transit/hash', ['POST']);
      if (sub !== undefined) break;
      return hash(call, name, req.body);
    case 'random':
      if (m !== 'POST' && m !== 'PUT') throw methodNotAllowed(m, 'transit/random', ['POST']);
      return random(req.path.slice(1), req.body);
    case 'export':
      if (m !== 'GET') throw methodNotAllowed(m, 'transit/export', ['GET']);
      if (name === undefined || sub === undefined) break;
      return exportKey(call, name, sub, extra);
    case 'datakey':
      // Data keys are the envelope issue's operations, not in this daemon yet.
      throw new VaultHttpError(501, `transit/datakey/${name ?? ':type'}/… is not implemented yet in cryptod: it needs the data-key operations (DATAKEY), which this daemon does not have; generate a key with transit/random and encrypt it with transit/encrypt meanwhile`);
    case 'backup':
    case 'restore':
      throw badRequest(`transit/${head} is not supported: cryptod's keystore is backed up as a whole (README "Backup"); per-key backup waits for the key-transfer format`);
    case 'cache-config':
    case 'wrapping_key':
      throw badRequest(`transit/${head} is not supported by cryptod (no key cache to configure, no Vault-style key import)`);
    default:
      break;
  }
  throw new VaultHttpError(404, `unsupported path transit/${req.path.join('/')}; cryptod serves ${ENDPOINTS}`);
}

function methodNotAllowed(method: string, path: string, allowed: readonly string[]): VaultHttpError {
  return new VaultHttpError(405, `${method} is not supported on ${path}; use ${allowed.join(' or ')}`, { Allow: allowed.filter((a) => a !== 'LIST').join(', ') || 'GET' });
}

// ── keys ──────────────────────────────────────────────────────────────────

async function listKeys(call: Caller): Promise<VaultReply> {
  const r = (await call.run(Op.KEY_LIST, undefined)) as { keys: ManagedKeyDescription[] };
  const keys = r.keys.filter((k) => !deleted(k)).map((k) => k.name).sort();
  // Vault answers an empty list with 404; a list of nothing is still a list here (docs/vault-compat.md).
  return envelope({ keys });
}

async function describe(call: Caller, name: string): Promise<ManagedKeyDescription> {
  const d = (await call.run(Op.KEY_DESCRIBE, { name })) as unknown as ManagedKeyDescription;
  if (deleted(d)) throw new VaultHttpError(404, `key '${name}' was deleted (cryptod keeps its name reserved, so it cannot be created again)`);
  return d;
}

/** KEY_DESTROY leaves a disabled tombstone with every version destroyed: to Vault clients the key is gone. */
function deleted(d: ManagedKeyDescription): boolean {
  return d.disabled && d.versions.every((v) => v.state === 'destroyed');
}

async function readKey(call: Caller, name: string): Promise<Record<string, unknown>> {
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

async function createKey(call: Caller, name: string, body: Body): Promise<VaultReply> {
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

async function configKey(call: Caller, name: string, body: Body): Promise<VaultReply> {
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

async function rotateKey(call: Caller, name: string): Promise<VaultReply> {
  await call.run(Op.KEY_ROTATE, { name });
  return envelope(await readKey(call, name));
}

async function trimKey(call: Caller, name: string, body: Body): Promise<VaultReply> {
  const below = optInt(body, 'min_available_version');
  if (below === undefined || below < 1) throw badRequest("missing 'min_available_version': the oldest version to keep (versions below it are destroyed)");
  await call.run(Op.KEY_TRIM, { name, below });
  return envelope(await readKey(call, name));
}

async function deleteKey(call: Caller, name: string): Promise<VaultReply> {
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

// ── data operations ───────────────────────────────────────────────────────

type DataKind = 'encrypt' | 'decrypt' | 'rewrap' | 'sign' | 'verify' | 'hmac';

/** One item of a request, as cryptod's batch item, or the error that stops it before it is sent. */
type Prepared = { item: Record<string, CborValue> } | { error: string };

async function dataOperation(call: Caller, kind: DataKind, name: string, body: Body): Promise<VaultReply> {
  const batch = body.batch_input;
  if (batch !== undefined && batch !== null && !Array.isArray(batch)) throw badRequest(`'batch_input' must be an array of objects, got ${kindOf(batch)}`);
  const partialStatus = optInt(body, 'partial_failure_response_code');
  const keyVersion = optInt(body, 'key_version');
  // What the whole request applies: the key's type (sign/verify/hmac), the version asked for.
  const needType = kind === 'sign' || kind === 'verify' || kind === 'hmac';
  const d = keyVersion !== undefined || (needType && call.types.get(name) === undefined) ? await describe(call, name) : null;
  if (d !== null) call.types.set(name, d.type);
  const type = needType ? (d?.type ?? call.types.get(name)!) : null;
  if (keyVersion !== undefined && keyVersion !== 0 && kind !== 'decrypt' && kind !== 'verify' && keyVersion !== d!.currentVersion) {
    throw badRequest(`key_version ${keyVersion} is not supported: cryptod ${kind === 'rewrap' ? 'rewraps to' : 'uses'} the latest version (${d!.currentVersion ?? 'none'}); omit key_version or give the latest`);
  }
  const op = opOf(kind, body);
  const mode = type !== null ? signMode(kind, type, body) : null;
  const inputs: Body[] = Array.isArray(batch) ? batch.map((b, i) => itemBody(b, i)) : [body];
  if (Array.isArray(batch) && batch.length === 0) throw badRequest("'batch_input' is empty: give at least one item");
  const prepared = inputs.map((b, i) => {
    try {
      return { item: prepare(kind, name, b, mode, type, Array.isArray(batch) ? i : null) } as Prepared;
    } catch (err) {
      if (!Array.isArray(batch)) throw err;
      return { error: err instanceof Error ? err.message : String(err) } as Prepared;
    }
  });
  const items = prepared.filter((p): p is { item: Record<string, CborValue> } => 'item' in p).map((p) => p.item);
  let results: CborValue[] = [];
  if (items.length > 0) {
    const reply = (await call.run(op, Array.isArray(batch) ? { key: name, items } : { key: name, ...items[0]! })) as Record<string, CborValue>;
    results = Array.isArray(batch) ? (reply.items as CborValue[]) : [reply];
  }
  let next = 0;
  const out = prepared.map((p, i) => {
    const reference = inputs[i]!.reference;
    const ref = typeof reference === 'string' ? { reference } : {};
    if ('error' in p) return { error: p.error, ...ref };
    const r = results[next++] as Record<string, unknown>;
    if (r.error !== undefined) {
      const e = r.error as { code: string; message: string };
      return { error: `${e.code}: ${e.message}`, ...ref };
    }
    return { ...shape(kind, r, mode), ...ref };
  });
  if (!Array.isArray(batch)) return envelope(out[0]);
  const failed = out.some((o) => 'error' in o);
  const reply = envelope({ batch_results: out });
  return failed ? { status: partialStatus ?? 400, body: reply.body } : reply;
}

function itemBody(b: unknown, i: number): Body {
  if (b === null || typeof b !== 'object' || Array.isArray(b)) throw badRequest(`batch_input[${i}] must be an object, got ${kindOf(b)}`);
  return b as Body;
}

function opOf(kind: DataKind, body: Body): OpCode {
  switch (kind) {
    case 'encrypt':
      return Op.MANAGED_ENCRYPT;
    case 'decrypt':
      return Op.MANAGED_DECRYPT;
    case 'rewrap':
      return Op.MANAGED_REWRAP;
    case 'sign':
      return Op.MANAGED_SIGN;
    case 'hmac':
      return Op.MANAGED_MAC;
    case 'verify': {
      // verify serves both: signatures (`signature`) and MACs (`hmac`).
      const first = Array.isArray(body.batch_input) ? (body.batch_input[0] as Body | undefined) : body;
      return first?.hmac !== undefined ? Op.MANAGED_VERIFY_MAC : Op.MANAGED_VERIFY;
    }
  }
}

/** How sign/verify/hmac encode their values: the hash the key uses and, for ECDSA, the marshaling. */
interface SignMode {
  readonly marshaling: 'asn1' | 'jws';
  readonly ecdsaSize: number;
}

function signMode(kind: DataKind, type: ManagedKeyType, body: Body): SignMode {
  const isMac = kind === 'hmac' || (kind === 'verify' && opOf(kind, body) === Op.MANAGED_VERIFY_MAC);
  const field = kind === 'hmac' ? 'algorithm' : 'hash_algorithm';
  const asked = optString(body, field) ?? (kind === 'hmac' ? optString(body, 'hash_algorithm') : undefined) ?? (isMac ? optString(body, 'algorithm') : undefined);
  const own = hashOfType(type);
  if (isMac && !type.startsWith('hmac-')) throw badRequest(`key '${String(body.name ?? '')}' is a ${vaultTypeOf(type)} key: cryptod computes HMACs with hmac keys only (create one with type=hmac)`.replace("key '' is", 'the key is'));
  if (asked !== undefined && asked !== 'none' && type !== 'ed25519') {
    if (HASHES[asked] === undefined && own !== asked) throw badRequest(`${field} '${asked}' is not supported; a ${vaultTypeOf(type)} key uses ${own ?? 'no hash'} in cryptod`);
    if (own !== asked) throw badRequest(`${field} '${asked}' is not supported for a ${vaultTypeOf(type)} key: cryptod's ${type} uses ${own} only`);
  }
  if (optBool(body, 'prehashed') === true) throw badRequest('prehashed input is not supported: cryptod signs the message itself (send the message, not its digest)');
  const sigAlg = optString(body, 'signature_algorithm');
  if (sigAlg !== undefined && !(type === 'rsa-pss-3072' && sigAlg === 'pss')) {
    throw badRequest(type === 'rsa-pss-3072' ? `signature_algorithm '${sigAlg}' is not supported: cryptod's RSA keys sign with pss only` : `signature_algorithm applies to RSA keys only; this is a ${vaultTypeOf(type)} key`);
  }
  const marshaling = optString(body, 'marshaling_algorithm') ?? 'asn1';
  if (marshaling !== 'asn1' && marshaling !== 'jws') throw badRequest(`marshaling_algorithm '${marshaling}' is not supported; use asn1 or jws`);
  if (optString(body, 'salt_length') !== undefined || optInt(body, 'salt_length') !== undefined) throw badRequest("salt_length is not supported: cryptod's RSA-PSS uses a 32-byte salt");
  return { marshaling, ecdsaSize: type === 'ecdsa-p256' ? 32 : type === 'ecdsa-p384' ? 48 : 0 };
}

/** The AAD of an item: `associated_data`, or `context` (cryptod has no derived keys: the context binds like AAD). */
function aadOf(b: Body): Buffer | undefined {
  const ad = optString(b, 'associated_data');
  const ctx = optString(b, 'context');
  if (ad !== undefined && ctx !== undefined) throw badRequest("give 'associated_data' or 'context', not both: cryptod binds either as additional authenticated data");
  const v = ad ?? ctx;
  return v === undefined ? undefined : fromBase64(v, ad !== undefined ? 'associated_data' : 'context');
}

function prepare(kind: DataKind, name: string, b: Body, mode: SignMode | null, type: ManagedKeyType | null, index: number | null): Record<string, CborValue> {
  const at = index === null ? '' : `batch_input[${index}].`;
  const item: Record<string, CborValue> = {};
  if (optString(b, 'nonce') !== undefined) throw badRequest(`${at}nonce is not supported: cryptod picks every nonce itself`);
  switch (kind) {
    case 'encrypt': {
      item.plaintext = fromBase64(optString(b, 'plaintext') ?? '', `${at}plaintext`);
      const aad = aadOf(b);
      if (aad !== undefined) item.aad = aad;
      return item;
    }
    case 'decrypt':
    case 'rewrap': {
      item.ciphertext = ciphertextOf(name, reqString(b, 'ciphertext', `${at}ciphertext: vault:v<N>:… as encrypt returned it`), `${at}ciphertext`);
      const aad = aadOf(b);
      if (aad !== undefined) item.aad = aad;
      return item;
    }
    case 'sign':
    case 'hmac':
      item.message = fromBase64(reqString(b, 'input', `${at}input: the base64 message`), `${at}input`);
      return item;
    case 'verify': {
      item.message = fromBase64(reqString(b, 'input', `${at}input: the base64 message`), `${at}input`);
      const sig = optString(b, 'signature');
      const mac = optString(b, 'hmac');
      if ((sig === undefined) === (mac === undefined)) throw badRequest(`${at}give exactly one of 'signature' (a signature to verify) or 'hmac' (an HMAC to verify)`);
      if (mac !== undefined) {
        const { version, payload } = parseVaultValue(mac, `${at}hmac`);
        item.mac = Buffer.concat([encodeHeader('mac', type!, name, version), fromBase64(payload, `${at}hmac`)]);
      } else {
        const { version, payload } = parseVaultValue(sig!, `${at}signature`);
        item.signature = Buffer.concat([encodeHeader('signature', type!, name, version), signatureBody(payload, mode!, `${at}signature`)]);
      }
      return item;
    }
  }
}

function ciphertextOf(name: string, value: string, field: string): Buffer {
  const { version, payload } = parseVaultValue(value, field);
  const ct = fromBase64(payload, field);
  // The prefix repeats the version inside cryptod's header; they must agree, and the header must name this key.
  let header;
  try {
    header = parseHeader(ct, 'ciphertext').header;
  } catch (err) {
    throw badRequest(`${field} is not a cryptod ciphertext: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (header.version !== version) throw badRequest(`${field} says v${version} but its cryptod header says version ${header.version}: the value was altered`);
  if (header.key !== name) throw badRequest(`${field} was made with key '${header.key}', not '${name}'`);
  return ct;
}

function signatureBody(payload: string, mode: SignMode, field: string): Buffer {
  if (mode.ecdsaSize === 0) return fromBase64(payload, field);
  if (mode.marshaling === 'jws') {
    if (!/^[A-Za-z0-9_-]*$/.test(payload)) throw badRequest(`${field} must be base64url (jws marshaling)`);
    return Buffer.from(payload, 'base64url');
  }
  const raw = derToP1363(fromBase64(payload, field), mode.ecdsaSize);
  if (raw === null) throw badRequest(`${field} is not a DER (asn1) ECDSA signature; give marshaling_algorithm=jws for r‖s`);
  return raw;
}

function shape(kind: DataKind, r: Record<string, unknown>, mode: SignMode | null): Record<string, unknown> {
  const version = r.version as number;
  switch (kind) {
    case 'encrypt':
    case 'rewrap':
      return { ciphertext: vaultValue(version, r.ciphertext as Buffer), key_version: version };
    case 'decrypt': {
      const plaintext = (r.plaintext as Buffer).toString('base64');
      return { plaintext };
    }
    case 'sign': {
      const body = parseHeader(r.signature as Buffer, 'signature').body;
      if (mode!.ecdsaSize > 0 && mode!.marshaling === 'asn1') return { signature: vaultValue(version, p1363ToDer(body)), key_version: version };
      return { signature: vaultValue(version, Buffer.from(body), mode!.marshaling === 'jws' && mode!.ecdsaSize > 0 ? 'base64url' : 'base64'), key_version: version };
    }
    case 'hmac': {
      const body = parseHeader(r.mac as Buffer, 'mac').body;
      return { hmac: vaultValue(version, Buffer.from(body)), key_version: version };
    }
    case 'verify':
      return { valid: r.valid === true };
  }
}

// ── keyless ───────────────────────────────────────────────────────────────

async function hash(call: Caller, pathAlgorithm: string | undefined, body: Body): Promise<VaultReply> {
  const algorithm = pathAlgorithm ?? optString(body, 'algorithm') ?? 'sha2-256';
  const name = HASHES[algorithm];
  if (name === undefined) throw badRequest(`hash algorithm '${algorithm}' is not supported; supported: ${Object.keys(HASHES).join(', ')}`);
  const format = optString(body, 'format') ?? 'hex';
  if (format !== 'hex' && format !== 'base64') throw badRequest(`format '${format}' is not supported; use hex or base64`);
  const input = fromBase64(reqString(body, 'input', 'the base64 data to hash'), 'input');
  const sum = (await call.run(Op.DIGEST, { algorithm: { name }, data: input })) as Buffer;
  return envelope({ sum: sum.toString(format) });
}

/** Vault's limit on transit/random. */
const MAX_RANDOM = 128 * 1024;

function random(rest: readonly string[], body: Body): VaultReply {
  let bytes = optInt(body, 'bytes') ?? 32;
  let format = optString(body, 'format') ?? 'base64';
  for (const seg of rest) {
    if (/^[0-9]+$/.test(seg)) bytes = Number(seg);
    else if (seg === 'hex' || seg === 'base64') format = seg;
    else if (seg === 'platform' || seg === 'all') continue;
    else if (seg === 'seal') throw badRequest("random source 'seal' is not supported: cryptod has no seal; use platform");
    else throw new VaultHttpError(404, `unsupported path transit/random/${rest.join('/')}; use transit/random[/platform][/:bytes]`);
  }
  if (format !== 'hex' && format !== 'base64') throw badRequest(`format '${format}' is not supported; use hex or base64`);
  if (bytes < 1 || bytes > MAX_RANDOM) throw badRequest(`bytes must be from 1 to ${MAX_RANDOM}, got ${bytes}`);
  const out = randomBytes(bytes);
  const text = out.toString(format);
  out.fill(0);
  return envelope({ random_bytes: text });
}

const EXPORT_TYPES = ['encryption-key', 'signing-key', 'hmac-key', 'public-key'] as const;

async function exportKey(call: Caller, exportType: string, name: string, version: string | undefined): Promise<VaultReply> {
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

/** A cryptod error as Vault's reply. */
export function errorReply(err: CryptodError): VaultReply {
  return { status: statusOf(err), body: { errors: [messageOf(err)] } };
}
