/**
 * DERIVE_BITS and DERIVE_KEY (SubtleCrypto.deriveBits/deriveKey): HKDF
 * (RFC 5869), PBKDF2 (RFC 8018), X25519 and X448 (RFC 7748 §6) and ECDH
 * (SEC1 §3.3.1, the x-coordinate of the shared point) on P-256/P-384/P-521.
 *
 * For X25519 and ECDH, `algorithm.public` is the handle of the peer's public
 * key (the client sends the CryptoKey's handle); it is acquired for the
 * duration of the computation like the base key.
 */
import { diffieHellman, hkdfSync, pbkdf2 } from 'node:crypto';
import type { Operation, RequestContext } from './operation.js';
import type { CborValue } from '../protocol/cbor.js';
import { InvalidArgumentError, InvalidKeyError, OperationError, UnsupportedError } from '../protocol/errors.js';
import { Op } from '../protocol/ops.js';
import { NODE_HASH, normalizeAlgorithm, normalizeHash, type NormalizedAlgorithm } from './algorithms.js';
import { DeriveBits, DeriveKey } from '../protocol/messages/subtle.js';
import type { DataNodeId } from '../state/ids.js';
import { bytes, nodeId } from './args.js';
import { acquireKey, addKey, type KeyUsage } from './key.js';
import { extractableArg, sensitiveReply } from './keys.js';
import { isSecretAlgorithm, keyAlgorithmName, parseUsages } from './key-usages.js';
import { HASH_BYTES, makeSecretKey, secretKeyBytes } from './secret-keys.js';

/**
 * PBKDF2's cost is the client's to choose: bound it so that one request
 * cannot hold a thread-pool thread for hours (OWASP 2023 asks 600,000 for
 * HMAC-SHA-256; this is 16 times that).
 */
export const MAX_PBKDF2_ITERATIONS = 10_000_000;

/**
 * PBKDF2 runs its iterations once per hash-sized block of output, so the
 * output length multiplies the cost: the iterations times the blocks are
 * bound by the same figure (a 4 GiB-bit request would otherwise run for days).
 */
export const MAX_PBKDF2_WORK = MAX_PBKDF2_ITERATIONS;

/** OpenSSL's HKDF refuses more than 1024 bytes of `info`. */
export const MAX_HKDF_INFO = 1024;

/**
 * The derived bits, in a buffer the caller owns and must zero. `usage` is
 * what the base key must allow ('deriveBits' or 'deriveKey').
 */
