/**
 * Each algorithm's own checks on an operation's parameters and data, the
 * steps that come after the key checks (WebCrypto: OperationError, or
 * InvalidAccessError for the ECDH peer key). Only what the client can decide
 * without the key bytes is here; the daemon checks the rest with the same
 * outcome. Adding an algorithm is adding an entry.
 */
import type { Normalized } from './algorithms.js';
import { fail } from './errors.js';

type KeyLike = { type: string; algorithm: { name: string; namedCurve?: unknown } };
export type ParamCheck = (alg: Normalized, key: KeyLike, data: Uint8Array | null) => void;

const GCM_TAG_LENGTHS = [32, 64, 96, 104, 112, 120, 128];

function tagBits(alg: Normalized): number {
  const tag = (alg.tagLength as number | undefined) ?? 128;
  const allowed = alg.name === 'AES-GCM' ? GCM_TAG_LENGTHS : [128];
  if (!allowed.includes(tag)) fail.badParameter(`${tag} is not a valid ${alg.name} tag length; expected one of ${allowed.join(', ')}`, { field: 'algorithm.tagLength' });
  return tag;
}

function iv(alg: Normalized): void {
  const n = (alg.iv as Uint8Array).length;
  if (alg.name === 'AES-GCM' ? n === 0 : n !== 12) {
    fail.badParameter(`${alg.name} needs an iv of ${alg.name === 'AES-GCM' ? 'at least 1 byte' : '12 bytes'}, got ${n}`, { field: 'algorithm.iv' });
  }
}

const seal: ParamCheck = (alg) => {
  tagBits(alg);
  iv(alg);
};

const open: ParamCheck = (alg, _key, data) => {
  const tag = tagBits(alg);
  if (data !== null && data.length < tag / 8) fail.badParameter(`the data is ${data.length} bytes, shorter than the ${tag / 8}-byte tag`, { field: 'data' });
  iv(alg);
};

const AES_BLOCK = 16;

/** AES-CBC: a 16-byte iv (and, to decrypt, whole blocks: the daemon's check, with the padding). */
const cbc: ParamCheck = (alg) => {
  const n = (alg.iv as Uint8Array).length;
  if (n !== AES_BLOCK) fail.badParameter(`AES-CBC needs an iv of ${AES_BLOCK} bytes, got ${n}`, { field: 'algorithm.iv' });
};

/** AES-CTR: a 16-byte counter block, of which the low 1–128 bits count. */
const ctr: ParamCheck = (alg) => {
  const n = (alg.counter as Uint8Array).length;
  if (n !== AES_BLOCK) fail.badParameter(`AES-CTR needs a counter of ${AES_BLOCK} bytes, got ${n}`, { field: 'algorithm.counter' });
  const length = alg.length as number;
  if (length === 0 || length > 128) fail.badParameter(`AES-CTR's counter length must be 1 to 128 bits, got ${length}`, { field: 'algorithm.length' });
};

/** ECDH/X25519/X448: the peer key must be a public key of the same algorithm (and curve). */
const agree: ParamCheck = (alg, key) => {
  const peer = alg.public as KeyLike;
  if (peer.type !== 'public') fail.invalidAccess(`algorithm.public must be a public key, got a ${peer.type} key`, { field: 'algorithm.public' });
  if (peer.algorithm.name !== key.algorithm.name) {
    fail.invalidAccess(`algorithm.public is a ${peer.algorithm.name} key; expected ${key.algorithm.name}`, { field: 'algorithm.public' });
  }
  if (peer.algorithm.namedCurve !== key.algorithm.namedCurve) {
    fail.invalidAccess(`algorithm.public is on ${String(peer.algorithm.namedCurve)}, the private key on ${String(key.algorithm.namedCurve)}`, {
      field: 'algorithm.public',
    });
  }
};

const HASH_BYTES: Readonly<Record<string, number>> = { 'SHA-1': 20, 'SHA-256': 32, 'SHA-384': 48, 'SHA-512': 64 };
const HASH_BLOCK_BITS: Readonly<Record<string, number>> = { 'SHA-1': 512, 'SHA-256': 512, 'SHA-384': 1024, 'SHA-512': 1024 };
/** Bits of the shared secret of each agreement, by curve (X25519 has none). */
const SECRET_BITS: Readonly<Record<string, number>> = { 'P-256': 256, 'P-384': 384, 'P-521': 528, X25519: 256, X448: 448 };

/**
 * deriveBits' length checks (deriveKey runs them too, before the derived key's
 * usages): HKDF needs whole bytes up to 255 hash lengths (RFC 5869 §2.3), an
 * agreement at most its shared secret. Length 0 is left to the daemon.
 */
export function checkDeriveLength(alg: Normalized, key: KeyLike, length: number | null): void {
  if (alg.name === 'HKDF') {
    if (length === null) fail.operation('HKDF needs a length: pass the number of bits to derive', { field: 'length' });
    const max = 255 * (HASH_BYTES[(alg.hash as Normalized).name] ?? 0) * 8;
    if (length! % 8 !== 0) fail.operation(`HKDF derives whole bytes: length must be a multiple of 8, got ${length}`, { field: 'length' });
    if (length! > max) fail.operation(`HKDF with ${(alg.hash as Normalized).name} derives at most ${max} bits, asked for ${length}`, { field: 'length', max });
    return;
  }
  if (alg.name === 'PBKDF2') {
    if (length === null) fail.operation('PBKDF2 needs a length: pass the number of bits to derive', { field: 'length' });
    if (length! % 8 !== 0) fail.operation(`PBKDF2 derives whole bytes: length must be a multiple of 8, got ${length}`, { field: 'length' });
    if (alg.iterations === 0) fail.operation('PBKDF2 needs at least 1 iteration; pass algorithm.iterations ≥ 1', { field: 'algorithm.iterations' });
    return;
  }
  const curveless = key.algorithm.name === 'X25519' || key.algorithm.name === 'X448';
  const bits = SECRET_BITS[curveless ? key.algorithm.name : String(key.algorithm.namedCurve)];
  if (length !== null && bits !== undefined && length > bits) {
    fail.operation(`the shared secret has ${bits} bits, asked for ${length}`, { field: 'length', max: bits });
  }
}

/** WebCrypto "get key length" of deriveKey's derived key type: bits, or null (HKDF: any length). */
export function derivedKeyLength(alg: Normalized): number | null {
  if (alg.name === 'HKDF' || alg.name === 'PBKDF2') return null;
  if (alg.name === 'ChaCha20-Poly1305') return 256;
  if (alg.name === 'HMAC') return (alg.length as number | undefined) ?? HASH_BLOCK_BITS[(alg.hash as Normalized).name] ?? null;
  return alg.length as number;
}

export const ENCRYPT_CHECKS: Readonly<Record<string, ParamCheck>> = { 'AES-GCM': seal, 'ChaCha20-Poly1305': seal, 'AES-CBC': cbc, 'AES-CTR': ctr };
export const DECRYPT_CHECKS: Readonly<Record<string, ParamCheck>> = { 'AES-GCM': open, 'ChaCha20-Poly1305': open, 'AES-CBC': cbc, 'AES-CTR': ctr };
export const DERIVE_CHECKS: Readonly<Record<string, ParamCheck>> = { ECDH: agree, X25519: agree, X448: agree };
