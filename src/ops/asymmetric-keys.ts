/**
 * Asymmetric keys: Ed25519, Ed448, ECDSA, RSA-PSS and RSASSA-PKCS1-v1_5
 * (signatures), RSA-OAEP (encryption), X25519, X448 and ECDH (key agreement). Their value is a node:crypto KeyObject (OpenSSL memory,
 * see src/ops/key.ts). Generate pairs; import and export raw (public points),
 * spki (RFC 5280 §4.1.2.7), pkcs8 (RFC 5208) and jwk (RFC 7517/7518/8037).
 *
 * Imports are validated beyond what OpenSSL checks on its own: the key type
 * and curve must be the requested ones, RSA sizes must be supported, and a
 * private JWK's public members must match its private scalar (node takes an
 * EC private JWK's x/y on trust; for Ed25519/X25519 it silently ignores x).
 */
import {
  ECDH,
  createECDH,
  createPrivateKey,
  createPublicKey,
  generateKeyPair as generateKeyPairAsync,
  generateKeyPairSync,
  timingSafeEqual,
  type JsonWebKey,
  type KeyObject,
} from 'node:crypto';
import type { CborValue } from '../protocol/cbor.js';
import { DataError, InvalidArgumentError, type CryptodError, InvalidKeyError, OperationError, UnsupportedError } from '../protocol/errors.js';
import { normalizeHash, type HashName } from './algorithms.js';
import { kindOf, type Args } from './args.js';
import { b64url, checkJwk, jwkBytes, jwkText, jwkTail, quote, type Jwk, type JwkOut } from './jwk.js';
import { KeyNode, type KeyAlgorithm, type KeyType, type KeyUsage } from './key.js';
import { checkUsageNames, checkUsages, splitPairUsages, type AsymmetricAlgorithm } from './key-usages.js';

export type CurveName = 'P-256' | 'P-384' | 'P-521';
export interface KeyPairNodes {
  publicKey: KeyNode;
  privateKey: KeyNode;
}

const OPENSSL_CURVE: Record<CurveName, string> = { 'P-256': 'prime256v1', 'P-384': 'secp384r1', 'P-521': 'secp521r1' };
/** Bytes of one coordinate (and of r and s in a P1363 signature): ⌈field bits / 8⌉. */
export const COORD_BYTES: Record<CurveName, number> = { 'P-256': 32, 'P-384': 48, 'P-521': 66 };
/** RFC 7518 §3.4 / RFC 8812: the JWS alg of ECDSA on each curve (the hash is the request's). */
const ES_ALG: Record<CurveName, string> = { 'P-256': 'ES256', 'P-384': 'ES384', 'P-521': 'ES512' };
/** Raw public key sizes of the Edwards and Montgomery curves (RFC 8032 §5.1.5, §5.2.5; RFC 7748 §5). */
const OKP_BYTES = { Ed25519: 32, X25519: 32, Ed448: 57, X448: 56 } as const;
export const RSA_MODULUS_LENGTHS: readonly number[] = [2048, 3072, 4096];

/** RsaHashedKeyAlgorithm.publicExponent: the exponent big-endian, without leading zeros. */
function exponentBytes(e: bigint): Uint8Array {
  const hex = e.toString(16);
  return new Uint8Array(Buffer.from(hex.length % 2 === 0 ? hex : `0${hex}`, 'hex'));
}
const PS_ALG: Record<HashName, string> = { 'SHA-1': 'PS1', 'SHA-256': 'PS256', 'SHA-384': 'PS384', 'SHA-512': 'PS512' };
const RS_ALG: Record<HashName, string> = { 'SHA-1': 'RS1', 'SHA-256': 'RS256', 'SHA-384': 'RS384', 'SHA-512': 'RS512' };
const OAEP_ALG: Record<HashName, string> = { 'SHA-1': 'RSA-OAEP', 'SHA-256': 'RSA-OAEP-256', 'SHA-384': 'RSA-OAEP-384', 'SHA-512': 'RSA-OAEP-512' };

