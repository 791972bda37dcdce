/**
 * The pieces of test/fuzz.test.ts: seed frames of every operation, the
 * mutations applied to them, generators of random arguments, a reference
 * count of the replies a byte stream must get, and an in-process harness
 * that runs the daemon's real request chain (Connection → handlers → Data
 * Manager) over a fake socket — no system calls, so tens of thousands of
 * cases fit in seconds.
 *
 * Handles cannot be known when a case is generated: seeds and random
 * arguments carry symbols ('$aes', '$hash', …) that are replaced with the
 * handles of real nodes when the case runs. Those nodes belong to an "owner"
 * connection of the same client, made once and remade when a case released
 * some of them.
 */
import { createCipheriv, generateKeyPairSync, randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import fc from 'fast-check';
import { Connection, type ConnectionHost } from '../../src/daemon/connection.js';
import { managedAccess } from '../../src/ops/managed-auth.js';
import { resolveLimits, type Limits } from '../../src/config/limits.js';
import type { Logger } from '../../src/observe/logger.js';
import { streamAudit, type Audit } from '../../src/observe/audit.js';
import { allOperations } from '../../src/ops/index.js';
import { decode, type CborValue } from '../../src/protocol/cbor.js';
import { TooManyConnectionsError } from '../../src/protocol/errors.js';
import { FrameKind, FrameReader, HEADER_SIZE, MIN_LENGTH, encodeFrame, type FrameSink } from '../../src/protocol/frame.js';
import { Op, PROTOCOL_VERSION } from '../../src/protocol/ops.js';
import { DataManager, type ClientId } from '../../src/state/data-manager.js';
import { PassThrough } from 'node:stream';

// ── seeds ────────────────────────────────────────────────────────────────

/** Symbols for the owner's nodes, replaced by real handles when a case runs. */
export const HANDLE_SYMBOLS = ['$aes', '$hmac', '$kw', '$hkdf', '$ed', '$edpub', '$xpriv', '$xpub', '$hash', '$hmacctx', '$enc', '$dec'] as const;
export type HandleSymbol = (typeof HANDLE_SYMBOLS)[number];
export type Handles = Record<HandleSymbol, string>;

export interface SeedFrame {
  op: number;
  payload: CborValue;
}

/** Fixed key material for the owner's keys and the seeds (random per process; the fuzz is about structure). */
export const material = (() => {
  const aes = randomBytes(32);
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const iv = randomBytes(12);
  const plaintext = Buffer.from('fuzz plaintext');
  const c = createCipheriv('aes-256-gcm', aes, iv);
  const ciphertext = Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
  const kw = randomBytes(16);
  // RFC 3394 §2.2.3.1 default IV: AES-KW of the AES key, for a valid UNWRAP_KEY seed.
  const w = createCipheriv('id-aes128-wrap', kw, Buffer.from('A6A6A6A6A6A6A6A6', 'hex'));
  const wrapped = Buffer.concat([w.update(aes), w.final()]);
  return {
    aes,
    hmac: randomBytes(32),
    kw,
    wrapped,
    hkdf: randomBytes(32),
    pkcs8: privateKey.export({ format: 'der', type: 'pkcs8' }),
    spki: publicKey.export({ format: 'der', type: 'spki' }),
    iv,
    ciphertext,
  };
})();

const b64u = (b: Uint8Array): string => Buffer.from(b).toString('base64url');

/** What the owner makes, in order; each reply names the handle(s) of one symbol. */
export function prologue(): Array<{ op: number; payload: CborValue; names: HandleSymbol[] }> {
  const m = material;
  return [
    { op: Op.IMPORT_KEY, payload: { format: 'raw', keyData: m.aes, algorithm: { name: 'AES-GCM' }, extractable: true, usages: ['encrypt', 'decrypt'] }, names: ['$aes'] },
    { op: Op.IMPORT_KEY, payload: { format: 'raw', keyData: m.hmac, algorithm: { name: 'HMAC', hash: 'SHA-256' }, extractable: true, usages: ['sign', 'verify'] }, names: ['$hmac'] },
    { op: Op.IMPORT_KEY, payload: { format: 'raw', keyData: m.kw, algorithm: { name: 'AES-KW' }, extractable: false, usages: ['wrapKey', 'unwrapKey'] }, names: ['$kw'] },
    { op: Op.IMPORT_KEY, payload: { format: 'raw', keyData: m.hkdf, algorithm: { name: 'HKDF' }, extractable: false, usages: ['deriveBits', 'deriveKey'] }, names: ['$hkdf'] },
    { op: Op.IMPORT_KEY, payload: { format: 'pkcs8', keyData: m.pkcs8, algorithm: { name: 'Ed25519' }, extractable: true, usages: ['sign'] }, names: ['$ed'] },
    { op: Op.IMPORT_KEY, payload: { format: 'spki', keyData: m.spki, algorithm: { name: 'Ed25519' }, extractable: true, usages: ['verify'] }, names: ['$edpub'] },
    { op: Op.GENERATE_KEY, payload: { algorithm: { name: 'X25519' }, extractable: false, usages: ['deriveBits'] }, names: ['$xpub', '$xpriv'] },
    { op: Op.HASH_CREATE, payload: { algorithm: 'SHA-256' }, names: ['$hash'] },
    { op: Op.HMAC_CREATE, payload: { key: '$hmac' }, names: ['$hmacctx'] },
    { op: Op.CIPHER_CREATE, payload: { key: '$aes', mode: 'encrypt', algorithm: { name: 'AES-GCM', segmentSize: 1024 } }, names: ['$enc'] },
    { op: Op.CIPHER_CREATE, payload: { key: '$aes', mode: 'decrypt', algorithm: { name: 'AES-GCM' } }, names: ['$dec'] },
  ];
}

/** One valid request (given the owner's handles) for every operation, several for some. */
export function seeds(): SeedFrame[] {
  const m = material;
  const jwkOct = { kty: 'oct', k: b64u(m.aes), alg: 'A256GCM', ext: true, key_ops: ['encrypt'] };
  return [
    { op: Op.HELLO, payload: { version: PROTOCOL_VERSION, client: 'fuzz' } },
    { op: Op.PING, payload: { echo: 'x', n: 1 } },
    { op: Op.STATUS, payload: undefined },
    { op: Op.DIGEST, payload: { algorithm: 'SHA-256', data: Buffer.from('abc') } },
    { op: Op.DIGEST, payload: { algorithm: { name: 'SHA-512' }, data: Buffer.alloc(0) } },
    { op: Op.GENERATE_KEY, payload: { algorithm: { name: 'HMAC', hash: 'SHA-256', length: 256 }, extractable: true, usages: ['sign', 'verify'] } },
    { op: Op.GENERATE_KEY, payload: { algorithm: { name: 'AES-GCM', length: 128 }, extractable: false, usages: ['encrypt'] } },
    { op: Op.GENERATE_KEY, payload: { algorithm: { name: 'ECDSA', namedCurve: 'P-256' }, extractable: false, usages: ['sign', 'verify'] } },
    { op: Op.GENERATE_KEY, payload: { algorithm: { name: 'Ed25519' }, extractable: true, usages: ['sign', 'verify'] } },
    { op: Op.IMPORT_KEY, payload: { format: 'raw', keyData: m.aes, algorithm: { name: 'AES-GCM' }, extractable: false, usages: ['encrypt', 'decrypt'] } },
    { op: Op.IMPORT_KEY, payload: { format: 'jwk', keyData: jwkOct, algorithm: { name: 'AES-GCM' }, extractable: true, usages: ['encrypt'] } },
    { op: Op.IMPORT_KEY, payload: { format: 'pkcs8', keyData: m.pkcs8, algorithm: 'Ed25519', extractable: false, usages: ['sign'] } },
    { op: Op.IMPORT_KEY, payload: { format: 'raw', keyData: m.hmac, algorithm: { name: 'HMAC', hash: { name: 'SHA-384' } }, extractable: false, usages: ['sign'] } },
    { op: Op.EXPORT_KEY, payload: { format: 'raw', key: '$aes' } },
    { op: Op.EXPORT_KEY, payload: { format: 'jwk', key: '$hmac' } },
    { op: Op.EXPORT_KEY, payload: { format: 'pkcs8', key: '$ed' } },
    { op: Op.RELEASE, payload: { handle: '$hash' } },
    { op: Op.ENCRYPT, payload: { algorithm: { name: 'AES-GCM', iv: m.iv, additionalData: Buffer.from('ad'), tagLength: 128 }, key: '$aes', data: Buffer.from('hello') } },
    { op: Op.DECRYPT, payload: { algorithm: { name: 'AES-GCM', iv: m.iv }, key: '$aes', data: m.ciphertext } },
    { op: Op.SIGN, payload: { algorithm: 'HMAC', key: '$hmac', data: Buffer.from('m') } },
    { op: Op.SIGN, payload: { algorithm: { name: 'Ed25519' }, key: '$ed', data: Buffer.from('m') } },
    { op: Op.VERIFY, payload: { algorithm: 'Ed25519', key: '$edpub', signature: Buffer.alloc(64, 1), data: Buffer.from('m') } },
    { op: Op.DERIVE_BITS, payload: { algorithm: { name: 'HKDF', hash: 'SHA-256', salt: Buffer.alloc(8), info: Buffer.alloc(4) }, baseKey: '$hkdf', length: 256 } },
    { op: Op.DERIVE_BITS, payload: { algorithm: { name: 'X25519', public: '$xpub' }, baseKey: '$xpriv', length: null } },
    {
      op: Op.DERIVE_KEY,
      payload: {
        algorithm: { name: 'HKDF', hash: 'SHA-256', salt: Buffer.alloc(0), info: Buffer.alloc(0) },
        baseKey: '$hkdf',
        derivedKeyType: { name: 'AES-GCM', length: 256 },
        extractable: false,
        usages: ['encrypt'],
      },
    },
    { op: Op.WRAP_KEY, payload: { format: 'raw', key: '$aes', wrappingKey: '$kw', wrapAlgorithm: 'AES-KW' } },
    {
      op: Op.UNWRAP_KEY,
      payload: {
        format: 'raw',
        wrappedKey: m.wrapped,
        unwrappingKey: '$kw',
        unwrapAlgorithm: { name: 'AES-KW' },
        unwrappedKeyAlgorithm: { name: 'AES-GCM' },
        extractable: false,
        usages: ['decrypt'],
      },
    },
    { op: Op.HASH_CREATE, payload: { algorithm: 'SHA-1' } },
    { op: Op.HMAC_CREATE, payload: { key: '$hmac' } },
    { op: Op.CONTEXT_UPDATE, payload: { handle: '$hash', data: Buffer.from('part') } },
    { op: Op.CONTEXT_UPDATE, payload: { handle: '$hmacctx', data: Buffer.alloc(100, 7) } },
    { op: Op.CONTEXT_FINAL, payload: { handle: '$hmacctx' } },
    { op: Op.CIPHER_CREATE, payload: { key: '$aes', mode: 'encrypt', algorithm: { name: 'AES-GCM', additionalData: Buffer.from('x'), segmentSize: 2048 } } },
    { op: Op.CIPHER_UPDATE, payload: { handle: '$enc', data: Buffer.alloc(1500, 1) } },
    { op: Op.CIPHER_UPDATE, payload: { handle: '$dec', data: Buffer.concat([Buffer.from('CDAS'), Buffer.from([1, 3, 0, 0, 4, 0]), Buffer.alloc(39)]) } },
    { op: Op.CIPHER_FINAL, payload: { handle: '$enc', data: Buffer.from('end') } },
    // Batch forms (docs/protocol.md §6.15).
    { op: Op.DIGEST, payload: { algorithm: 'SHA-256', items: [{ data: Buffer.from('a') }, { data: Buffer.alloc(0) }] } },
    { op: Op.SIGN, payload: { algorithm: 'HMAC', key: '$hmac', items: [{ data: Buffer.from('m') }, { data: Buffer.from('n') }] } },
    { op: Op.VERIFY, payload: { algorithm: 'Ed25519', key: '$edpub', items: [{ signature: Buffer.alloc(64, 1), data: Buffer.from('m') }, { signature: Buffer.alloc(3), data: Buffer.alloc(0) }] } },
    { op: Op.ENCRYPT, payload: { algorithm: { name: 'AES-GCM', additionalData: Buffer.from('ad') }, key: '$aes', items: [{ data: Buffer.from('hello'), iv: m.iv }, { data: Buffer.alloc(0), iv: Buffer.alloc(0) }] } },
    { op: Op.DECRYPT, payload: { algorithm: 'AES-GCM', key: '$aes', items: [{ data: m.ciphertext, iv: m.iv }, { data: Buffer.alloc(4), iv: m.iv, additionalData: Buffer.from('x') }] } },
  ];
}

/** Replace handle symbols anywhere in a value (strings equal to a symbol, or map keys never). */
export function bind(v: CborValue, h: Handles): CborValue {
  if (typeof v === 'string') return v.startsWith('$') && v in h ? h[v as HandleSymbol] : v;
  if (v === null || v === undefined || typeof v !== 'object' || v instanceof Uint8Array) return v;
  if (Array.isArray(v)) return v.map((x) => bind(x, h));
  const out: { [k: string]: CborValue } = {};
  for (const [k, x] of Object.entries(v)) out[k] = bind(x, h);
  return out;
}

// ── random arguments ─────────────────────────────────────────────────────

const FIELDS = [
  'algorithm', 'name', 'hash', 'length', 'key', 'data', 'format', 'keyData', 'usages', 'extractable', 'handle', 'iv', 'additionalData',
  'tagLength', 'baseKey', 'public', 'salt', 'info', 'mode', 'segmentSize', 'namedCurve', 'wrappingKey', 'unwrappingKey', 'wrapAlgorithm',
  'unwrapAlgorithm', 'unwrappedKeyAlgorithm', 'derivedKeyType', 'signature', 'wrappedKey', 'kty', 'k', 'crv', 'd', 'x', 'y', 'alg', 'ext',
  'key_ops', 'use', 'version', 'client', 'token', 'counter', 'items',
];
// RSA-PSS is left out on purpose: a random GENERATE_KEY of it would spend seconds on the thread pool.
const WORDS = [
  'SHA-1', 'SHA-256', 'SHA-384', 'SHA-512', 'AES-GCM', 'ChaCha20-Poly1305', 'AES-KW', 'AES-KWP', 'HMAC', 'HKDF', 'ECDSA', 'ECDH', 'Ed25519',
  'X25519', 'P-256', 'P-384', 'raw', 'jwk', 'pkcs8', 'spki', 'encrypt', 'decrypt', 'sign', 'verify', 'wrapKey', 'unwrapKey', 'deriveBits',
  'deriveKey', 'oct', 'OKP', 'EC', 'A256GCM', 'HS256', 'fuzz', '',
];

/** A CBOR value shaped like request arguments: maps of known field names, words, handles, small bytes and numbers. */
export const argValue: fc.Arbitrary<CborValue> = fc.letrec<{ value: CborValue; map: { [k: string]: CborValue } }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constantFrom<CborValue>(null, true, false, undefined, 0, -1, 1, 12, 16, 32, 128, 256, 1024, 2 ** 32, Number.MAX_SAFE_INTEGER, -0, 0.5, NaN, Infinity),
    fc.integer(),
    fc.double(),
    fc.constantFrom<CborValue>(...WORDS, ...HANDLE_SYMBOLS),
    fc.string({ maxLength: 24 }),
    fc.uint8Array({ maxLength: 80 }),
    fc.array(tie('value'), { maxLength: 4 }),
    tie('map'),
  ),
  map: fc.dictionary(fc.oneof(fc.constantFrom(...FIELDS), fc.string({ maxLength: 8 })), tie('value'), { maxKeys: 6 }),
})).value;

