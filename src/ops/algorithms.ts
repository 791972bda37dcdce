/**
 * WebCrypto algorithm identifiers (W3C Web Cryptography API §18.4
 * "normalizing an algorithm"): a name or a dictionary with `name`, matched
 * case-insensitively and returned in its registered spelling.
 */
import type { CborValue } from '../protocol/cbor.js';
import { InvalidArgumentError, UnsupportedError } from '../protocol/errors.js';
import { asArgs, kindOf, type Args } from './args.js';

export const ALGORITHMS = [
  'SHA-1',
  'SHA-256',
  'SHA-384',
  'SHA-512',
  'AES-GCM',
  'ChaCha20-Poly1305',
  'AES-KW',
  'AES-KWP',
  'HMAC',
  'HKDF',
  'Ed25519',
  'ECDSA',
  'RSA-PSS',
  'X25519',
  'ECDH',
  'AES-CBC',
  'AES-CTR',
  'RSA-OAEP',
  'RSASSA-PKCS1-v1_5',
  'PBKDF2',
  'Ed448',
  'X448',
] as const;
export type AlgorithmName = (typeof ALGORITHMS)[number];

const byLower = new Map<string, AlgorithmName>(ALGORITHMS.map((n) => [n.toLowerCase(), n]));

export interface NormalizedAlgorithm {
  readonly name: AlgorithmName;
  /** The whole dictionary (empty for a bare name). */
  readonly params: Args;
}

const EMPTY: Args = Object.freeze(Object.create(null) as Args);

export function normalizeAlgorithm(v: CborValue, field = 'algorithm'): NormalizedAlgorithm {
  let name: CborValue;
  let params: Args;
  if (typeof v === 'string') {
    name = v;
    params = EMPTY;
  } else {
    params = asArgs(v, `'${field}'`);
    name = params.name;
    if (typeof name !== 'string') {
      throw new InvalidArgumentError(`expected '${field}.name' to be text, got ${kindOf(name)}`, { detail: { field: `${field}.name` } });
    }
  }
  const canonical = byLower.get(name.toLowerCase());
  if (canonical === undefined) {
    throw new UnsupportedError(`algorithm '${name.slice(0, 40)}' is not supported; supported: ${ALGORITHMS.join(', ')}`, {
      detail: { field: `${field}.name` },
    });
  }
  return { name: canonical, params };
}

export type HashName = 'SHA-1' | 'SHA-256' | 'SHA-384' | 'SHA-512';

/** node:crypto's name for a WebCrypto hash. */
export const NODE_HASH: Record<HashName, string> = {
  'SHA-1': 'sha1',
  'SHA-256': 'sha256',
  'SHA-384': 'sha384',
  'SHA-512': 'sha512',
};

const HASHES: readonly HashName[] = ['SHA-1', 'SHA-256', 'SHA-384', 'SHA-512'];

/** Normalize an algorithm that must be a hash (digest, HMAC's hash, HKDF's hash…). */
export function normalizeHash(v: CborValue, field = 'hash'): HashName {
  if (v === undefined) throw new InvalidArgumentError(`expected '${field}' to name a hash (SHA-1, SHA-256, SHA-384, SHA-512)`, { detail: { field } });
  let name: AlgorithmName;
  try {
    ({ name } = normalizeAlgorithm(v, field));
  } catch (err) {
    // Only hashes can go here: listing AES-GCM or Ed25519 as "supported" would mislead.
    if (!(err instanceof UnsupportedError)) throw err;
    const given = typeof v === 'string' ? v : String((v as Record<string, unknown>).name);
    throw new UnsupportedError(`hash '${given.slice(0, 40)}' is not supported; supported hashes: ${HASHES.join(', ')}`, { detail: { field } });
  }
  if (name !== 'SHA-1' && name !== 'SHA-256' && name !== 'SHA-384' && name !== 'SHA-512') {
    throw new InvalidArgumentError(`expected '${field}' to be a hash (SHA-1, SHA-256, SHA-384, SHA-512), got ${name}`, { detail: { field } });
  }
  return name;
}
