/**
 * The cases of the differential conformance test, generated from tables:
 * for every algorithm cryptod supports today and every SubtleCrypto method,
 * good calls (whose results must match Node's byte for byte, or verify across
 * when signatures are randomized) and each class of bad input the
 * specification names an error for (W3C Web Cryptography API §14.3 method
 * steps and §18.4 normalization):
 *
 *   arguments    too few, wrong WebIDL type (key not a CryptoKey, data not a
 *                BufferSource, usages not a sequence, unknown KeyUsage/KeyFormat) → TypeError
 *   algorithm    unknown name, wrong operation, missing required member,
 *                unknown hash                                                    → NotSupportedError / TypeError
 *   usages       not allowed for the key, none for a secret/private key          → SyntaxError
 *   key          of another algorithm, without the usage, not extractable        → InvalidAccessError
 *   data         malformed key data, wrong length, bad JWK                       → DataError
 *   lengths      key lengths, tag lengths, derived lengths, iv                   → OperationError
 *
 * The algorithms added later (AES-CBC, AES-CTR, RSA-OAEP, RSASSA-PKCS1-v1_5,
 * PBKDF2, P-521, Ed448, X448, wrapping with encryption algorithms) have their
 * own generator, moreAlgorithmCases(). Left out on purpose: algorithms Node 20 lacks (ChaCha20-Poly1305, AES-KWP:
 * checked against the specification in webcrypto-errors.test.ts), and the
 * deliberate limits README "Limits" lists (RSA moduli other than
 * 2048/3072/4096, HMAC keys over 8192 bits, HKDF info over 1024 bytes).
 */
import { createDecipheriv, randomBytes } from 'node:crypto';
import { compress, MATERIAL, publicJwk, type AnyKey, type AnySubtle, type Keys } from './fixtures.js';

export interface Case {
  /** The SubtleCrypto method, for the per-method counts. */
  readonly op: string;
  readonly id: string;
  run(s: AnySubtle, keys: Keys): Promise<unknown>;
  /**
   * Randomized signatures: instead of comparing bytes, each implementation
   * must accept the other's signature.
   */
  readonly verifyWith?: (s: AnySubtle, keys: Keys, signature: ArrayBuffer) => Promise<unknown>;
  /** Results whose bytes may differ while meaning the same (a wrapped JWK): compared decoded. */
  readonly decode?: (result: ArrayBuffer) => unknown;
}

/** RFC 3394 unwrap with node:crypto, then the JSON, as an object. */
function unwrapJson(kek: Uint8Array, wrapped: ArrayBuffer): unknown {
  const d = createDecipheriv(kek.length === 16 ? 'id-aes128-wrap' : 'id-aes256-wrap', kek, Buffer.from('A6A6A6A6A6A6A6A6', 'hex'));
  const plain = Buffer.concat([d.update(new Uint8Array(wrapped)), d.final()]);
  return JSON.parse(plain.toString('utf8'));
}

const USAGES = ['encrypt', 'decrypt', 'sign', 'verify', 'deriveKey', 'deriveBits', 'wrapKey', 'unwrapKey'] as const;

/** Every subset of the eight usages (256), in a fixed order. */
function usageSubsets(maxSize = 8): string[][] {
  const out: string[][] = [];
  for (let mask = 0; mask < 256; mask++) {
    const set = USAGES.filter((_, i) => (mask & (1 << i)) !== 0);
    if (set.length <= maxSize) out.push(set);
  }
  return out;
}

const show = (v: unknown): string => {
  if (v instanceof Uint8Array) return `bytes(${v.length})`;
  if (typeof v === 'string') return JSON.stringify(v);
  if (v === undefined) return 'undefined';
  try {
    return JSON.stringify(v, (_k, x: unknown) => (x instanceof Uint8Array ? `bytes(${x.length})` : x));
  } catch {
    return String(v);
  }
};

const bytes = (n: number, fill = 7): Uint8Array => new Uint8Array(n).fill(fill);
const e65537 = new Uint8Array([1, 0, 1]);
const DATA = [bytes(0), new TextEncoder().encode('abc'), bytes(100, 3)];
/** Values that are not a BufferSource. */
const NOT_BYTES: unknown[] = ['abc', null, undefined, 42, [1, 2, 3], {}];

// ── digest ───────────────────────────────────────────────────────────────

function digestCases(): Case[] {
  const algs: unknown[] = ['SHA-1', 'SHA-256', 'SHA-384', 'SHA-512', 'sha-256', { name: 'SHA-384' }, { name: 'sHa-512', extra: 1 },
    'SHA-224', 'MD5', 'AES-GCM', 'HMAC', 'Ed25519', '', {}, { name: 5 }, null, 5, undefined, { length: 256 }];
  const data: unknown[] = [...DATA, bytes(1000).buffer, new DataView(bytes(10).buffer, 2, 5), new Uint16Array([1, 2, 3]), ...NOT_BYTES];
  const out: Case[] = [];
  for (const a of algs) for (const d of data) out.push({ op: 'digest', id: `digest(${show(a)}, ${show(d)})`, run: (s) => s.digest(a, d) });
  out.push({ op: 'digest', id: 'digest()', run: (s) => s.digest() });
  out.push({ op: 'digest', id: "digest('SHA-256')", run: (s) => s.digest('SHA-256') });
  return out;
}

// ── generateKey ──────────────────────────────────────────────────────────

/** Algorithms for generateKey, good and bad, without RSA (slow: a few cases below). */
const GENERATE_ALGS: unknown[] = [
  { name: 'AES-GCM', length: 128 },
  { name: 'AES-GCM', length: 256 },
  { name: 'aes-gcm', length: 192 },
  { name: 'AES-GCM', length: 64 },
  { name: 'AES-GCM' },
  { name: 'AES-KW', length: 128 },
  { name: 'AES-KW', length: 512 },
  { name: 'HMAC', hash: 'SHA-256' },
  { name: 'HMAC', hash: { name: 'SHA-512' }, length: 256 },
  { name: 'HMAC', hash: 'SHA-1', length: 0 },
  { name: 'HMAC', hash: 'MD5' },
  { name: 'HMAC' },
  { name: 'ECDSA', namedCurve: 'P-256' },
  { name: 'ECDSA', namedCurve: 'P-384' },
  { name: 'ECDSA', namedCurve: 'P-1' },
  { name: 'ECDSA' },
  { name: 'ECDH', namedCurve: 'P-256' },
  { name: 'ECDH', namedCurve: 'p-256' },
  'Ed25519',
  { name: 'X25519' },
  'HKDF',
  'SHA-256',
  'AES',
  { name: 'RSA-PSS', modulusLength: 2048, publicExponent: e65537 },
  { name: 'RSA-PSS', hash: 'SHA-256', publicExponent: e65537 },
];

