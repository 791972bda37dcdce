/**
 * What each algorithm allows, for the checks `client.subtle` makes before a
 * request leaves (W3C Web Cryptography API, each algorithm's "generate key"
 * and "import key" steps; the Secure Curves draft for Ed25519/X25519): the
 * usages of each key type, the key formats, and the parameter checks that come
 * after the usages. Adding an algorithm is adding a row.
 */
import type { Normalized } from './algorithms.js';
import { fail } from './errors.js';

export type KeyUsage = 'encrypt' | 'decrypt' | 'sign' | 'verify' | 'deriveKey' | 'deriveBits' | 'wrapKey' | 'unwrapKey';
export type KeyFormat = 'raw' | 'pkcs8' | 'spki' | 'jwk';
export type KeyType = 'secret' | 'private' | 'public';

export const KEY_USAGES: readonly KeyUsage[] = ['encrypt', 'decrypt', 'sign', 'verify', 'deriveKey', 'deriveBits', 'wrapKey', 'unwrapKey'];
export const KEY_FORMATS: readonly KeyFormat[] = ['raw', 'spki', 'pkcs8', 'jwk'];

interface Rules {
  /** Usages each key type may carry. */
  readonly usages: Partial<Record<KeyType, readonly KeyUsage[]>>;
  /** Formats importKey accepts. */
  readonly formats: readonly KeyFormat[];
  /** generateKey's parameter checks, after the usages (WebCrypto: OperationError, NotSupportedError). */
  readonly generate?: (alg: Normalized) => void;
  /** importKey's parameter checks, after the usages and before the key data. */
  readonly import?: (alg: Normalized, extractable: boolean) => void;
}

const CIPHER: readonly KeyUsage[] = ['encrypt', 'decrypt', 'wrapKey', 'unwrapKey'];
const WRAP: readonly KeyUsage[] = ['wrapKey', 'unwrapKey'];
const DERIVE: readonly KeyUsage[] = ['deriveKey', 'deriveBits'];
const SECRET_FORMATS: readonly KeyFormat[] = ['raw', 'jwk'];
const PAIR_FORMATS: readonly KeyFormat[] = ['raw', 'spki', 'pkcs8', 'jwk'];
const RSA_FORMATS: readonly KeyFormat[] = ['spki', 'pkcs8', 'jwk'];
const CURVES = ['P-256', 'P-384', 'P-521'];

function aesLength(alg: Normalized): void {
  const length = alg.length as number;
  if (length !== 128 && length !== 192 && length !== 256) {
    fail.badParameter(`expected 'algorithm.length' of an ${alg.name} key to be 128, 192 or 256, got ${length}`, { field: 'algorithm.length' });
  }
}

function hmacLength(alg: Normalized): void {
  const length = alg.length as number | undefined;
  if (length === undefined) return;
  if (length === 0) fail.badParameter("expected 'algorithm.length' of an HMAC key to be at least 8; omit it for the hash's block size", { field: 'algorithm.length' });
  // Whole bytes only, as Node's crypto.subtle (which names this a TypeError).
  if (length % 8 !== 0) fail.type(`expected 'algorithm.length' of an HMAC key to be a multiple of 8, got ${length}`, { field: 'algorithm.length' });
}

/** A password or input keying material (HKDF, PBKDF2) never leaves again. */
function notExtractable(alg: Normalized, extractable: boolean): void {
  if (extractable) fail.syntax(`an ${alg.name} key cannot be extractable; pass extractable false`, { field: 'extractable' });
}

function curve(alg: Normalized): void {
  if (!CURVES.includes(alg.namedCurve as string)) {
    fail.notSupported(`Unrecognized namedCurve '${String(alg.namedCurve).slice(0, 24)}'; expected one of ${CURVES.join(', ')}`, { field: 'algorithm.namedCurve' });
  }
}

export const RULES: Readonly<Record<string, Rules>> = {
  'AES-GCM': { usages: { secret: CIPHER }, formats: SECRET_FORMATS, generate: aesLength },
  'AES-KW': { usages: { secret: WRAP }, formats: SECRET_FORMATS, generate: aesLength },
  'AES-KWP': { usages: { secret: WRAP }, formats: SECRET_FORMATS, generate: aesLength },
  'ChaCha20-Poly1305': { usages: { secret: CIPHER }, formats: SECRET_FORMATS },
  // At import a length is checked against the key data, by the daemon (DataError).
  HMAC: { usages: { secret: ['sign', 'verify'] }, formats: SECRET_FORMATS, generate: hmacLength },
  HKDF: { usages: { secret: DERIVE }, formats: ['raw'], import: notExtractable },
  ECDSA: { usages: { private: ['sign'], public: ['verify'] }, formats: PAIR_FORMATS, generate: curve, import: curve },
  ECDH: { usages: { private: DERIVE, public: [] }, formats: PAIR_FORMATS, generate: curve, import: curve },
  Ed25519: { usages: { private: ['sign'], public: ['verify'] }, formats: PAIR_FORMATS },
  X25519: { usages: { private: DERIVE, public: [] }, formats: PAIR_FORMATS },
  'RSA-PSS': { usages: { private: ['sign'], public: ['verify'] }, formats: RSA_FORMATS },
  'AES-CBC': { usages: { secret: CIPHER }, formats: SECRET_FORMATS, generate: aesLength },
  'AES-CTR': { usages: { secret: CIPHER }, formats: SECRET_FORMATS, generate: aesLength },
  PBKDF2: { usages: { secret: DERIVE }, formats: ['raw'], import: notExtractable },
  // The public key encrypts (and wraps), the private key decrypts (and unwraps).
  'RSA-OAEP': { usages: { private: ['decrypt', 'unwrapKey'], public: ['encrypt', 'wrapKey'] }, formats: RSA_FORMATS },
  'RSASSA-PKCS1-v1_5': { usages: { private: ['sign'], public: ['verify'] }, formats: RSA_FORMATS },
  Ed448: { usages: { private: ['sign'], public: ['verify'] }, formats: PAIR_FORMATS },
  X448: { usages: { private: DERIVE, public: [] }, formats: PAIR_FORMATS },
};

