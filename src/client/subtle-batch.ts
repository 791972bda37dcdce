/**
 * Batch forms of `client.subtle`'s digest, sign, verify, encrypt and decrypt
 * (docs/protocol.md §6.15): many items, one algorithm, one key; as many
 * request frames as the daemon's `maxBatchItems` and `maxFrame` (from HELLO)
 * ask for, pipelined on the connection, and one result per item, in order.
 *
 * Not WebCrypto: results are Uint8Arrays (views of the reply, no copy) and
 * errors are CryptodErrors, as for the managed-key batches
 * (src/client/managed.ts). An item that failed is a CryptodError in its
 * place; a failure of the whole request (unknown key, wrong algorithm or
 * usage) rejects the promise.
 */
import type { CborValue } from '../protocol/cbor.js';
import { errorFromWire, InvalidArgumentError } from '../protocol/errors.js';
import type { Schema } from '../protocol/schema.js';
import { DecryptBatch, DigestBatch, EncryptBatch, SignBatch, VerifyBatch, type ManagedItemError, type Message } from '../protocol/messages/index.js';
import type { DaemonConnection } from './connection.js';
import type { BatchResult } from './managed.js';
import { bytesOf, handleOf, wireAlgorithm, type AlgorithmIdentifier, type BufferSource, type CryptoKey } from './subtle.js';

/** What a daemon that does not say (an older one) is assumed to take: the managed batches' fixed maximum. */
const DEFAULT_MAX_BATCH_ITEMS = 4096;

/** One item of `verifyBatch`: the signature (or MAC) to check over `data`. */
export interface VerifyBatchItem {
  signature: BufferSource;
  data: BufferSource;
}

/** One item of `encryptBatch` / `decryptBatch`: each item has its own `iv`; `additionalData` overrides the algorithm's. */
export interface CipherBatchItem {
  data: BufferSource;
  iv: BufferSource;
  additionalData?: BufferSource;
}

type Fixed = { [field: string]: CborValue };
type ItemOut<T> = T | ManagedItemError;
type BatchMessage<I, T> = Message<Schema<unknown, Fixed & { items: I[] }, boolean>, Schema<{ items: Array<ItemOut<T>> }, unknown, boolean>>;

export class SubtleBatches {
  readonly #conn: DaemonConnection;

  constructor(conn: DaemonConnection) {
    this.#conn = conn;
  }

  digest(algorithm: AlgorithmIdentifier, data: readonly BufferSource[]): Promise<Array<BatchResult<Uint8Array>>> {
    const items = each(data, (d, i) => ({ data: bytesOf(d, `data[${i}]`) }));
    return this.#run(DigestBatch, { algorithm: wireAlgorithm(algorithm) }, items);
  }

  sign(algorithm: AlgorithmIdentifier, key: CryptoKey, data: readonly BufferSource[]): Promise<Array<BatchResult<Uint8Array>>> {
    const items = each(data, (d, i) => ({ data: bytesOf(d, `data[${i}]`) }));
    return this.#run(SignBatch, { algorithm: wireAlgorithm(algorithm), key: handleOf(key, 'key') }, items);
  }

  verify(algorithm: AlgorithmIdentifier, key: CryptoKey, items: readonly VerifyBatchItem[]): Promise<Array<BatchResult<boolean>>> {
    const wire = each(items, (it, i) => ({ signature: bytesOf(it.signature, `items[${i}].signature`), data: bytesOf(it.data, `items[${i}].data`) }));
    return this.#run(VerifyBatch, { algorithm: wireAlgorithm(algorithm), key: handleOf(key, 'key') }, wire);
  }

  encrypt(algorithm: AlgorithmIdentifier, key: CryptoKey, items: readonly CipherBatchItem[]): Promise<Array<BatchResult<Uint8Array>>> {
    return this.#run(EncryptBatch, { algorithm: wireAlgorithm(algorithm), key: handleOf(key, 'key') }, cipherItems(items));
  }

  decrypt(algorithm: AlgorithmIdentifier, key: CryptoKey, items: readonly CipherBatchItem[]): Promise<Array<BatchResult<Uint8Array>>> {
    return this.#run(DecryptBatch, { algorithm: wireAlgorithm(algorithm), key: handleOf(key, 'key') }, cipherItems(items));
  }

  /**
   * Send `items` in frames of at most the daemon's `maxBatchItems` items and
   * its `maxFrame` bytes, all at once (pipelined), and join the replies in
   * order. No items: no request. An item too large for a frame on its own
   * goes alone and fails the call with FRAME_TOO_LARGE, as its single form
   * would; so does any other whole-request failure of any frame.
   */
  async #run<I extends Fixed, T>(message: BatchMessage<I, T>, fixed: Fixed, items: I[]): Promise<Array<BatchResult<T>>> {
    if (items.length === 0) return [];
    const limits = this.#conn.hello.limits;
    const maxItems = limits.maxBatchItems ?? DEFAULT_MAX_BATCH_ITEMS;
    const room = limits.maxFrame - FRAME_SLACK - approxSize(fixed);
    const frames: Array<Promise<{ items: Array<ItemOut<T>> }>> = [];
    const counts: number[] = [];
    let start = 0;
    while (start < items.length) {
      let end = start;
      let bytes = 0;
      while (end < items.length && end - start < maxItems) {
        bytes += approxSize(items[end]!);
        if (bytes > room && end > start) break;
        end++;
      }
      const part = start === 0 && end === items.length ? items : items.slice(start, end);
      frames.push(this.#conn.call(message, { ...fixed, items: part } as Fixed & { items: I[] }));
      counts.push(end - start);
      start = end;
    }
    // Promise.all: every frame's failure is handled, the first one is reported.
    const replies = await Promise.all(frames);
    const out: Array<BatchResult<T>> = [];
    for (let f = 0; f < replies.length; f++) {
      const reply = replies[f]!.items;
      if (reply.length !== counts[f]) throw new InvalidArgumentError('the daemon replied without one result per batch item');
      for (const x of reply) out.push(failed(x) ? errorFromWire(x.error.code, x.error.message, x.error.detail) : x);
    }
    return out;
  }
}

/** Room left in a frame for the header, the map and array heads of the request: generous, CBOR heads are small. */
const FRAME_SLACK = 1024;

/** An upper bound of a flat map's CBOR size: its byte strings' lengths, and 16 bytes per field for keys and heads. */
function approxSize(v: Fixed): number {
  let n = 16;
  for (const k in v) {
    const x = v[k];
    n += 16 + (x instanceof Uint8Array ? x.length : typeof x === 'string' ? x.length * 3 : x !== null && typeof x === 'object' ? approxSize(x as Fixed) : 0);
  }
  return n;
}

function each<A, B>(list: readonly A[], f: (a: A, i: number) => B): B[] {
  if (!Array.isArray(list)) throw new InvalidArgumentError('expected the batch items to be an array', { detail: { field: 'items' } });
  return list.map(f);
}

function cipherItems(items: readonly CipherBatchItem[]): Array<{ data: Uint8Array; iv: Uint8Array; additionalData?: Uint8Array }> {
  return each(items, (it, i) => ({
    data: bytesOf(it.data, `items[${i}].data`),
    iv: bytesOf(it.iv, `items[${i}].iv`),
    additionalData: it.additionalData === undefined ? undefined : bytesOf(it.additionalData, `items[${i}].additionalData`),
  }));
}

/** A result is a byte string or a boolean; only an item error is a map. */
function failed<T>(x: ItemOut<T>): x is ManagedItemError {
  return x !== null && typeof x === 'object' && !(x instanceof Uint8Array) && 'error' in x;
}