function generateCases(): Case[] {
  const out: Case[] = [];
  for (const a of GENERATE_ALGS) {
    for (const u of usageSubsets()) {
      out.push({ op: 'generateKey', id: `generateKey(${show(a)}, true, ${show(u)})`, run: (s) => s.generateKey(a, true, u) });
    }
    for (const ext of [false, 'RED', 0, null, undefined]) {
      out.push({ op: 'generateKey', id: `generateKey(${show(a)}, ${show(ext)}, [sign, encrypt, deriveBits])`, run: (s) => s.generateKey(a, ext, firstUsable(a)) });
    }
    for (const u of [['foo'], ['sign', 'Sign'], 'sign', null, undefined, 7, new Set(['sign', 'verify'])]) {
      out.push({ op: 'generateKey', id: `generateKey(${show(a)}, true, ${show(u)})`, run: (s) => s.generateKey(a, true, u) });
    }
  }
  // RSA-PSS: one real generation, then only calls refused before any work.
  const rsa = { name: 'RSA-PSS', modulusLength: 2048, publicExponent: e65537, hash: 'SHA-256' };
  out.push({ op: 'generateKey', id: 'generateKey(RSA-PSS 2048, true, [sign, verify])', run: (s) => s.generateKey(rsa, true, ['sign', 'verify']) });
  for (const u of usageSubsets().filter((x) => x.some((y) => y !== 'sign' && y !== 'verify'))) {
    out.push({ op: 'generateKey', id: `generateKey(RSA-PSS 2048, true, ${show(u)})`, run: (s) => s.generateKey(rsa, true, u) });
  }
  out.push({ op: 'generateKey', id: 'generateKey()', run: (s) => s.generateKey() });
  out.push({ op: 'generateKey', id: "generateKey('AES-GCM', true)", run: (s) => s.generateKey({ name: 'AES-GCM', length: 128 }, true) });
  return out;
}

function firstUsable(a: unknown): string[] {
  const name = (typeof a === 'string' ? a : String((a as { name?: unknown }).name)).toUpperCase();
  if (name.startsWith('AES-KW')) return ['wrapKey'];
  if (name.startsWith('AES')) return ['encrypt'];
  if (name === 'ECDH' || name === 'X25519' || name === 'HKDF') return ['deriveBits'];
  return ['sign'];
}

// ── importKey / exportKey ────────────────────────────────────────────────

interface ImportRow {
  readonly what: string;
  readonly format: string;
  readonly data: unknown;
  readonly algorithm: unknown;
  readonly extractable?: unknown;
}

const m = MATERIAL;
const b64u = (b: Uint8Array): string => Buffer.from(b).toString('base64url');

function importRows(): ImportRow[] {
  const ec = [
    ['ECDSA', 'P-256', m.p256],
    ['ECDSA', 'P-384', m.p384],
    ['ECDH', 'P-256', m.ecdh256],
    ['ECDH', 'P-384', m.ecdh384],
  ] as const;
  const rows: ImportRow[] = [];
  for (const [alg, bits] of [['AES-GCM', 16], ['AES-KW', 16], ['AES-GCM', 32], ['AES-KW', 24]] as const) {
    const key = randomBytes(bits);
    rows.push({ what: `${alg} raw ${bits * 8}`, format: 'raw', data: key, algorithm: alg });
    rows.push({ what: `${alg} raw 15 bytes`, format: 'raw', data: key.subarray(0, 15), algorithm: alg });
    rows.push({ what: `${alg} jwk`, format: 'jwk', data: { kty: 'oct', k: b64u(key) }, algorithm: { name: alg } });
    rows.push({ what: `${alg} jwk kty EC`, format: 'jwk', data: { kty: 'EC', k: b64u(key) }, algorithm: alg });
    rows.push({ what: `${alg} jwk without k`, format: 'jwk', data: { kty: 'oct' }, algorithm: alg });
    rows.push({ what: `${alg} pkcs8`, format: 'pkcs8', data: m.p256.priv, algorithm: alg });
    rows.push({ what: `${alg} spki`, format: 'spki', data: m.p256.pub, algorithm: alg });
  }
  rows.push({ what: 'HMAC raw SHA-256', format: 'raw', data: m.hmac, algorithm: { name: 'HMAC', hash: 'SHA-256' } });
  rows.push({ what: 'HMAC raw SHA-512 length 256', format: 'raw', data: m.hmac, algorithm: { name: 'HMAC', hash: 'SHA-512', length: 256 } });
  rows.push({ what: 'HMAC raw length 128 of 256', format: 'raw', data: m.hmac, algorithm: { name: 'HMAC', hash: 'SHA-512', length: 128 } });
  for (const length of [0, 7, 249, 257, 264]) {
    rows.push({ what: `HMAC raw 256 bits, length ${length}`, format: 'raw', data: m.hmac, algorithm: { name: 'HMAC', hash: 'SHA-256', length } });
  }
  rows.push({ what: 'HMAC raw empty', format: 'raw', data: bytes(0), algorithm: { name: 'HMAC', hash: 'SHA-256' } });
  rows.push({ what: 'HMAC raw no hash', format: 'raw', data: m.hmac, algorithm: 'HMAC' });
  rows.push({ what: 'HMAC raw MD5', format: 'raw', data: m.hmac, algorithm: { name: 'HMAC', hash: 'MD5' } });
  rows.push({ what: 'HMAC jwk', format: 'jwk', data: { kty: 'oct', k: b64u(m.hmac), alg: 'HS256' }, algorithm: { name: 'HMAC', hash: 'SHA-256' } });
  rows.push({ what: 'HMAC jwk wrong alg', format: 'jwk', data: { kty: 'oct', k: b64u(m.hmac), alg: 'HS512' }, algorithm: { name: 'HMAC', hash: 'SHA-256' } });
  rows.push({ what: 'HMAC spki', format: 'spki', data: m.p256.pub, algorithm: { name: 'HMAC', hash: 'SHA-256' } });
  rows.push({ what: 'HKDF raw', format: 'raw', data: m.ikm, algorithm: 'HKDF', extractable: false });
  rows.push({ what: 'HKDF raw extractable', format: 'raw', data: m.ikm, algorithm: 'HKDF', extractable: true });
  rows.push({ what: 'HKDF jwk', format: 'jwk', data: { kty: 'oct', k: b64u(m.ikm) }, algorithm: 'HKDF', extractable: false });
  for (const [alg, crv, p] of ec) {
    const a = { name: alg, namedCurve: crv };
    rows.push({ what: `${alg} ${crv} spki`, format: 'spki', data: p.pub, algorithm: a });
    rows.push({ what: `${alg} ${crv} pkcs8`, format: 'pkcs8', data: p.priv, algorithm: a });
    rows.push({ what: `${alg} ${crv} raw`, format: 'raw', data: p.raw, algorithm: a });
    rows.push({ what: `${alg} ${crv} raw compressed`, format: 'raw', data: compress(p.raw), algorithm: a });
    rows.push({ what: `${alg} ${crv} raw truncated`, format: 'raw', data: p.raw.subarray(1), algorithm: a });
    rows.push({ what: `${alg} ${crv} jwk private`, format: 'jwk', data: p.privJwk, algorithm: a });
    rows.push({ what: `${alg} ${crv} jwk public`, format: 'jwk', data: publicJwk(p.privJwk), algorithm: a });
    rows.push({ what: `${alg} ${crv} spki truncated`, format: 'spki', data: p.pub.subarray(0, 40), algorithm: a });
    rows.push({ what: `${alg} ${crv} spki as pkcs8`, format: 'pkcs8', data: p.pub, algorithm: a });
    rows.push({ what: `${alg} ${crv} spki, other curve`, format: 'spki', data: p.pub, algorithm: { name: alg, namedCurve: crv === 'P-256' ? 'P-384' : 'P-256' } });
    rows.push({ what: `${alg} ${crv} spki, curve P-1`, format: 'spki', data: p.pub, algorithm: { name: alg, namedCurve: 'P-1' } });
    rows.push({ what: `${alg} ${crv} spki, no curve`, format: 'spki', data: p.pub, algorithm: { name: alg } });
    rows.push({ what: `${alg} ${crv} jwk, wrong crv`, format: 'jwk', data: { ...publicJwk(p.privJwk), crv: 'P-521' }, algorithm: a });
    rows.push({ what: `${alg} ${crv} Ed25519 spki`, format: 'spki', data: m.ed.pub, algorithm: a });
  }
  for (const [alg, p] of [['Ed25519', m.ed], ['X25519', m.x]] as const) {
    rows.push({ what: `${alg} spki`, format: 'spki', data: p.pub, algorithm: alg });
    rows.push({ what: `${alg} pkcs8`, format: 'pkcs8', data: p.priv, algorithm: { name: alg } });
    rows.push({ what: `${alg} raw`, format: 'raw', data: p.raw, algorithm: alg });
    rows.push({ what: `${alg} raw 31`, format: 'raw', data: p.raw.subarray(1), algorithm: alg });
    rows.push({ what: `${alg} jwk private`, format: 'jwk', data: p.privJwk, algorithm: alg });
    rows.push({ what: `${alg} jwk public`, format: 'jwk', data: publicJwk(p.privJwk), algorithm: alg });
    rows.push({ what: `${alg} jwk kty EC`, format: 'jwk', data: { ...publicJwk(p.privJwk), kty: 'EC' }, algorithm: alg });
    rows.push({ what: `${alg} P-256 spki`, format: 'spki', data: m.p256.pub, algorithm: alg });
  }
  const rsa = { name: 'RSA-PSS', hash: 'SHA-256' };
  rows.push({ what: 'RSA-PSS spki', format: 'spki', data: m.rsa.pub, algorithm: rsa });
  rows.push({ what: 'RSA-PSS pkcs8', format: 'pkcs8', data: m.rsa.priv, algorithm: rsa });
  rows.push({ what: 'RSA-PSS jwk private', format: 'jwk', data: m.rsa.privJwk, algorithm: rsa });
  rows.push({ what: 'RSA-PSS jwk public', format: 'jwk', data: publicJwk(m.rsa.privJwk), algorithm: rsa });
  rows.push({ what: 'RSA-PSS raw', format: 'raw', data: m.rsa.pub, algorithm: rsa });
  rows.push({ what: 'RSA-PSS spki no hash', format: 'spki', data: m.rsa.pub, algorithm: 'RSA-PSS' });
  rows.push({ what: 'RSA-PSS spki MD5', format: 'spki', data: m.rsa.pub, algorithm: { name: 'RSA-PSS', hash: 'MD5' } });
  // Formats and algorithms that do not exist.
  rows.push({ what: "format 'foo'", format: 'foo', data: m.aes128, algorithm: 'AES-GCM' });
  rows.push({ what: "format 'RAW'", format: 'RAW', data: m.aes128, algorithm: 'AES-GCM' });
  rows.push({ what: 'algorithm AES', format: 'raw', data: m.aes128, algorithm: 'AES' });
  rows.push({ what: 'algorithm SHA-256', format: 'raw', data: m.aes128, algorithm: 'SHA-256' });
  rows.push({ what: 'raw with a JWK object', format: 'raw', data: { kty: 'oct', k: b64u(m.aes128) }, algorithm: 'AES-GCM' });
  rows.push({ what: 'jwk with bytes', format: 'jwk', data: m.aes128, algorithm: 'AES-GCM' });
  rows.push({ what: 'raw with a string', format: 'raw', data: 'abc', algorithm: 'AES-GCM' });
  rows.push({ what: 'jwk with null', format: 'jwk', data: null, algorithm: 'AES-GCM' });
  return rows;
}

