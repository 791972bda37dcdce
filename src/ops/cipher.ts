/**
 * ENCRYPT / DECRYPT on client-owned keys (SubtleCrypto.encrypt / decrypt).
 *
 *   AES-GCM            NIST SP 800-38D; WebCrypto AesGcmParams: `iv` (any
 *                      non-empty length), `additionalData`, `tagLength` in
 *                      {32, 64, 96, 104, 112, 120, 128} bits (default 128).
 *   ChaCha20-Poly1305  RFC 8439 §2.8: 12-byte `iv`, `additionalData`, 16-byte tag.
 *
 * AES-CBC and AES-CTR are in aes-modes.ts, RSA-OAEP in rsa-oaep.ts; this
 * file checks the parameters of all five and dispatches.
 *
 * The AEADs return ciphertext ‖ tag, as WebCrypto does, and decryption takes the
 * same. These are hot paths: one synchronous node:crypto call sequence, the
 * request's byte strings used in place (they are views of the frame), and one
 * copy to join ciphertext and tag. The batch form (many items, one key) is
 * {@link cipherBatch}.
 */
import { createCipheriv, createDecipheriv, type CipherGCMTypes } from 'node:crypto';
import type { Operation, RequestContext } from './operation.js';
import type { CborValue } from '../protocol/cbor.js';
import { DecryptError, InvalidArgumentError, InvalidKeyError, UnsupportedError } from '../protocol/errors.js';
import { Op } from '../protocol/ops.js';
import { normalizeAlgorithm, type NormalizedAlgorithm } from './algorithms.js';
import { Decrypt, Encrypt } from '../protocol/messages/subtle.js';
import { DecryptBatch, EncryptBatch } from '../protocol/messages/batch.js';
import { checkBatchSize, isBatch, itemError } from './batch.js';
import { kindOf, type Args } from './args.js';
import { equivalentGcmIv, OPENSSL_MAX_GCM_IV } from './gcm-iv.js';
import { acquireKey, type KeyNode } from './key.js';
import { aesCbc, aesCtr } from './aes-modes.js';
import { rsaOaep } from './rsa-oaep.js';

/** WebCrypto's permitted AES-GCM tag lengths in bits (AesGcmParams.tagLength). */
export const GCM_TAG_LENGTHS: readonly number[] = [32, 64, 96, 104, 112, 120, 128];

/** Everything node:crypto needs for one AEAD call. */
interface AeadCall {
  cipher: CipherGCMTypes | 'chacha20-poly1305';
  key: Buffer;
  iv: Uint8Array;
  aad: Uint8Array | undefined;
  tagBytes: number;
}

/** Optional byte string inside the algorithm dictionary, named `algorithm.<field>` in errors. */
export function paramBytes(params: Args, field: string): Uint8Array | undefined {
  const v = params[field];
  if (v === undefined) return undefined;
  if (!(v instanceof Uint8Array)) {
    throw new InvalidArgumentError(`expected 'algorithm.${field}' to be a byte string, got ${kindOf(v)}`, {
      detail: { field: `algorithm.${field}`, expected: 'a byte string' },
    });
  }
  return v;
}

/** The node:crypto cipher for an AEAD key, after checking the key's length. */
export function aeadCipherOf(key: KeyNode): CipherGCMTypes | 'chacha20-poly1305' {
  const n = key.secret.length;
  if (key.algorithm.name === 'ChaCha20-Poly1305') {
    if (n !== 32) throw new InvalidKeyError(`a ChaCha20-Poly1305 key is 32 bytes, this one is ${n}`, { detail: { expected: 32, actual: n } });
    return 'chacha20-poly1305';
  }
  if (n !== 16 && n !== 24 && n !== 32) {
    throw new InvalidKeyError(`an AES-GCM key is 16, 24 or 32 bytes, this one is ${n}`, { detail: { expected: '16, 24 or 32', actual: n } });
  }
  return `aes-${n * 8}-gcm` as CipherGCMTypes;
}

/** The encryption algorithms: ENCRYPT/DECRYPT, and WRAP_KEY/UNWRAP_KEY besides AES-KW(P). */
export type CipherAlgorithm = 'AES-GCM' | 'ChaCha20-Poly1305' | 'AES-CBC' | 'AES-CTR' | 'RSA-OAEP';
export const CIPHER_ALGORITHMS: readonly CipherAlgorithm[] = ['AES-GCM', 'ChaCha20-Poly1305', 'AES-CBC', 'AES-CTR', 'RSA-OAEP'];

/** One encryption or decryption whose parameters were checked; `run` takes the key (usage already required). */
export interface CipherCall {
  name: CipherAlgorithm;
  run: (key: KeyNode, data: Buffer) => Buffer;
}

