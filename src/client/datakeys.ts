/**
 * Data keys from the client (`client.dataKeys`): envelope encryption under a
 * managed KEK (docs/protocol.md §6.12, formats in docs/formats.md "Data keys").
 *
 * The application stores the wrapped key beside its data (one per tenant,
 * database or object) and hands it back with every operation; the daemon
 * unwraps it once and serves later requests from its cache.
 *
 * @example
 *   const { wrappedKey } = await client.dataKeys.generate({ kek: 'tenants' });
 *   const ct = await client.dataKeys.encrypt(wrappedKey, data, { aad });
 *   const pt = await client.dataKeys.decrypt(wrappedKey, ct, { aad });
 *   const { wrappedKey: current, rewrapped } = await client.dataKeys.open(wrappedKey); // after a KEK rotation
 */
import { errorFromWire, InvalidArgumentError, type CryptodError } from '../protocol/errors.js';
import { DataKeyDecrypt, DataKeyEncrypt, DataKeyGenerate, DataKeyKey, DataKeyOpen, DataKeyRewrap, DataKeyUnwrap } from '../protocol/messages/datakeys.js';
import { AeadStream, type AeadStreamParams } from './streams.js';
import type { DaemonConnection } from './connection.js';
import { bytesOf, CryptoKey, type BufferSource } from './subtle.js';

export interface DataKeyGenerateOptions {
  /** The KEK: a managed aes256-kwp key on which this client holds `datakey`. */
  kek: string;
  /** 16, 24 or 32 bytes (AES-128/192/256-GCM); default 32. */
  length?: number;
  /** Context kept (authenticated, not secret) in the wrapped key, e.g. the tenant it belongs to; at most 1 KiB. */
  aad?: BufferSource;
  /** Also return the key itself; needs the `datakey-plaintext` right on the KEK. */
  plaintext?: boolean;
}

export interface GeneratedDataKey {
  wrappedKey: Uint8Array;
  kekVersion: number;
  /** Only with `plaintext: true`; zero it when done (`fill(0)`). */
  plaintext?: Uint8Array;
}

export interface DataItem {
  data: BufferSource;
  aad?: BufferSource;
}

/** One result of a batch: the value, or the error of that item. */
export type DataKeyBatchResult<T> = T | CryptodError;

export class DataKeysClient {
  readonly #conn: DaemonConnection;

  /** @internal */
  constructor(conn: DaemonConnection) {
    this.#conn = conn;
  }

