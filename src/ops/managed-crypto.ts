/**
 * The cryptography of managed-key outputs (formats in managed-format.ts):
 * one chosen version's material in, self-describing bytes out, and back.
 * Pure functions of (version, material, input); selection and authorization
 * happen before (managed-data.ts).
 *
 *   aes256-gcm          NIST SP 800-38D, random 96-bit nonce, 128-bit tag
 *   chacha20-poly1305   RFC 8439 §2.8, random 96-bit nonce, 128-bit tag
 *   aes256-kwp          RFC 5649 (no nonce, no AAD: the integrity check is built in)
 *   hmac-sha256/512     RFC 2104, full-length tag, compared in constant time
 *   ed25519             RFC 8032 §5.1 (pure Ed25519)
 *   ecdsa-p256/p384     FIPS 186-5 with SHA-256/SHA-384, r ‖ s (IEEE P1363), as WebCrypto
 *   rsa-pss-3072        RFC 8017 §8.1, SHA-256, MGF1-SHA-256, 32-byte salt
 */
import { constants, createCipheriv, createDecipheriv, createHmac, randomBytes, sign, timingSafeEqual, verify, type CipherGCMTypes, type KeyObject } from 'node:crypto';
import type { UsableVersion } from '../keys/snapshot.js';
import type { ManagedKeyType } from '../keys/model.js';
import { DecryptError, InternalError, InvalidArgumentError, OperationError } from '../protocol/errors.js';
import { AEAD_NONCE, AEAD_TAG, encodeHeader, type Header } from '../protocol/managed-format.js';

/** RFC 5649 §3: the alternative initial value of AES key wrap with padding. */
const KWP_IV = Buffer.from('a65959a6', 'hex');

function aeadCipher(type: ManagedKeyType): 'aes-256-gcm' | 'chacha20-poly1305' | null {
  return type === 'aes256-gcm' ? 'aes-256-gcm' : type === 'chacha20-poly1305' ? 'chacha20-poly1305' : null;
}

/** header ‖ nonce ‖ ciphertext ‖ tag; the AEAD's additional data is header ‖ aad. */
export function seal(u: UsableVersion, plaintext: Uint8Array, aad: Uint8Array | undefined): Buffer {
  const type = u.key.type;
  const header = encodeHeader('ciphertext', type, u.key.name, u.version.version);
  if (type === 'aes256-kwp') {
    if (aad !== undefined && aad.length > 0) throw new InvalidArgumentError(`key '${u.key.name}' (aes256-kwp, RFC 5649) takes no additional data`, { detail: { field: 'aad' } });
    if (plaintext.length === 0) throw new InvalidArgumentError('expected key material of at least 1 byte to wrap (RFC 5649)', { detail: { field: 'plaintext' } });
    const c = createCipheriv('id-aes256-wrap-pad', u.material.secret, KWP_IV);
    return Buffer.concat([header, c.update(plaintext), c.final()]);
  }
  const name = aeadCipher(type);
  if (name === null) throw new InternalError(`seal with a ${type} key`);
  const nonce = randomBytes(AEAD_NONCE);
  const c = createCipheriv(name as CipherGCMTypes, u.material.secret, nonce, { authTagLength: AEAD_TAG });
  c.setAAD(aad === undefined || aad.length === 0 ? header : Buffer.concat([header, aad]));
  const body = c.update(plaintext);
  const last = c.final();
  return Buffer.concat([header, nonce, body, last, c.getAuthTag()]);
}

/** The plaintext of `body` (what follows `header`), or DecryptError. */
export function open(u: UsableVersion, header: Header, body: Buffer, aad: Uint8Array | undefined): Buffer {
  const type = u.key.type;
  if (type !== header.type) throw new DecryptError(`the ciphertext names algorithm ${header.type}, but key '${u.key.name}' is ${type}`);
  if (type === 'aes256-kwp') {
    if (aad !== undefined && aad.length > 0) throw new InvalidArgumentError(`key '${u.key.name}' (aes256-kwp, RFC 5649) takes no additional data`, { detail: { field: 'aad' } });
    try {
      const d = createDecipheriv('id-aes256-wrap-pad', u.material.secret, KWP_IV);
      return ownedConcat(d.update(body), d.final());
    } catch {
      throw new DecryptError('decryption failed: the wrapped key is not authentic (RFC 5649 integrity check)');
    }
  }
  const name = aeadCipher(type);
  if (name === null) throw new InternalError(`open with a ${type} key`);
  if (body.length < AEAD_NONCE + AEAD_TAG) throw new DecryptError(`expected at least ${AEAD_NONCE + AEAD_TAG} bytes of nonce and tag after the header, got ${body.length}`);
  const nonce = body.subarray(0, AEAD_NONCE);
  const tag = body.subarray(body.length - AEAD_TAG);
  const d = createDecipheriv(name as CipherGCMTypes, u.material.secret, nonce, { authTagLength: AEAD_TAG });
  d.setAAD(aad === undefined || aad.length === 0 ? header.bytes : Buffer.concat([header.bytes, aad]));
  d.setAuthTag(tag);
  const out = d.update(body.subarray(AEAD_NONCE, body.length - AEAD_TAG));
  try {
    d.final();
  } catch {
    out.fill(0);
    throw new DecryptError('decryption failed: the ciphertext, its header or the additional data is not authentic');
  }
  return out;
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
  return createHmac(type === 'hmac-sha256' ? 'sha256' : 'sha512', u.material.secret).update(message).digest();
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

/**
 * `a ‖ b` in memory of its own (not the shared pool, as Buffer.concat would
 * use for small sizes), with `a` and `b` zeroed: an unwrapped key is key
 * material, zeroed by its owner after the reply went out.
 */
function ownedConcat(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.alloc(a.length + b.length);
  a.copy(out, 0);
  b.copy(out, a.length);
  a.fill(0);
  b.fill(0);
  return out;
}
