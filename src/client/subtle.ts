/**
 * `client.subtle`: the SubtleCrypto interface (same method names, argument
 * order and algorithm dictionaries as WebCrypto), where every CryptoKey is a
 * handle to a key held by the daemon. Key bytes reach the client only through
 * `exportKey` of a key created extractable.
 *
 * @example
 * ```ts
 * await using client = await connect();
 * await using key = await client.subtle.generateKey({ name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
 * const tag = await client.subtle.sign('HMAC', key, data);
 * ```
 */
import type { CborValue } from '../protocol/cbor.js';
import { InvalidArgumentError } from '../protocol/errors.js';
import { invalid } from '../protocol/schema.js';
import { normalize, normalizeWrap, toWire, type Normalized } from './webcrypto/algorithms.js';
import { fail, toSubtleError } from './webcrypto/errors.js';
import { checkDeriveLength, DECRYPT_CHECKS, DERIVE_CHECKS, derivedKeyLength, ENCRYPT_CHECKS } from './webcrypto/params.js';
import { checkGenerate, checkGenerateParameters, checkImport, checkKey, importedType, KEY_FORMATS, needsUsage } from './webcrypto/rules.js';
import { idlAlgorithm, idlKeyData, idlUsages, requireArgs, toBoolean, toBufferSource, toEnum, toUnsigned } from './webcrypto/webidl.js';
import {
  Decrypt, DeriveBits, DeriveKey, Digest, Encrypt, ExportKey, GenerateKey, ImportKey, Release, Sign, UnwrapKey, Verify, WrapKey, type ResultOf,
} from '../protocol/messages/index.js';
import type { DaemonConnection } from './connection.js';
import type { BatchResult } from './managed.js';
import { SubtleBatches, type CipherBatchItem, type VerifyBatchItem } from './subtle-batch.js';
import { Coalescer } from './coalesce.js';

export type KeyType = 'secret' | 'private' | 'public';
export type KeyUsage = 'encrypt' | 'decrypt' | 'sign' | 'verify' | 'deriveKey' | 'deriveBits' | 'wrapKey' | 'unwrapKey';
export type KeyFormat = 'raw' | 'pkcs8' | 'spki' | 'jwk';
export type BufferSource = ArrayBuffer | ArrayBufferView;

/** An algorithm name or dictionary, as in WebCrypto (`'SHA-256'`, `{ name: 'AES-GCM', iv }`). */
export type AlgorithmIdentifier = string | ({ name: string } & Record<string, unknown>);

type PairAlgorithmName = 'Ed25519' | 'X25519' | 'ECDSA' | 'ECDH' | 'RSA-PSS' | 'Ed448' | 'X448' | 'RSA-OAEP' | 'RSASSA-PKCS1-v1_5';
type SecretAlgorithmName = 'AES-GCM' | 'ChaCha20-Poly1305' | 'AES-KW' | 'AES-KWP' | 'HMAC' | 'AES-CBC' | 'AES-CTR';
/** Algorithms whose generateKey gives a CryptoKeyPair. */
export type PairAlgorithm = PairAlgorithmName | ({ name: PairAlgorithmName } & Record<string, unknown>);
/** Algorithms whose generateKey gives one secret CryptoKey. */
export type SecretAlgorithm = SecretAlgorithmName | ({ name: SecretAlgorithmName } & Record<string, unknown>);

export interface KeyAlgorithm {
  name: string;
  [param: string]: unknown;
}

export interface JsonWebKey {
  kty?: string;
  [member: string]: unknown;
}

/**
 * A key held by the daemon. Releasing it (or leaving an `await using` block)
 * deletes the key and every context made from it; so does closing the client.
 */
export class CryptoKey implements AsyncDisposable {
  readonly type: KeyType;
  readonly extractable: boolean;
  readonly algorithm: KeyAlgorithm;
  readonly usages: KeyUsage[];
  /** The daemon's handle (DataNodeId). Meaningful only on this client's connections. */
  readonly handle: string;
  readonly #conn: DaemonConnection;
  #released = false;