function importCases(): Case[] {
  const out: Case[] = [];
  const subsets = usageSubsets(2);
  for (const row of importRows()) {
    for (const u of subsets) {
      const ext = row.extractable ?? true;
      out.push({ op: 'importKey', id: `importKey(${row.what}, ${show(ext)}, ${show(u)})`, run: (s) => s.importKey(row.format, row.data, row.algorithm, ext, u) });
    }
    for (const u of [['foo'], 'verify', null]) {
      out.push({ op: 'importKey', id: `importKey(${row.what}, true, ${show(u)})`, run: (s) => s.importKey(row.format, row.data, row.algorithm, true, u) });
    }
  }
  out.push({ op: 'importKey', id: 'importKey(raw, key, AES-GCM, true)', run: (s) => s.importKey('raw', m.aes128, 'AES-GCM', true) });
  return out;
}

/** Import, then export in every format: the same bytes or JWK from both (EC points uncompressed). */
function exportCases(): Case[] {
  const out: Case[] = [];
  for (const row of importRows()) {
    const u = row.algorithm === 'HKDF' ? ['deriveBits'] : [];
    for (const format of ['raw', 'spki', 'pkcs8', 'jwk', 'foo']) {
      out.push({
        op: 'exportKey',
        id: `exportKey(${format}, imported ${row.what})`,
        run: async (s) => {
          const usages = usagesFor(row, u);
          const key = await s.importKey(row.format, row.data, row.algorithm, row.extractable ?? true, usages);
          try {
            return await s.exportKey(format, key);
          } finally {
            await release(key);
          }
        },
      });
    }
  }
  for (const name of ['aesGcmFixed', 'hkdf', 'aesGcm', 'ecdsa256', 'ecdsa256Pub', 'ed25519', 'x25519Pub', 'rsaPss', 'hmac']) {
    for (const format of ['raw', 'spki', 'pkcs8', 'jwk']) {
      out.push({ op: 'exportKey', id: `exportKey(${format}, ${name})`, run: (s, k) => s.exportKey(format, k[name]) });
    }
  }
  out.push({ op: 'exportKey', id: 'exportKey(raw, {})', run: (s) => s.exportKey('raw', {}) });
  out.push({ op: 'exportKey', id: 'exportKey(raw)', run: (s) => s.exportKey('raw') });
  return out;
}

/** A usage list the imported key accepts: the one it needs for its type (public agreement keys need none). */
function usagesFor(row: ImportRow, fallback: string[]): string[] {
  if (fallback.length > 0) return fallback;
  const name = String(typeof row.algorithm === 'string' ? row.algorithm : (row.algorithm as { name?: unknown }).name);
  const isPrivate = row.format === 'pkcs8' || (row.format === 'jwk' && typeof row.data === 'object' && row.data !== null && 'd' in row.data);
  const pub = row.format === 'spki' || row.format === 'raw' || row.format === 'jwk';
  if (name.startsWith('AES-KW')) return ['wrapKey'];
  if (name.startsWith('AES')) return ['encrypt'];
  if (name === 'HMAC') return ['sign'];
  if (name === 'ECDH' || name === 'X25519') return isPrivate ? ['deriveBits'] : [];
  return isPrivate || !pub ? ['sign'] : ['verify'];
}

