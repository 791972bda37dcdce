/**
 * Key material of managed key versions: generated with node:crypto, wrapped
 * by the KEK before it is stored, unwrapped on load.
 *
 *   generate / import ─▶ bytes (Buffer.alloc) ─▶ kek.wrap(bytes, keyVersionAad(name, v)) ─▶ keystore
 *                          └─ zeroed once wrapped
 *   keystore ─▶ kek.unwrap(blob, aad) ─▶ KeyMaterial ─▶ snapshots ─▶ destroy(): zeroed
 *
 * What is wrapped: the raw secret for secret types; PKCS#8 DER (RFC 5958)
 * of the private key for asymmetric types. The AAD binds each blob to its key
 * name and version, so a blob copied onto another key or version fails to
 * unwrap instead of silently becoming that key.
 *
 * Asymmetric keys live as KeyObjects: OpenSSL owns their bytes and
 * JavaScript cannot wipe them; the DER we parsed them from is zeroed at once,
 * and dropping the KeyObject lets OpenSSL cleanse it when it is collected.
 */
import { createPrivateKey, createPublicKey, generateKeyPair, randomFillSync, type KeyObject } from 'node:crypto';
import { DataError, InternalError, KekUnavailableError, UnsupportedError } from '../protocol/errors.js';
import { keyVersionAad, type KekProvider } from '../kek/provider.js';
import { decodeTokenRef, encodeTokenRef, type TokenKeyRef, type TokenKeys } from '../kek/token-keys.js';
import { DER, derElement } from '../protocol/der.js';
import { keyTypeInfo, type ManagedKeyType } from './model.js';

/** The unwrapped material of one version, owned by the key manager. */
/** A version held in a token: where it is, and its key as a provider whose wrap/unwrap run in the token. */
export interface TokenHeld {
  readonly ref: TokenKeyRef;
  readonly kek: KekProvider;
}

export class KeyMaterial {
  #secret: Buffer | null;
  #private: KeyObject | null;
  #public: KeyObject | null;
  #token: TokenHeld | null = null;
  #destroyed = false;
  /**
   * How many snapshots (the current one, and retired ones that readers still
   * hold) reference this material. Managed by snapshot.ts only.
   */
  holders = 0;
  readonly kind: 'secret' | 'asymmetric' | 'token';

  private constructor(secret: Buffer | null, privateKey: KeyObject | null, token: TokenHeld | null = null) {
    this.kind = token !== null ? 'token' : secret !== null ? 'secret' : 'asymmetric';
    this.#token = token;
    this.#secret = secret;
    this.#private = privateKey;
    this.#public = privateKey === null ? null : createPublicKey(privateKey);
  }

  /** A version whose key never leaves its token: no bytes here, only where it is. */
  static token(held: TokenHeld): KeyMaterial {
    return new KeyMaterial(null, null, held);
  }