  /** @internal */
  constructor(conn: DaemonConnection, desc: KeyDescription) {
    this.#conn = conn;
    this.type = desc.type;
    this.extractable = desc.extractable;
    this.algorithm = desc.algorithm;
    this.usages = desc.usages;
    this.handle = desc.handle;
  }

  /** Whether release() was called: the key can no longer be used. */
  get released(): boolean {
    return this.#released;
  }

  /** Delete the key in the daemon. Idempotent. */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    if (this.#conn.closed) return; // the daemon released it with the connection
    await this.#conn.send(Release, { handle: this.handle });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }

  get [Symbol.toStringTag](): string {
    return 'CryptoKey';
  }
}

export interface CryptoKeyPair extends AsyncDisposable {
  publicKey: CryptoKey;
  privateKey: CryptoKey;
}

/** @internal the wire form of a key handle (docs/protocol.md §6.2). */
export interface KeyDescription {
  handle: string;
  type: KeyType;
  extractable: boolean;
  algorithm: KeyAlgorithm;
  usages: KeyUsage[];
}

/**
 * Every method converts its arguments as WebIDL does, then runs WebCrypto's
 * steps in the specification's order — normalize the algorithm
 * (NotSupportedError, TypeError), check the usages (SyntaxError), the key
 * (InvalidAccessError), then the parameters and data (OperationError) — all
 * here, so a bad call costs no request. What only the key bytes can decide is
 * the daemon's, whose cryptod error is renamed the same way
 * (src/client/webcrypto/errors.ts; docs/errors.md "WebCrypto names").
 */
export class SubtleClient {
  readonly #conn: DaemonConnection;
  /** Small digests, signatures and verifications of one tick as batch frames (coalesce.ts). */
  readonly #coalesce: Coalescer;
  readonly #batches: SubtleBatches;

  /** @internal */
  constructor(conn: DaemonConnection) {
    this.#conn = conn;
    this.#batches = new SubtleBatches(conn);
    this.#coalesce = new Coalescer(conn, conn.coalesce);
  }

  // ── batch forms (not WebCrypto; src/client/subtle-batch.ts) ────────────

  /**
   * Many digests in one request: one result per input, in order. Inputs
   * beyond the daemon's `maxBatchItems` go in further frames, sent at once.
   *
   * @example
   * ```ts
   * const digests = await client.subtle.digestBatch('SHA-256', [a, b, c]);
   * ```
   */
  digestBatch(algorithm: AlgorithmIdentifier, data: readonly BufferSource[]): Promise<Array<BatchResult<Uint8Array>>> {
    return this.#batches.digest(algorithm, data);
  }

  /**
   * Sign (or MAC) many messages with one key: HMAC, Ed25519, Ed448, ECDSA.
   * A failed item is a CryptodError in its place; a bad key or algorithm
   * rejects the whole call.
   *
   * @example
   * ```ts
   * const tags = await client.subtle.signBatch('HMAC', key, messages);
   * ```
   */
  signBatch(algorithm: AlgorithmIdentifier, key: CryptoKey, data: readonly BufferSource[]): Promise<Array<BatchResult<Uint8Array>>> {
    return this.#batches.sign(algorithm, key, data);
  }

  /** Check many signatures with one key: `true`/`false` per item, as `verify` answers. */
  verifyBatch(algorithm: AlgorithmIdentifier, key: CryptoKey, items: readonly VerifyBatchItem[]): Promise<Array<BatchResult<boolean>>> {
    return this.#batches.verify(algorithm, key, items);
  }

  /**
   * AES-GCM or ChaCha20-Poly1305 over many items with one key; each item
   * has its own `iv` (never reuse one), `additionalData` is the item's or
   * else the algorithm's.
   *
   * @example
   * ```ts
   * const out = await client.subtle.encryptBatch('AES-GCM', key, records.map((data) => ({ data, iv: randomBytes(12) })));
   * ```
   */
  encryptBatch(algorithm: AlgorithmIdentifier, key: CryptoKey, items: readonly CipherBatchItem[]): Promise<Array<BatchResult<Uint8Array>>> {
    return this.#batches.encrypt(algorithm, key, items);
  }

