/**
 * transit/encrypt, decrypt, rewrap, sign, verify and hmac: one managed data
 * operation per request, a batch (`items`) for `batch_input`, the values
 * in Vault's `vault:v<N>:` forms (docs/vault-compat.md "Values"). A
 * data-key ciphertext given to decrypt or rewrap goes to transit-datakeys.ts.
 */
import type { CborValue } from '../protocol/cbor.js';
import { Op, type OpCode } from '../protocol/ops.js';
import { encodeHeader, parseHeader } from '../protocol/managed-format.js';
import type { ManagedKeyType } from '../protocol/messages/managed.js';
import type { Body, Caller } from './transit.js';
import { describe } from './transit-keys.js';
import { openDataKey, wrappedKeyOf } from './transit-datakeys.js';
import { badRequest, envelope, type VaultReply } from './vault-reply.js';
import {
  HASHES, derToP1363, fromBase64, hashOfType, kindOf, optBool, optInt, optString, p1363ToDer, parseVaultValue, reqString, vaultTypeOf, vaultValue,
} from './vault-values.js';

export type DataKind = 'encrypt' | 'decrypt' | 'rewrap' | 'sign' | 'verify' | 'hmac';

/** One item of a request, as cryptod's batch item, or the error that stops it before it is sent. */
type Prepared = { item: Record<string, CborValue> } | { error: string };

export async function dataOperation(call: Caller, kind: DataKind, name: string, body: Body): Promise<VaultReply> {
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
  if ((kind === 'decrypt' || kind === 'rewrap') && !Array.isArray(batch)) {
    const wrappedKey = wrappedKeyOf(body.ciphertext);
    if (wrappedKey !== null) return openDataKey(call, kind, name, wrappedKey, body);
  }
  const op = opOf(kind, body);
  const mode = type !== null ? signMode(kind, name, type, body) : null;
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

function signMode(kind: DataKind, name: string, type: ManagedKeyType, body: Body): SignMode {
  const isMac = kind === 'hmac' || (kind === 'verify' && opOf(kind, body) === Op.MANAGED_VERIFY_MAC);
  const field = kind === 'hmac' ? 'algorithm' : 'hash_algorithm';
  const asked = optString(body, field) ?? (kind === 'hmac' ? optString(body, 'hash_algorithm') : undefined) ?? (isMac ? optString(body, 'algorithm') : undefined);
  const own = hashOfType(type);
  if (isMac && !type.startsWith('hmac-')) throw badRequest(`key '${name}' is a ${vaultTypeOf(type)} key: cryptod computes HMACs with hmac keys only (create one with type=hmac)`);
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
  if (wrappedKeyOf(value) !== null) throw badRequest(`${field} is a data key (from transit/datakey): decrypt or rewrap it in a request of its own, without batch_input`);
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