function deriveBits(ctx: RequestContext, baseKey: DataNodeId, alg: NormalizedAlgorithm, length: number | null, usage: KeyUsage): Buffer | Promise<Buffer> {
  if (alg.name === 'PBKDF2') return pbkdf2Bits(ctx, baseKey, alg, length, usage);
  using base = acquireKey(ctx, baseKey);
  const k = base.value;
  switch (alg.name) {
    case 'HKDF': {
      k.require('HKDF', usage);
      const hash = normalizeHash(alg.params.hash, 'algorithm.hash');
      const salt = bytes(alg.params, 'salt');
      const info = bytes(alg.params, 'info');
      if (info.length > MAX_HKDF_INFO) {
        throw new UnsupportedError(`'algorithm.info' is ${info.length} bytes; at most ${MAX_HKDF_INFO} are supported`, { detail: { field: 'algorithm.info', max: MAX_HKDF_INFO } });
      }
      if (length === null) throw new OperationError('HKDF needs a length: pass the number of bits to derive', { detail: { field: 'length' } });
      if (length % 8 !== 0) {
        throw new OperationError(`HKDF derives whole bytes: 'length' must be a multiple of 8, got ${length}`, { detail: { field: 'length' } });
      }
      // WebCrypto (and Node): a length of 0 gives no bits, not an error.
      if (length === 0) return Buffer.alloc(0);
      // RFC 5869 §2.3: L ≤ 255·HashLen.
      const max = 255 * HASH_BYTES[hash];
      if (length / 8 > max) {
        throw new OperationError(`HKDF-${hash} derives at most ${max * 8} bits (255 × hash length), asked for ${length}`, { detail: { field: 'length', max: max * 8 } });
      }
      return Buffer.from(hkdfSync(NODE_HASH[hash], k.secret, salt, info, length / 8));
    }
    case 'X25519':
    case 'X448':
    case 'ECDH': {
      k.require(alg.name, usage);
      const peerId = nodeId(alg.params, 'public');
      using peer = acquireKey(ctx, peerId);
      const p = peer.value;
      if (p.type !== 'public' || p.algorithm.name !== alg.name) {
        throw new InvalidKeyError(`'algorithm.public' must be an ${alg.name} public key, got a ${p.algorithm.name} ${p.type} key`, {
          detail: { field: 'algorithm.public', expected: alg.name, actual: p.algorithm.name },
        });
      }
      if (alg.name === 'ECDH' && p.algorithm.namedCurve !== k.algorithm.namedCurve) {
        throw new InvalidKeyError(`the peer's public key is on ${p.algorithm.namedCurve}, the private key on ${k.algorithm.namedCurve}`, {
          detail: { field: 'algorithm.public' },
        });
      }
      let secret: Buffer;
      try {
        secret = diffieHellman({ privateKey: k.object, publicKey: p.object });
      } catch (err) {
        // X25519/X448 with a low-order peer point gives the all-zero secret, which OpenSSL
        // refuses (RFC 7748 §6.1 "MAY check"; the Secure Curves draft requires it).
        throw new OperationError(`${alg.name} key agreement failed: the peer's public key gives no usable shared secret`, { cause: err });
      }
      return truncate(secret, length);
    }
    default:
      throw new UnsupportedError(`deriveBits/deriveKey support HKDF, PBKDF2, X25519, X448, ECDH; got ${alg.name}`, { detail: { field: 'algorithm' } });
  }
}

/**
 * PBKDF2 (RFC 8018 §5.2) with HMAC and `algorithm.hash`, `salt` and
 * `iterations` (≥ 1). It runs on libuv's thread pool: its cost is the
 * client's iteration count. The accessor keeps the password un-zeroed until
 * the job finished.
 */
async function pbkdf2Bits(ctx: RequestContext, baseKey: DataNodeId, alg: NormalizedAlgorithm, length: number | null, usage: KeyUsage): Promise<Buffer> {
  const hash = normalizeHash(alg.params.hash, 'algorithm.hash');
  const salt = alg.params.salt;
  if (!(salt instanceof Uint8Array)) {
    throw new InvalidArgumentError("expected 'algorithm.salt' to be a byte string for PBKDF2", { detail: { field: 'algorithm.salt' } });
  }
  const iterations = alg.params.iterations;
  if (typeof iterations !== 'number' || !Number.isSafeInteger(iterations) || iterations < 0) {
    throw new InvalidArgumentError("expected 'algorithm.iterations' to be a positive integer for PBKDF2", { detail: { field: 'algorithm.iterations' } });
  }
  if (iterations === 0) throw new OperationError("PBKDF2 needs at least 1 iteration; 'algorithm.iterations' is 0", { detail: { field: 'algorithm.iterations' } });
  if (iterations > MAX_PBKDF2_ITERATIONS) {
    throw new UnsupportedError(`'algorithm.iterations' is ${iterations}; at most ${MAX_PBKDF2_ITERATIONS} are supported`, { detail: { field: 'algorithm.iterations', max: MAX_PBKDF2_ITERATIONS } });
  }
  if (length === null) throw new OperationError('PBKDF2 needs a length: pass the number of bits to derive', { detail: { field: 'length' } });
  if (length % 8 !== 0) throw new OperationError(`PBKDF2 derives whole bytes: 'length' must be a multiple of 8, got ${length}`, { detail: { field: 'length' } });
  const blocks = Math.ceil(length / 8 / HASH_BYTES[hash]);
  if (iterations * blocks > MAX_PBKDF2_WORK) {
    const max = Math.floor(MAX_PBKDF2_WORK / iterations) * HASH_BYTES[hash] * 8;
    throw new OperationError(`PBKDF2 with ${iterations} iterations derives at most ${max} bits here (iterations × ${hash} blocks ≤ ${MAX_PBKDF2_WORK}), asked for ${length}`, {
      detail: { field: 'length', max },
    });
  }
  using base = acquireKey(ctx, baseKey);
  base.value.require('PBKDF2', usage);
  if (length === 0) return Buffer.alloc(0);
  const saltCopy = Buffer.from(salt); // the request frame may be reused while the job runs
  return await new Promise<Buffer>((resolve, reject) => {
    pbkdf2(base.value.secret, saltCopy, iterations, length / 8, NODE_HASH[hash], (err, out) => (err ? reject(new OperationError('PBKDF2 failed', { cause: err })) : resolve(out)));
  });
}

