/**
 * Multi-part contexts (docs/protocol.md §6.8, §6.9): HASH_CREATE,
 * HMAC_CREATE, CONTEXT_UPDATE, CONTEXT_FINAL, CIPHER_CREATE, CIPHER_UPDATE,
 * CIPHER_FINAL; and the shared-memory windows that carry large updates
 * (§6.16): WINDOW_OFFER, WINDOW_ATTACH.
 */
import { Op } from '../ops.js';
import { bytes, cbor, either, handle, literal, map, oneOf, optional, text, uint } from '../schema.js';
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
/**
 * The same for an update whose input is a region of a shared-memory window
 * (§6.16): no frame carries those bytes, so the per-request cost is paid per
 * region, and a larger one is worth it; at most ~0.6 ms of hashing holds the
 * event loop.
 */
export const INLINE_REGION = 1024 * 1024;

/**
 * `data` inline, or a region of a shared-memory window (§6.16): `{ handle,
 * window, offset, length }` — the bytes the daemon reads from the window,
 * which the client must not change until the reply.
 */
export const windowRegion = { window: handle(), offset: uint(), length: uint() };
export const ContextUpdate = message(
  Op.CONTEXT_UPDATE,
  either((v) => v.window !== undefined, map({ handle: handle(), ...windowRegion }), map({ handle: handle(), data: bytes() })),
  cbor(),
);
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
/**
 * `{ handle, data }` → bytes: the output, empty when no segment was completed.
 * `{ handle, window, offset, length, outputOffset, outputLength }` → `{ length }`:
 * the input is a region of a shared-memory window (§6.16) and the output is
 * written into the window at `outputOffset` (at most `outputLength` bytes;
 * it may overlap the input, which is read first).
 */
export const CipherUpdate = message(
  Op.CIPHER_UPDATE,
  either(
    (v) => v.window !== undefined,
    map({ handle: handle(), ...windowRegion, outputOffset: uint(), outputLength: uint() }),
    map({ handle: handle(), data: bytes() }),
  ),
  oneOf(bytes(), map({ length: uint() }, { open: true })),
);
export const CipherFinal = message(Op.CIPHER_FINAL, map({ handle: handle(), data: optional(bytes()) }), bytes());

/**
 * `{ size }` → `{ socket, offer }`: the daemon expects a memory file of
 * `size` bytes on the abstract Unix socket `socket` ("@name"), sent with the
 * `offer` bytes (§6.16). Only on a Unix-socket connection with peer credentials.
 */
export const WindowOffer = message(Op.WINDOW_OFFER, map({ size: uint(1) }), map({ socket: text({ maxLength: 108 }), offer: bytes({ min: 32, max: 32 }) }, { open: true }));
/** `{ offer }` → `{ handle, size }`: the window the client sent for `offer`, as a node of its own. */
export const WindowAttach = message(Op.WINDOW_ATTACH, map({ offer: bytes({ min: 32, max: 32 }) }), map({ handle: handle(), size: uint() }, { open: true }));
