/**
 * Multi-part contexts (docs/protocol.md §6.8, §6.9): HASH_CREATE,
 * HMAC_CREATE, CONTEXT_UPDATE, CONTEXT_FINAL, CIPHER_CREATE, CIPHER_UPDATE,
 * CIPHER_FINAL.
 */
import { Op } from '../ops.js';
import { bytes, cbor, handle, literal, map, optional, uint } from '../schema.js';
import { algorithm, hashAlgorithm } from './common.js';
import { message } from './message.js';

const created = map({ handle: handle() }, { open: true });

export const HashCreate = message(Op.HASH_CREATE, map({ algorithm: hashAlgorithm }), created);
export const HmacCreate = message(Op.HMAC_CREATE, map({ key: handle() }), created);
/**
 * A CONTEXT_UPDATE or CIPHER_UPDATE whose `data` is at most this long is done
 * before the daemon reads the connection's next frame (docs/protocol.md §6.8):
 * a client may pipeline such updates on one context — they run in order and
 * never find it BUSY. A longer one is worked on in slices of this size with
 * other connections served in between, and the context stays busy until its reply.
 */
export const INLINE_UPDATE = 256 * 1024;

export const ContextUpdate = message(Op.CONTEXT_UPDATE, map({ handle: handle(), data: bytes() }), cbor());
export const ContextFinal = message(Op.CONTEXT_FINAL, map({ handle: handle() }), bytes());

export const CipherCreate = message(
  Op.CIPHER_CREATE,
  map({
    key: handle(),
    mode: literal(['encrypt', 'decrypt']),
    algorithm: algorithm({ additionalData: optional(bytes()), segmentSize: optional(uint()) }),
  }),
  // encrypt: handle, header and segmentSize; decrypt: handle alone.
  map({ handle: handle(), header: optional(bytes()), segmentSize: optional(uint()) }, { open: true }),
);
/** The reply is a byte string, empty when no segment was completed. */
export const CipherUpdate = message(Op.CIPHER_UPDATE, map({ handle: handle(), data: bytes() }), bytes());
export const CipherFinal = message(Op.CIPHER_FINAL, map({ handle: handle(), data: optional(bytes()) }), bytes());