  /** The reverse of {@link encryptBatch}: an item whose tag does not verify is a DecryptError in its place. */
  decryptBatch(algorithm: AlgorithmIdentifier, key: CryptoKey, items: readonly CipherBatchItem[]): Promise<Array<BatchResult<Uint8Array>>> {
    return this.#batches.decrypt(algorithm, key, items);
  }

  // ── WebCrypto ──────────────────────────────────────────────────────────

  // digest, sign, verify, encrypt and decrypt are the per-item hot path: their steps run synchronously up to the
  // request (as they did inside an async function), then one `.then` reads the reply — no async layers, no closures.

  digest(algorithm: AlgorithmIdentifier, data: BufferSource): Promise<ArrayBuffer> {
    try {
      if (arguments.length < 2) requireArgs('digest', { length: arguments.length }, 2); // only .length read: no arguments object
      const a = idlAlgorithm(algorithm, 'algorithm');
      const bytes = toBufferSource(data, 'data');
      const alg = normalize(a, 'digest', isKey);
      return this.#coalesce.request(Digest, { algorithm: alg.name, data: bytes }, FRESH, freshBytesResult, subtleRejection);
    } catch (err) {
      return Promise.reject(toSubtleError(err));
    }
  }

  /** Asymmetric algorithms give a key pair, symmetric ones a key (as WebCrypto). */
  async generateKey(algorithm: PairAlgorithm, extractable: boolean, usages: readonly KeyUsage[]): Promise<CryptoKeyPair>;
  async generateKey(algorithm: SecretAlgorithm, extractable: boolean, usages: readonly KeyUsage[]): Promise<CryptoKey>;
  async generateKey(algorithm: AlgorithmIdentifier, extractable: boolean, usages: readonly KeyUsage[]): Promise<CryptoKey | CryptoKeyPair>;
  async generateKey(algorithm: AlgorithmIdentifier, extractable: boolean, usages: readonly KeyUsage[]): Promise<CryptoKey | CryptoKeyPair> {
    return subtleCall('generateKey', arguments, 3, async () => {
      const a = idlAlgorithm(algorithm, 'algorithm');
      const ext = toBoolean(extractable);
      const uses = idlUsages(usages, 'keyUsages');
      const alg = normalize(a, 'generateKey', isKey);
      checkGenerate(alg, uses);
      return this.#keyOrPair(await this.#conn.call(GenerateKey, { algorithm: wireNormalized(alg), extractable: ext, usages: uses }));
    });
  }

  async importKey(
    format: KeyFormat,
    keyData: BufferSource | JsonWebKey,
    algorithm: AlgorithmIdentifier,
    extractable: boolean,
    usages: readonly KeyUsage[],
  ): Promise<CryptoKey> {
    return subtleCall('importKey', arguments, 5, async () => {
      const fmt = toEnum(format, KEY_FORMATS, 'format', 'KeyFormat');
      const data = idlKeyData(keyData);
      const a = idlAlgorithm(algorithm, 'algorithm');
      const ext = toBoolean(extractable);
      const uses = idlUsages(usages, 'keyUsages');
      // WebCrypto importKey checks the form of keyData against the format first (Node 20 says DataError, after the usages).
      if (fmt === 'jwk' && data instanceof Uint8Array) fail.type("format 'jwk' needs a JsonWebKey object as keyData, got bytes", { field: 'keyData' });
      if (fmt !== 'jwk' && !(data instanceof Uint8Array)) fail.type(`format '${fmt}' needs keyData as an ArrayBuffer or a view, got an object`, { field: 'keyData' });
      const alg = normalize(a, 'importKey', isKey);
      checkImport(alg, fmt, importedType(alg, fmt, data), ext, uses);
      const r = await this.#conn.call(
        ImportKey,
        { format: fmt, keyData: data instanceof Uint8Array ? data : wireJwk(data), algorithm: wireNormalized(alg), extractable: ext, usages: uses },
        { sensitiveRequest: true },
      );
      if (data instanceof Uint8Array) data.fill(0); // our copy of the key bytes
      return new CryptoKey(this.#conn, r);
    });
  }