async function release(key: unknown): Promise<void> {
  const r = (key as { release?: () => Promise<void> } | null)?.release;
  if (typeof r === 'function') await r.call(key);
}

// ── encrypt / decrypt ────────────────────────────────────────────────────

function cipherCases(): Case[] {
  const out: Case[] = [];
  const ivs = [bytes(12, 1), bytes(1, 2), bytes(16, 3), bytes(0), bytes(64, 4)];
  const tags: unknown[] = [undefined, 32, 64, 96, 104, 112, 120, 128, 0, 33, 256, -1, 'x', 1e10];
  const aads: unknown[] = [undefined, bytes(0), bytes(5, 9)];
  for (const iv of ivs) {
    for (const tagLength of tags) {
      for (const additionalData of aads) {
        for (const data of DATA) {
          const alg = { name: 'AES-GCM', iv, tagLength, additionalData };
          out.push({ op: 'encrypt', id: `encrypt(${show(alg)}, aesGcm, ${show(data)})`, run: (s, k) => s.encrypt(alg, k.aesGcm, data) });
          out.push({
            op: 'decrypt',
            id: `decrypt(${show(alg)}, aesGcm, encrypt(${show(data)}))`,
            run: async (s, k) => s.decrypt(alg, k.aesGcm, await s.encrypt(alg, k.aesGcm, data)),
          });
        }
      }
      const alg = { name: 'AES-GCM', iv, tagLength };
      for (const ct of [bytes(0), bytes(3), bytes(16), bytes(40)]) {
        out.push({ op: 'decrypt', id: `decrypt(${show(alg)}, aesGcm, ${show(ct)})`, run: (s, k) => s.decrypt(alg, k.aesGcm, ct) });
      }
    }
  }
  const good = { name: 'AES-GCM', iv: bytes(12) };
  for (const op of ['encrypt', 'decrypt'] as const) {
    for (const key of ['aesGcmDecryptOnly', 'aesKw', 'hmac', 'hkdf', 'ecdsa256', 'ed25519Pub', 'x25519', 'rsaPss', 'aesGcm256']) {
      out.push({ op, id: `${op}(AES-GCM, ${key})`, run: (s, k) => s[op](good, k[key], bytes(32)) });
    }
    for (const a of [{ name: 'AES-GCM' }, { name: 'AES-GCM', iv: 'abc' }, { name: 'AES-GCM', iv: bytes(12), additionalData: 5 }, 'AES-GCM', 'AES-KW', 'HMAC', 'AES-CBC-X', 'SHA-256', { iv: bytes(12) }]) {
      out.push({ op, id: `${op}(${show(a)}, aesGcm)`, run: (s, k) => s[op](a, k.aesGcm, bytes(32)) });
    }
    for (const d of NOT_BYTES) out.push({ op, id: `${op}(AES-GCM, aesGcm, ${show(d)})`, run: (s, k) => s[op](good, k.aesGcm, d) });
    for (const key of [{}, null, 'aesGcm', m.aes128]) out.push({ op, id: `${op}(AES-GCM, ${show(key)})`, run: (s) => s[op](good, key, bytes(32)) });
    out.push({ op, id: `${op}(AES-GCM, aesGcm)`, run: (s, k) => s[op](good, k.aesGcm) });
  }
  return out;
}

// ── sign / verify ────────────────────────────────────────────────────────

interface SignRow {
  readonly alg: unknown;
  readonly priv: string;
  readonly pub: string;
  readonly randomized: boolean;
}

const SIGN_ROWS: SignRow[] = [
  { alg: 'HMAC', priv: 'hmac', pub: 'hmac', randomized: false },
  { alg: { name: 'HMAC', hash: 'SHA-512' }, priv: 'hmac', pub: 'hmac', randomized: false },
  { alg: 'Ed25519', priv: 'ed25519', pub: 'ed25519Pub', randomized: false },
  { alg: { name: 'ECDSA', hash: 'SHA-256' }, priv: 'ecdsa256', pub: 'ecdsa256Pub', randomized: true },
  { alg: { name: 'ECDSA', hash: 'SHA-384' }, priv: 'ecdsa256', pub: 'ecdsa256Pub', randomized: true },
  { alg: { name: 'ECDSA', hash: 'SHA-1' }, priv: 'ecdsa384', pub: 'ecdsa384Pub', randomized: true },
  { alg: { name: 'ECDSA', hash: 'SHA-512' }, priv: 'ecdsa384', pub: 'ecdsa384Pub', randomized: true },
  { alg: { name: 'RSA-PSS', saltLength: 32 }, priv: 'rsaPss', pub: 'rsaPssPub', randomized: true },
  { alg: { name: 'RSA-PSS', saltLength: 0 }, priv: 'rsaPss', pub: 'rsaPssPub', randomized: false },
];

const SIGN_KEYS = ['hmac', 'hmacSignOnly', 'ed25519', 'ed25519Pub', 'ecdsa256', 'ecdsa256Pub', 'ecdsa384', 'rsaPss', 'rsaPssPub', 'aesGcm', 'x25519', 'ecdh256', 'hkdf'];

