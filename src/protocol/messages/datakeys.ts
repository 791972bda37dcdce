/**
 * Data keys (docs/protocol.md §6.12): envelope encryption under a managed
 * KEK (an aes256-kwp key). A data key lives with the application only in
 * wrapped form (src/protocol/datakey-format.ts); every operation hands it
 * back, and the daemon unwraps it once and serves the rest from its cache.
 */
import { Op } from '../ops.js';
import { MAX_CONTEXT } from '../datakey-format.js';
import { array, bool, bytes, either, map, optional, text, uint, type Fields } from '../schema.js';
import { message } from './message.js';
import { cryptoKeyDescription } from './common.js';
import { MAX_BATCH, itemError } from './managed.js';

const u32 = uint(1, 0xffff_ffff);
const wrappedKey = bytes({ min: 1, max: 64 * 1024 });

export const DataKeyGenerate = message(
  Op.DATAKEY_GENERATE,
  map({ kek: text(), length: optional(uint(16, 32)), aad: optional(bytes({ max: MAX_CONTEXT })), plaintext: optional(bool()) }),
  map({ wrappedKey: bytes(), kekVersion: u32, plaintext: optional(bytes()) }, { open: true }),
);

/** A data operation: one item beside `wrappedKey`, or `{ wrappedKey, items: [item…] }` (one data key, many items). */
function dataOp<F extends Fields, R extends Fields>(op: (typeof Op)[keyof typeof Op], item: F, result: R) {
  const resultSchema = map(result, { open: true });
  const single = message(op, map({ wrappedKey, ...item }), resultSchema);
  const batch = message(
    op,
    map({ wrappedKey, items: array(map(item), { max: MAX_BATCH }) }),
    map({ items: array(either((v) => v.error !== undefined, itemError, resultSchema)) }, { open: true }),
  );
  return {
    ...message(op, either((v) => v.items !== undefined, batch.args, single.args), either((v) => v.items !== undefined, batch.result, resultSchema)),
    single,
    batch,
  };
}

export const DataKeyEncrypt = dataOp(Op.DATAKEY_ENCRYPT, { plaintext: bytes(), aad: optional(bytes()) }, { ciphertext: bytes() });
export const DataKeyDecrypt = dataOp(Op.DATAKEY_DECRYPT, { ciphertext: bytes(), aad: optional(bytes()) }, { plaintext: bytes() });
export const DataKeyRewrap = message(Op.DATAKEY_REWRAP, map({ wrappedKey }), map({ wrappedKey: bytes(), kekVersion: u32, previousVersion: u32 }, { open: true }));
export const DataKeyOpen = message(Op.DATAKEY_OPEN, map({ wrappedKey }), map({ wrappedKey: bytes(), kekVersion: u32, rewrapped: bool() }, { open: true }));
/**
 * The data key as a client-owned, non-extractable AES-GCM key node (usages
 * encrypt and decrypt), for the AEAD streams of §6.9: inputs of any size
 * under a data key. Released with the handle or the connection.
 */
export const DataKeyKey = message(Op.DATAKEY_KEY, map({ wrappedKey }), cryptoKeyDescription);
/**
 * The plaintext of a wrapped data key, for a holder of the separate
 * `datakey-plaintext` right (Vault's transit/decrypt of a datakey ciphertext).
 * The reply is sensitive: the daemon zeroes its frame once written.
 */
export const DataKeyUnwrap = message(Op.DATAKEY_UNWRAP, map({ wrappedKey }), map({ plaintext: bytes(), kekVersion: u32 }, { open: true }));