  async exportKey(format: 'jwk', key: CryptoKey): Promise<JsonWebKey>;
  async exportKey(format: Exclude<KeyFormat, 'jwk'>, key: CryptoKey): Promise<ArrayBuffer>;
  async exportKey(format: KeyFormat, key: CryptoKey): Promise<ArrayBuffer | JsonWebKey>;
  async exportKey(format: KeyFormat, key: CryptoKey): Promise<ArrayBuffer | JsonWebKey> {
    return subtleCall('exportKey', arguments, 2, async () => {
      const fmt = toEnum(format, KEY_FORMATS, 'format', 'KeyFormat');
      const k = keyArg(key, 'key');
      // A non-extractable key is the daemon's to refuse (InvalidAccessError, as the next WebCrypto step): it audits every such attempt.
      const r = await this.#conn.call(ExportKey, { format: fmt, key: k.handle }, { sensitiveReply: true });
      if (!(r instanceof Uint8Array)) {
        if (fmt === 'jwk') return r;
      } else if (fmt !== 'jwk') {
        return toArrayBuffer(r, true);
      } else {
        r.fill(0); // key material in the wrong form: not handed out
      }
      return fail.operation(`the daemon replied to a ${fmt} export with ${fmt === 'jwk' ? 'bytes' : 'a JWK'}`);
    });
  }

  encrypt(algorithm: AlgorithmIdentifier, key: CryptoKey, data: BufferSource): Promise<ArrayBuffer> {
    try {
      if (arguments.length < 3) requireArgs('encrypt', { length: arguments.length }, 3); // only .length read: no arguments object
      return this.#cipher('encrypt', algorithm, key, data);
    } catch (err) {
      return Promise.reject(toSubtleError(err));
    }
  }

  decrypt(algorithm: AlgorithmIdentifier, key: CryptoKey, data: BufferSource): Promise<ArrayBuffer> {
    try {
      if (arguments.length < 3) requireArgs('decrypt', { length: arguments.length }, 3); // only .length read: no arguments object
      return this.#cipher('decrypt', algorithm, key, data);
    } catch (err) {
      return Promise.reject(toSubtleError(err));
    }
  }

  sign(algorithm: AlgorithmIdentifier, key: CryptoKey, data: BufferSource): Promise<ArrayBuffer> {
    try {
      if (arguments.length < 3) requireArgs('sign', { length: arguments.length }, 3); // only .length read: no arguments object
      const a = idlAlgorithm(algorithm, 'algorithm');
      const k = keyArg(key, 'key');
      const bytes = toBufferSource(data, 'data');
      const alg = normalize(a, 'sign', isKey);
      checkKey(alg, k, 'sign');
      return this.#coalesce.request(Sign, { algorithm: wireNormalized(alg), key: k.handle, data: bytes }, FRESH, freshBytesResult, subtleRejection);
    } catch (err) {
      return Promise.reject(toSubtleError(err));
    }
  }

  verify(algorithm: AlgorithmIdentifier, key: CryptoKey, signature: BufferSource, data: BufferSource): Promise<boolean> {
    try {
      if (arguments.length < 4) requireArgs('verify', { length: arguments.length }, 4); // only .length read: no arguments object
      const a = idlAlgorithm(algorithm, 'algorithm');
      const k = keyArg(key, 'key');
      const sig = toBufferSource(signature, 'signature');
      const bytes = toBufferSource(data, 'data');
      const alg = normalize(a, 'verify', isKey);
      checkKey(alg, k, 'verify');
      return this.#coalesce.request(Verify, { algorithm: wireNormalized(alg), key: k.handle, signature: sig, data: bytes }, undefined, isTrue, subtleRejection);
    } catch (err) {
      return Promise.reject(toSubtleError(err));
    }
  }

