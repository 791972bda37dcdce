/**
 * `client.getRandomValues(array)`: WebCrypto's `crypto.getRandomValues`, with
 * the bytes made by the daemon. The same rules as Node's own, so code can
 * switch between the two:
 *
 *   not an integer-type TypedArray (Float32Array, DataView, a plain object…)
 *       ─▶ DOMException "TypeMismatchError"
 *   more than 65,536 bytes ─▶ DOMException "QuotaExceededError"
 *   otherwise ─▶ the array itself, filled in place
 *
 * The one difference: it returns a promise (a round trip to the daemon).
 */
import { MAX_RANDOM_BYTES, Random } from '../protocol/messages/random.js';
import type { DaemonConnection } from './connection.js';

/** The integer-type TypedArrays WebCrypto's getRandomValues accepts. */
export type IntegerTypedArray =
  | Int8Array | Uint8Array | Uint8ClampedArray | Int16Array | Uint16Array | Int32Array | Uint32Array | BigInt64Array | BigUint64Array;

const INTEGER_ARRAYS: readonly (abstract new (...args: never[]) => IntegerTypedArray)[] = [
  Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, BigInt64Array, BigUint64Array,
];

export async function getRandomValues<T extends IntegerTypedArray>(conn: DaemonConnection, array: T): Promise<T> {
  if (!INTEGER_ARRAYS.some((C) => array instanceof C)) {
    throw new DOMException('The data argument must be an integer-type TypedArray', 'TypeMismatchError');
  }
  if (array.byteLength > MAX_RANDOM_BYTES) {
    throw new DOMException(`The requested length exceeds ${MAX_RANDOM_BYTES.toLocaleString('en-US')} bytes`, 'QuotaExceededError');
  }
  if (array.byteLength === 0) return array;
  const bytes = await conn.call(Random, { length: array.byteLength });
  const target = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
  try {
    // A daemon that answers with the wrong length is a protocol fault, not fewer random bytes.
    if (bytes.length !== target.length) throw new RangeError(`the daemon returned ${bytes.length} random bytes, ${target.length} were asked for`);
    target.set(bytes);
  } finally {
    bytes.fill(0);
  }
  return array;
}