/** Ops a random frame may carry: every known one, test-free, and a few unknown codes. */
export const anyOp: fc.Arbitrary<number> = fc.oneof(
  fc.constantFrom(...Object.values(Op).filter((o) => o !== Op.GENERATE_KEY)),
  fc.constant(Op.GENERATE_KEY),
  fc.integer({ min: 0, max: 0xffff }),
);

// ── mutations ────────────────────────────────────────────────────────────

export type FrameMutation =
  | { t: 'length'; frame: number; v: number }
  | { t: 'lengthDelta'; frame: number; d: number }
  | { t: 'kind'; frame: number; v: number }
  | { t: 'op'; frame: number; v: number }
  | { t: 'id'; frame: number; v: number }
  | { t: 'splice'; frame: number; from: number; a: number; b: number; c: number; d: number }
  | { t: 'dup'; frame: number }
  | { t: 'drop'; frame: number };

export type ByteMutation =
  | { t: 'flip'; at: number; bit: number }
  | { t: 'set'; at: number; v: number }
  | { t: 'truncate'; at: number }
  | { t: 'insert'; at: number; bytes: Uint8Array }
  | { t: 'delete'; at: number; n: number };

const idx = fc.nat();
export const frameMutation: fc.Arbitrary<FrameMutation> = fc.oneof(
  fc.record({ t: fc.constant('length' as const), frame: idx, v: fc.oneof(fc.integer({ min: 0, max: 64 }), fc.nat(), fc.constant(0xffffffff)) }),
  fc.record({ t: fc.constant('lengthDelta' as const), frame: idx, d: fc.integer({ min: -8, max: 8 }) }),
  fc.record({ t: fc.constant('kind' as const), frame: idx, v: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ t: fc.constant('op' as const), frame: idx, v: anyOp }),
  fc.record({ t: fc.constant('id' as const), frame: idx, v: fc.oneof(fc.constant(0), fc.nat(), fc.constant(0xffffffff)) }),
  fc.record({ t: fc.constant('splice' as const), frame: idx, from: idx, a: idx, b: idx, c: idx, d: idx }),
  fc.record({ t: fc.constant('dup' as const), frame: idx }),
  fc.record({ t: fc.constant('drop' as const), frame: idx }),
);
export const byteMutation: fc.Arbitrary<ByteMutation> = fc.oneof(
  fc.record({ t: fc.constant('flip' as const), at: idx, bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ t: fc.constant('set' as const), at: idx, v: fc.constantFrom(0, 0xff, 0x7f, 0x80, 0x1f, 0xbf, 0x5b, 0x9f, 0xf9, 0xfb, 0xc0, 0x60, 0x40) }),
  fc.record({ t: fc.constant('truncate' as const), at: idx }),
  fc.record({ t: fc.constant('insert' as const), at: idx, bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({ t: fc.constant('delete' as const), at: idx, n: fc.integer({ min: 1, max: 16 }) }),
);

/** A frame's fields, so frame mutations can rewrite them. */
interface RawFrame {
  length: number;
  kind: number;
  id: number;
  op: number;
  payload: Buffer;
}

function parse(frame: Buffer): RawFrame {
  return { length: frame.readUInt32BE(0), kind: frame[4]!, id: frame.readUInt32BE(5), op: frame.readUInt16BE(9), payload: frame.subarray(HEADER_SIZE) };
}

function serialize(f: RawFrame): Buffer {
  const h = Buffer.alloc(HEADER_SIZE);
  h.writeUInt32BE(f.length >>> 0, 0);
  h[4] = f.kind & 0xff;
  h.writeUInt32BE(f.id >>> 0, 5);
  h.writeUInt16BE(f.op & 0xffff, 9);
  return Buffer.concat([h, f.payload]);
}

export function applyFrameMutations(frames: Buffer[], muts: readonly FrameMutation[]): Buffer[] {
  let fs = frames.map(parse);
  for (const m of muts) {
    if (fs.length === 0) break;
    const i = m.frame % fs.length;
    const f = fs[i]!;
    switch (m.t) {
      case 'length':
        f.length = m.v;
        break;
      case 'lengthDelta':
        f.length = Math.max(0, f.length + m.d);
        break;
      case 'kind':
        f.kind = m.v;
        break;
      case 'op':
        f.op = m.v;
        break;
      case 'id':
        f.id = m.v;
        break;
      case 'splice': {
        // Replace part of this payload with part of another frame's payload (CBOR from elsewhere), lengths fixed up.
        const other = fs[m.from % fs.length]!.payload;
        const a = m.a % (f.payload.length + 1);
        const b = a + (m.b % (f.payload.length - a + 1));
        const c = m.c % (other.length + 1);
        const d = c + (m.d % (other.length - c + 1));
        f.payload = Buffer.concat([f.payload.subarray(0, a), other.subarray(c, d), f.payload.subarray(b)]);
        f.length = MIN_LENGTH + f.payload.length;
        break;
      }
      case 'dup':
        fs.splice(i, 0, { ...f });
        break;
      case 'drop':
        fs = fs.filter((_, j) => j !== i);
        break;
    }
  }
  return fs.map(serialize);
}

export function applyByteMutations(bytes: Buffer, muts: readonly ByteMutation[]): Buffer {
  let b = Buffer.from(bytes);
  for (const m of muts) {
    const at = b.length === 0 ? 0 : m.at % b.length;
    switch (m.t) {
      case 'flip':
        if (b.length > 0) b[at]! ^= 1 << m.bit;
        break;
      case 'set':
        if (b.length > 0) b[at] = m.v;
        break;
      case 'truncate':
        b = b.subarray(0, at);
        break;
      case 'insert':
        b = Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]);
        break;
      case 'delete':
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + m.n)]);
        break;
    }
  }
  return b;
}