  async deriveBits(algorithm: AlgorithmIdentifier, baseKey: CryptoKey, length?: number | null): Promise<ArrayBuffer> {
    return subtleCall('deriveBits', arguments, 2, async () => {
      const a = idlAlgorithm(algorithm, 'algorithm');
      const k = keyArg(baseKey, 'baseKey');
      // `optional unsigned long? length = null`: no [EnforceRange], so -8 is 4294967288.
      const bits = length === undefined || length === null ? null : toUnsigned(length, 'unsigned long', 'length', false);
      const alg = normalize(a, 'deriveBits', isKey);
      checkKey(alg, k, 'deriveBits', 'baseKey');
      DERIVE_CHECKS[alg.name]?.(alg, k, null);
      checkDeriveLength(alg, k, bits);
      const r = await this.#conn.call(DeriveBits, { algorithm: wireNormalized(alg), baseKey: k.handle, length: bits }, { sensitiveReply: true });
      return toArrayBuffer(r, true);
    });
  }

  async deriveKey(
    algorithm: AlgorithmIdentifier,
    baseKey: CryptoKey,
    derivedKeyType: AlgorithmIdentifier,
    extractable: boolean,
    usages: readonly KeyUsage[],
  ): Promise<CryptoKey> {
    return subtleCall('deriveKey', arguments, 5, async () => {
      const a = idlAlgorithm(algorithm, 'algorithm');
      const k = keyArg(baseKey, 'baseKey');
      const d = idlAlgorithm(derivedKeyType, 'derivedKeyType');
      const ext = toBoolean(extractable);
      const uses = idlUsages(usages, 'keyUsages');
      const alg = normalize(a, 'deriveBits', isKey);
      const imported = normalize(d, 'importKey', isKey, 'derivedKeyType');
      const sized = normalize(d, 'get key length', isKey, 'derivedKeyType');
      checkKey(alg, k, 'deriveKey', 'baseKey');
      DERIVE_CHECKS[alg.name]?.(alg, k, null);
      checkGenerateParameters(sized); // WebCrypto "get key length": the same length rules as generateKey
      checkDeriveLength(alg, k, derivedKeyLength(sized));
      checkImport(imported, 'raw', 'secret', ext, uses);
      if (needsUsage('secret', uses)) fail.syntax(`Usages cannot be empty when creating a ${imported.name} key`, { field: 'usages' });
      const r = await this.#conn.call(DeriveKey, {
        algorithm: wireNormalized(alg),
        baseKey: k.handle,
        derivedKeyType: wireNormalized({ ...imported, ...sized }),
        extractable: ext,
        usages: uses,
      });
      return new CryptoKey(this.#conn, r);
    });
  }

  async wrapKey(format: KeyFormat, key: CryptoKey, wrappingKey: CryptoKey, wrapAlgorithm: AlgorithmIdentifier): Promise<ArrayBuffer> {
    return subtleCall('wrapKey', arguments, 4, async () => {
      const fmt = toEnum(format, KEY_FORMATS, 'format', 'KeyFormat');
      const k = keyArg(key, 'key');
      const w = keyArg(wrappingKey, 'wrappingKey');
      const a = idlAlgorithm(wrapAlgorithm, 'wrapAlgorithm');
      const alg = normalizeWrap(a, 'wrapKey', 'encrypt', isKey, 'wrapAlgorithm');
      checkKey(alg, w, 'wrapKey', 'wrappingKey');
      // A non-extractable key is the daemon's to refuse: it audits every attempt to take one out (README "Audit log").
      return toArrayBuffer(
        await this.#conn.call(WrapKey, { format: fmt, key: k.handle, wrappingKey: w.handle, wrapAlgorithm: wireNormalized(alg) }),
      );
    });
  }

