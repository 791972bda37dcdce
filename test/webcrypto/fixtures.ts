/**
 * The same key material in both implementations: every fixture is made once
 * with node:crypto and imported into Node's `crypto.subtle` and into
 * `client.subtle` by the same importKey call, so a case can hand "the AES-GCM
 * key" to either and expect the same outcome.
 */
import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';

/** What a case may call on either implementation (WebCrypto's SubtleCrypto, loosely typed on purpose). */
type Method = (...args: unknown[]) => Promise<unknown>;
export interface AnySubtle {
  digest: Method;
  generateKey: Method;
  importKey: Method;
  exportKey: Method;
  encrypt: Method;
  decrypt: Method;
  sign: Method;
  verify: Method;
  deriveBits: Method;
  deriveKey: Method;
  wrapKey: Method;
  unwrapKey: Method;
}

export type AnyKey = { type: string; algorithm: { name: string }; usages: string[]; extractable: boolean };
export type Keys = Record<string, AnyKey>;

interface FixtureSpec {
  format: 'raw' | 'pkcs8' | 'spki' | 'jwk';
  data: Uint8Array | Record<string, unknown>;
  algorithm: unknown;
  extractable: boolean;
  usages: string[];
}

const der = (k: KeyObject, type: 'spki' | 'pkcs8'): Uint8Array => new Uint8Array(k.export({ format: 'der', type }));

function pair(type: 'ec' | 'ed25519' | 'x25519' | 'ed448' | 'x448' | 'rsa', opts: object): { pub: Uint8Array; priv: Uint8Array; raw: Uint8Array; privJwk: Record<string, unknown> } {
  const { publicKey, privateKey } = generateKeyPairSync(type as 'ec', opts as { namedCurve: string });
  const spki = der(publicKey, 'spki');
  const jwk = privateKey.export({ format: 'jwk' }) as Record<string, unknown>;
  // raw public form: the point (EC: uncompressed 04||x||y) or the 32 bytes (Ed25519/X25519)
  const raw = type === 'ec' ? new Uint8Array(publicKey.export({ format: 'der', type: 'spki' }).subarray(-((opts as { namedCurve: string }).namedCurve === 'P-256' ? 65 : 97))) : spki.subarray(-32);
  return { pub: spki, priv: der(privateKey, 'pkcs8'), raw, privJwk: jwk };
}

/** Key material fixed for one run (random, but the same bytes go to both implementations). */
export const MATERIAL = (() => {
  const p256 = pair('ec', { namedCurve: 'P-256' });
  const p384 = pair('ec', { namedCurve: 'P-384' });
  const ecdh256 = pair('ec', { namedCurve: 'P-256' });
  const ecdh256b = pair('ec', { namedCurve: 'P-256' });
  const ecdh384 = pair('ec', { namedCurve: 'P-384' });
  const ed = pair('ed25519', {});
  const x = pair('x25519', {});
  const x2 = pair('x25519', {});
  const rsa = pair('rsa', { modulusLength: 2048, publicExponent: 0x10001 });
  const p521 = pair('ec', { namedCurve: 'P-521' });
  const ecdh521 = pair('ec', { namedCurve: 'P-521' });
  const ecdh521b = pair('ec', { namedCurve: 'P-521' });
  const ed448 = pair('ed448', {});
  const x448 = pair('x448', {});
  const x448b = pair('x448', {});
  return {
    p521,
    ecdh521,
    ecdh521b,
    ed448,
    x448,
    x448b,
    password: new TextEncoder().encode('correct horse battery staple'),
    aes128: randomBytes(16),
    aes256: randomBytes(32),
    hmac: randomBytes(32),
    ikm: randomBytes(32),
    p256,
    p384,
    ecdh256,
    ecdh256b,
    ecdh384,
    ed,
    x,
    x2,
    rsa,
  };
})();

const m = MATERIAL;
const CIPHER = ['encrypt', 'decrypt', 'wrapKey', 'unwrapKey'];