  /** A new data key wrapped by the KEK's current version. */
  async generate(options: DataKeyGenerateOptions): Promise<GeneratedDataKey> {
    if (options === null || typeof options !== 'object' || typeof options.kek !== 'string') {
      throw new InvalidArgumentError('expected dataKeys.generate({ kek, length?, aad?, plaintext? }) with the KEK name as text');
    }
    const r = await this.#conn.call(DataKeyGenerate, {
      kek: options.kek,
      length: options.length,
      aad: options.aad === undefined ? undefined : bytesOf(options.aad, 'aad'),
      plaintext: options.plaintext,
    }, { sensitiveReply: options.plaintext === true });
    return r.plaintext === undefined ? { wrappedKey: r.wrappedKey, kekVersion: r.kekVersion } : { wrappedKey: r.wrappedKey, kekVersion: r.kekVersion, plaintext: r.plaintext };
  }

  /** AES-GCM under the data key; `aad` must be given again, identical, to decrypt. */
  async encrypt(wrappedKey: BufferSource, data: BufferSource, options: { aad?: BufferSource } = {}): Promise<Uint8Array> {
    const r = await this.#conn.call(DataKeyEncrypt.single, { wrappedKey: bytesOf(wrappedKey, 'wrappedKey'), plaintext: bytesOf(data, 'data'), aad: aadOf(options.aad) });
    return r.ciphertext;
  }

  async decrypt(wrappedKey: BufferSource, ciphertext: BufferSource, options: { aad?: BufferSource } = {}): Promise<Uint8Array> {
    const r = await this.#conn.call(DataKeyDecrypt.single, { wrappedKey: bytesOf(wrappedKey, 'wrappedKey'), ciphertext: bytesOf(ciphertext, 'ciphertext'), aad: aadOf(options.aad) });
    return r.plaintext;
  }

  /** One request, one data key, one result per item (an item that failed is a CryptodError in its place). */
  async encryptBatch(wrappedKey: BufferSource, items: DataItem[]): Promise<Array<DataKeyBatchResult<Uint8Array>>> {
    if (!Array.isArray(items)) throw new InvalidArgumentError('expected the batch items to be an array');
    const r = await this.#conn.call(DataKeyEncrypt.batch, {
      wrappedKey: bytesOf(wrappedKey, 'wrappedKey'),
      items: items.map((i) => ({ plaintext: bytesOf(i.data, 'data'), aad: aadOf(i.aad) })),
    });
    return results(r.items, items.length, (x) => (x as { ciphertext: Uint8Array }).ciphertext);
  }

  async decryptBatch(wrappedKey: BufferSource, items: DataItem[]): Promise<Array<DataKeyBatchResult<Uint8Array>>> {
    if (!Array.isArray(items)) throw new InvalidArgumentError('expected the batch items to be an array');
    const r = await this.#conn.call(DataKeyDecrypt.batch, {
      wrappedKey: bytesOf(wrappedKey, 'wrappedKey'),
      items: items.map((i) => ({ ciphertext: bytesOf(i.data, 'data'), aad: aadOf(i.aad) })),
    });
    return results(r.items, items.length, (x) => (x as { plaintext: Uint8Array }).plaintext);
  }

  /**
   * The data key as a non-extractable AES-GCM key of this connection, for
   * the AEAD streams (`client.createEncryptStream(key, 'AES-GCM')`): inputs
   * of any size in the segmented format. Release it when done (`using`).
   */
  async key(wrappedKey: BufferSource): Promise<CryptoKey> {
    return new CryptoKey(this.#conn, await this.#conn.call(DataKeyKey, { wrappedKey: bytesOf(wrappedKey, 'wrappedKey') }));
  }

  /**
   * A Transform that encrypts a stream of any size under the data key
   * (AES-GCM, docs/formats.md "AEAD stream format"); the key node it uses is
   * released when the stream ends or is destroyed.
   *
   * @example
   *   await pipeline(createReadStream('big.bin'), await client.dataKeys.createEncryptStream(wrappedKey), createWriteStream('big.cda'));
   */
  async createEncryptStream(wrappedKey: BufferSource, params: Omit<AeadStreamParams, 'name'> = {}): Promise<AeadStream> {
    return this.#stream(wrappedKey, params, 'encrypt');
  }

  /** The reverse of createEncryptStream: each segment's plaintext only after it was authenticated. */
  async createDecryptStream(wrappedKey: BufferSource, params: Omit<AeadStreamParams, 'name'> = {}): Promise<AeadStream> {
    return this.#stream(wrappedKey, params, 'decrypt');
  }

  async #stream(wrappedKey: BufferSource, params: Omit<AeadStreamParams, 'name'>, mode: 'encrypt' | 'decrypt'): Promise<AeadStream> {
    const key = await this.key(wrappedKey);
    const stream = new AeadStream(this.#conn, key, { ...params, name: 'AES-GCM' }, mode);
    stream.once('close', () => void key[Symbol.asyncDispose]().catch(() => undefined));
    return stream;
  }

  /** The same data key under the KEK's current version; the key itself never leaves the daemon. */
  async rewrap(wrappedKey: BufferSource): Promise<Uint8Array> {
    return (await this.#conn.call(DataKeyRewrap, { wrappedKey: bytesOf(wrappedKey, 'wrappedKey') })).wrappedKey;
  }

  /**
   * "Open a database, rewrap if stale": checks that the key unwraps (and
   * warms the cache); returns it rewrapped under the current KEK version when
   * an older one wrapped it — store the new one when `rewrapped` is true.
   */
  async open(wrappedKey: BufferSource): Promise<{ wrappedKey: Uint8Array; rewrapped: boolean }> {
    const r = await this.#conn.call(DataKeyOpen, { wrappedKey: bytesOf(wrappedKey, 'wrappedKey') });
    return { wrappedKey: r.wrappedKey, rewrapped: r.rewrapped };
  }

  /**
   * The plaintext of a wrapped data key: needs `datakey-plaintext` on its
   * KEK as well as `datakey`. Zero the bytes when done with them.
   *
   *   const key = await client.dataKeys.unwrap(wrappedKey);
   */
  async unwrap(wrappedKey: BufferSource): Promise<Uint8Array> {
    return (await this.#conn.call(DataKeyUnwrap, { wrappedKey: bytesOf(wrappedKey, 'wrappedKey') }, { sensitiveReply: true })).plaintext;
  }
}

function aadOf(aad: BufferSource | undefined): Uint8Array | undefined {
  return aad === undefined ? undefined : bytesOf(aad, 'aad');
}

type ItemError = { error: { code: string; message: string; detail?: Record<string, unknown> | undefined } };

function results<T>(out: object[], expected: number, pick: (r: object) => T): Array<DataKeyBatchResult<T>> {
  if (out.length !== expected) throw new InvalidArgumentError('the daemon replied without one result per batch item');
  return out.map((x) => {
    if ('error' in x && x.error !== undefined) {
      const e = (x as ItemError).error;
      return errorFromWire(e.code, e.message, e.detail);
    }
    return pick(x);
  });
}
