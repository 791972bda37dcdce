/**
 * The cryptography of managed-key outputs (formats in managed-format.ts):
 * one chosen version's material in, self-describing bytes out, and back.
 * Pure functions of (version, material, input); selection and authorization
 * happen before (managed-data.ts).
 *
 *   aes256-gcm          NIST SP 800-38D, random 96-bit nonce, 128-bit tag (counted: budget.ts)
 *   chacha20-poly1305   RFC 8439 §2.8, random 96-bit nonce, 128-bit tag; stored versions
 *                       counted like AES-GCM; derived epoch versions (no stored counter)
 *                       under a per-message key (format 2):
 *                         k = HKDF-SHA-256(IKM = version key, salt = random 16 bytes,
 *                                          info = "cryptod message key v1", 32)
 *                       so a repeat needs salt and nonce to repeat (224 random bits)
 *   aes256-kwp          RFC 5649 (no nonce, no AAD: the integrity check is built in),
 *                       under a per-header key (format 2), which binds the header
 *                       that RFC 5649 cannot take as additional data:
 *                         k = HKDF-SHA-256(IKM = version key, salt = none,
 *                                          info = "cryptod kwp header key v1" ‖ header, 32)
 *                       Format 1 outputs of both (written before) still open.
 *   hmac-sha256/512     RFC 2104, full-length tag, compared in constant time
 *   ed25519             RFC 8032 §5.1 (pure Ed25519)
 *   ecdsa-p256/p384     FIPS 186-5 with SHA-256/SHA-384, r ‖ s (IEEE P1363), as WebCrypto
 *   rsa-pss-3072        RFC 8017 §8.1, SHA-256, MGF1-SHA-256, 32-byte salt
 *   ecdsa-p521          FIPS 186-5, SHA-512, IEEE P1363 r‖s (132 bytes)
 *   rsa-pkcs1-3072      RFC 8017 §8.2, SHA-256 (JWT RS256)
 */
import {
  constants, createCipheriv, createDecipheriv, hkdfSync, sign, timingSafeEqual, verify, type CipherGCMTypes, type KeyObject,
} from 'node:crypto';
import { hmacOf } from './native-crypto.js';
import { publicRandom } from './public-random.js';
import type { UsableVersion } from '../keys/snapshot.js';
import type { ManagedKeyType } from '../keys/model.js';
import { DecryptError, InternalError, InvalidArgumentError, OperationError, UnsupportedError } from '../protocol/errors.js';
import { AEAD_NONCE, AEAD_TAG, encodeHeader, FORMAT_VERSION, FORMAT_VERSION_DERIVED, MESSAGE_SALT, type Header } from '../protocol/managed-format.js';
import { joinWiping } from '../protocol/frame.js';

/** RFC 5649 §3: the alternative initial value of AES key wrap with padding. */
const KWP_IV = Buffer.from('a65959a6', 'hex');

function aeadCipher(type: ManagedKeyType): 'aes-256-gcm' | 'chacha20-poly1305' | null {
  return type === 'aes256-gcm' ? 'aes-256-gcm' : type === 'chacha20-poly1305' ? 'chacha20-poly1305' : null;
}

const KWP_HEADER_INFO = Buffer.from('cryptod kwp header key v1', 'ascii');
const MESSAGE_KEY_INFO = Buffer.from('cryptod message key v1', 'ascii');

/** A 32-byte key derived from a version key (see the header), in owned memory; the caller zeroes it. */
function outputKey(secret: Buffer, salt: Uint8Array, info: Buffer): Buffer {
  const derived = new Uint8Array(hkdfSync('sha256', secret, salt, info, 32));
  const out = Buffer.alloc(32);
  out.set(derived);
  derived.fill(0);
  return out;
}

function kwpHeaderKey(secret: Buffer, header: Buffer): Buffer {
  return outputKey(secret, Buffer.alloc(0), Buffer.concat([KWP_HEADER_INFO, header]));
}

/**
 * MANAGED_ENCRYPT/DECRYPT on a key held in a token (`provider:`) are
 * refused: the aes256-kwp ciphertext is RFC 5649 under a key derived by
 * HKDF from the version key and the header, which a token cannot compute
 * on a non-extractable key (SoftHSM2 offers KWP only for C_WrapKey of key
 * objects, and no HKDF). Such a key is a KEK for data keys, which the token
 * wraps with AES-GCM (src/ops/managed-kek.ts).
 */