/** WebCrypto: the first `length` bits of the shared secret; bits past the end of a partial byte are zeroed. */
function truncate(secret: Buffer, length: number | null): Buffer {
  if (length === null) return secret;
  if (length > secret.length * 8) {
    secret.fill(0);
    throw new OperationError(`the shared secret has ${secret.length * 8} bits, asked for ${length}`, { detail: { field: 'length', max: secret.length * 8 } });
  }
  const out = Buffer.alloc(Math.ceil(length / 8));
  secret.copy(out, 0, 0, out.length);
  secret.fill(0);
  if (length % 8 !== 0) out[out.length - 1]! &= (0xff << (8 - (length % 8))) & 0xff;
  return out;
}

export const deriveOperations: Operation[] = [
  {
    /**
     * `{ algorithm, baseKey, length }` → bytes (a sensitive reply).
     * HKDF: `algorithm.{hash, salt, info}`, `length` a positive multiple of 8.
     * X25519/ECDH: `algorithm.public` = the peer public key's handle; `length` null for the whole secret.
     */
    op: Op.DERIVE_BITS,
    access: { kind: 'none' },
    handle: (ctx, raw) => {
      const args = DeriveBits.args.parse(raw);
      const alg = normalizeAlgorithm(args.algorithm);
      // `length` null or absent: X25519/ECDH's whole secret.
      const bits = deriveBits(ctx, args.baseKey, alg, args.length ?? null, 'deriveBits');
      return bits instanceof Promise ? bits.then(sensitiveReply) : sensitiveReply(bits);
    },
  },
  {
    /**
     * `{ algorithm, baseKey, derivedKeyType, extractable, usages }` → key description.
     * The derived key is a secret key (AES-GCM, AES-KW, AES-KWP, ChaCha20-Poly1305,
     * HMAC, HKDF); its length comes from `derivedKeyType` as in WebCrypto.
     */
    op: Op.DERIVE_KEY,
    access: { kind: 'none' },
    handle: (ctx, raw): CborValue | Promise<CborValue> => {
      const args = DeriveKey.args.parse(raw);
      const alg = normalizeAlgorithm(args.algorithm);
      const target = normalizeAlgorithm(args.derivedKeyType, 'derivedKeyType');
      const name = keyAlgorithmName(target.name, 'derivedKeyType');
      if (!isSecretAlgorithm(name)) {
        throw new UnsupportedError(`deriveKey makes secret keys (AES-GCM, AES-KW, AES-KWP, ChaCha20-Poly1305, HMAC, HKDF); got ${name}`, { detail: { field: 'derivedKeyType' } });
      }
      const extractable = args.extractable;
      const usages = parseUsages(args.usages);
      const n = secretKeyBytes(name, target.params, 'derivedKeyType');
      const bits = deriveBits(ctx, args.baseKey, alg, n === null ? null : n * 8, 'deriveKey');
      const make = (b: Buffer): CborValue => addKey(ctx, makeSecretKey(name, target.params, b, extractable, usages, 'derivedKeyType'));
      return bits instanceof Promise ? bits.then(make) : make(bits);
    },
  },
];