/** The JWK `alg` of an RSA key: it names the algorithm and the hash together. */
function rsaJwkAlg(name: AsymmetricAlgorithm, hash: HashName): string {
  return (name === 'RSA-OAEP' ? OAEP_ALG : name === 'RSASSA-PKCS1-v1_5' ? RS_ALG : PS_ALG)[hash];
}

type OkpName = keyof typeof OKP_BYTES;
const isRsa = (name: AsymmetricAlgorithm): boolean => name === 'RSA-PSS' || name === 'RSA-OAEP' || name === 'RSASSA-PKCS1-v1_5';

/** What the requested algorithm says the key must be. */
interface Spec {
  name: AsymmetricAlgorithm;
  nodeType: 'ed25519' | 'x25519' | 'ed448' | 'x448' | 'ec' | 'rsa';
  kty: 'OKP' | 'EC' | 'RSA';
  crv?: string;
  curve?: CurveName;
  hash?: HashName;
}

function namedCurve(params: Args, field: string): CurveName {
  const v = params.namedCurve;
  if (typeof v !== 'string') throw new InvalidArgumentError(`expected '${field}.namedCurve' to be text ('P-256', 'P-384' or 'P-521'), got ${kindOf(v)}`, { detail: { field: `${field}.namedCurve` } });
  if (v !== 'P-256' && v !== 'P-384' && v !== 'P-521') {
    throw new UnsupportedError(`curve '${v.slice(0, 24)}' is not supported; supported: P-256, P-384, P-521`, { detail: { field: `${field}.namedCurve` } });
  }
  return v;
}

function specOf(name: AsymmetricAlgorithm, params: Args, field: string): Spec {
  switch (name) {
    case 'Ed25519':
    case 'X25519':
    case 'Ed448':
    case 'X448':
      return { name, nodeType: name.toLowerCase() as Spec['nodeType'], kty: 'OKP', crv: name };
    case 'ECDSA':
    case 'ECDH': {
      const curve = namedCurve(params, field);
      return { name, nodeType: 'ec', kty: 'EC', crv: curve, curve };
    }
    case 'RSA-PSS':
    case 'RSA-OAEP':
    case 'RSASSA-PKCS1-v1_5':
      return { name, nodeType: 'rsa', kty: 'RSA', hash: normalizeHash(params.hash, `${field}.hash`) };
  }
}

function algorithmOf(spec: Spec, object: KeyObject): KeyAlgorithm {
  if (spec.curve !== undefined) return { name: spec.name, namedCurve: spec.curve };
  if (spec.hash !== undefined) {
    const details = object.asymmetricKeyDetails!;
    return { name: spec.name, modulusLength: details.modulusLength!, publicExponent: exponentBytes(details.publicExponent ?? 0x10001n), hash: { name: spec.hash } };
  }
  return { name: spec.name };
}

function jwkAlgs(spec: Spec): readonly string[] | undefined {
  switch (spec.name) {
    case 'Ed25519':
      return ['Ed25519', 'EdDSA']; // RFC 9864 fully-specified name, and RFC 8037's
    case 'Ed448':
      return ['Ed448', 'EdDSA'];
    case 'ECDSA':
      return [ES_ALG[spec.curve!]];
    case 'RSA-PSS':
    case 'RSA-OAEP':
    case 'RSASSA-PKCS1-v1_5':
      return [rsaJwkAlg(spec.name, spec.hash!)];
    default:
      return undefined; // WebCrypto does not check alg for X25519/ECDH
  }
}

// ── generate ─────────────────────────────────────────────────────────────

