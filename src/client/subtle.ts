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
import {
  Decrypt, DeriveBits, DeriveKey, Digest, Encrypt, ExportKey, GenerateKey, ImportKey, Release, Sign, UnwrapKey, Verify, WrapKey, type ResultOf,
} from '../protocol/messages/index.js';
import type { DaemonConnection } from './connection.js';

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

export class SubtleClient {
  readonly #conn: DaemonConnection;

  /** @internal */
  constructor(conn: DaemonConnection) {
    this.#conn = conn;
  }

  async digest(algorithm: AlgorithmIdentifier, data: BufferSource): Promise<ArrayBuffer> {
    return toArrayBuffer(await this.#conn.call(Digest, { algorithm: wireAlgorithm(algorithm), data: bytesOf(data, 'data') }));
  }

  /** Asymmetric algorithms give a key pair, symmetric ones a key (as WebCrypto). */
  async generateKey(algorithm: PairAlgorithm, extractable: boolean, usages: readonly KeyUsage[]): Promise<CryptoKeyPair>;
  async generateKey(algorithm: SecretAlgorithm, extractable: boolean, usages: readonly KeyUsage[]): Promise<CryptoKey>;
  async generateKey(algorithm: AlgorithmIdentifier, extractable: boolean, usages: readonly KeyUsage[]): Promise<CryptoKey | CryptoKeyPair>;
  async generateKey(algorithm: AlgorithmIdentifier, extractable: boolean, usages: readonly KeyUsage[]): Promise<CryptoKey | CryptoKeyPair> {
    return this.#keyOrPair(await this.#conn.call(GenerateKey, { algorithm: wireAlgorithm(algorithm), extractable, usages: [...usages] }));
  }

  async importKey(
    format: KeyFormat,
    keyData: BufferSource | JsonWebKey,
    algorithm: AlgorithmIdentifier,
    extractable: boolean,
    usages: readonly KeyUsage[],
  ): Promise<CryptoKey> {
    const data = format === 'jwk' ? wireJwk(keyData as JsonWebKey) : bytesOf(keyData as BufferSource, 'keyData');
    const r = await this.#conn.call(
      ImportKey,
      { format, keyData: data, algorithm: wireAlgorithm(algorithm), extractable, usages: [...usages] },
      { sensitiveRequest: true },
    );
    return new CryptoKey(this.#conn, r);
  }

  async exportKey(format: 'jwk', key: CryptoKey): Promise<JsonWebKey>;
  async exportKey(format: Exclude<KeyFormat, 'jwk'>, key: CryptoKey): Promise<ArrayBuffer>;
  async exportKey(format: KeyFormat, key: CryptoKey): Promise<ArrayBuffer | JsonWebKey>;
  async exportKey(format: KeyFormat, key: CryptoKey): Promise<ArrayBuffer | JsonWebKey> {
    const r = await this.#conn.call(ExportKey, { format, key: handleOf(key, 'key') }, { sensitiveReply: true });
    if (!(r instanceof Uint8Array)) {
      if (format === 'jwk') return r;
    } else if (format !== 'jwk') {
      return toArrayBuffer(r, true);
    } else {
      r.fill(0); // key material in the wrong form: not handed out
    }
    throw new InvalidArgumentError(`the daemon replied to a ${format} export with ${format === 'jwk' ? 'bytes' : 'a JWK'}`);
  }

  async encrypt(algorithm: AlgorithmIdentifier, key: CryptoKey, data: BufferSource): Promise<ArrayBuffer> {
    return toArrayBuffer(await this.#conn.call(Encrypt, { algorithm: wireAlgorithm(algorithm), key: handleOf(key, 'key'), data: bytesOf(data, 'data') }));
  }

  async decrypt(algorithm: AlgorithmIdentifier, key: CryptoKey, data: BufferSource): Promise<ArrayBuffer> {
    return toArrayBuffer(await this.#conn.call(Decrypt, { algorithm: wireAlgorithm(algorithm), key: handleOf(key, 'key'), data: bytesOf(data, 'data') }));
  }

  async sign(algorithm: AlgorithmIdentifier, key: CryptoKey, data: BufferSource): Promise<ArrayBuffer> {
    return toArrayBuffer(await this.#conn.call(Sign, { algorithm: wireAlgorithm(algorithm), key: handleOf(key, 'key'), data: bytesOf(data, 'data') }));
  }

  async verify(algorithm: AlgorithmIdentifier, key: CryptoKey, signature: BufferSource, data: BufferSource): Promise<boolean> {
    const r = await this.#conn.send(Verify, {
      algorithm: wireAlgorithm(algorithm),
      key: handleOf(key, 'key'),
      signature: bytesOf(signature, 'signature'),
      data: bytesOf(data, 'data'),
    });
    return r === true;
  }

  async deriveBits(algorithm: AlgorithmIdentifier, baseKey: CryptoKey, length?: number | null): Promise<ArrayBuffer> {
    const r = await this.#conn.call(
      DeriveBits,
      { algorithm: wireAlgorithm(algorithm), baseKey: handleOf(baseKey, 'baseKey'), length: length ?? null },
      { sensitiveReply: true },
    );
    return toArrayBuffer(r, true);
  }

  async deriveKey(
    algorithm: AlgorithmIdentifier,
    baseKey: CryptoKey,
    derivedKeyType: AlgorithmIdentifier,
    extractable: boolean,
    usages: readonly KeyUsage[],
  ): Promise<CryptoKey> {
    const r = await this.#conn.call(DeriveKey, {
      algorithm: wireAlgorithm(algorithm),
      baseKey: handleOf(baseKey, 'baseKey'),
      derivedKeyType: wireAlgorithm(derivedKeyType, 'derivedKeyType'),
      extractable,
      usages: [...usages],
    });
    return new CryptoKey(this.#conn, r);
  }

  async wrapKey(format: KeyFormat, key: CryptoKey, wrappingKey: CryptoKey, wrapAlgorithm: AlgorithmIdentifier): Promise<ArrayBuffer> {
    return toArrayBuffer(
      await this.#conn.call(WrapKey, {
        format,
        key: handleOf(key, 'key'),
        wrappingKey: handleOf(wrappingKey, 'wrappingKey'),
        wrapAlgorithm: wireAlgorithm(wrapAlgorithm, 'wrapAlgorithm'),
      }),
    );
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
    const r = await this.#conn.call(UnwrapKey, {
      format,
      wrappedKey: bytesOf(wrappedKey, 'wrappedKey'),
      unwrappingKey: handleOf(unwrappingKey, 'unwrappingKey'),
      unwrapAlgorithm: wireAlgorithm(unwrapAlgorithm, 'unwrapAlgorithm'),
      unwrappedKeyAlgorithm: wireAlgorithm(unwrappedKeyAlgorithm, 'unwrappedKeyAlgorithm'),
      extractable,
      usages: [...usages],
    });
    return new CryptoKey(this.#conn, r);
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
