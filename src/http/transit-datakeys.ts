/**
 * transit/datakey/plaintext|wrapped/:name, and transit/decrypt and rewrap of
 * the ciphertexts they return, mapped onto the data-key operations
 * (docs/vault-compat.md "Data keys"):
 *
 *   datakey/wrapped/:name    ─▶ DATAKEY_GENERATE { kek: name, length, aad: context }
 *   datakey/plaintext/:name  ─▶ DATAKEY_GENERATE { …, plaintext: true }   (right datakey-plaintext)
 *   decrypt/:name  (dk…)     ─▶ DATAKEY_UNWRAP   { wrappedKey }           (right datakey-plaintext)
 *   rewrap/:name   (dk…)     ─▶ DATAKEY_REWRAP   { wrappedKey }
 *
 * The `ciphertext` is `vault:v<N>:` + base64 of cryptod's wrapped key
 * (docs/formats.md "Data keys"), N the KEK version. Vault wraps a data key
 * with the encryption key itself; cryptod's KEK is a managed `aes256-kwp`
 * key, and the wrapped key is the one cryptod's own data-key operations
 * take, so an application can move from Vault-style "decrypt the data key,
 * encrypt locally" to handing the wrapped key to cryptod without rewrapping.
 * A wrapped key starts with "dk", a managed ciphertext with "cm": the two
 * never mix up.
 */
import type { CborValue } from '../protocol/cbor.js';
import { Op, type OpCode } from '../protocol/ops.js';
import { CryptodError } from '../protocol/errors.js';
import { DATAKEY_MAGIC, parseWrappedKey } from '../protocol/datakey-format.js';
import type { Body, Caller } from './transit.js';
import { describe } from './transit-keys.js';
import { VaultHttpError, badRequest, envelope, type VaultReply } from './vault-reply.js';
import { fromBase64, optInt, optString, parseVaultValue, vaultTypeOf, vaultValue } from './vault-values.js';

/** Vault's `bits` → cryptod's data-key length; Vault's 512 has no AES-GCM key in cryptod. */
const LENGTHS: Readonly<Record<number, number>> = { 128: 16, 256: 32 };

export async function generateDataKey(call: Caller, type: string, name: string, body: Body): Promise<VaultReply> {
  if (type !== 'plaintext' && type !== 'wrapped') {
    throw new VaultHttpError(404, `unsupported path transit/datakey/${type}/${name}: the data key type is plaintext or wrapped`);
  }
  const bits = optInt(body, 'bits') ?? 256;
  const length = LENGTHS[bits];
  if (length === undefined) {
    throw badRequest(`bits ${bits} is not supported: cryptod's data keys are AES-GCM keys of 128 or 256 bits (512 has no AES key); give bits=128 or bits=256`);
  }
  if (optString(body, 'nonce') !== undefined) throw badRequest('nonce is not supported: cryptod picks every nonce itself (and its KEK wrap, RFC 5649, takes none)');
  const keyVersion = optInt(body, 'key_version');
  if (keyVersion !== undefined && keyVersion !== 0) {
    const d = await describe(call, name);
    if (keyVersion !== d.currentVersion) throw badRequest(`key_version ${keyVersion} is not supported: cryptod wraps data keys under the KEK's latest version (${d.currentVersion ?? 'none'}); omit key_version or give the latest`);
  }
  const context = contextOf(body);
  const args: Record<string, CborValue> = { kek: name, length, plaintext: type === 'plaintext' };
  if (context !== undefined) args.aad = context;
  const r = (await run(call, name, Op.DATAKEY_GENERATE, args, 'generate data keys')) as { wrappedKey: Buffer; kekVersion: number; plaintext?: Buffer };
  const data: Record<string, unknown> = { ciphertext: vaultValue(r.kekVersion, r.wrappedKey), key_version: r.kekVersion };
  if (r.plaintext !== undefined) data.plaintext = r.plaintext.toString('base64');
  return envelope(data);
}

