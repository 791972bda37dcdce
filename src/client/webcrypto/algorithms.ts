/**
 * The algorithms `client.subtle` knows, per operation, with the IDL
 * dictionary each one's parameters are converted to (W3C Web Cryptography API
 * §18.4 "Algorithm normalization": the "supportedAlgorithms" table). Adding
 * an algorithm is adding its rows here and in rules.ts (and params.ts); normalization,
 * conversion order and error names follow from them.
 *
 *   normalize(alg, op)
 *     ├─ a string is { name: alg }; an object is read as an Algorithm → TypeError if it has no name
 *     ├─ name not registered for op (case-insensitive) ────────────────────→ NotSupportedError
 *     └─ members of its dictionary, inherited first, each in
 *        lexicographic order, converted by type ───────────────────────────→ TypeError
 *        (a hash member is itself normalized for 'digest' → NotSupportedError)
 *
 * Members a dictionary does not declare are dropped, as WebIDL drops them.
 */
import type { CborValue } from '../../protocol/cbor.js';
import { fail } from './errors.js';
import { dictionarySource, toBufferSource, toDOMString, toUnsigned, type IntegerType } from './webidl.js';

export type SubtleOperation =
  | 'digest'
  | 'generateKey'
  | 'importKey'
  | 'encrypt'
  | 'decrypt'
  | 'sign'
  | 'verify'
  | 'deriveBits'
  | 'get key length'
  | 'wrapKey'
  | 'unwrapKey';

type MemberType = IntegerType | 'BufferSource' | 'BigInteger' | 'DOMString' | 'HashAlgorithmIdentifier' | 'CryptoKey';
interface Member {
  readonly type: MemberType;
  readonly required?: true;
  readonly enforceRange?: true;
}
type Dictionary = Readonly<Record<string, Member>>;

const required = <T extends MemberType>(type: T): Member => ({ type, required: true, enforceRange: true });
const optional = <T extends MemberType>(type: T): Member => ({ type, enforceRange: true });

/** IDL dictionaries by name (members of `Algorithm`, i.e. `name`, are handled by normalize()). */
const DICTIONARIES = {
  Algorithm: {},
  AesKeyGenParams: { length: required('unsigned short') },
  AesDerivedKeyParams: { length: required('unsigned short') },
  AesGcmParams: { additionalData: optional('BufferSource'), iv: required('BufferSource'), tagLength: optional('octet') },
  HmacKeyGenParams: { hash: required('HashAlgorithmIdentifier'), length: optional('unsigned long') },
  HmacImportParams: { hash: required('HashAlgorithmIdentifier'), length: optional('unsigned long') },
  EcKeyGenParams: { namedCurve: required('DOMString') },
  EcKeyImportParams: { namedCurve: required('DOMString') },
  EcdsaParams: { hash: required('HashAlgorithmIdentifier') },
  EcdhKeyDeriveParams: { public: required('CryptoKey') },
  RsaHashedKeyGenParams: { hash: required('HashAlgorithmIdentifier'), modulusLength: required('unsigned long'), publicExponent: required('BigInteger') },
  RsaHashedImportParams: { hash: required('HashAlgorithmIdentifier') },
  RsaPssParams: { saltLength: required('unsigned long') },
  HkdfParams: { hash: required('HashAlgorithmIdentifier'), info: required('BufferSource'), salt: required('BufferSource') },
  AesCbcParams: { iv: required('BufferSource') },
  AesCtrParams: { counter: required('BufferSource'), length: required('octet') },
  RsaOaepParams: { label: optional('BufferSource') },
  Pbkdf2Params: { hash: required('HashAlgorithmIdentifier'), iterations: required('unsigned long'), salt: required('BufferSource') },
  Ed448Params: { context: optional('BufferSource') },
} satisfies Record<string, Dictionary>;
export type DictionaryName = keyof typeof DICTIONARIES;

const HASHES = { 'SHA-1': 'Algorithm', 'SHA-256': 'Algorithm', 'SHA-384': 'Algorithm', 'SHA-512': 'Algorithm' } as const;
const CIPHERS = {
  'AES-GCM': 'AesGcmParams',
  'ChaCha20-Poly1305': 'AesGcmParams',
  'AES-CBC': 'AesCbcParams',
  'AES-CTR': 'AesCtrParams',
  'RSA-OAEP': 'RsaOaepParams',
} as const;
const SIGNATURES = {
  HMAC: 'Algorithm',
  Ed25519: 'Algorithm',
  Ed448: 'Ed448Params',
  ECDSA: 'EcdsaParams',
  'RSA-PSS': 'RsaPssParams',
  'RSASSA-PKCS1-v1_5': 'Algorithm',
} as const;