// ── cases ────────────────────────────────────────────────────────────────

/** What one case sends after (optionally) a clean HELLO. */
export type Piece =
  | { t: 'seed'; i: number; id: number }
  | { t: 'random'; op: number; id: number; args: CborValue }
  | { t: 'bytes'; bytes: Uint8Array };

/** How a case begins: a clean HELLO, none, or a HELLO with random arguments (version, name, token). */
export type Hello = { t: 'clean' } | { t: 'none' } | { t: 'args'; args: CborValue };

export interface Case {
  hello: Hello;
  pieces: Piece[];
  frameMuts: FrameMutation[];
  byteMuts: ByteMutation[];
  /** Cut points (taken modulo the length) where the byte stream is split into writes. */
  cuts: number[];
}

const SEED_COUNT = seeds().length;

export const piece: fc.Arbitrary<Piece> = fc.oneof(
  { arbitrary: fc.record({ t: fc.constant('seed' as const), i: fc.integer({ min: 0, max: SEED_COUNT - 1 }), id: fc.nat() }), weight: 5 },
  { arbitrary: fc.record({ t: fc.constant('random' as const), op: anyOp, id: fc.nat(), args: argValue }), weight: 3 },
  { arbitrary: fc.record({ t: fc.constant('bytes' as const), bytes: fc.uint8Array({ maxLength: 48 }) }), weight: 1 },
);

