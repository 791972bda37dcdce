/**
 * Batch forms of the client-owned key operations (docs/protocol.md §6.15):
 * DIGEST, SIGN, VERIFY, ENCRYPT, DECRYPT with `items` instead of the one
 * item's fields. Same op codes as the single forms; the daemon tells them
 * apart by `items`, as for the managed data operations (§6.11).
 *
 *   single:  { algorithm, key, data }                  → bytes
 *   batch:   { algorithm, key, items: [{ data }, …] }  → { items: [bytes | { error }, …] }
 *
 * What the request names once (algorithm, key) is checked once; each item
 * carries only what differs per item. An item's result is what the single
 * form returns for it; an item that fails is `{ error }` in its place
 * (the managed batches' item error, src/protocol/messages/managed.ts).
 */
import { Op } from '../ops.js';
import { array, bool, bytes, handle, map, oneOf, optional } from '../schema.js';
import { algorithm, hashAlgorithm } from './common.js';
import { itemError } from './managed.js';
import { message } from './message.js';
import { cipherParams, signParams } from './subtle.js';

/** A result that is a byte string, or the item's error. */
const bytesOrError = map({ items: array(oneOf(bytes(), itemError)) }, { open: true });

export const DigestBatch = message(Op.DIGEST, map({ algorithm: hashAlgorithm, items: array(map({ data: bytes() })) }), bytesOrError);

/** HMAC, Ed25519, Ed448, ECDSA: the synchronous signatures (RSA signs on the thread pool: pipeline single SIGNs). */
export const SignBatch = message(Op.SIGN, map({ algorithm: algorithm(signParams), key: handle(), items: array(map({ data: bytes() })) }), bytesOrError);

export const VerifyBatch = message(
  Op.VERIFY,
  map({ algorithm: algorithm(signParams), key: handle(), items: array(map({ signature: bytes(), data: bytes() })) }),
  map({ items: array(oneOf(bool(), itemError)) }, { open: true }),
);

/**
 * AES-GCM and ChaCha20-Poly1305. Every item brings its own `iv` (the
 * algorithm's `iv` is refused: one iv for many encryptions under one key
 * breaks both AEADs); `additionalData` is the item's, else the algorithm's.
 */
const cipherItem = map({ data: bytes(), iv: bytes(), additionalData: optional(bytes()) });
export const EncryptBatch = message(Op.ENCRYPT, map({ algorithm: algorithm(cipherParams), key: handle(), items: array(cipherItem) }), bytesOrError);
export const DecryptBatch = message(Op.DECRYPT, map({ algorithm: algorithm(cipherParams), key: handle(), items: array(cipherItem) }), bytesOrError);