/** Registered algorithm name → its parameter dictionary, per operation. */
export const SUPPORTED: Readonly<Record<SubtleOperation, Readonly<Record<string, DictionaryName>>>> = {
  digest: HASHES,
  generateKey: {
    'AES-GCM': 'AesKeyGenParams',
    'AES-KW': 'AesKeyGenParams',
    'AES-KWP': 'AesKeyGenParams',
    'ChaCha20-Poly1305': 'Algorithm',
    HMAC: 'HmacKeyGenParams',
    ECDSA: 'EcKeyGenParams',
    ECDH: 'EcKeyGenParams',
    Ed25519: 'Algorithm',
    X25519: 'Algorithm',
    'RSA-PSS': 'RsaHashedKeyGenParams',
    'AES-CBC': 'AesKeyGenParams',
    'AES-CTR': 'AesKeyGenParams',
    'RSA-OAEP': 'RsaHashedKeyGenParams',
    'RSASSA-PKCS1-v1_5': 'RsaHashedKeyGenParams',
    Ed448: 'Algorithm',
    X448: 'Algorithm',
  },
  importKey: {
    'AES-GCM': 'Algorithm',
    'AES-KW': 'Algorithm',
    'AES-KWP': 'Algorithm',
    'ChaCha20-Poly1305': 'Algorithm',
    HMAC: 'HmacImportParams',
    HKDF: 'Algorithm',
    ECDSA: 'EcKeyImportParams',
    ECDH: 'EcKeyImportParams',
    Ed25519: 'Algorithm',
    X25519: 'Algorithm',
    'RSA-PSS': 'RsaHashedImportParams',
    'AES-CBC': 'Algorithm',
    'AES-CTR': 'Algorithm',
    PBKDF2: 'Algorithm',
    'RSA-OAEP': 'RsaHashedImportParams',
    'RSASSA-PKCS1-v1_5': 'RsaHashedImportParams',
    Ed448: 'Algorithm',
    X448: 'Algorithm',
  },
  encrypt: CIPHERS,
  decrypt: CIPHERS,
  sign: SIGNATURES,
  verify: SIGNATURES,
  deriveBits: { HKDF: 'HkdfParams', ECDH: 'EcdhKeyDeriveParams', X25519: 'EcdhKeyDeriveParams', PBKDF2: 'Pbkdf2Params', X448: 'EcdhKeyDeriveParams' },
  'get key length': {
    'AES-GCM': 'AesDerivedKeyParams',
    'AES-KW': 'AesDerivedKeyParams',
    'AES-KWP': 'AesDerivedKeyParams',
    'ChaCha20-Poly1305': 'Algorithm',
    HMAC: 'HmacImportParams',
    HKDF: 'Algorithm',
    'AES-CBC': 'AesDerivedKeyParams',
    'AES-CTR': 'AesDerivedKeyParams',
    PBKDF2: 'Algorithm',
  },
  wrapKey: { 'AES-KW': 'Algorithm', 'AES-KWP': 'Algorithm' },
  unwrapKey: { 'AES-KW': 'Algorithm', 'AES-KWP': 'Algorithm' },
};

/** Encryption algorithms wrapKey/unwrapKey may use (WebCrypto's fallback from wrapKey to encrypt): every one the daemon has. */
export const WRAP_BY_ENCRYPTION: ReadonlySet<string> = new Set<string>(Object.keys(CIPHERS));

/** A normalized algorithm: the registered name and the converted members (BufferSources copied to Uint8Array). */
export interface Normalized {
  readonly name: string;
  readonly [member: string]: unknown;
}

/** Whether a value is one of this client's CryptoKeys (injected: the class lives in subtle.ts). */
export type IsKey = (v: unknown) => boolean;

/** WebCrypto "normalize an algorithm" for an operation. */
export function normalize(algorithm: unknown, op: SubtleOperation, isKey: IsKey, what = 'algorithm'): Normalized {
  // AlgorithmIdentifier is (object or DOMString): anything else is ToString'd (null → "null").
  if (algorithm === null || (typeof algorithm !== 'object' && typeof algorithm !== 'function')) {
    return normalize({ name: toDOMString(algorithm, what) }, op, isKey, what);
  }
  const source = algorithm as Record<string, unknown>;
  const rawName = source.name;
  if (rawName === undefined) fail.type(`${what} cannot be converted to 'Algorithm': its 'name' member is required`, { field: `${what}.name` });
  const given = toDOMString(rawName, `${what}.name`);
  const table = SUPPORTED[op];
  const name = lookupName(op, given);
  if (name === undefined) {
    const digest = op !== 'digest' && Object.keys(SUPPORTED.digest).some((n) => n.toLowerCase() === given.toLowerCase());
    const why = digest ? `${given} is a digest and has no keys` : `Unrecognized algorithm name '${given.slice(0, 40)}'`;
    return fail.notSupported(`${why}; ${op} supports ${Object.keys(table).join(', ')}`, { field: `${what}.name` });
  }
  const dict: Dictionary = DICTIONARIES[table[name]!];
  const out: Record<string, unknown> = { name };
  for (const member of sortedMembers(dict)) {
    const spec = dict[member]!;
    const v = source[member];
    const at = `${what}.${member}`;
    if (v === undefined) {
      if (spec.required) fail.type(`${what} cannot be converted to '${table[name]}': its '${member}' member is required`, { field: at });
      continue;
    }
    out[member] = convertMember(v, spec, at, isKey);
  }
  return out as Normalized;
}