/** Base64 of the magic "dk" and the top bits of the format byte: what every wrapped key's base64 starts with. */
const DK_BASE64 = 'ZGs';

/** The wrapped data key inside a `vault:v<N>:` value, or null when the value holds something else (a managed ciphertext). */
export function wrappedKeyOf(value: unknown): Buffer | null {
  if (typeof value !== 'string' || !value.startsWith('vault:v')) return null;
  const colon = value.indexOf(':', 7);
  if (colon < 0 || !value.startsWith(DK_BASE64, colon + 1)) return null;
  const bytes = fromBase64(parseVaultValue(value, 'ciphertext').payload, 'ciphertext');
  return bytes.subarray(0, 2).equals(DATAKEY_MAGIC) ? bytes : null;
}

/**
 * decrypt/:name or rewrap/:name of a data-key ciphertext (one request, no
 * batch_input): the data key in plaintext, or the same data key wrapped by
 * the KEK's latest version.
 */
export async function openDataKey(call: Caller, kind: 'decrypt' | 'rewrap', name: string, wrappedKey: Buffer, body: Body): Promise<VaultReply> {
  const { version } = parseVaultValue(body.ciphertext as string, 'ciphertext');
  let header;
  try {
    header = parseWrappedKey(wrappedKey).header;
  } catch (err) {
    throw badRequest(`'ciphertext' is not a cryptod data key: ${err instanceof Error ? err.message : String(err)}`);
  }
  // The prefix repeats the KEK version of the header; they must agree, and the header must name this key.
  if (header.kekVersion !== version) throw badRequest(`'ciphertext' says v${version} but its data-key header says KEK version ${header.kekVersion}: the value was altered`);
  if (header.kek !== name) throw badRequest(`'ciphertext' is a data key wrapped by key '${header.kek}', not '${name}'`);
  // The context is kept (and authenticated) in the wrapped key; one given again must be the same.
  const context = contextOf(body);
  if (context !== undefined && !context.equals(header.context)) {
    throw badRequest("'context' does not match the context this data key was generated with (cryptod keeps it in the wrapped key: it may be omitted)");
  }
  if (kind === 'decrypt') {
    const r = (await run(call, name, Op.DATAKEY_UNWRAP, { wrappedKey }, 'decrypt data keys')) as { plaintext: Buffer };
    return envelope({ plaintext: r.plaintext.toString('base64') });
  }
  const r = (await run(call, name, Op.DATAKEY_REWRAP, { wrappedKey }, 'rewrap data keys')) as { wrappedKey: Buffer; kekVersion: number };
  return envelope({ ciphertext: vaultValue(r.kekVersion, r.wrappedKey), key_version: r.kekVersion });
}

/** Vault's `context` (or `associated_data`), kept in the wrapped key and authenticated by the wrap. */
function contextOf(body: Body): Buffer | undefined {
  const ctx = optString(body, 'context');
  const ad = optString(body, 'associated_data');
  if (ctx !== undefined && ad !== undefined) throw badRequest("give 'context' or 'associated_data', not both: cryptod keeps either in the wrapped data key");
  const v = ctx ?? ad;
  return v === undefined ? undefined : fromBase64(v, ctx !== undefined ? 'context' : 'associated_data');
}

/** One data-key operation; a key of another type is a 400 that says which type a KEK must be. */
async function run(call: Caller, name: string, op: OpCode, args: CborValue, what: string): Promise<CborValue> {
  try {
    return await call.run(op, args);
  } catch (err) {
    if (!(err instanceof CryptodError) || err.code !== 'CRYPTOD_ERR_INVALID_KEY') throw err;
    const type = await describe(call, name).then((d) => vaultTypeOf(d.type), () => null);
    throw badRequest(`key '${name}'${type === null ? '' : ` is a ${type} key: it`} cannot ${what}; cryptod wraps data keys with a KEK of type aes256-kwp (create one with type=aes256-kwp). ${err.code}: ${err.message}`);
  }
}