function signCases(): Case[] {
  const out: Case[] = [];
  for (const row of SIGN_ROWS) {
    for (const data of DATA) {
      out.push({
        op: 'sign',
        id: `sign(${show(row.alg)}, ${row.priv}, ${show(data)})`,
        run: (s, k) => s.sign(row.alg, k[row.priv], data),
        ...(row.randomized ? { verifyWith: (s: AnySubtle, k: Keys, sig: ArrayBuffer) => s.verify(row.alg, k[row.pub], sig, data) } : {}),
      });
      // verify: a signature made by the same implementation, then altered ones, then one of the wrong size
      out.push({ op: 'verify', id: `verify(${show(row.alg)}, ${row.pub}, sign(${show(data)}))`, run: async (s, k) => s.verify(row.alg, k[row.pub], await s.sign(row.alg, k[row.priv], data), data) });
      out.push({
        op: 'verify',
        id: `verify(${show(row.alg)}, ${row.pub}, flipped sign(${show(data)}))`,
        run: async (s, k) => {
          const sig = new Uint8Array((await s.sign(row.alg, k[row.priv], data)) as ArrayBuffer);
          sig[sig.length >> 1]! ^= 1;
          return s.verify(row.alg, k[row.pub], sig, data);
        },
      });
      for (const n of [0, 1, 63, 64, 65, 300]) {
        out.push({ op: 'verify', id: `verify(${show(row.alg)}, ${row.pub}, ${n} zero bytes, ${show(data)})`, run: (s, k) => s.verify(row.alg, k[row.pub], bytes(n, 0), data) });
      }
    }
    // The row's own keys are covered above (randomized signatures cannot be compared byte for byte).
    for (const key of SIGN_KEYS.filter((x) => x !== row.priv && x !== row.pub)) {
      out.push({
        op: 'sign',
        id: `sign(${show(row.alg)}, ${key})`,
        run: (s, k) => s.sign(row.alg, k[key], bytes(8)),
        ...(row.randomized ? { verifyWith: (s: AnySubtle, k: Keys, sig: ArrayBuffer) => s.verify(row.alg, k[`${key}Pub`], sig, bytes(8)) } : {}),
      });
      out.push({ op: 'verify', id: `verify(${show(row.alg)}, ${key})`, run: (s, k) => s.verify(row.alg, k[key], bytes(64), bytes(8)) });
    }
    for (const d of NOT_BYTES) {
      out.push({ op: 'sign', id: `sign(${show(row.alg)}, ${row.priv}, ${show(d)})`, run: (s, k) => s.sign(row.alg, k[row.priv], d) });
      out.push({ op: 'verify', id: `verify(${show(row.alg)}, ${row.pub}, ${show(d)} as signature)`, run: (s, k) => s.verify(row.alg, k[row.pub], d, bytes(8)) });
    }
  }
  for (const a of [{ name: 'ECDSA' }, { name: 'ECDSA', hash: 'MD5' }, { name: 'RSA-PSS' }, { name: 'RSA-PSS', saltLength: -1 }, { name: 'RSA-PSS', saltLength: 1000 }, 'ECDSA', 'RSASSA-X', 'X25519', 'SHA-256', { name: 'Ed25519', hash: 'SHA-256' }]) {
    for (const key of ['ecdsa256', 'rsaPss', 'ed25519', 'hmac']) {
      out.push({ op: 'sign', id: `sign(${show(a)}, ${key})`, run: (s, k) => s.sign(a, k[key], bytes(8)) });
      out.push({ op: 'verify', id: `verify(${show(a)}, ${key}Pub)`, run: (s, k) => s.verify(a, k[`${key}Pub`] ?? k[key], bytes(64), bytes(8)) });
    }
  }
  out.push({ op: 'sign', id: 'sign(HMAC, {})', run: (s) => s.sign('HMAC', {}, bytes(8)) });
  out.push({ op: 'verify', id: 'verify(HMAC, hmac, sig)', run: (s, k) => s.verify('HMAC', k.hmac, bytes(32)) });
  return out;
}

// ── deriveBits / deriveKey ───────────────────────────────────────────────

function deriveCases(): Case[] {
  const out: Case[] = [];
  const hkdf = (hash: unknown, salt: unknown = bytes(16), info: unknown = bytes(4)) => ({ name: 'HKDF', hash, salt, info });
  const lengths: unknown[] = [undefined, null, 0, 8, 12, 128, 256, 384, 512, 1000, 255 * 32 * 8, 255 * 32 * 8 + 8, -8, 'x', 264];
  for (const hash of ['SHA-1', 'SHA-256', 'SHA-384', 'SHA-512', 'MD5', undefined]) {
    for (const length of lengths) {
      out.push({ op: 'deriveBits', id: `deriveBits(HKDF ${String(hash)}, hkdf, ${show(length)})`, run: (s, k) => s.deriveBits(hkdf(hash), k.hkdf, length) });
    }
  }
  for (const [salt, info] of [[bytes(0), bytes(0)], [undefined, bytes(1)], [bytes(1), undefined], ['abc', bytes(1)], [bytes(64), bytes(200)]] as const) {
    out.push({ op: 'deriveBits', id: `deriveBits(HKDF salt ${show(salt)} info ${show(info)})`, run: (s, k) => s.deriveBits(hkdf('SHA-256', salt, info), k.hkdf, 256) });
  }
  const agreements = [
    ['ECDH', 'ecdh256', 'ecdh256Pub'],
    ['ECDH', 'ecdh384', 'ecdh384Pub'],
    ['X25519', 'x25519', 'x25519Pub'],
  ] as const;
  for (const [name, priv, pub] of agreements) {
    for (const length of lengths) {
      out.push({ op: 'deriveBits', id: `deriveBits(${name}, ${priv}, ${pub}, ${show(length)})`, run: (s, k) => s.deriveBits({ name, public: k[pub] }, k[priv], length) });
    }
    for (const other of ['ecdh256Pub', 'ecdh384Pub', 'x25519Pub', 'ecdh256', 'x25519', 'ecdsa256Pub', 'ed25519Pub', 'aesGcm']) {
      out.push({ op: 'deriveBits', id: `deriveBits(${name}, ${priv}, public ${other})`, run: (s, k) => s.deriveBits({ name, public: k[other] }, k[priv], 128) });
    }
    for (const p of [undefined, null, {}, 'x', m.x.raw]) {
      out.push({ op: 'deriveBits', id: `deriveBits(${name}, ${priv}, public ${show(p)})`, run: (s, k) => s.deriveBits({ name, public: p }, k[priv], 128) });
    }
  }
  for (const base of ['hkdf', 'hkdfBitsOnly', 'ecdh256', 'ecdh256BitsOnly', 'x25519', 'aesGcm', 'hmac', 'ed25519']) {
    for (const a of ['HKDF', 'ECDH', 'X25519'] as const) {
      out.push({
        op: 'deriveBits',
        id: `deriveBits(${a}, base ${base})`,
        run: (s, k) => s.deriveBits(a === 'HKDF' ? hkdf('SHA-256') : { name: a, public: a === 'ECDH' ? k.ecdh256Pub : k.x25519Pub }, k[base], 128),
      });
    }
  }
  out.push({ op: 'deriveBits', id: 'deriveBits(PBKDF2-X, hkdf)', run: (s, k) => s.deriveBits({ name: 'PBKDF2-X' }, k.hkdf, 128) });
  out.push({ op: 'deriveBits', id: 'deriveBits(HKDF, {})', run: (s) => s.deriveBits(hkdf('SHA-256'), {}, 128) });

  const derived: unknown[] = [
    { name: 'AES-GCM', length: 128 },
    { name: 'AES-GCM', length: 256 },
    { name: 'AES-GCM', length: 64 },
    { name: 'AES-GCM' },
    { name: 'AES-KW', length: 192 },
    { name: 'HMAC', hash: 'SHA-256' },
    { name: 'HMAC', hash: 'SHA-256', length: 128 },
    { name: 'HMAC', hash: 'SHA-1', length: 0 },
    { name: 'HMAC' },
    'HKDF',
    'Ed25519',
    'ECDSA',
    'SHA-256',
    'FOO',
  ];
  const bases = [
    ['HKDF', 'hkdf'],
    ['HKDF', 'hkdfBitsOnly'],
    ['ECDH', 'ecdh256'],
    ['X25519', 'x25519'],
    ['ECDH', 'ecdh256BitsOnly'],
  ] as const;
  for (const [a, base] of bases) {
    for (const d of derived) {
      for (const u of usageSubsets(1)) {
        out.push({
          op: 'deriveKey',
          id: `deriveKey(${a}, ${base}, ${show(d)}, true, ${show(u)})`,
          run: async (s, k) => {
            const alg = a === 'HKDF' ? hkdf('SHA-256') : { name: a, public: a === 'ECDH' ? k.ecdh256Pub : k.x25519Pub };
            const key = await s.deriveKey(alg, k[base], d, true, u);
            try {
              return [key, await s.exportKey('raw', key).catch((e: Error) => `export: ${e.name}`)];
            } finally {
              await release(key);
            }
          },
        });
      }
    }
  }
  return out;
}