function refuseTokenHeld(u: UsableVersion): void {
  if (u.material.kind !== 'token') return;
  throw new UnsupportedError(
    `key '${u.key.name}' is held in the token of provider '${u.material.token.ref.provider}' and never leaves it; ` +
      'it wraps data keys (datakey generate --kek) but cannot encrypt caller data with MANAGED_ENCRYPT/DECRYPT: use a key without provider: for that',
    { detail: { key: u.key.name, provider: u.material.token.ref.provider } },
  );
}

/** Derived chacha20-poly1305 versions have no stored counter: they encrypt under per-message keys. */
function perMessage(u: UsableVersion): boolean {
  return u.key.type === 'chacha20-poly1305' && u.key.derived !== null;
}

/**
 * header ‖ nonce ‖ ciphertext ‖ tag (format 2 per-message: header ‖ salt ‖
 * nonce ‖ ciphertext ‖ tag); the AEAD's additional data is header ‖ aad.
 * aes256-kwp: header ‖ RFC 5649 wrap under the per-header key.
 */
export function seal(u: UsableVersion, plaintext: Uint8Array, aad: Uint8Array | undefined): Buffer {
  const type = u.key.type;
  if (type === 'aes256-kwp') {
    refuseTokenHeld(u);
    if (aad !== undefined && aad.length > 0) throw new InvalidArgumentError(`key '${u.key.name}' (aes256-kwp, RFC 5649) takes no additional data`, { detail: { field: 'aad' } });
    if (plaintext.length === 0) throw new InvalidArgumentError('expected key material of at least 1 byte to wrap (RFC 5649)', { detail: { field: 'plaintext' } });
    const header = encodeHeader('ciphertext', type, u.key.name, u.version.version, FORMAT_VERSION_DERIVED);
    const k = kwpHeaderKey(u.material.secret, header);
    try {
      const c = createCipheriv('id-aes256-wrap-pad', k, KWP_IV);
      return Buffer.concat([header, c.update(plaintext), c.final()]);
    } finally {
      k.fill(0);
    }
  }
  const name = aeadCipher(type);
  if (name === null) throw new InternalError(`seal with a ${type} key`);
  const salted = perMessage(u);
  const header = encodeHeader('ciphertext', type, u.key.name, u.version.version, salted ? FORMAT_VERSION_DERIVED : FORMAT_VERSION);
  // Salt and nonce are written into the ciphertext: public values, from the pooled CSPRNG block.
  const salt = salted ? publicRandom(MESSAGE_SALT) : Buffer.alloc(0);
  const k = salted ? outputKey(u.material.secret, salt, MESSAGE_KEY_INFO) : u.material.secret;
  try {
    const nonce = publicRandom(AEAD_NONCE);
    const c = createCipheriv(name as CipherGCMTypes, k, nonce, { authTagLength: AEAD_TAG });
    c.setAAD(aad === undefined || aad.length === 0 ? header : Buffer.concat([header, aad]));
    const body = c.update(plaintext);
    const last = c.final();
    return Buffer.concat([header, salt, nonce, body, last, c.getAuthTag()]);
  } finally {
    if (salted) k.fill(0);
  }
}