function rsaGenerateParams(params: Args): number {
  const m = params.modulusLength;
  if (typeof m !== 'number' || !Number.isInteger(m)) {
    throw new InvalidArgumentError(`expected 'algorithm.modulusLength' to be an integer, got ${kindOf(m)}`, { detail: { field: 'algorithm.modulusLength' } });
  }
  if (!RSA_MODULUS_LENGTHS.includes(m)) {
    throw new UnsupportedError(`RSA modulus length ${m} is not supported; supported: ${RSA_MODULUS_LENGTHS.join(', ')}`, { detail: { field: 'algorithm.modulusLength' } });
  }
  const e = params.publicExponent;
  if (!(e instanceof Uint8Array)) {
    throw new InvalidArgumentError(`expected 'algorithm.publicExponent' to be a byte string (big-endian), got ${kindOf(e)}`, { detail: { field: 'algorithm.publicExponent' } });
  }
  let i = 0;
  while (i < e.length && e[i] === 0) i++;
  const trimmed = e.subarray(i);
  if (trimmed.length !== 3 || trimmed[0] !== 1 || trimmed[1] !== 0 || trimmed[2] !== 1) {
    throw new UnsupportedError('RSA public exponent must be 65537 (0x010001); no other exponent is supported', { detail: { field: 'algorithm.publicExponent' } });
  }
  return m;
}

function pairOf(spec: Spec, pub: KeyObject, priv: KeyObject, extractable: boolean, usages: readonly KeyUsage[]): KeyPairNodes {
  const { publicUsages, privateUsages } = splitPairUsages(spec.name, usages);
  const algorithm = algorithmOf(spec, pub);
  return {
    // WebCrypto: the public half of a generated pair is always extractable.
    publicKey: new KeyNode({ algorithm, type: 'public', extractable: true, usages: publicUsages, object: pub }),
    privateKey: new KeyNode({ algorithm, type: 'private', extractable, usages: privateUsages, object: priv }),
  };
}

/** Curve pairs are made synchronously (µs); RSA on the thread pool, so the event loop keeps serving. */
export function generateKeyPair(name: AsymmetricAlgorithm, params: Args, extractable: boolean, usages: readonly KeyUsage[]): KeyPairNodes | Promise<KeyPairNodes> {
  const spec = specOf(name, params, 'algorithm');
  splitPairUsages(name, usages); // refuse bad usages before doing the work
  switch (spec.nodeType) {
    case 'ed25519':
    case 'x25519':
    case 'ed448':
    case 'x448': {
      const kp = generateKeyPairSync(spec.nodeType as 'ed25519');
      return pairOf(spec, kp.publicKey, kp.privateKey, extractable, usages);
    }
    case 'ec': {
      const kp = generateKeyPairSync('ec', { namedCurve: OPENSSL_CURVE[spec.curve!] });
      return pairOf(spec, kp.publicKey, kp.privateKey, extractable, usages);
    }
    case 'rsa': {
      const modulusLength = rsaGenerateParams(params);
      return new Promise<KeyPairNodes>((resolve, reject) => {
        generateKeyPairAsync('rsa', { modulusLength, publicExponent: 0x10001 }, (err, pub, priv) => {
          if (err) reject(new OperationError('RSA key generation failed', { cause: err }));
          else {
            try {
              resolve(pairOf(spec, pub, priv, extractable, usages));
            } catch (e) {
              reject(e);
            }
          }
        });
      });
    }
  }
}

// ── import ───────────────────────────────────────────────────────────────

function malformed(what: string, spec: Spec, cause: unknown): CryptodError {
  return new DataError(`malformed ${what} for a ${spec.name} key`, { cause, detail: { expected: spec.name } });
}

/** SEC1 §2.3.4 point (uncompressed 04||x||y, or compressed 02/03||x) → JWK x, y. */
function ecPointToJwk(spec: Spec, point: Buffer): JsonWebKey {
  const n = COORD_BYTES[spec.curve!];
  let uncompressed: Buffer;
  if (point.length === 1 + 2 * n && point[0] === 4) {
    uncompressed = point;
  } else if (point.length === 1 + n && (point[0] === 2 || point[0] === 3)) {
    try {
      // Validates that x is on the curve and recovers y.
      uncompressed = ECDH.convertKey(point, OPENSSL_CURVE[spec.curve!], undefined, undefined, 'uncompressed') as Buffer;
    } catch (err) {
      throw malformed('compressed point', spec, err);
    }
  } else {
    throw new DataError(`expected a ${1 + 2 * n}-byte uncompressed or ${1 + n}-byte compressed ${spec.curve} point, got ${point.length} bytes`, {
      detail: { expected: 1 + 2 * n, actual: point.length },
    });
  }
  return { kty: 'EC', crv: spec.crv!, x: b64url(uncompressed.subarray(1, 1 + n)), y: b64url(uncompressed.subarray(1 + n)) };
}