const helloArgs: fc.Arbitrary<CborValue> = fc.oneof(
  fc.record(
    {
      version: fc.oneof(fc.constant(PROTOCOL_VERSION), fc.integer({ min: 0, max: 3 }), fc.constant(0xffff), argValue),
      client: fc.oneof(fc.constant('fuzz'), fc.string({ maxLength: 70 }), argValue),
      token: fc.oneof(fc.string({ maxLength: 60 }), argValue),
    },
    { requiredKeys: [] },
  ),
  argValue,
);

export const fuzzCase: fc.Arbitrary<Case> = fc.record({
  hello: fc.oneof(
    { arbitrary: fc.constant<Hello>({ t: 'clean' }), weight: 8 },
    { arbitrary: fc.constant<Hello>({ t: 'none' }), weight: 1 },
    { arbitrary: helloArgs.map((args): Hello => ({ t: 'args', args })), weight: 1 },
  ),
  pieces: fc.array(piece, { minLength: 1, maxLength: 6 }),
  frameMuts: fc.array(frameMutation, { maxLength: 3 }),
  byteMuts: fc.oneof(fc.constant([] as ByteMutation[]), fc.array(byteMutation, { minLength: 1, maxLength: 4 })),
  cuts: fc.array(fc.nat(), { maxLength: 4 }),
});