/**
 * The canonical name `given` matches case-insensitively in `op`'s table, as
 * `Object.keys(table).find(n => n.toLowerCase() === given.toLowerCase())`
 * finds it (first in table order), from a map built once per operation: a
 * call then costs one toLowerCase instead of one per supported name.
 */
function lookupName(op: SubtleOperation, given: string): string | undefined {
  let names = NAMES_BY_OP.get(op);
  if (names === undefined) {
    names = new Map();
    for (const n of Object.keys(SUPPORTED[op])) if (!names.has(n.toLowerCase())) names.set(n.toLowerCase(), n);
    NAMES_BY_OP.set(op, names);
  }
  return names.get(given.toLowerCase());
}
const NAMES_BY_OP = new Map<SubtleOperation, Map<string, string>>();

/** A dictionary's members in the order WebIDL reads them (lexicographic), sorted once. */
function sortedMembers(dict: Dictionary): readonly string[] {
  let members = MEMBERS.get(dict);
  if (members === undefined) {
    members = Object.keys(dict).sort();
    MEMBERS.set(dict, members);
  }
  return members;
}
const MEMBERS = new Map<Dictionary, readonly string[]>();

function convertMember(v: unknown, spec: Member, at: string, isKey: IsKey): unknown {
  switch (spec.type) {
    case 'BufferSource':
      return toBufferSource(v, at);
    case 'BigInteger':
      if (!(v instanceof Uint8Array)) fail.type(`${at} is not a Uint8Array (a BigInteger is big-endian bytes)`, { field: at });
      return new Uint8Array(v as Uint8Array);
    case 'DOMString':
      return toDOMString(v, at);
    case 'HashAlgorithmIdentifier':
      return normalize(v, 'digest', isKey, at);
    case 'CryptoKey':
      if (!isKey(v)) fail.type(`${at} is not of type CryptoKey`, { field: at });
      return v;
    default:
      return toUnsigned(v, spec.type, at, spec.enforceRange === true);
  }
}

/**
 * wrapKey/unwrapKey take a wrapping algorithm, or else an encryption
 * algorithm (WebCrypto wrapKey/unwrapKey: "normalize for encrypt" when the wrap op has none) — those the daemon wraps with, listed
 * in WRAP_BY_ENCRYPTION.
 */
export function normalizeWrap(a: unknown, op: 'wrapKey' | 'unwrapKey', fallback: 'encrypt' | 'decrypt', isKey: IsKey, what: string): Normalized {
  const notSupported = (err: unknown): boolean => err instanceof DOMException && err.name === 'NotSupportedError';
  const supported = [...Object.keys(SUPPORTED[op]), ...WRAP_BY_ENCRYPTION].join(', ');
  try {
    return normalize(a, op, isKey, what);
  } catch (err) {
    if (!notSupported(err)) throw err;
  }
  let alg: Normalized;
  try {
    alg = normalize(a, fallback, isKey, what);
  } catch (err) {
    if (!notSupported(err)) throw err;
    const given = typeof a === 'object' && a !== null ? (a as { name?: unknown }).name : a;
    return fail.notSupported(`${op} supports ${supported}; got '${String(given).slice(0, 40)}'`, { field: `${what}.name` });
  }
  if (!WRAP_BY_ENCRYPTION.has(alg.name)) fail.notSupported(`${op} supports ${supported}; ${alg.name} cannot wrap keys`, { field: `${what}.name` });
  return alg;
}

/** A normalized algorithm as the daemon reads it: bytes stay bytes, keys become handles (`handleOf`), a hash its dictionary. */
export function toWire(alg: Normalized, handleOf: (v: unknown) => string | undefined): { name: string; [param: string]: CborValue } {
  const out: { name: string; [param: string]: CborValue } = { name: alg.name };
  // Object.keys, not entries: the same own members in the same order, without an array per member.
  const keys = Object.keys(alg);
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    const v = alg[k];
    if (k === 'name' || v === undefined) continue;
    const handle = handleOf(v);
    if (handle !== undefined) out[k] = handle;
    else if (v instanceof Uint8Array || typeof v === 'number' || typeof v === 'string') out[k] = v;
    else if (v !== null && typeof v === 'object' && typeof (v as Normalized).name === 'string') out[k] = toWire(v as Normalized, handleOf);
  }
  return out;
}
