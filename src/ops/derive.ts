/**
 * DERIVE_BITS and DERIVE_KEY (SubtleCrypto.deriveBits/deriveKey): HKDF
 * (RFC 5869), X25519 (RFC 7748 §6.1) and ECDH (SEC1 §3.3.1, the x-coordinate
 * of the shared point) on P-256/P-384.
 *
 * For X25519 and ECDH, `algorithm.public` is the handle of the peer's public
 * key (the client sends the CryptoKey's handle); it is acquired for the
 * duration of the computation like the base key.
 */
import { diffieHellman, hkdfSync } from 'node:crypto';
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

/** OpenSSL's HKDF refuses more than 1024 bytes of `info`. */
export const MAX_HKDF_INFO = 1024;

/**
 * The derived bits, in a buffer the caller owns and must zero. `usage` is
 * what the base key must allow ('deriveBits' or 'deriveKey').
 */
function deriveBits(ctx: RequestContext, baseKey: DataNodeId, alg: NormalizedAlgorithm, length: number | null, usage: KeyUsage): Buffer {
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
      if (length === 0 || length % 8 !== 0) {
        throw new OperationError(`HKDF derives whole bytes: 'length' must be a positive multiple of 8, got ${length}`, { detail: { field: 'length' } });
      }
      // RFC 5869 §2.3: L ≤ 255·HashLen.
      const max = 255 * HASH_BYTES[hash];
      if (length / 8 > max) {
        throw new OperationError(`HKDF-${hash} derives at most ${max * 8} bits (255 × hash length), asked for ${length}`, { detail: { field: 'length', max: max * 8 } });
      }
      return Buffer.from(hkdfSync(NODE_HASH[hash], k.secret, salt, info, length / 8));
    }
    case 'X25519':
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
        // X25519 with a low-order peer point gives the all-zero secret, which OpenSSL
        // refuses (RFC 7748 §6.1 "MAY check"; the Secure Curves draft requires it).
        throw new OperationError(`${alg.name} key agreement failed: the peer's public key gives no usable shared secret`, { cause: err });
      }
      return truncate(secret, length);
    }
    default:
      throw new UnsupportedError(`deriveBits/deriveKey support HKDF, X25519, ECDH; got ${alg.name}`, { detail: { field: 'algorithm' } });
  }
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
      return sensitiveReply(deriveBits(ctx, args.baseKey, alg, args.length ?? null, 'deriveBits'));
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
    handle: (ctx, raw): CborValue => {
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
      return addKey(ctx, makeSecretKey(name, target.params, bits, extractable, usages, 'derivedKeyType'));
    },
  },
];