  /** The token-held key; valid while the snapshot lease it came from is held. */
  get token(): TokenHeld {
    if (this.#token === null) throw new InternalError(this.#destroyed ? 'key material used after it was released' : 'not a token-held key');
    return this.#token;
  }

  /** Takes ownership of `secret` (not copied; zeroed by destroy). */
  static secret(secret: Buffer): KeyMaterial {
    return new KeyMaterial(secret, null);
  }

  static asymmetric(privateKey: KeyObject): KeyMaterial {
    if (privateKey.type !== 'private') throw new InternalError('expected a private KeyObject');
    return new KeyMaterial(null, privateKey);
  }

  /** The secret bytes; valid while the snapshot lease it came from is held. */
  get secret(): Buffer {
    if (this.kind === 'token' && !this.#destroyed) {
      throw new UnsupportedError(
        `this key version is held in the token of provider '${this.#token!.ref.provider}' and never leaves it: cryptod cannot compute with its bytes (use it as a KEK for data keys)`,
        { detail: { provider: this.#token!.ref.provider } },
      );
    }
    if (this.#secret === null) throw new InternalError(this.#destroyed ? 'key material used after it was released' : 'not a secret key');
    return this.#secret;
  }

  get privateKey(): KeyObject {
    if (this.#private === null) throw new InternalError(this.#destroyed ? 'key material used after it was released' : 'not an asymmetric key');
    return this.#private;
  }

  get publicKey(): KeyObject {
    if (this.#public === null) throw new InternalError(this.#destroyed ? 'key material used after it was released' : 'not an asymmetric key');
    return this.#public;
  }

  get destroyed(): boolean {
    return this.#destroyed;
  }

  /** Zero the secret (or drop the KeyObjects). Idempotent. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#secret?.fill(0);
    this.#secret = null;
    this.#private = null;
    this.#public = null;
    this.#token = null;
  }
}

const CURVES: Partial<Record<ManagedKeyType, string>> = { 'ecdsa-p256': 'prime256v1', 'ecdsa-p384': 'secp384r1', 'ecdsa-p521': 'secp521r1' };

/**
 * New material for a version of type `t`, as the bytes that get wrapped, in
 * memory the caller owns and must zero. Asymmetric generation runs on the
 * libuv thread pool: an RSA-3072 key takes long enough to stall readers.
 */
export async function generateMaterial(t: ManagedKeyType): Promise<Buffer> {
  const info = keyTypeInfo(t);
  if (info.kind === 'secret') return randomFillSync(Buffer.alloc(info.secretBytes));
  let privateKey: KeyObject;
  switch (t) {
    case 'ed25519':
      privateKey = await new Promise<KeyObject>((ok, fail) => generateKeyPair('ed25519', {}, (e, _pub, priv) => (e ? fail(e) : ok(priv))));
      break;
    case 'ecdsa-p256':
    case 'ecdsa-p384':
    case 'ecdsa-p521':
      privateKey = await new Promise<KeyObject>((ok, fail) =>
        generateKeyPair('ec', { namedCurve: CURVES[t]! }, (e, _pub, priv) => (e ? fail(e) : ok(priv))),
      );
      break;
    case 'x25519':
      privateKey = await new Promise<KeyObject>((ok, fail) => generateKeyPair('x25519', {}, (e, _pub, priv) => (e ? fail(e) : ok(priv))));
      break;
    case 'rsa-pss-3072':
      // RFC 8017 §8.1 restricted to SHA-256 and MGF1-SHA-256, recorded in
      // the PKCS#8 (RFC 4055 RSASSA-PSS-params); the signer picks the salt.
      privateKey = await new Promise<KeyObject>((ok, fail) =>
        generateKeyPair('rsa-pss', { modulusLength: 3072, hashAlgorithm: 'sha256', mgf1HashAlgorithm: 'sha256' }, (e, _pub, priv) =>
          e ? fail(e) : ok(priv),
        ),
      );
      break;
    case 'rsa-pkcs1-3072':
      // A plain rsaEncryption key: PKCS #1 v1.5 signing has no parameters to record.
      privateKey = await new Promise<KeyObject>((ok, fail) =>
        generateKeyPair('rsa', { modulusLength: 3072, publicExponent: 0x10001 }, (e, _pub, priv) => (e ? fail(e) : ok(priv))),
      );
      break;
    default:
      throw new InternalError(`no generator for ${t}`);
  }
  return pkcs8(privateKey);
}

/** PKCS#8 DER of a private key, copied into owned memory (the export's buffer is zeroed). */
function pkcs8(key: KeyObject): Buffer {
  const der = key.export({ format: 'der', type: 'pkcs8' });
  const out = Buffer.alloc(der.length);
  der.copy(out);
  der.fill(0);
  return out;
}

/**
 * Check imported ("bring your own key") material for type `t` and return it
 * in the stored encoding, in owned memory. Raw bytes of the exact length for
 * secret types; PKCS#8 DER for asymmetric ones. `input` is not modified.
 */
export function importMaterial(t: ManagedKeyType, input: Uint8Array): Buffer {
  const info = keyTypeInfo(t);
  if (info.kind === 'secret') {
    if (input.length !== info.secretBytes) {
      throw new DataError(`expected ${info.secretBytes} bytes of key material for a ${t} key, got ${input.length}`);
    }
    const out = Buffer.alloc(input.length);
    out.set(input);
    return out;
  }
  const key = parsePrivateKey(t, input, 'the imported key');
  return pkcs8(key);
}

function parsePrivateKey(t: ManagedKeyType, der: Uint8Array, what: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: Buffer.from(der.buffer, der.byteOffset, der.byteLength), format: 'der', type: 'pkcs8' });
  } catch {
    // OpenSSL's message may quote the input: never forward it.
    throw new DataError(`expected ${what} as a PKCS#8 DER private key for ${t}; it does not parse`);
  }
  const kt = key.asymmetricKeyType;
  const d = key.asymmetricKeyDetails ?? {};
  const ok =
    (t === 'ed25519' && kt === 'ed25519') ||
    ((t === 'ecdsa-p256' || t === 'ecdsa-p384' || t === 'ecdsa-p521') && kt === 'ec' && d.namedCurve === CURVES[t]) ||
    (t === 'rsa-pss-3072' && (kt === 'rsa-pss' || kt === 'rsa') && d.modulusLength === 3072) ||
    (t === 'rsa-pkcs1-3072' && kt === 'rsa' && d.modulusLength === 3072) ||
    (t === 'x25519' && kt === 'x25519');
  if (!ok) {
    const got = kt === 'ec' ? `ec ${String(d.namedCurve)}` : kt?.startsWith('rsa') === true ? `${kt} ${String(d.modulusLength)}-bit` : String(kt);
    throw new DataError(`expected ${what} to be a ${t} private key, got ${got}`);
  }
  return key;
}

/**
 * Material from the bytes of a version (as generated, imported or unwrapped).
 * Secret bytes become owned by the result; asymmetric DER is parsed and zeroed.
 */
export function materialFromBytes(t: ManagedKeyType, bytes: Buffer): KeyMaterial {
  const info = keyTypeInfo(t);
  if (info.kind === 'secret') {
    if (bytes.length !== info.secretBytes) {
      bytes.fill(0);
      throw new DataError(`expected ${info.secretBytes} bytes of ${t} material, got ${bytes.length}`);
    }
    return KeyMaterial.secret(bytes);
  }
  try {
    return KeyMaterial.asymmetric(parsePrivateKey(t, bytes, 'stored key material'));
  } finally {
    bytes.fill(0);
  }
}

/**
 * Material for a new version `version` of key `name`, generated or imported:
 * the blob to store and the in-memory material (the plaintext bytes end up
 * owned by the material, or zeroed).
 */
export async function newVersionMaterial(
  kek: KekProvider, t: ManagedKeyType, name: string, version: number, imported?: Uint8Array,
): Promise<{ blob: Buffer; material: KeyMaterial }> {
  const bytes = imported === undefined ? await generateMaterial(t) : importMaterial(t, imported);
  return seal(kek, name, version, bytes, () => materialFromBytes(t, bytes));
}

/** The master secret of a derived key (epoch.ts), generated or imported, as version 1. */
export async function newMasterMaterial(kek: KekProvider, name: string, length: number, imported?: Uint8Array): Promise<{ blob: Buffer; material: KeyMaterial }> {
  if (imported !== undefined && imported.length !== length) {
    throw new DataError(`expected a ${length}-byte master secret for derived key '${name}', got ${imported.length} bytes`);
  }
  const bytes = Buffer.alloc(length);
  if (imported === undefined) randomFillSync(bytes);
  else bytes.set(imported);
  return seal(kek, name, 1, bytes, () => KeyMaterial.secret(bytes));
}

async function seal(kek: KekProvider, name: string, version: number, bytes: Buffer, toMaterial: () => KeyMaterial): Promise<{ blob: Buffer; material: KeyMaterial }> {
  let blob: Buffer;
  try {
    blob = await wrapMaterial(kek, name, version, bytes);
  } catch (err) {
    bytes.fill(0);
    throw err;
  }
  return { blob, material: toMaterial() };
}

/** Wrap `bytes` for version `version` of key `name`; `bytes` stays the caller's. */
export async function wrapMaterial(kek: KekProvider, name: string, version: number, bytes: Uint8Array): Promise<Buffer> {
  return kek.wrap(bytes, keyVersionAad(name, version));
}

/** Unwrap a stored blob into material held in `Buffer.alloc` memory. */
export async function unwrapMaterial(kek: KekProvider, t: ManagedKeyType, name: string, version: number, blob: Uint8Array): Promise<KeyMaterial> {
  return materialFromBytes(t, await unwrapOwned(kek, name, version, blob));
}

/** Unwrap a secret that is not of a key type (a derived key's master), checking its length. */
export async function unwrapSecret(kek: KekProvider, name: string, version: number, blob: Uint8Array, length: number): Promise<KeyMaterial> {
  const owned = await unwrapOwned(kek, name, version, blob);
  if (owned.length !== length) {
    owned.fill(0);
    throw new DataError(`expected a ${length}-byte secret in version ${version} of key '${name}', got ${owned.length}`);
  }
  return KeyMaterial.secret(owned);
}

async function unwrapOwned(kek: KekProvider, name: string, version: number, blob: Uint8Array): Promise<Buffer> {
  const plain = await kek.unwrap(blob, keyVersionAad(name, version));
  const owned = Buffer.alloc(plain.length);
  plain.copy(owned);
  plain.fill(0);
  return owned;
}

/**
 * The public key as verifiers outside the daemon import it. RSA-PSS versions
 * are `rsa-pss` KeyObjects (their PKCS#8 names the PSS parameters), whose
 * SPKI carries the id-RSASSA-PSS OID that WebCrypto refuses and which Node
 * cannot export as a JWK; the same modulus and exponent under the
 * rsaEncryption OID (RFC 8017 A.1) is what WebCrypto, JOSE libraries and
 * OpenSSL all take. The PSS parameters are fixed by the format (docs/formats.md).
 */
export function interoperablePublicKey(pub: KeyObject): KeyObject {
  if (pub.asymmetricKeyType !== 'rsa-pss') return pub;
  // SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING }
  // and the BIT STRING's content (after its unused-bits byte) is RSAPublicKey, i.e. PKCS#1.
  const spki = pub.export({ format: 'der', type: 'spki' });
  const outer = derElement(spki, 0, DER.SEQUENCE);
  const algorithm = derElement(spki, outer.start, DER.SEQUENCE);
  const bits = derElement(spki, algorithm.end, DER.BIT_STRING);
  if (spki[bits.start] !== 0) throw new InternalError('RSA-PSS public key: unexpected unused bits in subjectPublicKey');
  return createPublicKey({ key: spki.subarray(bits.start + 1, bits.end), format: 'der', type: 'pkcs1' });
}

/**
 * A new version `version` of token-held key `name`: generated in the token
 * of `provider`, its reference wrapped by `kek` for the keystore. If the
 * wrap fails the new object is destroyed again (nothing would find it).
 */
export async function newTokenVersion(
  kek: KekProvider, tokens: TokenKeys | undefined, provider: string, name: string, version: number,
): Promise<{ blob: Buffer; material: KeyMaterial }> {
  const t = need(tokens, provider, name);
  const ref = await t.generate(provider, name, version);
  let blob: Buffer;
  try {
    blob = await wrapMaterial(kek, name, version, encodeTokenRef(ref));
  } catch (err) {
    await t.destroy(ref, name, version).catch(() => false);
    throw err;
  }
  return { blob, material: KeyMaterial.token({ ref, kek: t.key(ref, name, version) }) };
}

/** The stored reference of a token-held version, unwrapped and resolved to its token key. Nothing is asked of the token until the key is used. */
export async function unwrapTokenMaterial(kek: KekProvider, tokens: TokenKeys | undefined, provider: string, name: string, version: number, blob: Uint8Array): Promise<KeyMaterial> {
  const bytes = await unwrapOwned(kek, name, version, blob);
  const ref = decodeTokenRef(bytes, name, version);
  if (ref.provider !== provider) throw new DataError(`version ${version} of key '${name}' refers to provider '${ref.provider}', but the key is held by '${provider}'`, { detail: { key: name, version } });
  return KeyMaterial.token({ ref, kek: need(tokens, provider, name).key(ref, name, version) });
}

/** The token reference inside a stored blob (for destroying the object after trim/destroy). */
export async function tokenRefOf(kek: KekProvider, name: string, version: number, blob: Uint8Array): Promise<TokenKeyRef> {
  return decodeTokenRef(await unwrapOwned(kek, name, version, blob), name, version);
}

function need(tokens: TokenKeys | undefined, provider: string, name: string): TokenKeys {
  if (tokens === undefined || !tokens.providers.includes(provider)) {
    throw new KekUnavailableError(
      `key '${name}' is held in the token of provider '${provider}', which is not configured: add it under providers: (with the token that holds the key)`,
      { detail: { provider, key: name, reason: 'not-configured' } },
    );
  }
  return tokens;
}
