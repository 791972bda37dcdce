/**
 * RANDOM (docs/protocol.md §6.13): `length` bytes from the daemon's CSPRNG.
 *
 * The wire maximum is WebCrypto's per-call maximum for getRandomValues
 * (65,536 bytes): a client that mirrors that API needs one request per call,
 * and a larger request would only let one client hold the daemon's event
 * loop while the bytes are made.
 */
import { Op } from '../ops.js';
import { bytes, map, uint } from '../schema.js';
import { message } from './message.js';

/** Most bytes one RANDOM request returns (WebCrypto's getRandomValues quota). */
export const MAX_RANDOM_BYTES = 65536;

export const Random = message(Op.RANDOM, map({ length: uint(0, MAX_RANDOM_BYTES) }), bytes({ max: MAX_RANDOM_BYTES }));