function aeadParams(alg: NormalizedAlgorithm & { name: 'AES-GCM' | 'ChaCha20-Poly1305' }): { iv: Uint8Array; aad: Uint8Array | undefined; tagBytes: number } {
  // WebCrypto's order: both parameters' types, then the iv's length; a request with two faults gets the first.
  const given = paramBytes(alg.params, 'iv');
  const aad = paramBytes(alg.params, 'additionalData');
  return { iv: checkAeadIv(alg.name, given, 'algorithm.iv'), aad, tagBytes: aeadTagBytes(alg) };
}

/** An AEAD's iv (`field` names it in errors: `algorithm.iv`, or a batch item's `items[3].iv`). */
function checkAeadIv(name: 'AES-GCM' | 'ChaCha20-Poly1305', iv: Uint8Array | undefined, field: string): Uint8Array {
  if (name === 'AES-GCM') {
    if (iv === undefined || iv.length === 0) {
      throw new InvalidArgumentError(`expected '${field}' to be a non-empty byte string for AES-GCM, got ${kindOf(iv)}`, {
        detail: { field, expected: 'at least 1 byte', webcrypto: 'OperationError' },
      });
    }
  } else if (iv === undefined || iv.length !== 12) {
    // RFC 8439 §2.8: the AEAD nonce is 96 bits.
    throw new InvalidArgumentError(`expected '${field}' to be 12 bytes for ChaCha20-Poly1305, got ${kindOf(iv)}`, {
      detail: { field, expected: '12 bytes', webcrypto: 'OperationError' },
    });
  }
  return iv;
}

/** The tag length in bytes an AEAD algorithm dictionary asks for. */
function aeadTagBytes(alg: NormalizedAlgorithm & { name: 'AES-GCM' | 'ChaCha20-Poly1305' }): number {
  if (alg.name === 'AES-GCM') {
    const tagLength = alg.params.tagLength ?? 128;
    if (typeof tagLength !== 'number' || !GCM_TAG_LENGTHS.includes(tagLength)) {
      throw new InvalidArgumentError(
        `expected 'algorithm.tagLength' to be one of ${GCM_TAG_LENGTHS.join(', ')} (bits), got ${typeof tagLength === 'number' ? tagLength : kindOf(tagLength)}`,
        { detail: { field: 'algorithm.tagLength', expected: GCM_TAG_LENGTHS.join(', '), webcrypto: 'OperationError' } },
      );
    }
    return tagLength / 8;
  }
  if (alg.params.tagLength !== undefined && alg.params.tagLength !== 128) {
    // WICG "Modern Algorithms in WebCrypto": AeadParams.tagLength, if given, must be 128.
    throw new InvalidArgumentError(`expected 'algorithm.tagLength' to be 128 for ChaCha20-Poly1305 (or absent)`, {
      detail: { field: 'algorithm.tagLength', expected: '128', webcrypto: 'OperationError' },
    });
  }
  return 16;
}

/**
 * Check an encryption algorithm's parameters before any key is touched (so
 * argument errors come first) and return the call. `op` names the operation
 * in errors ('encrypt', 'wrapKey'…).
 */
export function cipherCall(alg: NormalizedAlgorithm, usage: 'encrypt' | 'decrypt', op: string = usage): CipherCall {
  switch (alg.name) {
    case 'AES-GCM':
    case 'ChaCha20-Poly1305': {
      const p = aeadParams(alg as NormalizedAlgorithm & { name: 'AES-GCM' | 'ChaCha20-Poly1305' });
      return {
        name: alg.name,
        run: (key, data) => {
          const cipher = aeadCipherOf(key);
          const iv = p.iv.length > OPENSSL_MAX_GCM_IV ? equivalentGcmIv(key.secret, p.iv) : p.iv;
          const call: AeadCall = { cipher, key: key.secret, iv, aad: p.aad, tagBytes: p.tagBytes };
          return usage === 'encrypt' ? seal(call, data) : open(call, data);
        },
      };
    }
    case 'AES-CBC':
      return { name: alg.name, run: aesCbc(alg.params, usage) };
    case 'AES-CTR':
      return { name: alg.name, run: aesCtr(alg.params) };
    case 'RSA-OAEP':
      return { name: alg.name, run: rsaOaep(alg.params, usage) };
    default:
      throw new UnsupportedError(`${op} supports ${CIPHER_ALGORITHMS.join(', ')}; got ${alg.name}`, { detail: { field: 'algorithm.name' } });
  }
}

function withKey(ctx: RequestContext, raw: CborValue, usage: 'encrypt' | 'decrypt'): Buffer {
  // ENCRYPT and DECRYPT take the same arguments.
  const args = (usage === 'encrypt' ? Encrypt : Decrypt).args.parse(raw);
  const call = cipherCall(normalizeAlgorithm(args.algorithm), usage);
  using key = acquireKey(ctx, args.key);
  key.value.require(call.name, usage);
  return call.run(key.value, args.data);
}