/** The bytes of a case, handles bound, mutations applied. */
export function render(c: Case, h: Handles): Buffer {
  const all = seeds();
  const frames: Buffer[] = [];
  for (const p of c.pieces) {
    if (p.t === 'bytes') frames.push(Buffer.from(p.bytes));
    else if (p.t === 'seed') frames.push(encodeFrame(FrameKind.REQUEST, p.id, all[p.i]!.op, bind(all[p.i]!.payload, h)));
    else frames.push(encodeFrame(FrameKind.REQUEST, p.id, p.op, bind(p.args, h)));
  }
  // Frame mutations need whole frames: raw byte pieces shorter than a header pass through.
  const whole = frames.filter((f) => f.length >= HEADER_SIZE);
  const mutated = c.frameMuts.length > 0 && whole.length === frames.length ? applyFrameMutations(frames, c.frameMuts) : frames;
  return applyByteMutations(Buffer.concat(mutated), c.byteMuts);
}

export function split(bytes: Buffer, cuts: readonly number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => (bytes.length === 0 ? 0 : c % bytes.length)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const a of at) {
    if (a > prev) out.push(bytes.subarray(prev, a));
    prev = Math.max(prev, a);
  }
  if (prev < bytes.length) out.push(bytes.subarray(prev));
  return out;
}

