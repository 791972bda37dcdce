/**
 * The TypeScript client.
 *
 * @example
 * ```ts
 * import { connect } from 'cryptod';
 * await using client = await connect();          // CRYPTOD_SOCKET, else the per-user default socket
 * const digest = await client.subtle.digest('SHA-256', data);
 * ```
 */
import type { CborValue } from '../protocol/cbor.js';
import {
  Health, HashCreate, HmacCreate, ManagedDecrypt, ManagedEncrypt, ManagedMac, ManagedRewrap, ManagedSign, ManagedVerify, ManagedVerifyMac, Ping, Reload, Status,
} from '../protocol/messages/index.js';
import { InvalidArgumentError } from '../protocol/errors.js';
import { KekRewrapAll } from '../protocol/messages/kek.js';

/** What one KEK_REWRAP_ALL batch did (docs/protocol.md §6.13). */
export interface KekRewrapResult {
  root: string;
  total: number;
  rewrapped: number;
  remaining: number;
  failed: Array<{ key: string; version: number; code: string; message: string }>;
}
import { assertOwnSocketDirectory, resolveSocket } from './socket-path.js';
import { DaemonConnection, type DaemonTarget, type HelloReply, type RequestOptions, type TlsClientOptions } from './connection.js';
import { SubtleClient, handleOf, wireAlgorithm, type AlgorithmIdentifier, type CryptoKey } from './subtle.js';
import { DigestContext } from './contexts.js';
import { AeadStream, type AeadStreamParams } from './streams.js';
import {
  ManagedData, ManagedKeysClient, ciphertextItem, plaintextItem, messageItem, pickCiphertext, pickMac, pickPlaintext, pickSignature, pickValid, signatureItem, macItem,
  type AadOptions, type BatchResult, type CipherItem, type VerifyItem,
} from './managed.js';
import { DataKeysClient } from './datakeys.js';
import type { BufferSource } from './subtle.js';
import { getRandomValues, type IntegerTypedArray } from './random.js';

export interface ConnectOptions {
  /** Socket path; default `CRYPTOD_SOCKET`, then `$XDG_RUNTIME_DIR/cryptod/cryptod.sock`, then `/tmp/cryptod-$UID/cryptod.sock` (README, "Where the socket is"). */
  socket?: string;
  /** The name this client gives itself (part of its ClientId); default `anonymous`. */
  clientName?: string;
  /**
   * A token from `cryptod client add` (default `CRYPTOD_TOKEN`): the ClientId
   * becomes `token:<its name>`. An invalid or revoked token fails with
   * AuthFailedError.
   */
  token?: string;
  /** `tls://HOST:PORT` for a daemon's mutual-TLS listener (then `tls` is required); default: the Unix socket. */
  url?: string;
  /** Client certificate, key and the CA of the daemon's certificate (PEM contents), for `url`. */
  tls?: TlsClientOptions;
  /**
   * Large updates of hash and HMAC contexts go through a shared-memory window
   * (docs/protocol.md §6.16) when the daemon offers one on this Unix socket;
   * `false` sends every byte over the socket. Default true.
   */
  windows?: boolean;
  /**
   * Small `subtle.digest`, `sign` and `verify` calls made in the same tick
   * with the same algorithm and key travel as one batch request (up to 32
   * per frame) instead of one request each; every call still gets its own
   * result or error. `false` sends one request per call. Default true.
   */
  coalesce?: boolean;
}

/**
 * A decrypt's plaintext may be a secret, or key material (an aes256-kwp key
 * unwraps keys): copied out of the read buffer, which is then zeroed.
 */
const SECRET_RESULT = { sensitiveReply: true } as const;

export class Client implements AsyncDisposable {
  /** WebCrypto's SubtleCrypto, with keys held by the daemon. */
  readonly subtle: SubtleClient;
  /** Administration of managed keys: create, import, rotate, list, describe, setPolicy, trim, export, destroy, persist. */
  readonly keys: ManagedKeysClient;
  /** Envelope encryption: data keys wrapped by a managed KEK (src/client/datakeys.ts). */
  readonly dataKeys: DataKeysClient;
  /** @internal */
  readonly connection: DaemonConnection;
  readonly #managed: ManagedData;

  /** @internal use {@link connect} */
  constructor(conn: DaemonConnection) {
    this.connection = conn;
    this.subtle = new SubtleClient(conn);
    this.keys = new ManagedKeysClient(conn);
    this.#managed = new ManagedData(conn);
    this.dataKeys = new DataKeysClient(conn);
  }

  // ── managed keys, by name (src/client/managed.ts, docs/formats.md) ─────

  /**
   * Encrypt under the current version of managed key `name` (AES-256-GCM,
   * ChaCha20-Poly1305, or AES-KWP without `aad`). The result names the key
   * and version that made it, so it still decrypts after rotations.
   *
   * @example
   * ```ts
   * const ct = await client.encrypt('orders', plaintext, { aad: Buffer.from(orderId) });
   * const pt = await client.decrypt('orders', ct, { aad: Buffer.from(orderId) });
   * ```
   */
  encrypt(name: string, plaintext: BufferSource, options: AadOptions = {}): Promise<Uint8Array> {
    return this.#managed.one(ManagedEncrypt, name, plaintextItem(plaintext, options.aad), pickCiphertext);
  }

