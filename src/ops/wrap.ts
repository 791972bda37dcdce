/**
 * WRAP_KEY and UNWRAP_KEY (SubtleCrypto.wrapKey/unwrapKey) with AES-KW
 * (RFC 3394) and AES-KWP (RFC 5649, key wrap with padding; cryptod's
 * extension to WebCrypto), or with any encryption algorithm of ENCRYPT
 * (AES-GCM, AES-CBC, AES-CTR, ChaCha20-Poly1305, RSA-OAEP) and its
 * parameters, as WebCrypto allows. The key is exported in `format` (a JWK as its
 * UTF-8 JSON text, WebCrypto §14.3.11) and the bytes are wrapped; unwrapping
 * reverses it and imports the result as a new key.
 *
 *   AES-KW:  plaintext a multiple of 8 bytes, at least 16 (RFC 3394 §2);
 *            ciphertext = plaintext + 8; default IV A6A6A6A6A6A6A6A6 (§2.2.3.1)
 *   AES-KWP: plaintext 1 byte or more; ciphertext = ⌈len/8⌉·8 + 8;
 *            AIV A65959A6 || 32-bit length (RFC 5649 §3)
 *
 * OpenSSL's `id-aes{128,192,256}-wrap[-pad]` do the work; their integrity and
 * padding checks failing on unwrap is CRYPTOD_ERR_DECRYPT_FAILED.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import type { Operation } from './operation.js';
import { DataError, DecryptError, NotExtractableError, OperationError, UnsupportedError } from '../protocol/errors.js';
import { Op } from '../protocol/ops.js';
import { normalizeAlgorithm } from './algorithms.js';
import { UnwrapKey, WrapKey } from '../protocol/messages/subtle.js';
import { asJwk } from './jwk.js';
import { acquireKey, addKey, type KeyNode } from './key.js';
import { exportKeyData, extractableArg, importKeyData, keyExported, keyFormat } from './keys.js';
import { parseUsages } from './key-usages.js';
import { CIPHER_ALGORITHMS, cipherCall, type CipherAlgorithm, type CipherCall } from './cipher.js';

type WrapAlgorithm = 'AES-KW' | 'AES-KWP';

const DEFAULT_IV: Record<WrapAlgorithm, Buffer> = {
  'AES-KW': Buffer.from('a6a6a6a6a6a6a6a6', 'hex'), // RFC 3394 §2.2.3.1
  'AES-KWP': Buffer.from('a65959a6', 'hex'), // RFC 5649 §3 (the length half is added by OpenSSL)
};

/**
 * The wrapping: AES-KW(P) itself, or any encryption algorithm with its
 * parameters checked now (WebCrypto §14.3.11: wrapKey falls back to the
 * algorithm's encrypt, unwrapKey to its decrypt).
 */
type Wrapping = { kind: 'kw'; name: WrapAlgorithm } | { kind: 'cipher'; name: CipherAlgorithm; call: CipherCall };

function wrapAlgorithm(v: Parameters<typeof normalizeAlgorithm>[0], field: string, usage: 'encrypt' | 'decrypt'): Wrapping {
  const alg = normalizeAlgorithm(v, field);
  if (alg.name === 'AES-KW' || alg.name === 'AES-KWP') return { kind: 'kw', name: alg.name };
  if (!(CIPHER_ALGORITHMS as readonly string[]).includes(alg.name)) {
    throw new UnsupportedError(`key wrapping supports AES-KW, AES-KWP, ${CIPHER_ALGORITHMS.join(', ')}; got ${alg.name}`, { detail: { field } });
  }
  const call = cipherCall(alg, usage, usage === 'encrypt' ? 'wrapKey' : 'unwrapKey');
  return { kind: 'cipher', name: call.name, call };
}

function cipherName(alg: WrapAlgorithm, kek: KeyNode): string {
  return `id-aes${kek.secret.length * 8}-wrap${alg === 'AES-KWP' ? '-pad' : ''}`;
}

/** Wrap `plain` (not modified; the caller zeroes it). */
function wrap(alg: WrapAlgorithm, kek: KeyNode, plain: Buffer): Buffer {
  if (alg === 'AES-KW' && (plain.length < 16 || plain.length % 8 !== 0)) {
    throw new OperationError(`AES-KW wraps a multiple of 8 bytes, at least 16 (RFC 3394 §2); the exported key is ${plain.length} bytes — use AES-KWP for other lengths`, {
      detail: { actual: plain.length },
    });
  }
  if (plain.length === 0) throw new OperationError('AES-KWP wraps at least 1 byte (RFC 5649 §4.1)');
  const cipher = createCipheriv(cipherName(alg, kek), kek.secret, DEFAULT_IV[alg]);
  return Buffer.concat([cipher.update(plain), cipher.final()]);
}