/**
 * How many reply frames the daemon owes for `bytes`, by the framing rules of
 * docs/protocol.md §2 (a reference independent of FrameReader): one per
 * complete frame, one per oversize header (its body skipped), one per length
 * field under 7 (that many bytes skipped); an incomplete tail gets none.
 */
export function expectedReplies(bytes: Buffer, maxFrame: number): number[] {
  const ids: number[] = [];
  let off = 0;
  while (bytes.length - off >= 4) {
    const len = bytes.readUInt32BE(off);
    if (len < MIN_LENGTH) {
      ids.push(0); // the error for a frame without a header goes to request id 0
      off += 4 + len;
      continue;
    }
    if (bytes.length - off < HEADER_SIZE) break;
    const id = bytes.readUInt32BE(off + 5);
    if (len > maxFrame) {
      ids.push(id);
      off += 4 + len;
      continue;
    }
    if (bytes.length - off < 4 + len) break;
    ids.push(id);
    off += 4 + len;
  }
  return ids;
}

/** Whether every id in `got` is matched by one in `owed` (multisets). */
export function owedIncludes(owed: readonly number[], got: readonly number[]): boolean {
  const left = new Map<number, number>();
  for (const id of owed) left.set(id, (left.get(id) ?? 0) + 1);
  for (const id of got) {
    const n = left.get(id) ?? 0;
    if (n === 0) return false;
    left.set(id, n - 1);
  }
  return true;
}