function publicFromJwk(spec: Spec, jwk: JsonWebKey, what: string): KeyObject {
  try {
    return createPublicKey({ key: jwk, format: 'jwk' });
  } catch (err) {
    throw malformed(what, spec, err);
  }
}

function importRaw(spec: Spec, data: Buffer): KeyObject {
  if (spec.nodeType === 'rsa') throw new UnsupportedError(`${spec.name} keys are imported as 'spki', 'pkcs8' or 'jwk', not 'raw'`, { detail: { field: 'format' } });
  if (spec.nodeType === 'ec') return publicFromJwk(spec, ecPointToJwk(spec, data), 'raw point');
  const n = OKP_BYTES[spec.name as OkpName];
  if (data.length !== n) throw new DataError(`expected a ${n}-byte raw ${spec.name} public key, got ${data.length} bytes`, { detail: { expected: n, actual: data.length } });
  return publicFromJwk(spec, { kty: 'OKP', crv: spec.crv!, x: b64url(data) }, 'raw public key');
}

/** The members of a JWK that node needs, type-checked (never passes unknown members on). */
function jwkForNode(spec: Spec, jwk: Jwk, isPrivate: boolean): JsonWebKey {
  const out: JsonWebKey = { kty: spec.kty };
  const members =
    spec.kty === 'RSA'
      ? ['n', 'e', ...(isPrivate ? ['d', 'p', 'q', 'dp', 'dq', 'qi'] : [])]
      : ['crv', 'x', ...(spec.kty === 'EC' ? ['y'] : []), ...(isPrivate ? ['d'] : [])];
  for (const m of members) (out as Record<string, string>)[m] = jwkText(jwk, m);
  return out;
}

function importJwk(spec: Spec, jwk: Jwk, extractable: boolean, usages: readonly KeyUsage[]): { object: KeyObject; type: KeyType } {
  const alg = jwkAlgs(spec);
  const use = spec.name === 'X25519' || spec.name === 'X448' || spec.name === 'ECDH' || spec.name === 'RSA-OAEP' ? 'enc' : 'sig';
  checkJwk(jwk, { kty: spec.kty, use, usages, extractable, ...(alg ? { alg } : {}) });
  if (spec.crv !== undefined) {
    const crv = jwkText(jwk, 'crv');
    if (crv !== spec.crv) throw new DataError(`expected JWK 'crv' to be '${spec.crv}', got ${quote(crv)}`, { detail: { member: 'crv', expected: spec.crv } });
  }
  if (spec.kty === 'RSA' && jwk.oth !== undefined) throw new UnsupportedError('multi-prime RSA keys (JWK \'oth\') are not supported', { detail: { member: 'oth' } });
  const isPrivate = jwk.d !== undefined;
  // Decode the base64url members strictly (node's decoder skips stray characters).
  for (const m of spec.kty === 'RSA' ? ['n', 'e'] : spec.kty === 'EC' ? ['x', 'y'] : ['x']) jwkBytes(jwk, m).fill(0);
  if (isPrivate) jwkBytes(jwk, 'd').fill(0);
  const nodeJwk = jwkForNode(spec, jwk, isPrivate);
  if (!isPrivate) return { object: publicFromJwk(spec, nodeJwk, 'JWK'), type: 'public' };
  let object: KeyObject;
  try {
    object = createPrivateKey({ key: nodeJwk, format: 'jwk' });
  } catch (err) {
    throw malformed('JWK', spec, err);
  }
  if (spec.kty === 'OKP') {
    const derived = createPublicKey(object).export({ format: 'jwk' });
    if (derived.x !== nodeJwk.x) throw new DataError("the JWK's public 'x' does not belong to its private 'd'", { detail: { member: 'x' } });
  }
  return { object, type: 'private' };
}

