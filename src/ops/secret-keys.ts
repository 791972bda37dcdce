/**
 * Secret keys: AES-GCM, AES-CBC, AES-CTR, ChaCha20-Poly1305, AES-KW, AES-KWP,
 * HMAC, HKDF, PBKDF2.
 * Their value is bytes the daemon owns (`Buffer.alloc`), zeroed when the key
 * node is freed (src/ops/key.ts). Generate, import (raw, jwk) and export.
 *
 * JWK `alg` values (RFC 7518 §3.2, §4.4, §5.3; A128CBC/A128CTR… as WebCrypto §26/§27 name them; ChaCha20-Poly1305 "C20P" as in
 * draft-amringer-jose-chacha; AES-KWP is cryptod's extension and uses
 * "A128KWP", "A192KWP", "A256KWP", by analogy with "A128KW").
 */
import { randomFillSync } from 'node:crypto';
import type { CborValue } from '../protocol/cbor.js';
import { DataError, InvalidArgumentError, UnsupportedError } from '../protocol/errors.js';
import { normalizeHash, type HashName } from './algorithms.js';
import type { Args } from './args.js';
import { b64url, checkJwk, jwkBytes, jwkTail, quote, type Jwk, type JwkOut } from './jwk.js';
import { KeyNode, type KeyAlgorithm, type KeyUsage } from './key.js';
import { checkUsageNames, checkUsages, type SecretAlgorithm } from './key-usages.js';

/** HMAC's default key length is the hash's block size (WebCrypto §29.6 "get key length"). */
export const HASH_BLOCK_BITS: Record<HashName, number> = { 'SHA-1': 512, 'SHA-256': 512, 'SHA-384': 1024, 'SHA-512': 1024 };
/** Output length of each hash in bytes (HKDF's limit is 255 of these, RFC 5869 §2.3). */
export const HASH_BYTES: Record<HashName, number> = { 'SHA-1': 20, 'SHA-256': 32, 'SHA-384': 48, 'SHA-512': 64 };
/** Largest HMAC key generateKey/deriveKey will make (bits). Imports are bounded only by the frame size. */
export const MAX_HMAC_GENERATE_BITS = 8192;

const HMAC_JWK_ALG: Record<HashName, string> = { 'SHA-1': 'HS1', 'SHA-256': 'HS256', 'SHA-384': 'HS384', 'SHA-512': 'HS512' };

function isAes(name: SecretAlgorithm): name is 'AES-GCM' | 'AES-KW' | 'AES-KWP' | 'AES-CBC' | 'AES-CTR' {
  return name === 'AES-GCM' || name === 'AES-KW' || name === 'AES-KWP' || name === 'AES-CBC' || name === 'AES-CTR';
}

/** HKDF and PBKDF2 keys are key material for a derivation, not keys of a cipher or MAC. */
function isKdf(name: SecretAlgorithm): name is 'HKDF' | 'PBKDF2' {
  return name === 'HKDF' || name === 'PBKDF2';
}

function hmacHash(params: Args, field: string): HashName {
  return normalizeHash(params.hash, `${field}.hash`);
}

/** An optional length parameter in bits: an integer when present. */
function lengthParam(params: Args, field: string): number | undefined {
  const v = params.length;
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new InvalidArgumentError(`expected '${field}.length' to be a non-negative integer (bits)`, { detail: { field: `${field}.length` } });
  }
  return v;
}

/**
 * The byte length of a key of this algorithm made by generateKey or
 * deriveKey (WebCrypto "get key length"); null for HKDF, whose keys have any
 * length.
 */
export function secretKeyBytes(name: SecretAlgorithm, params: Args, field = 'algorithm'): number | null {
  const length = lengthParam(params, field);
  if (isAes(name)) {
    if (length !== 128 && length !== 192 && length !== 256) {
      throw new InvalidArgumentError(`expected '${field}.length' of an ${name} key to be 128, 192 or 256, got ${length ?? 'nothing'}`, {
        detail: { field: `${field}.length`, webcrypto: 'OperationError' },
      });
    }
    return length / 8;
  }
  switch (name) {
    case 'ChaCha20-Poly1305':
      if (length !== undefined && length !== 256) {
        throw new InvalidArgumentError(`a ChaCha20-Poly1305 key is 256 bits (RFC 8439 §2.3), got 'length' ${length}`, { detail: { field: `${field}.length` } });
      }
      return 32;
    case 'HMAC': {
      const bits = length ?? HASH_BLOCK_BITS[hmacHash(params, field)];
      if (bits === 0 || bits % 8 !== 0 || bits > MAX_HMAC_GENERATE_BITS) {
        throw new InvalidArgumentError(`expected '${field}.length' of a new HMAC key to be a multiple of 8 from 8 to ${MAX_HMAC_GENERATE_BITS}, got ${bits}`, {
          // WebCrypto names (as Node): 0 an OperationError, partial bytes a TypeError, past the limit cryptod does not support.
          detail: { field: `${field}.length`, webcrypto: bits === 0 ? 'OperationError' : bits % 8 !== 0 ? 'TypeError' : 'NotSupportedError' },
        });
      }
      return bits / 8;
    }
    default:
      return null;
  }
}

/**
 * Build a secret key node around `secret`, which the node takes over (no
 * copy). Checks the length for the algorithm, the usages, and HMAC's hash and
 * length parameters. On any error `secret` is zeroed before the throw.
 */