// ── reply checking ───────────────────────────────────────────────────────

export interface Reply {
  kind: number;
  id: number;
  op: number;
  code: string | null;
  message: string | null;
  value: CborValue;
}

/** Parses what the daemon writes; a malformed reply frame is a failure of the daemon's encoder. */
export class ReplyCollector implements FrameSink {
  readonly replies: Reply[] = [];
  readonly problems: string[] = [];
  readonly #reader = new FrameReader(64 * 1024 * 1024, this);

  push(b: Buffer): void {
    this.#reader.push(b);
  }

  frame(kind: number, id: number, op: number, buf: Buffer, start: number, end: number): void {
    let payload: CborValue;
    try {
      payload = start === end ? undefined : decode(Buffer.from(buf.subarray(start, end)));
    } catch (err) {
      this.problems.push(`undecodable reply payload for request ${id}: ${String(err)}`);
      return;
    }
    if (kind === FrameKind.ERROR) {
      const p = payload as { code?: unknown; message?: unknown };
      if (typeof p?.code !== 'string' || typeof p.message !== 'string') this.problems.push(`error reply without code/message: ${JSON.stringify(payload)}`);
      this.replies.push({ kind, id, op, code: typeof p?.code === 'string' ? p.code : null, message: typeof p?.message === 'string' ? p.message : null, value: payload });
    } else {
      if (kind !== FrameKind.RESPONSE) this.problems.push(`reply of kind ${kind}`);
      this.replies.push({ kind, id, op, code: null, message: null, value: payload });
    }
  }
  oversize(kind: number, id: number): void {
    this.problems.push(`oversize reply (kind ${kind}, id ${id})`);
  }
  malformed(length: number): void {
    this.problems.push(`malformed reply (length ${length})`);
  }
}

// ── the in-process harness ───────────────────────────────────────────────

/** The parts of net.Socket a Connection uses, with pause honoured the way a socket does. */
export class FakeSocket extends EventEmitter {
  readonly out = new ReplyCollector();
  paused = false;
  destroyed = false;
  closed = false;
  /** The daemon half-closed (end) or destroyed this side: it closed the connection. */
  closedByDaemon = false;
  readonly writableNeedDrain = false;
  readonly writableHighWaterMark = 16 * 1024;
  readonly remoteAddress = undefined;
  /** As a socket's: false once ended or destroyed (the daemon then drops its queued replies). */
  get writable(): boolean {
    return !this.destroyed && !this.closedByDaemon;
  }
  readonly #queue: Buffer[] = [];

  feed(chunk: Buffer): void {
    this.#queue.push(chunk);
    this.#flush();
  }
  get queued(): number {
    return this.#queue.length;
  }
  write(buf: Buffer, cb?: () => void): boolean {
    if (this.destroyed) return false;
    this.out.push(Buffer.from(buf));
    if (cb !== undefined) queueMicrotask(cb);
    return true;
  }
  cork(): void {}
  uncork(): void {}
  pause(): this {
    this.paused = true;
    return this;
  }
  resume(): this {
    this.paused = false;
    this.#flush();
    return this;
  }
  end(cb?: () => void): this {
    this.closedByDaemon = true;
    if (cb !== undefined) setImmediate(cb);
    return this;
  }
  /** Called by the daemon (closedByDaemon) or by the test as the peer hanging up. */
  destroy(): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    this.#queue.length = 0;
    setImmediate(() => {
      this.closed = true;
      this.emit('close');
    });
    return this;
  }
  #flush(): void {
    while (!this.paused && !this.destroyed && this.#queue.length > 0) this.emit('data', this.#queue.shift()!);
  }
}

export interface LogLine {
  level: string;
  msg: string;
  fields: Record<string, unknown> | undefined;
}

