/**
 * SIGN and VERIFY (SubtleCrypto.sign/verify): HMAC (RFC 2104), Ed25519 and
 * Ed448 (RFC 8032, pure, no context), ECDSA with IEEE P1363 r||s signatures
 * (FIPS 186-5) on P-256, P-384, P-521, RSA-PSS (RFC 8017 §8.1, MGF1 with the
 * signing hash) and RSASSA-PKCS1-v1_5 (RFC 8017 §8.2, JWT's RS256).
 *
 * HMAC, Ed25519 and ECDSA are µs-scale and run synchronously on the hot path;
 * RSA signing (a private-key exponentiation, ~1 ms at 2048 bits) runs on
 * libuv's thread pool so the event loop keeps serving other clients. RSA
 * verification uses the public exponent 65537 and stays synchronous (µs).
 *
 * As in WebCrypto, VERIFY answers `false` for a wrong or malformed signature
 * (any length, any bytes); only malformed arguments are errors.
 *
 * Both have a batch form (src/ops/batch.ts): the algorithm and the key are
 * checked once ({@link signerFor}, {@link verifierFor}), then each item is
 * one node:crypto call — but HMAC, whose items all go to the native addon in
 * one call (native-crypto.ts), as do single HMACs.
 */
import { constants, sign as nodeSign, timingSafeEqual, verify as nodeVerify } from 'node:crypto';
import type { Operation, RequestContext } from './operation.js';
import type { CborValue } from '../protocol/cbor.js';
import { InvalidArgumentError, OperationError, UnsupportedError } from '../protocol/errors.js';
import { Op } from '../protocol/ops.js';
import { NODE_HASH, normalizeAlgorithm, normalizeHash, type HashName, type NormalizedAlgorithm } from './algorithms.js';
import { Sign, Verify } from '../protocol/messages/subtle.js';
import { SignBatch, VerifyBatch } from '../protocol/messages/batch.js';
import { checkBatchSize, isBatch, itemError } from './batch.js';
import { hmacOf, hmacsOf } from './native-crypto.js';
import type { DataNodeId } from '../state/ids.js';
import { acquireKey, type KeyNode } from './key.js';
import { isSmallOrderEd25519 } from './ed25519-small-order.js';
import { HASH_BYTES } from './secret-keys.js';
import { COORD_BYTES, type CurveName } from './asymmetric-keys.js';

const SIGNATURE_ALGORITHMS = 'HMAC, Ed25519, Ed448, ECDSA, RSA-PSS, RSASSA-PKCS1-v1_5';
/** RFC 8032 §5.1.6, §5.2.6: Ed25519 signatures are 64 bytes, Ed448 ones 114. */
const EDDSA_SIGNATURE_BYTES = { Ed25519: 64, Ed448: 114 } as const;

function hmac(key: KeyNode, data: Uint8Array): Buffer {
  return hmacOf(NODE_HASH[key.algorithm.hash!.name as HashName], key.secret, data);
}

/** The HMAC of each input under `key`, in one native call. */
function hmacs(key: KeyNode, inputs: readonly Uint8Array[]): Uint8Array[] {
  return hmacsOf(NODE_HASH[key.algorithm.hash!.name as HashName], key.secret, inputs);
}

/** Constant time in the tag's content; the length is public (it is the hash's). */
function tagMatches(signature: Uint8Array, tag: Uint8Array): boolean {
  return signature.length === tag.length && timingSafeEqual(signature, tag);
}

/**
 * HMAC takes the key's hash. A `hash` given anyway must name it: a request
 * that asks for another hash would otherwise get a MAC it did not ask for.
 */
function checkHmacHash(alg: NormalizedAlgorithm, key: KeyNode): void {
  if (alg.params.hash === undefined) return;
  const asked = normalizeHash(alg.params.hash, 'algorithm.hash');
  const own = key.algorithm.hash!.name;
  if (asked !== own) {
    throw new InvalidArgumentError(`'algorithm.hash' is ${asked} but the HMAC key's hash is ${own}; omit it or name the key's hash`, {
      detail: { field: 'algorithm.hash', expected: own },
    });
  }
}

function ecdsaHash(alg: NormalizedAlgorithm): string {
  return NODE_HASH[normalizeHash(alg.params.hash, 'algorithm.hash')];
}

/** RSA-PSS `saltLength` (required, as in WebCrypto's RsaPssParams). */
function saltLength(alg: NormalizedAlgorithm): number {
  const v = alg.params.saltLength;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new InvalidArgumentError("expected 'algorithm.saltLength' to be a non-negative integer (bytes)", { detail: { field: 'algorithm.saltLength' } });
  }
  return v;
}

/** RFC 8017 §9.1.1: emLen ≥ hLen + sLen + 2, where emLen = ⌈(modBits − 1)/8⌉. */
function maxSalt(key: KeyNode): number {
  const hash = key.algorithm.hash!.name as HashName;
  return Math.ceil((key.algorithm.modulusLength! - 1) / 8) - HASH_BYTES[hash] - 2;
}