export function makeSecretKey(
  name: SecretAlgorithm,
  params: Args,
  secret: Buffer,
  extractable: boolean,
  usages: readonly KeyUsage[],
  field = 'algorithm',
): KeyNode {
  try {
    checkUsageNames(name, 'secret', usages);
    const algorithm = secretAlgorithm(name, params, secret.length, field);
    if (isKdf(name) && extractable) {
      // WebCrypto importKey of HKDF and PBKDF2: such a key is never extractable (SyntaxError).
      throw new InvalidArgumentError(`an ${name} key cannot be extractable; pass 'extractable': false`, { detail: { field: 'extractable', webcrypto: 'SyntaxError' } });
    }
    // WebCrypto importKey: "usages is empty" is checked after the key data (a 15-byte AES key is a DataError first).
    checkUsages(name, 'secret', usages);
    return new KeyNode({ algorithm, type: 'secret', extractable, usages, secret });
  } catch (err) {
    secret.fill(0);
    throw err;
  }
}

function secretAlgorithm(name: SecretAlgorithm, params: Args, n: number, field: string): KeyAlgorithm {
  if (isAes(name)) {
    if (n !== 16 && n !== 24 && n !== 32) {
      throw new DataError(`expected a 16-, 24- or 32-byte AES key, got ${n}`, { detail: { expected: '16, 24 or 32', actual: n } });
    }
    return { name, length: n * 8 };
  }
  switch (name) {
    case 'ChaCha20-Poly1305':
      if (n !== 32) throw new DataError(`expected a 32-byte ChaCha20-Poly1305 key, got ${n}`, { detail: { expected: 32, actual: n } });
      return { name, length: 256 };
    case 'HMAC': {
      const hash = hmacHash(params, field);
      // WebCrypto §29.6 importKey: a zero-length HMAC key is a DataError.
      if (n === 0) throw new DataError('expected an HMAC key of at least 1 byte, got 0', { detail: { expected: '>= 1', actual: 0 } });
      const length = lengthParam(params, field);
      if (length !== undefined && length % 8 !== 0) {
        // A deliberate limit, but what WebCrypto code meets here is the key data not matching the length.
        throw new UnsupportedError(`HMAC keys are whole bytes; 'length' ${length} is not a multiple of 8`, { detail: { field: `${field}.length`, webcrypto: 'DataError' } });
      }
      if (length !== undefined && length !== n * 8) {
        throw new DataError(`'length' says ${length} bits but the HMAC key is ${n * 8} bits`, { detail: { expected: length, actual: n * 8 } });
      }
      return { name, hash: { name: hash }, length: n * 8 };
    }
    case 'HKDF':
    case 'PBKDF2':
      return { name };
  }
  throw new UnsupportedError(`not a secret key algorithm: ${String(name)}`);
}

export function generateSecretKey(name: SecretAlgorithm, params: Args, extractable: boolean, usages: readonly KeyUsage[]): KeyNode {
  if (isKdf(name)) throw new UnsupportedError(`${name} keys are imported (format raw), not generated, as in WebCrypto`);
  checkUsages(name, 'secret', usages); // before drawing random bytes for nothing
  const n = secretKeyBytes(name, params)!;
  return makeSecretKey(name, params, randomFillSync(Buffer.alloc(n)), extractable, usages);
}

/** The JWK `alg` of a secret key. */
export function secretJwkAlg(algorithm: KeyAlgorithm): string {
  const bits = algorithm.length ?? 0;
  switch (algorithm.name) {
    case 'AES-GCM':
      return `A${bits}GCM`;
    case 'AES-KW':
      return `A${bits}KW`;
    case 'AES-KWP':
      return `A${bits}KWP`;
    case 'AES-CBC':
      return `A${bits}CBC`;
    case 'AES-CTR':
      return `A${bits}CTR`;
    case 'ChaCha20-Poly1305':
      return 'C20P';
    case 'HMAC':
      return HMAC_JWK_ALG[algorithm.hash!.name as HashName];
    default:
      throw new UnsupportedError(`${algorithm.name} keys have no JWK form`);
  }
}

export function importSecretKey(
  name: SecretAlgorithm,
  params: Args,
  format: 'raw' | 'jwk',
  keyData: Buffer | Jwk,
  extractable: boolean,
  usages: readonly KeyUsage[],
): KeyNode {
  if (format === 'raw') return makeSecretKey(name, params, keyData as Buffer, extractable, usages);
  if (isKdf(name)) throw new UnsupportedError(`${name} keys are imported in format 'raw' only, as in WebCrypto`);
  const jwk = keyData as Jwk;
  checkJwk(jwk, { kty: 'oct', use: name === 'HMAC' ? 'sig' : 'enc', usages, extractable });
  const secret = jwkBytes(jwk, 'k');
  try {
    // The expected alg depends on the key's length (AES) or hash (HMAC). A wrong one is a
    // DataError, which WebCrypto reports before an empty usage list (checked by makeSecretKey).
    const want = secretJwkAlg(secretAlgorithm(name, params, secret.length, 'algorithm'));
    const alg = jwk.alg;
    if (alg !== undefined && alg !== want) {
      throw new DataError(`expected JWK 'alg' to be '${want}' for this key, got ${typeof alg === 'string' ? quote(alg) : 'not text'}`, {
        detail: { member: 'alg', expected: want },
      });
    }
  } catch (err) {
    secret.fill(0);
    throw err;
  }
  return makeSecretKey(name, params, secret, extractable, usages);
}

/** Raw bytes (a fresh copy the caller zeroes) or a JWK. */
export function exportSecretKey(format: 'raw' | 'jwk', key: KeyNode): Buffer | CborValue {
  if (format === 'raw') {
    const out = Buffer.alloc(key.secret.length);
    key.secret.copy(out);
    return out;
  }
  // JS strings cannot be wiped: the base64url text of `k` lives until collected (README).
  const jwk: JwkOut = { kty: 'oct', k: b64url(key.secret), alg: secretJwkAlg(key.algorithm), ...jwkTail(key.usages, key.extractable) };
  return jwk;
}