/** node keeps an EC private key's stored public point on trust: recompute it from the scalar and compare. */
function checkEcPrivate(spec: Spec, object: KeyObject): void {
  const jwk = object.export({ format: 'jwk' });
  const d = Buffer.from(jwk.d ?? '', 'base64url');
  try {
    const ecdh = createECDH(OPENSSL_CURVE[spec.curve!]);
    try {
      ecdh.setPrivateKey(d);
    } catch (err) {
      throw malformed('private scalar', spec, err);
    }
    const n = COORD_BYTES[spec.curve!];
    const pub = ecdh.getPublicKey();
    const x = Buffer.from(jwk.x ?? '', 'base64url');
    const y = Buffer.from(jwk.y ?? '', 'base64url');
    if (x.length !== n || y.length !== n || !timingSafeEqual(pub.subarray(1, 1 + n), x) || !timingSafeEqual(pub.subarray(1 + n), y)) {
      throw new DataError("the key's public point does not belong to its private scalar", { detail: { expected: spec.name } });
    }
  } finally {
    d.fill(0);
  }
}

const NODE_TYPE_NAME: Record<string, string> = { ed25519: 'Ed25519', x25519: 'X25519', ec: 'EC', rsa: 'RSA', 'rsa-pss': 'RSASSA-PSS', dsa: 'DSA', dh: 'DH', ed448: 'Ed448', x448: 'X448' };

/** The key OpenSSL parsed must be of the requested type, curve and size. */
function checkObject(spec: Spec, object: KeyObject): void {
  const t = object.asymmetricKeyType ?? 'unknown';
  if (t !== spec.nodeType) {
    const got = NODE_TYPE_NAME[t] ?? t;
    const hint = t === 'rsa-pss' ? ' (WebCrypto takes RSA-PSS keys with the rsaEncryption OID only)' : '';
    throw new DataError(`expected a ${spec.name} key, got an ${got} key${hint}`, { detail: { expected: spec.name, actual: got } });
  }
  const details = object.asymmetricKeyDetails ?? {};
  if (spec.curve !== undefined && details.namedCurve !== OPENSSL_CURVE[spec.curve]) {
    throw new DataError(`expected a key on curve ${spec.curve}, got one on ${details.namedCurve ?? 'an unknown curve'}`, {
      detail: { expected: spec.curve, actual: details.namedCurve ?? null },
    });
  }
  if (spec.nodeType === 'rsa') {
    const m = details.modulusLength ?? 0;
    if (!RSA_MODULUS_LENGTHS.includes(m)) {
      throw new UnsupportedError(`RSA modulus length ${m} is not supported; supported: ${RSA_MODULUS_LENGTHS.join(', ')}`, { detail: { actual: m } });
    }
    // Generated keys use 65537 only; an imported key may have any odd exponent ≥ 3 (WebCrypto imports them,
    // and verifying under e = 3 is sound with a correct PKCS #1 check: Wycheproof has such keys).
    const e = details.publicExponent ?? 0n;
    if (e < 3n || e % 2n === 0n) throw new UnsupportedError(`RSA public exponent ${e} is not supported; it must be odd and at least 3`);
  }
}

/**
 * Import an asymmetric key. `keyData` bytes are read, not kept (the caller
 * zeroes them); a JWK is a map.
 */