function pssOptions(key: KeyNode, salt: number) {
  return { key: key.object, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: salt };
}

/** Ed448's `context` (RFC 8032 §5.2): Node 20 signs with the empty context only, and so does cryptod. */
function checkEdContext(alg: NormalizedAlgorithm): void {
  const ctx = alg.params.context;
  if (alg.name === 'Ed448' && ctx instanceof Uint8Array && ctx.length > 0) {
    throw new UnsupportedError('Ed448 with a non-empty context is not supported (as in Node 20); omit it or pass an empty one', { detail: { field: 'algorithm.context' } });
  }
}

function unsupported(op: string, name: string): never {
  throw new UnsupportedError(`${op} supports ${SIGNATURE_ALGORITHMS}; got ${name}`, { detail: { field: 'algorithm' } });
}

/** RSA-PSS and RSASSA-PKCS1-v1_5 sign on the thread pool; the accessor keeps the key alive (and un-zeroed) until it finished. */
async function rsaSign(ctx: RequestContext, handle: DataNodeId, alg: NormalizedAlgorithm & { name: 'RSA-PSS' | 'RSASSA-PKCS1-v1_5' }, data: Buffer): Promise<CborValue> {
  using key = acquireKey(ctx, handle);
  const k = key.value;
  k.require(alg.name, 'sign');
  let options: Parameters<typeof nodeSign>[2] = { key: k.object, padding: constants.RSA_PKCS1_PADDING };
  if (alg.name === 'RSA-PSS') {
    const salt = saltLength(alg);
    if (salt > maxSalt(k)) {
      throw new OperationError(`'saltLength' ${salt} is too long for a ${k.algorithm.modulusLength}-bit key with ${k.algorithm.hash!.name}; at most ${maxSalt(k)}`, {
        detail: { field: 'algorithm.saltLength', max: maxSalt(k) },
      });
    }
    options = pssOptions(k, salt);
  }
  const hash = NODE_HASH[k.algorithm.hash!.name as HashName];
  // node copies `data` into the job before returning, so the request frame may be reused meanwhile.
  return await new Promise<Buffer>((resolve, reject) => {
    nodeSign(hash, data, options, (err, sig) => (err ? reject(new OperationError(`${alg.name} signing failed`, { cause: err })) : resolve(sig)));
  });
}

/** What signs one message, once the algorithm and the key were checked. */
type Signer = (data: Buffer) => Buffer;
/** What checks one signature, once the algorithm and the key were checked; never throws for a bad signature. */
type Verifier = (signature: Buffer, data: Buffer) => boolean;

/**
 * Check the algorithm's parameters and the key for signing (HMAC, Ed25519,
 * Ed448, ECDSA: the synchronous ones) and return the signing call. SIGN runs
 * it once, its batch form once per item (the checks are not repeated).
 */
function signerFor(alg: NormalizedAlgorithm, k: KeyNode): Signer {
  switch (alg.name) {
    case 'HMAC':
      k.require('HMAC', 'sign');
      checkHmacHash(alg, k);
      return (data) => hmac(k, data);
    case 'Ed25519':
    case 'Ed448':
      checkEdContext(alg);
      k.require(alg.name, 'sign');
      return (data) => nodeSign(null, data, k.object);
    case 'ECDSA': {
      k.require('ECDSA', 'sign');
      const hash = ecdsaHash(alg);
      const key = { key: k.object, dsaEncoding: 'ieee-p1363' } as const;
      return (data) => nodeSign(hash, data, key);
    }
    default:
      return unsupported('sign', alg.name);
  }
}

/** As {@link signerFor}, for VERIFY: every algorithm (RSA verification is synchronous). */
function verifierFor(alg: NormalizedAlgorithm, k: KeyNode): Verifier {
  switch (alg.name) {
    case 'HMAC': {
      k.require('HMAC', 'verify');
      checkHmacHash(alg, k);
      return (signature, data) => tagMatches(signature, hmac(k, data));
    }
    case 'Ed25519':
      k.require('Ed25519', 'verify');
      // A small-order public key "verifies" forged signatures: never true (ed25519-small-order.ts).
      if (isSmallOrderEd25519(k.object)) return () => false;
      return (signature, data) => signature.length === 64 && safeVerify(null, data, k.object, signature);
    case 'Ed448':
      checkEdContext(alg);
      k.require(alg.name, 'verify');
      return (signature, data) => signature.length === EDDSA_SIGNATURE_BYTES.Ed448 && safeVerify(null, data, k.object, signature);
    case 'ECDSA': {
      k.require('ECDSA', 'verify');
      const hash = ecdsaHash(alg);
      const n = COORD_BYTES[k.algorithm.namedCurve as CurveName];
      const key = { key: k.object, dsaEncoding: 'ieee-p1363' } as const;
      // IEEE P1363: exactly r||s, each the curve order's size; any other length is not a signature.
      return (signature, data) => signature.length === 2 * n && safeVerify(hash, data, key, signature);
    }
    case 'RSA-PSS': {
      k.require('RSA-PSS', 'verify');
      const salt = saltLength(alg);
      const hash = NODE_HASH[k.algorithm.hash!.name as HashName];
      const size = Math.ceil(k.algorithm.modulusLength! / 8);
      // RFC 8017 §9.1.2: a salt that cannot fit is "inconsistent", i.e. not a valid signature.
      if (salt > maxSalt(k)) return () => false;
      const key = pssOptions(k, salt);
      return (signature, data) => signature.length === size && safeVerify(hash, data, key, signature);
    }
    case 'RSASSA-PKCS1-v1_5': {
      k.require('RSASSA-PKCS1-v1_5', 'verify');
      const hash = NODE_HASH[k.algorithm.hash!.name as HashName];
      const size = Math.ceil(k.algorithm.modulusLength! / 8);
      const key = { key: k.object, padding: constants.RSA_PKCS1_PADDING };
      return (signature, data) => signature.length === size && safeVerify(hash, data, key, signature);
    }
    default:
      return unsupported('verify', alg.name);
  }
}