// ── wrapKey / unwrapKey ──────────────────────────────────────────────────

function wrapCases(): Case[] {
  const out: Case[] = [];
  const toWrap = ['aesGcm', 'aesGcm256', 'hmac', 'aesGcmFixed', 'ecdsa256', 'ed25519Pub', 'x25519', 'rsaPssPub', 'hkdf'];
  for (const wrapper of ['aesKw', 'aesKwWrapOnly', 'aesGcm', 'hmac', 'ecdsa256']) {
    for (const name of toWrap) {
      for (const format of ['raw', 'jwk', 'spki', 'pkcs8']) {
        out.push({
          op: 'wrapKey',
          id: `wrapKey(${format}, ${name}, ${wrapper}, AES-KW)`,
          run: (s, k) => s.wrapKey(format, k[name], k[wrapper], 'AES-KW'),
          // JSON member order is not fixed: a wrapped JWK is compared unwrapped and parsed.
          ...(format === 'jwk' ? { decode: (wrapped: ArrayBuffer) => unwrapJson(wrapper === 'aesKw' ? m.aes128 : m.aes256, wrapped) } : {}),
        });
      }
    }
  }
  for (const a of ['AES-KWX', 'SHA-256', 'HMAC', { name: 'AES-KW', iv: 5 }, {}, null]) {
    out.push({ op: 'wrapKey', id: `wrapKey(raw, aesGcm, aesKw, ${show(a)})`, run: (s, k) => s.wrapKey('raw', k.aesGcm, k.aesKw, a) });
  }
  for (const bad of [{}, null, 'aesGcm']) {
    out.push({ op: 'wrapKey', id: `wrapKey(raw, ${show(bad)}, aesKw)`, run: (s, k) => s.wrapKey('raw', bad, k.aesKw, 'AES-KW') });
    out.push({ op: 'wrapKey', id: `wrapKey(raw, aesGcm, ${show(bad)})`, run: (s, k) => s.wrapKey('raw', k.aesGcm, bad, 'AES-KW') });
  }
  out.push({ op: 'wrapKey', id: "wrapKey('foo', aesGcm, aesKw)", run: (s, k) => s.wrapKey('foo', k.aesGcm, k.aesKw, 'AES-KW') });

  const targets: [string, unknown, string[]][] = [
    ['AES-GCM', 'AES-GCM', ['encrypt']],
    ['AES-GCM sign', 'AES-GCM', ['sign']],
    ['AES-GCM none', 'AES-GCM', []],
    ['HMAC', { name: 'HMAC', hash: 'SHA-256' }, ['sign']],
    ['HMAC no hash', 'HMAC', ['sign']],
    ['AES-KW', 'AES-KW', ['wrapKey']],
    ['ECDSA', { name: 'ECDSA', namedCurve: 'P-256' }, ['sign']],
    ['FOO', 'FOO', ['encrypt']],
  ];
  for (const [what, alg, usages] of targets) {
    for (const unwrapper of ['aesKw', 'aesKwWrapOnly', 'aesGcm']) {
      out.push({
        op: 'unwrapKey',
        id: `unwrapKey(raw, wrap(aesGcm256), ${unwrapper}, AES-KW, ${what})`,
        run: async (s, k) => {
          const wrapped = await s.wrapKey('raw', k.aesGcm256, k.aesKw, 'AES-KW');
          const key = await s.unwrapKey('raw', wrapped, k[unwrapper], 'AES-KW', alg, true, usages);
          try {
            return [key, await s.exportKey('raw', key)];
          } finally {
            await release(key);
          }
        },
      });
      for (const wrapped of [bytes(40), bytes(7), bytes(0), bytes(24)]) {
        out.push({ op: 'unwrapKey', id: `unwrapKey(raw, ${show(wrapped)}, ${unwrapper}, AES-KW, ${what})`, run: (s, k) => s.unwrapKey('raw', wrapped, k[unwrapper], 'AES-KW', alg, true, usages) });
      }
    }
  }
  out.push({ op: 'unwrapKey', id: 'unwrapKey(raw, "x", aesKw)', run: (s, k) => s.unwrapKey('raw', 'x', k.aesKw, 'AES-KW', 'AES-GCM', true, ['encrypt']) });
  out.push({ op: 'unwrapKey', id: 'unwrapKey(too few)', run: (s, k) => s.unwrapKey('raw', bytes(24), k.aesKw, 'AES-KW', 'AES-GCM', true) });
  return out;
}

// ── EC points and small-order Ed25519 keys ───────────────────────────────

function behaviourCases(): Case[] {
  const out: Case[] = [];
  // SPKI with a compressed point (SEC 1 §2.3.3): the same AlgorithmIdentifier, a shorter BIT STRING.
  const compressedSpki = (crv: 'P-256' | 'P-384', point: Uint8Array): Uint8Array =>
    Buffer.concat([
      Buffer.from(crv === 'P-256' ? '3039301306072a8648ce3d020106082a8648ce3d030107032200' : '3046301006072a8648ce3d020106052b81040022033200', 'hex'),
      compress(point),
    ]);
  for (const [crv, p] of [['P-256', m.p256], ['P-384', m.p384]] as const) {
    for (const alg of ['ECDSA', 'ECDH']) {
      out.push({
        op: 'exportKey',
        id: `exportKey(raw and spki, ${alg} ${crv} imported from an SPKI with a compressed point)`,
        run: async (s) => {
          const key = await s.importKey('spki', compressedSpki(crv, p.raw), { name: alg, namedCurve: crv }, true, alg === 'ECDSA' ? ['verify'] : []);
          try {
            return [await s.exportKey('raw', key), await s.exportKey('spki', key), await s.exportKey('jwk', key)];
          } finally {
            await release(key);
          }
        },
      });
      out.push({
        op: 'exportKey',
        id: `exportKey(raw and spki, ${alg} ${crv} imported from a compressed point)`,
        run: async (s) => {
          const key = await s.importKey('raw', compress(p.raw), { name: alg, namedCurve: crv }, true, alg === 'ECDSA' ? ['verify'] : []);
          try {
            return [await s.exportKey('raw', key), await s.exportKey('spki', key), await s.exportKey('jwk', key)];
          } finally {
            await release(key);
          }
        },
      });
    }
  }
  return out;
}

// ── AES-CBC, AES-CTR, RSA-OAEP, RSASSA-PKCS1-v1_5, PBKDF2, P-521, Ed448, X448 ──