  async unwrapKey(
    format: KeyFormat,
    wrappedKey: BufferSource,
    unwrappingKey: CryptoKey,
    unwrapAlgorithm: AlgorithmIdentifier,
    unwrappedKeyAlgorithm: AlgorithmIdentifier,
    extractable: boolean,
    usages: readonly KeyUsage[],
  ): Promise<CryptoKey> {
    return subtleCall('unwrapKey', arguments, 7, async () => {
      const fmt = toEnum(format, KEY_FORMATS, 'format', 'KeyFormat');
      const wrapped = toBufferSource(wrappedKey, 'wrappedKey');
      const w = keyArg(unwrappingKey, 'unwrappingKey');
      const a = idlAlgorithm(unwrapAlgorithm, 'unwrapAlgorithm');
      const u = idlAlgorithm(unwrappedKeyAlgorithm, 'unwrappedKeyAlgorithm');
      const ext = toBoolean(extractable);
      const uses = idlUsages(usages, 'keyUsages');
      const alg = normalizeWrap(a, 'unwrapKey', 'decrypt', isKey, 'unwrapAlgorithm');
      const imported = normalize(u, 'importKey', isKey, 'unwrappedKeyAlgorithm');
      checkKey(alg, w, 'unwrapKey', 'unwrappingKey');
      const r = await this.#conn.call(UnwrapKey, {
        format: fmt,
        wrappedKey: wrapped,
        unwrappingKey: w.handle,
        unwrapAlgorithm: wireNormalized(alg),
        unwrappedKeyAlgorithm: wireNormalized(imported),
        extractable: ext,
        usages: uses,
      });
      return new CryptoKey(this.#conn, r);
    });
  }

  /** The steps of encrypt/decrypt up to the request (synchronous: a bad argument throws). */
  #cipher(op: 'encrypt' | 'decrypt', algorithm: unknown, key: unknown, data: unknown): Promise<ArrayBuffer> {
    const a = idlAlgorithm(algorithm, 'algorithm');
    const k = keyArg(key, 'key');
    const bytes = toBufferSource(data, 'data');
    const alg = normalize(a, op, isKey);
    checkKey(alg, k, op);
    (op === 'encrypt' ? ENCRYPT_CHECKS : DECRYPT_CHECKS)[alg.name]?.(alg, k, bytes);
    const args = { algorithm: wireNormalized(alg), key: k.handle, data: bytes };
    // A ciphertext is not secret: decoded straight into the caller's ArrayBuffer. A plaintext keeps the view-copy-zero path.
    return op === 'encrypt' ? this.#coalesce.request(Encrypt, args, FRESH, freshBytesResult, subtleRejection) : this.#coalesce.request(Decrypt, args, undefined, plaintextResult, subtleRejection);
  }

  #keyOrPair(v: ResultOf<typeof GenerateKey>): CryptoKey | CryptoKeyPair {
    if ('handle' in v) return new CryptoKey(this.#conn, v);
    const publicKey = new CryptoKey(this.#conn, v.publicKey);
    const privateKey = new CryptoKey(this.#conn, v.privateKey);
    return {
      publicKey,
      privateKey,
      async [Symbol.asyncDispose]() {
        await Promise.all([publicKey.release(), privateKey.release()]);
      },
    };
  }
}

// ── replies of the hot path ──────────────────────────────────────────────

/** Byte strings of the reply decoded into ArrayBuffers of their own (connection.ts RequestOptions.freshBytes). */
const FRESH = { freshBytes: true } as const;

/**
 * A reply of a FRESH request that the declaration says is a byte string
 * (Digest, Sign, Encrypt: all `bytes()`): its ArrayBuffer is the caller's
 * already. Anything else goes through the declaration, which names what
 * was wrong as `call` did.
 */
function freshBytesResult(v: CborValue): ArrayBuffer {
  if (v instanceof Uint8Array && v.byteOffset === 0 && v.byteLength === v.buffer.byteLength) return v.buffer as ArrayBuffer;
  try {
    return toArrayBuffer(Sign.result.parse(v, 'the reply'));
  } catch (err) {
    throw toSubtleError(err);
  }
}

/** A decrypt's reply: copied out, and the frame's plaintext zeroed. */
function plaintextResult(v: CborValue): ArrayBuffer {
  try {
    return toArrayBuffer(Decrypt.result.parse(v, 'the reply'), true);
  } catch (err) {
    throw toSubtleError(err);
  }
}

const isTrue = (v: CborValue): boolean => v === true;

function subtleRejection(err: unknown): never {
  throw toSubtleError(err);
}

// ── WebIDL arguments ─────────────────────────────────────────────────────

/** Count the arguments, run the steps, and give every failure its WebCrypto name. */
async function subtleCall<T>(method: string, args: IArguments, required: number, steps: () => Promise<T>): Promise<T> {
  try {
    requireArgs(method, args, required);
    return await steps();
  } catch (err) {
    throw toSubtleError(err);
  }
}

const isKey = (v: unknown): boolean => v instanceof CryptoKey;

function keyArg(v: unknown, what: string): CryptoKey {
  if (!(v instanceof CryptoKey)) return fail.type(`${what} is not of type CryptoKey (a key from this client)`, { field: what });
  // WebCrypto keys cannot be released; a released one is unusable for anything, so this comes first.
  if (v.released) fail.released(`${what} was released; create or import the key again`, { field: what });
  return v;
}

/** A normalized algorithm as the daemon reads it (keys become their handles). */
function wireNormalized(alg: Normalized): { name: string; [param: string]: CborValue } {
  return toWire(alg, keyHandle);
}

const keyHandle = (v: unknown): string | undefined => (v instanceof CryptoKey ? v.handle : undefined);

// ── marshaling ───────────────────────────────────────────────────────────

/** A BufferSource as a Uint8Array view (no copy). */
export function bytesOf(v: unknown, field: string): Uint8Array {
  if (v instanceof Uint8Array) return v;
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  throw new InvalidArgumentError(`expected '${field}' to be an ArrayBuffer or ArrayBufferView`, { detail: { field } });
}

export function handleOf(key: unknown, field: string): string {
  if (key instanceof CryptoKey) return key.handle;
  throw new InvalidArgumentError(`expected '${field}' to be a CryptoKey from this client`, { detail: { field } });
}

/**
 * An algorithm identifier as the client sends it. Its parameters are the
 * caller's (a WebCrypto dictionary, typed `Record<string, unknown>` in the
 * public API), so beyond `name` their types are known to be CBOR values, not
 * the declared ones: the daemon checks them against the operation's
 * declaration and names a misspelt or mistyped parameter.
 */
export type WireAlgorithm = string | { name: string; [param: string]: CborValue };

/**
 * An algorithm name or dictionary to its wire form: BufferSources become byte
 * strings, CryptoKeys (ECDH's `public`) their handles, nested dictionaries
 * (`hash`) recurse, `undefined` members are left out. Members the operation
 * does not declare are sent too, for the daemon to refuse by name (a misspelt
 * `additionalData` must fail, not be dropped).
 */
export function wireAlgorithm(algorithm: string | { readonly name: string }, field = 'algorithm'): WireAlgorithm {
  if (typeof algorithm === 'string') return algorithm;
  // The daemon's message for the same mistake: not every caller is typed.
  if (algorithm === null || typeof algorithm !== 'object') return invalid('', field, 'text or a map', algorithm);
  const out: { name: string; [param: string]: CborValue } = { name: algorithm.name };
  for (const [k, item] of Object.entries(algorithm)) if (item !== undefined && k !== 'name') out[k] = marshal(item);
  return out;
}

/** A JWK to a CBOR map, converting each member as {@link marshal} does. */
export function wireJwk(jwk: JsonWebKey): { [member: string]: CborValue } {
  const out: { [member: string]: CborValue } = {};
  for (const [k, item] of Object.entries(jwk)) if (item !== undefined) out[k] = marshal(item);
  return out;
}

/**
 * A parameter value to CBOR: BufferSources become byte strings, CryptoKeys
 * (ECDH's `public`) their handles, nested dictionaries recurse.
 */
function marshal(v: unknown): CborValue {
  if (v === null || v === undefined || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return v;
  if (v instanceof CryptoKey) return v.handle;
  if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer) return bytesOf(v, 'algorithm parameter');
  if (Array.isArray(v)) return v.map(marshal);
  if (typeof v === 'object') {
    const out: { [k: string]: CborValue } = {};
    for (const [k, item] of Object.entries(v)) if (item !== undefined) out[k] = marshal(item);
    return out;
  }
  throw new InvalidArgumentError(`cannot send a ${typeof v} to the daemon`);
}

/** A reply's byte string (checked by its declaration) as a fresh ArrayBuffer (WebCrypto returns ArrayBuffers). */
export function toArrayBuffer(v: Uint8Array, sensitive = false): ArrayBuffer {
  const out = new ArrayBuffer(v.length);
  new Uint8Array(out).set(v);
  if (sensitive) v.fill(0);
  return out;
}
