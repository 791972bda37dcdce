/**
 * GENERATE_KEY, IMPORT_KEY, EXPORT_KEY: WebCrypto's key operations on keys
 * the client owns (ephemeral key nodes, src/ops/key.ts), plus the helpers
 * DERIVE_KEY, WRAP_KEY and UNWRAP_KEY reuse (`importKeyData`, `exportKeyData`).
 *
 * Deliberate limits (CRYPTOD_ERR_UNSUPPORTED unless noted; README "Limits"):
 * - AES-GCM, AES-CBC, AES-CTR, AES-KW, AES-KWP: 128-, 192- or 256-bit keys (other sizes do not
 *   exist: CRYPTOD_ERR_DATA at import, CRYPTOD_ERR_INVALID_ARGUMENT at generate).
 * - ChaCha20-Poly1305: 256-bit keys only (RFC 8439).
 * - HMAC: SHA-1, SHA-256, SHA-384, SHA-512; keys of at least 1 byte, whole
 *   bytes only; generateKey/deriveKey make at most 8192-bit keys.
 * - HKDF: import in format raw only, never extractable, never generated (as
 *   WebCrypto); deriveBits lengths are multiples of 8 up to
 *   255 × hash length (RFC 5869 §2.3); `info` at most 1024 bytes (OpenSSL).
 * - PBKDF2: as HKDF (raw, never extractable, never generated); iterations
 *   1..MAX_PBKDF2_ITERATIONS (src/ops/derive.ts).
 * - ECDSA, ECDH: curves P-256, P-384, P-521 (no secp256k1).
 * - Ed448: pure, empty context only (as Node 20).
 * - RSA-PSS, RSA-OAEP, RSASSA-PKCS1-v1_5: modulus 2048, 3072 or 4096 bits;
 *   public exponent 65537 at generate, any odd one ≥ 3 at import; spki/pkcs8 with the rsaEncryption OID only
 *   (an id-RSASSA-PSS key is CRYPTOD_ERR_DATA, as in WebCrypto); no
 *   multi-prime JWK (`oth`).
 * - Formats: secret keys raw and jwk; public keys raw (Ed25519, Ed448,
 *   X25519, X448, ECDSA, ECDH), spki and jwk; private keys pkcs8 and jwk.
 * - wrapKey/unwrapKey: AES-KW, AES-KWP and the encryption algorithms (AES-KW
 *   needs a multiple of 8 bytes, at least 16; use AES-KWP for JWKs and odd
 *   lengths).
 * - deriveKey makes secret keys only (AES-*, ChaCha20-Poly1305, HMAC, HKDF).
 * - X25519, X448: the all-zero shared secret (low-order peer point) is refused
 *   with CRYPTOD_ERR_OPERATION.
 */
import type { AuditedRequest, Operation, RequestContext } from './operation.js';
import { SensitiveReply } from './operation.js';
import type { AuditEvent } from '../observe/audit.js';
import type { CborValue } from '../protocol/cbor.js';
import { InvalidArgumentError, NotExtractableError, UnsupportedError } from '../protocol/errors.js';
import { Op, opName } from '../protocol/ops.js';
import { normalizeAlgorithm, type NormalizedAlgorithm } from './algorithms.js';
import { ExportKey, GenerateKey, ImportKey } from '../protocol/messages/subtle.js';
import { bytes, kindOf, map, takeSecret, type Args } from './args.js';
import { exportAsymmetricKey, generateKeyPair, importAsymmetricKey, type KeyPairNodes } from './asymmetric-keys.js';
import { asJwk, type Jwk } from './jwk.js';
import { acquireKey, addKey, type KeyNode, type KeyUsage } from './key.js';
import { isSecretAlgorithm, keyAlgorithmName, parseUsages } from './key-usages.js';
import { exportSecretKey, generateSecretKey, importSecretKey } from './secret-keys.js';

export type KeyFormat = 'raw' | 'pkcs8' | 'spki' | 'jwk';
const FORMATS: readonly KeyFormat[] = ['raw', 'pkcs8', 'spki', 'jwk'];

export function keyFormat(v: CborValue, field = 'format'): KeyFormat {
  if (typeof v !== 'string' || !(FORMATS as readonly string[]).includes(v)) {
    const got = typeof v === 'string' ? `'${v.slice(0, 16)}'` : kindOf(v);
    throw new InvalidArgumentError(`expected '${field}' to be 'raw', 'pkcs8', 'spki' or 'jwk', got ${got}`, { detail: { field } });
  }
  return v as KeyFormat;
}

export function extractableArg(args: Args): boolean {
  const v = args.extractable;
  if (typeof v !== 'boolean') throw new InvalidArgumentError(`expected 'extractable' to be a boolean, got ${kindOf(v)}`, { detail: { field: 'extractable' } });
  return v;
}

/** Key material that left the daemon: an export, or a wrap (src/observe/audit.ts). */
export function keyExported(r: AuditedRequest): AuditEvent {
  const a = (r.args ?? {}) as { [k: string]: CborValue };
  return {
    event: 'key.exported',
    op: opName(r.op),
    key: typeof a.key === 'string' ? a.key : '?',
    format: typeof a.format === 'string' ? a.format : '?',
    connection: r.connection,
    clientId: r.clientId,
    client: r.client,
  };
}