/** The plaintext of `body` (what follows `header`), or DecryptError. */
export function open(u: UsableVersion, header: Header, body: Buffer, aad: Uint8Array | undefined): Buffer {
  const type = u.key.type;
  if (type !== header.type) throw new DecryptError(`the ciphertext names algorithm ${header.type}, but key '${u.key.name}' is ${type}`);
  if (type === 'aes256-kwp') {
    refuseTokenHeld(u);
    if (aad !== undefined && aad.length > 0) throw new InvalidArgumentError(`key '${u.key.name}' (aes256-kwp, RFC 5649) takes no additional data`, { detail: { field: 'aad' } });
    // Format 1 (written before the per-header key) opens under the version key itself.
    const k = header.format === FORMAT_VERSION_DERIVED ? kwpHeaderKey(u.material.secret, header.bytes) : null;
    try {
      const d = createDecipheriv('id-aes256-wrap-pad', k ?? u.material.secret, KWP_IV);
      return joinWiping(d.update(body), d.final());
    } catch {
      throw new DecryptError('decryption failed: the wrapped key or its header is not authentic (RFC 5649 integrity check)');
    } finally {
      k?.fill(0);
    }
  }
  const name = aeadCipher(type);
  if (name === null) throw new InternalError(`open with a ${type} key`);
  // Format 2 exists for chacha20-poly1305 only (parseHeader): a salt before the nonce.
  const saltLen = header.format === FORMAT_VERSION_DERIVED ? MESSAGE_SALT : 0;
  if (body.length < saltLen + AEAD_NONCE + AEAD_TAG) {
    throw new DecryptError(`expected at least ${saltLen + AEAD_NONCE + AEAD_TAG} bytes of ${saltLen > 0 ? 'salt, ' : ''}nonce and tag after the header, got ${body.length}`);
  }
  const k = saltLen > 0 ? outputKey(u.material.secret, body.subarray(0, saltLen), MESSAGE_KEY_INFO) : u.material.secret;
  try {
    const nonce = body.subarray(saltLen, saltLen + AEAD_NONCE);
    const tag = body.subarray(body.length - AEAD_TAG);
    const d = createDecipheriv(name as CipherGCMTypes, k, nonce, { authTagLength: AEAD_TAG });
    d.setAAD(aad === undefined || aad.length === 0 ? header.bytes : Buffer.concat([header.bytes, aad]));
    d.setAuthTag(tag);
    const out = d.update(body.subarray(saltLen + AEAD_NONCE, body.length - AEAD_TAG));
    try {
      d.final();
    } catch {
      out.fill(0);
      throw new DecryptError('decryption failed: the ciphertext, its header or the additional data is not authentic');
    }
    return out;
  } finally {
    if (saltLen > 0) k.fill(0);
  }
}

function signParams(type: ManagedKeyType, key: KeyObject): { alg: string | null; key: Parameters<typeof sign>[2] } {
  switch (type) {
    case 'ed25519':
      return { alg: null, key };
    case 'ecdsa-p256':
      return { alg: 'sha256', key: { key, dsaEncoding: 'ieee-p1363' } };
    case 'ecdsa-p384':
      return { alg: 'sha384', key: { key, dsaEncoding: 'ieee-p1363' } };
    case 'rsa-pss-3072':
      return { alg: 'sha256', key: { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 } };
    case 'ecdsa-p521':
      return { alg: 'sha512', key: { key, dsaEncoding: 'ieee-p1363' } };
    case 'rsa-pkcs1-3072':
      return { alg: 'sha256', key: { key, padding: constants.RSA_PKCS1_PADDING } };
    default:
      throw new InternalError(`sign with a ${type} key`);
  }
}

/** header ‖ signature over the message alone. */
export function signMessage(u: UsableVersion, message: Uint8Array): Buffer {
  const p = signParams(u.key.type, u.material.privateKey);
  const header = encodeHeader('signature', u.key.type, u.key.name, u.version.version);
  return Buffer.concat([header, sign(p.alg, message, p.key)]);
}

export function verifyMessage(u: UsableVersion, header: Header, body: Buffer, message: Uint8Array): boolean {
  if (u.key.type !== header.type) return false;
  const p = signParams(u.key.type, u.material.publicKey);
  try {
    return verify(p.alg, message, p.key as Parameters<typeof verify>[2], body);
  } catch (err) {
    throw new OperationError(`verification with key '${u.key.name}' failed to run`, { cause: err });
  }
}

function hmac(u: UsableVersion, message: Uint8Array): Buffer {
  const type = u.key.type;
  if (type !== 'hmac-sha256' && type !== 'hmac-sha512') throw new InternalError(`mac with a ${type} key`);
  return hmacOf(type === 'hmac-sha256' ? 'sha256' : 'sha512', u.material.secret, message);
}

/** header ‖ HMAC(message). */
export function macMessage(u: UsableVersion, message: Uint8Array): Buffer {
  return Buffer.concat([encodeHeader('mac', u.key.type, u.key.name, u.version.version), hmac(u, message)]);
}

export function verifyMac(u: UsableVersion, header: Header, body: Buffer, message: Uint8Array): boolean {
  if (u.key.type !== header.type) return false;
  const expected = hmac(u, message);
  // Length is public (it follows from the algorithm); the comparison is not.
  return body.length === expected.length && timingSafeEqual(body, expected);
}