/** Generate, import, use and misuse each of them, on the same calls to both implementations. */
function moreAlgorithmCases(): Case[] {
  const out: Case[] = [];
  const generate: unknown[] = [
    { name: 'AES-CBC', length: 128 },
    { name: 'AES-CBC', length: 100 },
    { name: 'aes-ctr', length: 256 },
    { name: 'AES-CTR' },
    'Ed448',
    { name: 'X448' },
    { name: 'ECDSA', namedCurve: 'P-521' },
    { name: 'ECDH', namedCurve: 'P-521' },
    'PBKDF2',
    { name: 'RSA-OAEP', modulusLength: 2048, publicExponent: e65537 },
    { name: 'RSASSA-PKCS1-v1_5', hash: 'MD5', modulusLength: 2048, publicExponent: e65537 },
  ];
  for (const a of generate) {
    for (const u of usageSubsets(2)) out.push({ op: 'generateKey', id: `generateKey(${show(a)}, true, ${show(u)})`, run: (s) => s.generateKey(a, true, u) });
  }
  for (const [name, usages] of [['RSA-OAEP', ['encrypt', 'decrypt']], ['RSASSA-PKCS1-v1_5', ['sign', 'verify']]] as const) {
    const rsa = { name, modulusLength: 2048, publicExponent: e65537, hash: 'SHA-256' };
    out.push({ op: 'generateKey', id: `generateKey(${name} 2048, true, ${show(usages)})`, run: (s) => s.generateKey(rsa, true, usages) });
    for (const u of usageSubsets(2).filter((x) => x.some((y) => !(usages as readonly string[]).includes(y) && y !== 'wrapKey' && y !== 'unwrapKey'))) {
      out.push({ op: 'generateKey', id: `generateKey(${name} 2048, true, ${show(u)})`, run: (s) => s.generateKey(rsa, true, u) });
    }
  }

  // importKey: each format, with and without the right usages, and the key exported back.
  const imports: [string, string, unknown, unknown, boolean][] = [
    ['AES-CBC raw', 'raw', m.aes128, 'AES-CBC', true],
    ['AES-CTR raw 7', 'raw', m.aes128.subarray(0, 7), 'AES-CTR', true],
    ['AES-CTR jwk', 'jwk', { kty: 'oct', k: b64u(m.aes256), alg: 'A256CTR' }, 'AES-CTR', true],
    ['PBKDF2 raw', 'raw', m.password, 'PBKDF2', false],
    ['PBKDF2 raw extractable', 'raw', m.password, 'PBKDF2', true],
    ['PBKDF2 spki', 'spki', m.password, 'PBKDF2', false],
    ['RSA-OAEP spki', 'spki', m.rsa.pub, { name: 'RSA-OAEP', hash: 'SHA-1' }, true],
    ['RSA-OAEP pkcs8', 'pkcs8', m.rsa.priv, { name: 'RSA-OAEP', hash: 'SHA-256' }, true],
    ['RSA-OAEP raw', 'raw', m.rsa.pub, { name: 'RSA-OAEP', hash: 'SHA-256' }, true],
    ['RSASSA spki', 'spki', m.rsa.pub, { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-512' }, true],
    ['RSASSA no hash', 'spki', m.rsa.pub, 'RSASSA-PKCS1-v1_5', true],
    ['ECDSA P-521 spki', 'spki', m.p521.pub, { name: 'ECDSA', namedCurve: 'P-521' }, true],
    ['ECDH P-521 pkcs8', 'pkcs8', m.ecdh521.priv, { name: 'ECDH', namedCurve: 'P-521' }, true],
    ['ECDSA P-521 as P-256', 'spki', m.p521.pub, { name: 'ECDSA', namedCurve: 'P-256' }, true],
    ['Ed448 spki', 'spki', m.ed448.pub, 'Ed448', true],
    ['Ed448 pkcs8', 'pkcs8', m.ed448.priv, 'Ed448', true],
    ['Ed448 jwk', 'jwk', m.ed448.privJwk, 'Ed448', true],
    ['Ed448 raw of X448', 'spki', m.x448.pub, 'Ed448', true],
    ['X448 spki', 'spki', m.x448.pub, 'X448', true],
    ['X448 pkcs8', 'pkcs8', m.x448.priv, 'X448', true],
  ];
  for (const [what, format, data, algorithm, extractable] of imports) {
    for (const u of usageSubsets(2)) {
      out.push({
        op: 'importKey',
        id: `importKey(${what}, ${show(u)})`,
        run: async (s) => {
          const key = await s.importKey(format, data, algorithm, extractable, u);
          try {
            return [key, extractable ? await s.exportKey(format === 'pkcs8' ? 'jwk' : format, key).catch((e: Error) => `export: ${e.name}`) : null];
          } finally {
            await release(key);
          }
        },
      });
    }
  }

  // encrypt / decrypt: AES-CBC iv, AES-CTR counter and length, RSA-OAEP label; each decrypts what it encrypted.
  const ciphers: [unknown, string, string][] = [];
  for (const iv of [bytes(16, 1), bytes(12), bytes(0), bytes(32), 'iv']) ciphers.push([{ name: 'AES-CBC', iv }, 'aesCbc', 'aesCbc']);
  for (const counter of [bytes(16, 2), bytes(8)]) {
    for (const length of [1, 64, 128, 0, 129, 256, -1]) ciphers.push([{ name: 'AES-CTR', counter, length }, 'aesCtr', 'aesCtr']);
  }
  ciphers.push([{ name: 'AES-CTR', counter: bytes(16) }, 'aesCtr', 'aesCtr']);
  for (const label of [undefined, bytes(0), bytes(9, 5), 'label']) ciphers.push([{ name: 'RSA-OAEP', label }, 'rsaOaepPub', 'rsaOaep']);
  for (const [alg, enc, dec] of ciphers) {
    for (const data of DATA) {
      const deterministic = (alg as { name: string }).name !== 'RSA-OAEP';
      out.push({
        op: 'encrypt',
        id: `encrypt(${show(alg)}, ${enc}, ${show(data)})`,
        run: (s, k) => (deterministic ? s.encrypt(alg, k[enc], data) : s.encrypt(alg, k[enc], data).then((c) => (c as ArrayBuffer).byteLength)),
      });
      out.push({ op: 'decrypt', id: `decrypt(${show(alg)}, ${dec}, encrypt(${show(data)}))`, run: async (s, k) => s.decrypt(alg, k[dec], await s.encrypt(alg, k[enc], data)) });
    }
    for (const ct of [bytes(0), bytes(15), bytes(32), bytes(256)]) {
      out.push({ op: 'decrypt', id: `decrypt(${show(alg)}, ${dec}, ${show(ct)})`, run: (s, k) => s.decrypt(alg, k[dec], ct) });
    }
  }
  for (const [alg, keys] of [
    [{ name: 'AES-CBC', iv: bytes(16) }, ['aesGcm', 'aesCtr', 'rsaOaep', 'hmac']],
    [{ name: 'AES-CTR', counter: bytes(16), length: 64 }, ['aesCbc', 'aesKw']],
    [{ name: 'RSA-OAEP' }, ['rsaOaep', 'rsaPssPub', 'aesCbc']],
    [{ name: 'AES-CBC' }, ['aesCbc']],
    [{ name: 'AES-CTR', length: 64 }, ['aesCtr']],
  ] as const) {
    for (const key of keys) {
      for (const op of ['encrypt', 'decrypt'] as const) {
        out.push({ op, id: `${op}(${show(alg)}, ${key})`, run: (s, k) => s[op](alg, k[key], bytes(32)) });
      }
    }
  }

  // sign / verify: RSASSA-PKCS1-v1_5 and Ed448 are deterministic, ECDSA P-521 is not.
  const signs: [unknown, string, string, boolean][] = [
    ['RSASSA-PKCS1-v1_5', 'rsaPkcs1', 'rsaPkcs1Pub', false],
    ['Ed448', 'ed448', 'ed448Pub', false],
    [{ name: 'Ed448', context: bytes(0) }, 'ed448', 'ed448Pub', false],
    [{ name: 'Ed448', context: bytes(3) }, 'ed448', 'ed448Pub', false],
    [{ name: 'ECDSA', hash: 'SHA-512' }, 'ecdsa521', 'ecdsa521Pub', true],
  ];
  for (const [alg, priv, pub, randomized] of signs) {
    for (const data of DATA) {
      out.push({
        op: 'sign',
        id: `sign(${show(alg)}, ${priv}, ${show(data)})`,
        run: (s, k) => s.sign(alg, k[priv], data),
        ...(randomized ? { verifyWith: (s: AnySubtle, k: Keys, sig: ArrayBuffer) => s.verify(alg, k[pub], sig, data) } : {}),
      });
      out.push({ op: 'verify', id: `verify(${show(alg)}, ${pub}, sign(${show(data)}))`, run: async (s, k) => s.verify(alg, k[pub], await s.sign(alg, k[priv], data), data) });
      for (const n of [0, 114, 132, 256]) {
        out.push({ op: 'verify', id: `verify(${show(alg)}, ${pub}, ${n} zero bytes, ${show(data)})`, run: (s, k) => s.verify(alg, k[pub], bytes(n, 0), data) });
      }
    }
    for (const key of ['rsaPss', 'ed25519', 'ecdsa256', 'hmac', pub]) {
      out.push({
        op: 'sign',
        id: `sign(${show(alg)}, ${key} instead of ${priv})`,
        run: (s, k) => s.sign(alg, k[key], bytes(8)),
        ...(randomized ? { verifyWith: (s: AnySubtle, k: Keys, sig: ArrayBuffer) => s.verify(alg, k[`${key}Pub`], sig, bytes(8)) } : {}),
      });
    }
  }

  // deriveBits / deriveKey: PBKDF2 (iterations, hash, salt, lengths incl. 0), X448 and ECDH P-521.
  const pbkdf2 = (hash: unknown, iterations: unknown = 1000, salt: unknown = bytes(16)) => ({ name: 'PBKDF2', hash, iterations, salt });
  const lengths: unknown[] = [undefined, null, 0, 8, 12, 128, 256, 1024, -8];
  for (const hash of ['SHA-1', 'SHA-256', 'SHA-512', 'MD5', undefined]) {
    for (const length of lengths) out.push({ op: 'deriveBits', id: `deriveBits(PBKDF2 ${String(hash)}, pbkdf2, ${show(length)})`, run: (s, k) => s.deriveBits(pbkdf2(hash), k.pbkdf2, length) });
  }
  for (const [iterations, salt] of [[1, bytes(0)], [0, bytes(8)], [undefined, bytes(8)], [-1, bytes(8)], [2, 'salt'], [2, undefined]] as const) {
    out.push({ op: 'deriveBits', id: `deriveBits(PBKDF2 iterations ${show(iterations)} salt ${show(salt)})`, run: (s, k) => s.deriveBits(pbkdf2('SHA-256', iterations, salt), k.pbkdf2, 256) });
  }
  for (const [name, priv, pub] of [['X448', 'x448', 'x448Pub'], ['ECDH', 'ecdh521', 'ecdh521Pub']] as const) {
    for (const length of [...lengths, 448, 456, 528, 536]) {
      out.push({ op: 'deriveBits', id: `deriveBits(${name}, ${priv}, ${show(length)})`, run: (s, k) => s.deriveBits({ name, public: k[pub] }, k[priv], length) });
    }
    for (const other of ['x448Pub', 'ecdh521Pub', 'ecdh256Pub', 'x25519Pub', 'x448', 'ed448Pub']) {
      out.push({ op: 'deriveBits', id: `deriveBits(${name}, ${priv}, public ${other})`, run: (s, k) => s.deriveBits({ name, public: k[other] }, k[priv], 128) });
    }
  }
  for (const d of [{ name: 'AES-CBC', length: 128 }, { name: 'AES-CTR', length: 256 }, { name: 'AES-CBC', length: 64 }, 'PBKDF2', { name: 'HMAC', hash: 'SHA-256' }]) {
    for (const u of usageSubsets(1)) {
      out.push({
        op: 'deriveKey',
        id: `deriveKey(PBKDF2, pbkdf2, ${show(d)}, true, ${show(u)})`,
        run: async (s, k) => {
          const key = await s.deriveKey(pbkdf2('SHA-256'), k.pbkdf2, d, true, u);
          try {
            return [key, await s.exportKey('raw', key).catch((e: Error) => `export: ${e.name}`)];
          } finally {
            await release(key);
          }
        },
      });
    }
  }

  // wrapKey / unwrapKey with encryption algorithms (WebCrypto falls back to encrypt/decrypt).
  const wrappings: [unknown, string, string][] = [
    [{ name: 'AES-GCM', iv: bytes(12) }, 'aesGcm', 'aesGcm'],
    [{ name: 'AES-CBC', iv: bytes(16) }, 'aesCbc', 'aesCbc'],
    [{ name: 'AES-CTR', counter: bytes(16), length: 64 }, 'aesCtr', 'aesCtr'],
    [{ name: 'RSA-OAEP' }, 'rsaOaepPub', 'rsaOaep'],
  ];
  for (const [alg, wrapper, unwrapper] of wrappings) {
    for (const [format, name] of [['raw', 'aesGcm256'], ['jwk', 'hmac'], ['spki', 'ecdsa256Pub'], ['raw', 'aesGcmFixed']] as const) {
      out.push({
        op: 'unwrapKey',
        id: `unwrapKey(${format}, wrapKey(${name}, ${wrapper}, ${show(alg)}), ${unwrapper})`,
        run: async (s, k) => {
          const wrapped = await s.wrapKey(format, k[name], k[wrapper], alg);
          const target = name === 'hmac' ? { name: 'HMAC', hash: 'SHA-256' } : name === 'ecdsa256Pub' ? { name: 'ECDSA', namedCurve: 'P-256' } : 'AES-GCM';
          const key = await s.unwrapKey(format, wrapped, k[unwrapper], alg, target, true, name === 'hmac' ? ['sign'] : name === 'ecdsa256Pub' ? ['verify'] : ['encrypt']);
          try {
            return [key, await s.exportKey(format, key)];
          } finally {
            await release(key);
          }
        },
      });
    }
    for (const key of ['aesKw', 'hmac', 'aesGcmDecryptOnly']) {
      out.push({ op: 'wrapKey', id: `wrapKey(raw, aesGcm256, ${key}, ${show(alg)})`, run: (s, k) => s.wrapKey('raw', k.aesGcm256, k[key], alg) });
    }
  }
  return out;
}

/** Every case, in a fixed order. */
export function allCases(): Case[] {
  return [
    ...digestCases(),
    ...generateCases(),
    ...importCases(),
    ...exportCases(),
    ...cipherCases(),
    ...signCases(),
    ...deriveCases(),
    ...wrapCases(),
    ...behaviourCases(),
    ...moreAlgorithmCases(),
  ];
}

export type { AnyKey };