/**
 * A reply that carries key material. The connection encodes (copies) the
 * value into its frame before any other callback can run: a synchronous
 * result right after the handler returns, a promise's in the microtask that
 * settles it. The immediate queued here runs after both, and zeroes the
 * handler's own copy.
 */
export function sensitiveReply(value: Buffer | CborValue): SensitiveReply {
  if (Buffer.isBuffer(value)) setImmediate(() => value.fill(0));
  return new SensitiveReply(value);
}

/**
 * Make a key node from key data in any format. Takes over `keyData` bytes
 * (they are zeroed or kept by the node). `field` names the algorithm argument
 * in error messages ('algorithm', 'unwrappedKeyAlgorithm').
 */
export function importKeyData(
  format: KeyFormat,
  keyData: Buffer | Jwk,
  alg: NormalizedAlgorithm,
  extractable: boolean,
  usages: readonly KeyUsage[],
  field = 'algorithm',
): KeyNode {
  let handedOver = false;
  try {
    const name = keyAlgorithmName(alg.name, field);
    if (isSecretAlgorithm(name)) {
      if (format !== 'raw' && format !== 'jwk') {
        throw new UnsupportedError(`${name} keys are imported as 'raw' or 'jwk', not '${format}'`, { detail: { field: 'format' } });
      }
      // A raw secret key node takes the bytes over (and zeroes them itself on error).
      handedOver = format === 'raw';
      return importSecretKey(name, alg.params, format, keyData, extractable, usages);
    }
    return importAsymmetricKey(name, alg.params, format, keyData, extractable, usages, field);
  } finally {
    // Everything else was parsed (OpenSSL copies what it keeps): zero our copy.
    if (Buffer.isBuffer(keyData) && !handedOver) keyData.fill(0);
  }
}

/** Export a key's data (the caller checked `extractable`). Bytes are a fresh copy the caller zeroes. */
export function exportKeyData(format: KeyFormat, key: KeyNode): Buffer | CborValue {
  if (key.type === 'secret') {
    if (format !== 'raw' && format !== 'jwk') {
      throw new UnsupportedError(`a ${key.algorithm.name} key exports as 'raw' or 'jwk', not '${format}'`, { detail: { field: 'format' } });
    }
    return exportSecretKey(format, key);
  }
  return exportAsymmetricKey(format, key);
}

/** Register both halves of a pair; if the second is refused (quota), the first is removed too. */
export function addKeyPair(ctx: RequestContext, pair: KeyPairNodes): CborValue {
  let publicKey: CborValue;
  try {
    publicKey = addKey(ctx, pair.publicKey);
  } catch (err) {
    pair.privateKey.dispose();
    throw err;
  }
  try {
    return { publicKey, privateKey: addKey(ctx, pair.privateKey) };
  } catch (err) {
    ctx.dm.delete(ctx.clientId, (publicKey as { handle: string }).handle as never);
    throw err;
  }
}

export const keyOperations: Operation[] = [
  {
    /** `{ algorithm, extractable, usages }` → key description, or `{ publicKey, privateKey }` for a pair. */
    op: Op.GENERATE_KEY,
    access: { kind: 'none' },
    handle: (ctx, raw) => {
      const args = GenerateKey.args.parse(raw);
      const alg = normalizeAlgorithm(args.algorithm);
      const name = keyAlgorithmName(alg.name);
      const extractable = args.extractable;
      const usages = parseUsages(args.usages);
      if (isSecretAlgorithm(name)) return addKey(ctx, generateSecretKey(name, alg.params, extractable, usages));
      const pair = generateKeyPair(name, alg.params, extractable, usages);
      // RSA generation runs on the thread pool (a promise); curve keys are made synchronously in µs.
      if (pair instanceof Promise) return pair.then((p) => addKeyPair(ctx, p));
      return addKeyPair(ctx, pair);
    },
  },
  {
    /**
     * `{ format, keyData, algorithm, extractable, usages }` → key description.
     * `keyData` is a byte string, or a map for format 'jwk'. The request frame
     * is zeroed after the handler ran; the key bytes were copied out first.
     */
    op: Op.IMPORT_KEY,
    access: { kind: 'none' },
    sensitiveRequest: true,
    handle: (ctx, raw) => {
      const args = ImportKey.args.parse(raw);
      const format = args.format;
      const alg = normalizeAlgorithm(args.algorithm);
      const extractable = args.extractable;
      const usages = parseUsages(args.usages);
      const keyData = format === 'jwk' ? asJwk(map(args, 'keyData')) : takeSecret(bytes(args, 'keyData'));
      return addKey(ctx, importKeyData(format, keyData, alg, extractable, usages));
    },
  },
  {
    /** `{ format, key }` → bytes, or a map for format 'jwk'. Sent as a sensitive reply (frame zeroed after the write). */
    op: Op.EXPORT_KEY,
    access: { kind: 'none' },
    audit: keyExported,
    handle: (ctx, raw) => {
      const args = ExportKey.args.parse(raw);
      const format = args.format;
      using key = acquireKey(ctx, args.key);
      if (!key.value.extractable) {
        throw new NotExtractableError(`the ${key.value.algorithm.name} ${key.value.type} key was created non-extractable; its key data cannot be exported`);
      }
      return sensitiveReply(exportKeyData(format, key.value));
    },
  },
];