  /** Decrypt with the version the ciphertext names; DecryptError if it or the AAD was altered, KeyVersionError if that version may no longer be used. */
  decrypt(name: string, ciphertext: BufferSource, options: AadOptions = {}): Promise<Uint8Array> {
    return this.#managed.one(ManagedDecrypt, name, ciphertextItem(ciphertext, options.aad), pickPlaintext, SECRET_RESULT);
  }

  /** Re-encrypt under the current version; the plaintext never leaves the daemon. */
  rewrap(name: string, ciphertext: BufferSource, options: AadOptions = {}): Promise<Uint8Array> {
    return this.#managed.one(ManagedRewrap, name, ciphertextItem(ciphertext, options.aad), pickCiphertext);
  }

  /** Sign with the current version (Ed25519, ECDSA P-256/P-384, RSA-PSS-3072). */
  sign(name: string, message: BufferSource): Promise<Uint8Array> {
    return this.#managed.one(ManagedSign, name, messageItem(message), pickSignature);
  }

  /** Whether `signature` (from {@link sign}) is valid for `message`. */
  verify(name: string, message: BufferSource, signature: BufferSource): Promise<boolean> {
    return this.#managed.one(ManagedVerify, name, signatureItem(message, signature), pickValid);
  }

  /** HMAC with the current version of an hmac-sha256/512 key. */
  mac(name: string, message: BufferSource): Promise<Uint8Array> {
    return this.#managed.one(ManagedMac, name, messageItem(message), pickMac);
  }

  /** Whether `mac` (from {@link mac}) is valid for `message`, compared in constant time by the daemon. */
  verifyMac(name: string, message: BufferSource, mac: BufferSource): Promise<boolean> {
    return this.#managed.one(ManagedVerifyMac, name, macItem(message, mac), pickValid);
  }

  /**
   * Batch forms: one request, one result per item in order; a failed item is
   * a `CryptodError` in its place.
   *
   * @example
   * ```ts
   * const out = await client.encryptBatch('orders', [{ data: a }, { data: b, aad }]);
   * for (const r of out) if (r instanceof CryptodError) console.error(r.code);
   * ```
   */
  encryptBatch(name: string, items: readonly CipherItem[]): Promise<Array<BatchResult<Uint8Array>>> {
    return this.#managed.batch(ManagedEncrypt, name, items.map((i) => plaintextItem(i.data, i.aad)), pickCiphertext);
  }

  decryptBatch(name: string, items: readonly CipherItem[]): Promise<Array<BatchResult<Uint8Array>>> {
    return this.#managed.batch(ManagedDecrypt, name, items.map((i) => ciphertextItem(i.data, i.aad)), pickPlaintext, SECRET_RESULT);
  }

  rewrapBatch(name: string, items: readonly CipherItem[]): Promise<Array<BatchResult<Uint8Array>>> {
    return this.#managed.batch(ManagedRewrap, name, items.map((i) => ciphertextItem(i.data, i.aad)), pickCiphertext);
  }

  signBatch(name: string, messages: readonly BufferSource[]): Promise<Array<BatchResult<Uint8Array>>> {
    return this.#managed.batch(ManagedSign, name, messages.map((m) => messageItem(m)), pickSignature);
  }

  verifyBatch(name: string, items: readonly VerifyItem[]): Promise<Array<BatchResult<boolean>>> {
    return this.#managed.batch(ManagedVerify, name, items.map((i) => signatureItem(i.message, i.tag)), pickValid);
  }

  macBatch(name: string, messages: readonly BufferSource[]): Promise<Array<BatchResult<Uint8Array>>> {
    return this.#managed.batch(ManagedMac, name, messages.map((m) => messageItem(m)), pickMac);
  }

  verifyMacBatch(name: string, items: readonly VerifyItem[]): Promise<Array<BatchResult<boolean>>> {
    return this.#managed.batch(ManagedVerifyMac, name, items.map((i) => macItem(i.message, i.tag)), pickValid);
  }

  /** Ask the daemon to re-read its configuration file (administrators only); resolves to what changed. */
  async reload(): Promise<Record<string, unknown>> {
    return this.connection.call(Reload, {});
  }

  /**
   * One batch of `cryptod kek rewrap-all` (administrators only): up to
   * `limit` stored key versions (default 100) moved to the root KEK. Repeat
   * until `remaining` is 0 or a batch rewraps nothing (then `failed` lists
   * the versions that cannot be moved).
   */
  async kekRewrapAll(limit?: number): Promise<KekRewrapResult> {
    return this.connection.call(KekRewrapAll, limit === undefined ? {} : { limit });
  }