export class ChainHarness {
  readonly limits: Limits;
  readonly dm: DataManager;
  readonly logs: LogLine[] = [];
  readonly audit: Audit;
  auditLines = 0;
  readonly #host: ConnectionHost;
  readonly #byClient = new Map<ClientId, number>();
  owner: { socket: FakeSocket; conn: Connection; handles: Handles; nodes: number } | null = null;

  constructor(limits: Partial<Limits> = {}) {
    this.limits = resolveLimits({ maxFrame: 64 * 1024, ...limits });
    this.dm = new DataManager({ maxNodesPerClient: this.limits.maxNodesPerClient, memoryBudget: this.limits.maxContextMemory, memoryPerClient: this.limits.maxContextMemoryPerClient });
    const log: Logger = {
      debug: () => {},
      info: () => {},
      warn: (msg, fields) => this.logs.push({ level: 'warn', msg, fields }),
      error: (msg, fields) => this.logs.push({ level: 'error', msg, fields }),
    };
    const sink = new PassThrough();
    sink.on('data', () => this.auditLines++);
    this.audit = streamAudit(sink);
    const operations = new Map(allOperations().map((o) => [o.op as number, o]));
    const byClient = this.#byClient;
    const limitsRef = this.limits;
    this.#host = {
      dm: this.dm,
      limits: this.limits,
      operations,
      authorizer: managedAccess,
      view: { startedAt: Date.now(), version: 'fuzz', status: () => ({ nodes: this.dm.liveNodes() }) },
      log,
      shuttingDown: false,
      verifyToken: null,
      audit: this.audit,
      attached(conn) {
        const id = conn.clientId!;
        const n = byClient.get(id) ?? 0;
        if (n >= limitsRef.maxConnectionsPerClient) throw new TooManyConnectionsError('too many connections');
        byClient.set(id, n + 1);
      },
      closed(conn) {
        const id = conn.clientId;
        if (id === null) return;
        const n = (byClient.get(id) ?? 1) - 1;
        if (n === 0) byClient.delete(id);
        else byClient.set(id, n);
      },
    };
  }

  open(): { socket: FakeSocket; conn: Connection } {
    const socket = new FakeSocket();
    const conn = new Connection(socket as never, this.#host, { uid: 1000, gid: 1000, pid: 4242 });
    return { socket, conn };
  }

  /** Wait until the connection has nothing left to do: all fed bytes read, no request in flight, no reply pending. */
  async settle(s: { socket: FakeSocket; conn: Connection }, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let stable = 0;
    let last = -1;
    while (stable < 2) {
      await new Promise(setImmediate);
      const idle = s.socket.closed || (s.conn.inflight === 0 && (s.socket.queued === 0 || s.socket.destroyed) && !s.socket.paused);
      const n = s.socket.out.replies.length;
      stable = idle && n === last ? stable + 1 : 0;
      last = n;
      if (Date.now() > deadline) throw new Error(`connection did not settle: inflight ${s.conn.inflight}, paused ${s.socket.paused}, queued ${s.socket.queued}`);
    }
  }

  /** The owner connection and its nodes; remade when a case released some of them. */
  async ensureOwner(): Promise<Handles> {
    const o = this.owner;
    if (o !== null && o.conn.ownedCount === o.nodes && !o.socket.destroyed) return o.handles;
    if (o !== null) {
      o.socket.destroy();
      await this.settle(o);
    }
    const s = this.open();
    s.socket.feed(encodeFrame(FrameKind.REQUEST, 1, Op.HELLO, { version: PROTOCOL_VERSION, client: 'fuzz' }));
    const handles = {} as Handles;
    let id = 2;
    for (const step of prologue()) {
      const stepId = id++;
      s.socket.feed(encodeFrame(FrameKind.REQUEST, stepId, step.op, bind(step.payload, handles)));
      await this.settle(s);
      // By id: replies are written a tick later (the connection's reply batch), HELLO's may come after this step's feed.
      const r = s.socket.out.replies.find((reply) => reply.id === stepId);
      if (r === undefined || r.kind !== FrameKind.RESPONSE) throw new Error(`fuzz prologue failed at ${step.names.join(',')}: ${r?.code} ${r?.message}`);
      const v = r.value as { handle?: string; publicKey?: { handle: string }; privateKey?: { handle: string } };
      if (step.names.length === 2) {
        handles[step.names[0]!] = v.publicKey!.handle;
        handles[step.names[1]!] = v.privateKey!.handle;
      } else {
        handles[step.names[0]!] = v.handle!;
      }
    }
    this.owner = { ...s, handles, nodes: s.conn.ownedCount };
    return handles;
  }
}