function seal(call: AeadCall, data: Buffer): Buffer {
  const c = createCipheriv(call.cipher as CipherGCMTypes, call.key, call.iv, { authTagLength: call.tagBytes });
  if (call.aad !== undefined) c.setAAD(call.aad);
  const ct = c.update(data);
  c.final(); // GCM and ChaCha20-Poly1305 are stream modes: final() emits nothing
  const tag = c.getAuthTag();
  return Buffer.concat([ct, tag], ct.length + tag.length);
}

function open(call: AeadCall, data: Buffer): Buffer {
  if (data.length < call.tagBytes) {
    throw new InvalidArgumentError(`expected 'data' to be ciphertext followed by a ${call.tagBytes}-byte tag, got ${data.length} bytes`, {
      detail: { field: 'data', expected: `at least ${call.tagBytes} bytes`, webcrypto: 'OperationError' },
    });
  }
  const split = data.length - call.tagBytes;
  const d = createDecipheriv(call.cipher as CipherGCMTypes, call.key, call.iv, { authTagLength: call.tagBytes });
  d.setAuthTag(data.subarray(split));
  if (call.aad !== undefined) d.setAAD(call.aad);
  const pt = d.update(data.subarray(0, split));
  try {
    d.final();
  } catch {
    // The plaintext was computed before the tag was checked: it must not leave.
    pt.fill(0);
    throw new DecryptError('decryption failed: the tag does not match (wrong key, iv or additionalData, or the data was modified)');
  }
  return pt;
}

/**
 * ENCRYPT's and DECRYPT's batch form (src/ops/batch.ts): AES-GCM and
 * ChaCha20-Poly1305, the algorithm and key checked once, then one AEAD call
 * per item with the item's iv (and additionalData, else the algorithm's).
 * One call description is reused for every item: nothing is allocated per
 * item beyond node:crypto's own cipher and the result.
 */
function cipherBatch(ctx: RequestContext, raw: CborValue, usage: 'encrypt' | 'decrypt'): CborValue {
  checkBatchSize(ctx, raw);
  const args = (usage === 'encrypt' ? EncryptBatch : DecryptBatch).args.parse(raw);
  const alg = normalizeAlgorithm(args.algorithm);
  if (alg.name !== 'AES-GCM' && alg.name !== 'ChaCha20-Poly1305') {
    throw new UnsupportedError(`the batch form of ${usage} supports AES-GCM and ChaCha20-Poly1305; got ${alg.name} (send single ${usage.toUpperCase()} requests)`, {
      detail: { field: 'algorithm.name' },
    });
  }
  const aead = alg as NormalizedAlgorithm & { name: 'AES-GCM' | 'ChaCha20-Poly1305' };
  if (alg.params.iv !== undefined) {
    throw new InvalidArgumentError(`'algorithm.iv' is not allowed in a batch: each item carries its own 'iv' (one iv for many ${usage}ions under one key breaks ${alg.name})`, {
      detail: { field: 'algorithm.iv', expected: 'no such field' },
    });
  }
  const sharedAad = paramBytes(alg.params, 'additionalData');
  const tagBytes = aeadTagBytes(aead);
  using key = acquireKey(ctx, args.key);
  const k = key.value;
  k.require(alg.name, usage);
  const call: AeadCall = { cipher: aeadCipherOf(k), key: k.secret, iv: EMPTY, aad: sharedAad, tagBytes };
  const items = args.items;
  const out = new Array<CborValue>(items.length);
  for (let i = 0; i < items.length; i++) {
    const item = items[i]!;
    try {
      const iv = checkAeadIv(aead.name, item.iv, `items[${i}].iv`);
      call.iv = iv.length > OPENSSL_MAX_GCM_IV ? equivalentGcmIv(k.secret, iv) : iv;
      call.aad = item.additionalData ?? sharedAad;
      out[i] = usage === 'encrypt' ? seal(call, item.data) : open(call, item.data);
    } catch (err) {
      out[i] = itemError(err);
    }
  }
  return { items: out };
}

const EMPTY = new Uint8Array(0);

export const cipherOperations: Operation[] = [
  {
    op: Op.ENCRYPT,
    access: { kind: 'none' },
    handle: (ctx, raw) => (isBatch(raw) ? cipherBatch(ctx, raw, 'encrypt') : withKey(ctx, raw, 'encrypt')),
  },
  {
    op: Op.DECRYPT,
    access: { kind: 'none' },
    handle: (ctx, raw) => (isBatch(raw) ? cipherBatch(ctx, raw, 'decrypt') : withKey(ctx, raw, 'decrypt')),
  },
];
