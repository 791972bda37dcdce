/**
 * Which usages a key may carry, per algorithm and key type (W3C WebCrypto
 * §14.3.7 "generateKey"/"importKey" steps of each algorithm, and the Secure
 * Curves draft for Ed25519/X25519). A usage outside the list is refused when
 * the key is made (WebCrypto's SyntaxError → CRYPTOD_ERR_INVALID_ARGUMENT);
 * using a key without the usage an operation needs is refused by
 * `KeyNode.require()` (CRYPTOD_ERR_INVALID_KEY).
 */
import type { CborValue } from '../protocol/cbor.js';
import { InvalidArgumentError, UnsupportedError } from '../protocol/errors.js';
import type { AlgorithmName } from './algorithms.js';
import { kindOf } from './args.js';
import { KEY_USAGES, type KeyType, type KeyUsage } from './key.js';

/** The algorithms that have keys (the hashes do not). */
export type KeyAlgorithmName = Exclude<AlgorithmName, 'SHA-1' | 'SHA-256' | 'SHA-384' | 'SHA-512'>;
export type SecretAlgorithm = 'AES-GCM' | 'ChaCha20-Poly1305' | 'AES-KW' | 'AES-KWP' | 'HMAC' | 'HKDF' | 'AES-CBC' | 'AES-CTR' | 'PBKDF2';
export type AsymmetricAlgorithm = 'Ed25519' | 'ECDSA' | 'RSA-PSS' | 'X25519' | 'ECDH' | 'RSA-OAEP' | 'RSASSA-PKCS1-v1_5' | 'Ed448' | 'X448';

const CIPHER: readonly KeyUsage[] = ['encrypt', 'decrypt', 'wrapKey', 'unwrapKey'];
const WRAP: readonly KeyUsage[] = ['wrapKey', 'unwrapKey'];
const MAC: readonly KeyUsage[] = ['sign', 'verify'];
const DERIVE: readonly KeyUsage[] = ['deriveKey', 'deriveBits'];
const NONE: readonly KeyUsage[] = [];

type Allowed = Partial<Record<KeyType, readonly KeyUsage[]>>;

const ALLOWED: Record<KeyAlgorithmName, Allowed> = {
  'AES-GCM': { secret: CIPHER },
  'ChaCha20-Poly1305': { secret: CIPHER },
  'AES-KW': { secret: WRAP },
  'AES-KWP': { secret: WRAP },
  HMAC: { secret: MAC },
  HKDF: { secret: DERIVE },
  Ed25519: { private: ['sign'], public: ['verify'] },
  ECDSA: { private: ['sign'], public: ['verify'] },
  'RSA-PSS': { private: ['sign'], public: ['verify'] },
  // An agreement public key has no usage of its own: it is only ever the
  // `public` parameter of the private key's deriveBits/deriveKey.
  X25519: { private: DERIVE, public: NONE },
  ECDH: { private: DERIVE, public: NONE },
  'AES-CBC': { secret: CIPHER },
  'AES-CTR': { secret: CIPHER },
  PBKDF2: { secret: DERIVE },
  // RSA-OAEP: the public key encrypts (and wraps), the private key decrypts (and unwraps).
  'RSA-OAEP': { private: ['decrypt', 'unwrapKey'], public: ['encrypt', 'wrapKey'] },
  'RSASSA-PKCS1-v1_5': { private: ['sign'], public: ['verify'] },
  Ed448: { private: ['sign'], public: ['verify'] },
  X448: { private: DERIVE, public: NONE },
};

const SECRET = new Set<string>(['AES-GCM', 'ChaCha20-Poly1305', 'AES-KW', 'AES-KWP', 'HMAC', 'HKDF', 'AES-CBC', 'AES-CTR', 'PBKDF2']);

export function isSecretAlgorithm(name: KeyAlgorithmName): name is SecretAlgorithm {
  return SECRET.has(name);
}