/** Unwrap into memory the daemon owns; DecryptError if the integrity check or padding fails. */
function unwrap(alg: WrapAlgorithm, kek: KeyNode, wrapped: Buffer): Buffer {
  const min = alg === 'AES-KW' ? 24 : 16;
  if (wrapped.length < min || wrapped.length % 8 !== 0) {
    throw new DecryptError(`an ${alg} ciphertext is a multiple of 8 bytes, at least ${min}; got ${wrapped.length} bytes`, { detail: { actual: wrapped.length } });
  }
  const decipher = createDecipheriv(cipherName(alg, kek), kek.secret, DEFAULT_IV[alg]);
  let head: Buffer | undefined;
  let tail: Buffer | undefined;
  try {
    head = decipher.update(wrapped);
    tail = decipher.final();
  } catch (err) {
    head?.fill(0);
    throw new DecryptError(`${alg} unwrap failed: the wrapped key is not authentic under this key`, { cause: err });
  }
  const out = Buffer.alloc(head.length + tail.length);
  head.copy(out);
  tail.copy(out, head.length);
  head.fill(0);
  tail.fill(0);
  return out;
}

/** A JWK travels wrapped as its JSON text in UTF-8 (WebCrypto §14.3.11 step 12). */
function parseJwkBytes(plain: Buffer): ReturnType<typeof asJwk> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(plain.toString('utf8'));
  } catch {
    throw new DataError('the unwrapped bytes are not a JSON JWK', { detail: { field: 'format' } });
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new DataError('the unwrapped JSON is not a JWK object', { detail: { field: 'format' } });
  return asJwk(Object.assign(Object.create(null) as object, parsed) as never);
}

export const wrapOperations: Operation[] = [
  {
    /** `{ format, key, wrappingKey, wrapAlgorithm }` → wrapped bytes. `key` must be extractable; `wrappingKey` needs 'wrapKey'. */
    op: Op.WRAP_KEY,
    access: { kind: 'none' },
    audit: keyExported,
    handle: (ctx, raw) => {
      const args = WrapKey.args.parse(raw);
      const format = args.format;
      const alg = wrapAlgorithm(args.wrapAlgorithm, 'wrapAlgorithm', 'encrypt');
      using kek = acquireKey(ctx, args.wrappingKey);
      kek.value.require(alg.name, 'wrapKey');
      using key = acquireKey(ctx, args.key);
      if (!key.value.extractable) {
        throw new NotExtractableError(`the ${key.value.algorithm.name} ${key.value.type} key was created non-extractable; it cannot be wrapped`);
      }
      const exported = exportKeyData(format, key.value);
      // JS strings cannot be wiped: a JWK's JSON text lives until collected (README).
      const plain = Buffer.isBuffer(exported) ? exported : Buffer.from(JSON.stringify(exported), 'utf8');
      try {
        return alg.kind === 'kw' ? wrap(alg.name, kek.value, plain) : alg.call.run(kek.value, plain);
      } finally {
        plain.fill(0);
      }
    },
  },
  {
    /**
     * `{ format, wrappedKey, unwrappingKey, unwrapAlgorithm, unwrappedKeyAlgorithm, extractable, usages }`
     * → key description. `unwrappingKey` needs 'unwrapKey'.
     */
    op: Op.UNWRAP_KEY,
    access: { kind: 'none' },
    handle: (ctx, raw) => {
      const args = UnwrapKey.args.parse(raw);
      const format = args.format;
      const alg = wrapAlgorithm(args.unwrapAlgorithm, 'unwrapAlgorithm', 'decrypt');
      const target = normalizeAlgorithm(args.unwrappedKeyAlgorithm, 'unwrappedKeyAlgorithm');
      const extractable = args.extractable;
      const usages = parseUsages(args.usages);
      const wrapped = args.wrappedKey;
      let plain: Buffer;
      {
        using kek = acquireKey(ctx, args.unwrappingKey);
        kek.value.require(alg.name, 'unwrapKey');
        plain = alg.kind === 'kw' ? unwrap(alg.name, kek.value, wrapped) : alg.call.run(kek.value, wrapped);
      }
      if (format !== 'jwk') return addKey(ctx, importKeyData(format, plain, target, extractable, usages, 'unwrappedKeyAlgorithm'));
      try {
        return addKey(ctx, importKeyData(format, parseJwkBytes(plain), target, extractable, usages, 'unwrappedKeyAlgorithm'));
      } finally {
        plain.fill(0);
      }
    },
  },
];