  /** What the daemon said at the handshake: versions, ClientId, limits. */
  get info(): HelloReply {
    return this.connection.hello;
  }

  /** Daemon status: clients, connections, live nodes (`cryptod status`). */
  async status(): Promise<Record<string, unknown>> {
    return this.connection.call(Status, undefined);
  }

  /**
   * WebCrypto's `getRandomValues`, with the bytes made by the daemon: fills
   * `array` (an integer-type TypedArray of at most 65,536 bytes) in place and
   * resolves to it. Throws the DOMExceptions Node's own does: TypeMismatchError
   * for any other kind of array, QuotaExceededError above 65,536 bytes.
   *
   * @example
   * ```ts
   * const nonce = await client.getRandomValues(new Uint8Array(24));
   * ```
   */
  getRandomValues<T extends IntegerTypedArray>(array: T): Promise<T> {
    return getRandomValues(this.connection, array);
  }

  /** Readiness (`cryptod health`): whether the keystore, the KEK and the configured keys are usable, check by check. */
  async health(): Promise<{ ready: boolean; checks: Array<{ name: string; ok: boolean; detail: string }> }> {
    return this.connection.call(Health, undefined);
  }

  async ping(payload?: CborValue): Promise<CborValue> {
    return this.connection.send(Ping, payload);
  }

  /** Send a raw protocol request (docs/protocol.md). For tools and tests. */
  request(op: number, payload?: CborValue, options?: RequestOptions): Promise<CborValue> {
    return this.connection.request(op, payload, options);
  }

  /**
   * A multi-part hash (SHA-1, SHA-256, SHA-384, SHA-512) computed by the daemon.
   * The daemon context is created by the first `update()` or `digest()`.
   *
   * @example
   * ```ts
   * await using h = client.createHash('SHA-256');
   * await h.update(part1);
   * await h.update(part2);
   * const digest = await h.digest();
   * ```
   */
  createHash(algorithm: AlgorithmIdentifier): DigestContext {
    // The arguments are made now, so a malformed algorithm throws here.
    const conn = this.connection;
    const args = { algorithm: wireAlgorithm(algorithm) };
    return new DigestContext(conn, () => conn.call(HashCreate, args), 'hash');
  }

  /**
   * A multi-part HMAC under `key` (an HMAC key whose usages include 'sign'),
   * with the key's hash. Releasing the key releases the context.
   */
  createHmac(key: CryptoKey): DigestContext {
    const conn = this.connection;
    const args = { key: handleOf(key, 'key') };
    return new DigestContext(conn, () => conn.call(HmacCreate, args), 'HMAC');
  }

  /**
   * A Transform that encrypts its input of any size into the AEAD stream
   * format (docs/formats.md). `key` is an AES-GCM or ChaCha20-Poly1305 key
   * with usage 'encrypt'.
   *
   * @example
   * ```ts
   * await pipeline(source, client.createEncryptStream(key, { name: 'AES-GCM', additionalData }), sink);
   * ```
   */
  createEncryptStream(key: CryptoKey, algorithm: AeadStreamParams | string): AeadStream {
    return new AeadStream(this.connection, key, algorithm, 'encrypt');
  }

  /**
   * A Transform that decrypts an AEAD stream, emitting each segment's
   * plaintext only after it was authenticated; fails with DecryptError if the
   * stream was modified, truncated, reordered or extended.
   */
  createDecryptStream(key: CryptoKey, algorithm: AeadStreamParams | string): AeadStream {
    return new AeadStream(this.connection, key, algorithm, 'decrypt');
  }

  /** Wait for pending requests, then close. The daemon releases every handle this connection made. */
  close(): Promise<void> {
    return this.connection.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** Connect to a running cryptod and complete the handshake. */
export async function connect(options: ConnectOptions = {}): Promise<Client> {
  const envToken = process.env.CRYPTOD_TOKEN;
  const token = options.token ?? (envToken === undefined || envToken === '' ? undefined : envToken);
  const conn = await DaemonConnection.open(targetOf(options), options.clientName ?? 'anonymous', token, { windows: options.windows !== false, coalesce: options.coalesce !== false });
  return new Client(conn);
}

function targetOf(options: ConnectOptions): DaemonTarget {
  if (options.url === undefined) {
    const location = resolveSocket(options.socket);
    assertOwnSocketDirectory(location);
    return location.path;
  }
  const m = /^tls:\/\/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$/.exec(options.url);
  const port = Number(m?.[2]);
  if (m === null || port < 1 || port > 65535) {
    throw new InvalidArgumentError(`expected url to be tls://HOST:PORT, got "${options.url}"`, { detail: { field: 'url' } });
  }
  if (options.tls === undefined) {
    throw new InvalidArgumentError('a tls:// url needs the tls option: { cert, key, ca } (the daemon accepts TCP with client certificates only)', {
      detail: { field: 'tls' },
    });
  }
  const host = m[1]!.startsWith('[') ? m[1]!.slice(1, -1) : m[1]!;
  return { host, port, tls: options.tls };
}