/** Refuse a digest name where a key algorithm is expected. */
export function keyAlgorithmName(name: AlgorithmName, field = 'algorithm'): KeyAlgorithmName {
  if (name === 'SHA-1' || name === 'SHA-256' || name === 'SHA-384' || name === 'SHA-512') {
    throw new UnsupportedError(`${name} is a digest and has no keys; expected a key algorithm in '${field}'`, { detail: { field } });
  }
  return name;
}

/** Parse a usage list from the wire: known names only; returned deduplicated, in WebCrypto's canonical order. */
export function parseUsages(v: CborValue, field = 'usages'): KeyUsage[] {
  if (!Array.isArray(v)) {
    throw new InvalidArgumentError(`expected '${field}' to be an array of key usages, got ${kindOf(v)}`, { detail: { field } });
  }
  const seen = new Set<KeyUsage>();
  for (const item of v) {
    if (typeof item !== 'string' || !(KEY_USAGES as readonly string[]).includes(item)) {
      const got = typeof item === 'string' ? `'${item.slice(0, 32)}'` : kindOf(item);
      throw new InvalidArgumentError(`expected '${field}[]' to be one of ${KEY_USAGES.join(', ')}, got ${got}`, { detail: { field } });
    }
    seen.add(item as KeyUsage);
  }
  return KEY_USAGES.filter((u) => seen.has(u));
}

export function allowedUsages(name: KeyAlgorithmName, type: KeyType): readonly KeyUsage[] {
  return ALLOWED[name][type] ?? NONE;
}

/** The usages of a key of this algorithm and type must come from its list; a secret or private key needs at least one. */
export function checkUsages(name: KeyAlgorithmName, type: KeyType, usages: readonly KeyUsage[]): void {
  const allowed = checkUsageNames(name, type, usages);
  // WebCrypto importKey/generateKey: a secret or private key with no usage is a SyntaxError.
  if (usages.length === 0 && type !== 'public') {
    throw new InvalidArgumentError(`a ${name} ${type} key needs at least one usage (${allowed.join(', ')})`, { detail: { field: 'usages', webcrypto: 'SyntaxError' } });
  }
}

/** Only the names: every usage must come from the key's list (WebCrypto checks this before the key data). */
export function checkUsageNames(name: KeyAlgorithmName, type: KeyType, usages: readonly KeyUsage[]): readonly KeyUsage[] {
  const allowed = allowedUsages(name, type);
  for (const u of usages) {
    if (!allowed.includes(u)) {
      throw new InvalidArgumentError(
        `'${u}' is not a usage of a ${name} ${type} key; allowed: ${allowed.length > 0 ? allowed.join(', ') : 'none'}`,
        { detail: { field: 'usages', usage: u, webcrypto: 'SyntaxError' } },
      );
    }
  }
  return allowed;
}

/**
 * Split the usages requested for a generated key pair between its halves
 * (WebCrypto: each half gets the intersection with its own list; a usage that
 * fits neither is an error; the private key must end up with at least one).
 */
export function splitPairUsages(name: AsymmetricAlgorithm, usages: readonly KeyUsage[]): { publicUsages: KeyUsage[]; privateUsages: KeyUsage[] } {
  const pub = allowedUsages(name, 'public');
  const priv = allowedUsages(name, 'private');
  for (const u of usages) {
    if (!pub.includes(u) && !priv.includes(u)) {
      throw new InvalidArgumentError(`'${u}' is not a usage of a ${name} key pair; allowed: ${[...priv, ...pub].join(', ')}`, {
        detail: { field: 'usages', usage: u, webcrypto: 'SyntaxError' },
      });
    }
  }
  const privateUsages = usages.filter((u) => priv.includes(u));
  if (privateUsages.length === 0) {
    throw new InvalidArgumentError(`a ${name} private key needs at least one usage (${priv.join(', ')})`, { detail: { field: 'usages', webcrypto: 'SyntaxError' } });
  }
  return { publicUsages: usages.filter((u) => pub.includes(u)), privateUsages };
}