/** SIGN's batch form (src/ops/batch.ts): RSA is refused, its signatures run on the thread pool one request at a time. */
function signBatch(ctx: RequestContext, raw: CborValue): CborValue {
  checkBatchSize(ctx, raw);
  const args = SignBatch.args.parse(raw);
  const alg = normalizeAlgorithm(args.algorithm);
  if (alg.name === 'RSA-PSS' || alg.name === 'RSASSA-PKCS1-v1_5') {
    throw new UnsupportedError(`the batch form of sign supports HMAC, Ed25519, Ed448 and ECDSA; ${alg.name} signs on a worker thread: pipeline single SIGN requests`, {
      detail: { field: 'algorithm' },
    });
  }
  using key = acquireKey(ctx, args.key);
  const sign = signerFor(alg, key.value);
  const items = args.items;
  // Nothing in an HMAC item can make it fail: all in one call.
  if (alg.name === 'HMAC') return { items: hmacs(key.value, items.map((it) => it.data)) };
  const out = new Array<CborValue>(items.length);
  for (let i = 0; i < items.length; i++) {
    try {
      out[i] = sign(items[i]!.data);
    } catch (err) {
      out[i] = itemError(err);
    }
  }
  return { items: out };
}

/** VERIFY's batch form: a wrong signature is `false` in its place, as for the single form. */
function verifyBatch(ctx: RequestContext, raw: CborValue): CborValue {
  checkBatchSize(ctx, raw);
  const args = VerifyBatch.args.parse(raw);
  const alg = normalizeAlgorithm(args.algorithm);
  using key = acquireKey(ctx, args.key);
  const verify = verifierFor(alg, key.value);
  const items = args.items;
  if (alg.name === 'HMAC') {
    const tags = hmacs(key.value, items.map((it) => it.data));
    return { items: items.map((it, i) => tagMatches(it.signature, tags[i]!)) };
  }
  const out = new Array<CborValue>(items.length);
  for (let i = 0; i < items.length; i++) {
    const item = items[i]!;
    try {
      out[i] = verify(item.signature, item.data);
    } catch (err) {
      out[i] = itemError(err);
    }
  }
  return { items: out };
}

export const signOperations: Operation[] = [
  {
    /** `{ algorithm, key, data }` → signature bytes. ECDSA takes `algorithm.hash`; RSA-PSS `algorithm.saltLength`. Or a batch: `{ algorithm, key, items }`. */
    op: Op.SIGN,
    access: { kind: 'none' },
    handle: (ctx, raw) => {
      if (isBatch(raw)) return signBatch(ctx, raw);
      const args = Sign.args.parse(raw);
      const alg = normalizeAlgorithm(args.algorithm);
      const data = args.data;
      if (alg.name === 'RSA-PSS' || alg.name === 'RSASSA-PKCS1-v1_5') return rsaSign(ctx, args.key, alg as NormalizedAlgorithm & { name: typeof alg.name }, data);
      using key = acquireKey(ctx, args.key);
      return signerFor(alg, key.value)(data);
    },
  },
  {
    /** `{ algorithm, key, signature, data }` → boolean. Or a batch: `{ algorithm, key, items: [{ signature, data }] }`. */
    op: Op.VERIFY,
    access: { kind: 'none' },
    handle: (ctx, raw) => {
      if (isBatch(raw)) return verifyBatch(ctx, raw);
      const args = Verify.args.parse(raw);
      const alg = normalizeAlgorithm(args.algorithm);
      using key = acquireKey(ctx, args.key);
      return verifierFor(alg, key.value)(args.signature, args.data);
    },
  },
];

/** OpenSSL reports some malformed signatures as errors rather than "no": both mean `false`. */
function safeVerify(hash: string | null, data: Buffer, key: Parameters<typeof nodeVerify>[2], signature: Buffer): boolean {
  try {
    return nodeVerify(hash, data, key, signature);
  } catch {
    return false;
  }
}