/** Every fixture key, by name. */
export const FIXTURES: Record<string, FixtureSpec> = {
  aesGcm: { format: 'raw', data: m.aes128, algorithm: 'AES-GCM', extractable: true, usages: CIPHER },
  aesGcm256: { format: 'raw', data: m.aes256, algorithm: 'AES-GCM', extractable: true, usages: CIPHER },
  aesGcmDecryptOnly: { format: 'raw', data: m.aes128, algorithm: 'AES-GCM', extractable: true, usages: ['decrypt'] },
  aesGcmFixed: { format: 'raw', data: m.aes128, algorithm: 'AES-GCM', extractable: false, usages: CIPHER },
  aesKw: { format: 'raw', data: m.aes128, algorithm: 'AES-KW', extractable: true, usages: ['wrapKey', 'unwrapKey'] },
  aesKwWrapOnly: { format: 'raw', data: m.aes256, algorithm: 'AES-KW', extractable: true, usages: ['wrapKey'] },
  hmac: { format: 'raw', data: m.hmac, algorithm: { name: 'HMAC', hash: 'SHA-256' }, extractable: true, usages: ['sign', 'verify'] },
  hmacSignOnly: { format: 'raw', data: m.hmac, algorithm: { name: 'HMAC', hash: 'SHA-384' }, extractable: true, usages: ['sign'] },
  hkdf: { format: 'raw', data: m.ikm, algorithm: 'HKDF', extractable: false, usages: ['deriveBits', 'deriveKey'] },
  hkdfBitsOnly: { format: 'raw', data: m.ikm, algorithm: 'HKDF', extractable: false, usages: ['deriveBits'] },
  ecdsa256: { format: 'pkcs8', data: m.p256.priv, algorithm: { name: 'ECDSA', namedCurve: 'P-256' }, extractable: true, usages: ['sign'] },
  ecdsa256Pub: { format: 'spki', data: m.p256.pub, algorithm: { name: 'ECDSA', namedCurve: 'P-256' }, extractable: true, usages: ['verify'] },
  ecdsa384: { format: 'pkcs8', data: m.p384.priv, algorithm: { name: 'ECDSA', namedCurve: 'P-384' }, extractable: true, usages: ['sign'] },
  ecdsa384Pub: { format: 'spki', data: m.p384.pub, algorithm: { name: 'ECDSA', namedCurve: 'P-384' }, extractable: true, usages: ['verify'] },
  ecdh256: { format: 'pkcs8', data: m.ecdh256.priv, algorithm: { name: 'ECDH', namedCurve: 'P-256' }, extractable: true, usages: ['deriveBits', 'deriveKey'] },
  ecdh256BitsOnly: { format: 'pkcs8', data: m.ecdh256.priv, algorithm: { name: 'ECDH', namedCurve: 'P-256' }, extractable: true, usages: ['deriveBits'] },
  ecdh256Pub: { format: 'spki', data: m.ecdh256b.pub, algorithm: { name: 'ECDH', namedCurve: 'P-256' }, extractable: true, usages: [] },
  ecdh384: { format: 'pkcs8', data: m.ecdh384.priv, algorithm: { name: 'ECDH', namedCurve: 'P-384' }, extractable: true, usages: ['deriveBits', 'deriveKey'] },
  ecdh384Pub: { format: 'spki', data: m.ecdh384.pub, algorithm: { name: 'ECDH', namedCurve: 'P-384' }, extractable: true, usages: [] },
  ed25519: { format: 'pkcs8', data: m.ed.priv, algorithm: 'Ed25519', extractable: true, usages: ['sign'] },
  ed25519Pub: { format: 'spki', data: m.ed.pub, algorithm: 'Ed25519', extractable: true, usages: ['verify'] },
  x25519: { format: 'pkcs8', data: m.x.priv, algorithm: 'X25519', extractable: true, usages: ['deriveBits', 'deriveKey'] },
  x25519Pub: { format: 'spki', data: m.x2.pub, algorithm: 'X25519', extractable: true, usages: [] },
  rsaPss: { format: 'pkcs8', data: m.rsa.priv, algorithm: { name: 'RSA-PSS', hash: 'SHA-256' }, extractable: true, usages: ['sign'] },
  rsaPssPub: { format: 'spki', data: m.rsa.pub, algorithm: { name: 'RSA-PSS', hash: 'SHA-256' }, extractable: true, usages: ['verify'] },
  aesCbc: { format: 'raw', data: m.aes128, algorithm: 'AES-CBC', extractable: true, usages: CIPHER },
  aesCtr: { format: 'raw', data: m.aes256, algorithm: 'AES-CTR', extractable: true, usages: CIPHER },
  pbkdf2: { format: 'raw', data: m.password, algorithm: 'PBKDF2', extractable: false, usages: ['deriveBits', 'deriveKey'] },
  rsaOaep: { format: 'pkcs8', data: m.rsa.priv, algorithm: { name: 'RSA-OAEP', hash: 'SHA-256' }, extractable: true, usages: ['decrypt', 'unwrapKey'] },
  rsaOaepPub: { format: 'spki', data: m.rsa.pub, algorithm: { name: 'RSA-OAEP', hash: 'SHA-256' }, extractable: true, usages: ['encrypt', 'wrapKey'] },
  rsaPkcs1: { format: 'pkcs8', data: m.rsa.priv, algorithm: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, extractable: true, usages: ['sign'] },
  rsaPkcs1Pub: { format: 'spki', data: m.rsa.pub, algorithm: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, extractable: true, usages: ['verify'] },
  ecdsa521: { format: 'pkcs8', data: m.p521.priv, algorithm: { name: 'ECDSA', namedCurve: 'P-521' }, extractable: true, usages: ['sign'] },
  ecdsa521Pub: { format: 'spki', data: m.p521.pub, algorithm: { name: 'ECDSA', namedCurve: 'P-521' }, extractable: true, usages: ['verify'] },
  ecdh521: { format: 'pkcs8', data: m.ecdh521.priv, algorithm: { name: 'ECDH', namedCurve: 'P-521' }, extractable: true, usages: ['deriveBits', 'deriveKey'] },
  ecdh521Pub: { format: 'spki', data: m.ecdh521b.pub, algorithm: { name: 'ECDH', namedCurve: 'P-521' }, extractable: true, usages: [] },
  ed448: { format: 'pkcs8', data: m.ed448.priv, algorithm: 'Ed448', extractable: true, usages: ['sign'] },
  ed448Pub: { format: 'spki', data: m.ed448.pub, algorithm: 'Ed448', extractable: true, usages: ['verify'] },
  x448: { format: 'pkcs8', data: m.x448.priv, algorithm: 'X448', extractable: true, usages: ['deriveBits', 'deriveKey'] },
  x448Pub: { format: 'spki', data: m.x448b.pub, algorithm: 'X448', extractable: true, usages: [] },
};

/** Import every fixture into one implementation. */
export async function importFixtures(subtle: AnySubtle): Promise<Keys> {
  const keys: Keys = {};
  for (const [name, f] of Object.entries(FIXTURES)) {
    keys[name] = (await subtle.importKey(f.format, f.data, f.algorithm, f.extractable, f.usages)) as AnyKey;
  }
  return keys;
}

/** A compressed SEC1 point from an uncompressed one (for the "exported uncompressed" cases). */
export function compress(point: Uint8Array): Uint8Array {
  const n = (point.length - 1) / 2;
  const out = new Uint8Array(1 + n);
  out[0] = (point[point.length - 1]! & 1) === 1 ? 0x03 : 0x02;
  out.set(point.subarray(1, 1 + n), 1);
  return out;
}

/** The public JWK of a private one. */
export function publicJwk(jwk: Record<string, unknown>): Record<string, unknown> {
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...pub } = jwk;
  return pub;
}