function rulesOf(name: string): Rules {
  const r = RULES[name];
  // normalize() only returns registered names, and every registered key algorithm has rules.
  if (r === undefined) return fail.notSupported(`no key rules for ${name}`);
  return r;
}

const isPair = (r: Rules): boolean => r.usages.secret === undefined;

function refuse(usage: KeyUsage, allowed: readonly KeyUsage[], what: string): never {
  return fail.syntax(`'${usage}' is not a usage of ${what}; allowed: ${allowed.length > 0 ? allowed.join(', ') : 'none'}`, {
    field: 'usages',
    usage,
  });
}

/** generateKey: every usage must fit the key (or one half of the pair); then the parameters; then a secret or private key needs a usage. */
export function checkGenerate(alg: Normalized, usages: readonly KeyUsage[]): void {
  const r = rulesOf(alg.name);
  const allowed = isPair(r) ? [...(r.usages.private ?? []), ...(r.usages.public ?? [])] : (r.usages.secret ?? []);
  for (const u of usages) if (!allowed.includes(u)) refuse(u, allowed, `a ${alg.name} ${isPair(r) ? 'key pair' : 'secret key'}`);
  r.generate?.(alg);
  const type = isPair(r) ? 'private' : 'secret';
  const own = usages.filter((u) => r.usages[type]?.includes(u));
  if (own.length === 0) fail.syntax(`a ${alg.name} ${type} key needs at least one usage (${(r.usages[type] ?? []).join(', ')})`, { field: 'usages' });
}

/** The type of key importKey makes from this format (a JWK is private when it has `d`). */
export function importedType(alg: Normalized, format: KeyFormat, keyData: unknown): KeyType {
  if (!isPair(rulesOf(alg.name))) return 'secret';
  if (format === 'pkcs8') return 'private';
  if (format === 'jwk') return (keyData as { d?: unknown }).d !== undefined ? 'private' : 'public';
  return 'public';
}

/** importKey, before the key data is looked at: usages (SyntaxError), then the format (NotSupportedError), then the parameters. */
export function checkImport(alg: Normalized, format: KeyFormat, type: KeyType, extractable: boolean, usages: readonly KeyUsage[]): void {
  const r = rulesOf(alg.name);
  const allowed = r.usages[type] ?? [];
  // A key pair's import steps branch on the format first (a format with no branch: NotSupportedError), then check the usages.
  const badFormat = !r.formats.includes(format);
  if (badFormat && isPair(r)) fail.notSupported(`${alg.name} keys cannot be imported in format '${format}'; formats: ${r.formats.join(', ')}`, { field: 'format' });
  for (const u of usages) if (!allowed.includes(u)) refuse(u, allowed, `a ${alg.name} ${type} key`);
  if (badFormat) fail.notSupported(`${alg.name} keys cannot be imported in format '${format}'; formats: ${r.formats.join(', ')}`, { field: 'format' });
  r.import?.(alg, extractable);
}

/** generateKey's parameter checks alone (deriveKey's "get key length" runs them on derivedKeyType). */
export function checkGenerateParameters(alg: Normalized): void {
  RULES[alg.name]?.generate?.(alg);
}

/** After importKey made the key: a secret or private key without usages is refused (the daemon then releases it). */
export function needsUsage(type: KeyType, usages: readonly KeyUsage[]): boolean {
  return type !== 'public' && usages.length === 0;
}

/** The key an operation uses must be of the normalized algorithm and carry the usage (WebCrypto: InvalidAccessError). */
export function checkKey(alg: Normalized, key: { algorithm: { name: string }; usages: readonly string[] }, usage: KeyUsage, what = 'key'): void {
  if (key.algorithm.name !== alg.name) {
    fail.invalidAccess(`${what} is a ${key.algorithm.name} key; this ${alg.name} operation needs a ${alg.name} key`, { field: what, expected: alg.name, actual: key.algorithm.name });
  }
  if (!key.usages.includes(usage)) {
    fail.invalidAccess(`${what}'s usages (${key.usages.join(', ') || 'none'}) do not include '${usage}'`, { field: what, usage });
  }
}