export function importAsymmetricKey(
  name: AsymmetricAlgorithm,
  params: Args,
  format: 'raw' | 'pkcs8' | 'spki' | 'jwk',
  keyData: Buffer | Jwk,
  extractable: boolean,
  usages: readonly KeyUsage[],
  field = 'algorithm',
): KeyNode {
  const spec = specOf(name, params, field);
  // WebCrypto checks the usages against the key type the format implies before it reads the key data.
  const implied: KeyType = format === 'pkcs8' || (format === 'jwk' && isMap(keyData) && keyData.d !== undefined) ? 'private' : 'public';
  checkUsageNames(name, implied, usages);
  let object: KeyObject;
  let type: KeyType;
  switch (format) {
    case 'raw':
      object = importRaw(spec, keyData as Buffer);
      type = 'public';
      break;
    case 'spki':
      try {
        object = createPublicKey({ key: keyData as Buffer, format: 'der', type: 'spki' });
      } catch (err) {
        throw malformed('SPKI data', spec, err);
      }
      type = 'public';
      break;
    case 'pkcs8':
      try {
        object = createPrivateKey({ key: keyData as Buffer, format: 'der', type: 'pkcs8' });
      } catch (err) {
        throw malformed('PKCS #8 data', spec, err);
      }
      type = 'private';
      break;
    case 'jwk':
      ({ object, type } = importJwk(spec, keyData as Jwk, extractable, usages));
      break;
  }
  checkObject(spec, object);
  if (type === 'private' && spec.nodeType === 'ec') checkEcPrivate(spec, object);
  // An SPKI may carry a compressed point, which OpenSSL would export compressed again;
  // WebCrypto exports EC public keys uncompressed, so the key is rebuilt from its coordinates.
  if (type === 'public' && spec.nodeType === 'ec' && format === 'spki') object = publicFromJwk(spec, object.export({ format: 'jwk' }), 'SPKI data');
  checkUsages(name, type, usages);
  return new KeyNode({ algorithm: algorithmOf(spec, object), type, extractable, usages, object });
}

function isMap(v: Buffer | Jwk): v is Jwk {
  return !Buffer.isBuffer(v) && v !== null && typeof v === 'object';
}

// ── export ───────────────────────────────────────────────────────────────

function needType(key: KeyNode, type: KeyType, format: string): void {
  if (key.type !== type) {
    throw new InvalidKeyError(`format '${format}' exports a ${type} key; this is a ${key.type} ${key.algorithm.name} key`, { detail: { expected: type, actual: key.type } });
  }
}

/** spki/pkcs8/raw bytes (fresh buffers the caller zeroes) or a JWK. */
export function exportAsymmetricKey(format: 'raw' | 'pkcs8' | 'spki' | 'jwk', key: KeyNode): Buffer | CborValue {
  const name = key.algorithm.name;
  switch (format) {
    case 'spki':
      needType(key, 'public', format);
      return key.object.export({ type: 'spki', format: 'der' });
    case 'pkcs8':
      needType(key, 'private', format);
      return key.object.export({ type: 'pkcs8', format: 'der' });
    case 'raw': {
      needType(key, 'public', format);
      if (isRsa(name as AsymmetricAlgorithm)) throw new UnsupportedError(`${name} keys export as 'spki', 'pkcs8' or 'jwk', not 'raw'`, { detail: { field: 'format' } });
      const jwk = key.object.export({ format: 'jwk' });
      const x = Buffer.from(jwk.x!, 'base64url');
      if (jwk.kty === 'OKP') return x;
      return Buffer.concat([Buffer.of(4), x, Buffer.from(jwk.y!, 'base64url')]);
    }
    case 'jwk': {
      // JS strings cannot be wiped: a private JWK's text lives until collected (README).
      const out: JwkOut = { ...(key.object.export({ format: 'jwk' }) as JwkOut) };
      // WebCrypto's ECDSA export sets no `alg`: the hash is chosen per signature, not by the key.
      if (name === 'Ed25519' || name === 'Ed448') out.alg = name;
      else if (isRsa(name as AsymmetricAlgorithm)) out.alg = rsaJwkAlg(name as AsymmetricAlgorithm, key.algorithm.hash!.name as HashName);
      return { ...out, ...jwkTail(key.usages, key.extractable) };
    }
  }
}
