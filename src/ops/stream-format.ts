/**
 * The cryptod AEAD stream format, version 1 — specified byte by byte in
 * docs/formats.md "AEAD stream format". An online AEAD in the STREAM
 * construction (Hoang, Reyhanitabar, Rogaway, Vizár, "Online
 * Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance", CRYPTO
 * 2015, §7), laid out like Tink's AES-GCM-HKDF streaming AEAD:
 *
 *   header, 49 bytes
 *   ┌────────┬─────┬─────┬──────────────┬───────────┬──────────────┐
 *   │ "CDAS" │ 01  │ alg │ segment size │ salt      │ nonce prefix │
 *   │ 4      │ 1   │ 1   │ u32 BE  4    │ 32        │ 7            │
 *   └────────┴─────┴─────┴──────────────┴───────────┴──────────────┘
 *   segment i: AEAD(subkey, nonce_i, aad, plaintext_i) = ciphertext_i ‖ tag (16)
 *     subkey  = HKDF-SHA-256(key, salt, "cryptod AEAD stream v1 " ‖ cipher label)
 *     nonce_i = nonce prefix ‖ u32 BE i ‖ (0x01 if last segment else 0x00)
 *     aad     = header ‖ additionalData
 *   every segment but the last holds exactly `segment size` plaintext bytes.
 *
 * The per-stream subkey means nonces never repeat across streams under one
 * key; the counter orders segments; the last-segment flag in the nonce makes
 * truncation and extension fail authentication; the header in the AAD binds
 * segment size and version. Both ends hold back one segment until they know
 * whether more follows, so a sealer or opener buffers at most one segment.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomFillSync, type CipherGCMTypes } from 'node:crypto';
import { DecryptError, InvalidArgumentError, OperationError, UnsupportedError } from '../protocol/errors.js';
import { nativeSeal } from './native-crypto.js';
import type { NodeValue } from '../state/data-manager.js';

// The header's fixed layout is shared with the client (src/protocol/stream-header.ts).
export {
  STREAM_MAGIC as MAGIC, STREAM_VERSION as VERSION, STREAM_HEADER_LENGTH as HEADER_LENGTH, STREAM_SALT_LENGTH as SALT_LENGTH,
  STREAM_PREFIX_LENGTH as PREFIX_LENGTH, STREAM_TAG_LENGTH as TAG_LENGTH, STREAM_SEGMENT_SIZE_OFFSET as SEGMENT_SIZE_OFFSET,
  MIN_SEGMENT_SIZE, MAX_SEGMENT_SIZE, DEFAULT_SEGMENT_SIZE,
} from '../protocol/stream-header.js';
import { STREAM_HEADER_LENGTH as HEADER_LENGTH, STREAM_SEGMENT_SIZE_OFFSET as SEGMENT_SIZE_OFFSET, STREAM_MAGIC as MAGIC, STREAM_PREFIX_LENGTH as PREFIX_LENGTH, STREAM_SALT_LENGTH as SALT_LENGTH, STREAM_TAG_LENGTH as TAG_LENGTH, STREAM_VERSION as VERSION, MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE } from '../protocol/stream-header.js';
/** Charged per stream on top of its buffers: nonce, subkey, header and the objects around them. */
const STREAM_OVERHEAD = 1024;
/** The segment counter is a u32: at most 2^32 segments per stream. */
const MAX_SEGMENTS = 0x1_0000_0000;

/** Algorithm ids of the header's `alg` byte. */
export const STREAM_CIPHERS = {
  1: { label: 'AES-128-GCM', cipher: 'aes-128-gcm', keyLength: 16 },
  2: { label: 'AES-192-GCM', cipher: 'aes-192-gcm', keyLength: 24 },
  3: { label: 'AES-256-GCM', cipher: 'aes-256-gcm', keyLength: 32 },
  4: { label: 'ChaCha20-Poly1305', cipher: 'chacha20-poly1305', keyLength: 32 },
} as const;
export type StreamCipherId = keyof typeof STREAM_CIPHERS;

/** The id for a key's node:crypto cipher (from `aeadCipherOf`). */
export function streamCipherId(cipher: string): StreamCipherId {
  for (const [id, c] of Object.entries(STREAM_CIPHERS)) if (c.cipher === cipher) return Number(id) as StreamCipherId;
  throw new UnsupportedError(`no AEAD stream cipher for ${cipher}`);
}

/** subkey = HKDF-SHA-256(IKM = key, salt, info = "cryptod AEAD stream v1 " ‖ label) (RFC 5869 §2). */
function deriveSubkey(key: Buffer, salt: Uint8Array, id: StreamCipherId): Buffer {
  const c = STREAM_CIPHERS[id];
  // hkdfSync returns a fresh ArrayBuffer outside the Buffer pool; the view wipes it on dispose.
  return Buffer.from(hkdfSync('sha256', key, salt, `cryptod AEAD stream v1 ${c.label}`, c.keyLength));
}

/** A stream's output that does not fit the output region its request gave (CIPHER_UPDATE through a window). */
export function outputTooSmall(needed: number, length: number): InstanceType<typeof InvalidArgumentError> {
  return new InvalidArgumentError(`the output (${needed} bytes) does not fit the output region of ${length} bytes; give at least the input's length plus one segment and its tags`, {
    detail: { field: 'outputLength', needed, length },
  });
}

/** State shared by sealer and opener: subkey, AAD, nonce, counter, one held-back segment. */
abstract class StreamState implements NodeValue {
  protected subkey: Buffer | null = null;
  protected aad: Buffer | null = null;
  protected readonly nonce = Buffer.alloc(12);
  protected counter = 0;
  protected pending: Buffer | null = null;
  protected fill = 0;
  protected cipher: CipherGCMTypes = 'aes-256-gcm';
  protected id: StreamCipherId = 3;

  protected begin(header: Buffer, id: StreamCipherId, key: Buffer, additionalData: Uint8Array | undefined, held: number): void {
    this.cipher = STREAM_CIPHERS[id].cipher as CipherGCMTypes; // node's ChaCha20-Poly1305 takes the same calls
    this.id = id;
    this.subkey = deriveSubkey(key, header.subarray(10, 10 + SALT_LENGTH), id);
    const ad = additionalData ?? Buffer.alloc(0);
    this.aad = Buffer.alloc(HEADER_LENGTH + ad.length);
    header.copy(this.aad, 0);
    this.aad.set(ad, HEADER_LENGTH);
    header.copy(this.nonce, 0, 10 + SALT_LENGTH, HEADER_LENGTH);
    this.pending = Buffer.alloc(held);
  }

  /** nonce_i = prefix ‖ u32 BE i ‖ last flag; refuses a 2^32nd segment. */
  protected nextNonce(last: boolean): Buffer {
    if (this.counter >= MAX_SEGMENTS) throw new OperationError('the AEAD stream reached its limit of 2^32 segments; start a new stream');
    this.nonce.writeUInt32BE(this.counter, PREFIX_LENGTH);
    this.nonce[11] = last ? 1 : 0;
    return this.nonce;
  }

  /**
   * Hand `data` to `segment` one held-back unit (`unit` bytes) at a time, each
   * only once at least one more byte follows it; keep the rest (≤ unit bytes)
   * in `pending`. Whole units in `data` are used in place, not copied.
   */
  protected feed(data: Uint8Array, unit: number, segment: (bytes: Uint8Array) => void): void {
    const pending = this.pending!;
    let off = 0;
    while (this.fill + (data.length - off) > unit) {
      if (this.fill === 0) {
        segment(data.subarray(off, off + unit));
        off += unit;
      } else {
        const take = unit - this.fill;
        pending.set(data.subarray(off, off + take), this.fill);
        off += take;
        this.fill = 0;
        segment(pending);
      }
    }
    pending.set(data.subarray(off), this.fill);
    this.fill += data.length - off;
  }

  dispose(): void {
    this.subkey?.fill(0);
    this.pending?.fill(0);
    this.aad?.fill(0);
    this.subkey = null;
    this.pending = null;
    this.aad = null;
    // node:crypto copies the subkey into each cipher context (OpenSSL memory);
    // those are freed, and cleansed by OpenSSL, when the collector frees them.
  }
}

/** The encrypting end: `update` and `final` append sealed segments to `out`. */
export class StreamSealer extends StreamState {
  readonly header: Buffer;
  readonly segmentSize: number;
  /** Context memory budget: the held-back segment and the AAD (header ‖ additionalData). */
  readonly memoryCost: number;

  constructor(id: StreamCipherId, key: Buffer, segmentSize: number, additionalData: Uint8Array | undefined) {
    super();
    this.segmentSize = segmentSize;
    this.header = Buffer.alloc(HEADER_LENGTH);
    MAGIC.copy(this.header, 0);
    this.header[4] = VERSION;
    this.header[5] = id;
    this.header.writeUInt32BE(segmentSize, SEGMENT_SIZE_OFFSET);
    randomFillSync(this.header, 10, SALT_LENGTH + PREFIX_LENGTH);
    this.begin(this.header, id, key, additionalData, segmentSize);
    this.memoryCost = STREAM_OVERHEAD + segmentSize + HEADER_LENGTH + (additionalData?.length ?? 0);
  }

  update(data: Uint8Array, out: Buffer[]): void {
    this.feed(data, this.segmentSize, (pt) => this.#seal(pt, false, out));
  }

  /** Seal what is held as the last segment (empty only for an empty stream). */
  final(out: Buffer[]): void {
    this.#seal(this.pending!.subarray(0, this.fill), true, out);
    this.pending!.fill(0, 0, this.fill);
    this.fill = 0;
  }

  /**
   * As {@link update}, with the sealed segments written into `dst` from `at`
   * (a shared-memory window's output region of `room` bytes, which must not
   * overlap `data`) by the native addon, without a buffer per segment;
   * returns the bytes written. Null when the addon is not there: use update.
   * Output that would not fit is refused before anything changes.
   */
  updateInto(data: Uint8Array, dst: Uint8Array, at: number, room: number): number | null {
    const seal = nativeSeal();
    if (seal === null) return null;
    const unit = this.segmentSize;
    const total = this.fill + data.length;
    // feed() seals a unit while more than a unit is there: all but the last, held back.
    const segments = total > unit ? Math.ceil(total / unit) - 1 : 0;
    const needed = segments * (unit + TAG_LENGTH);
    if (needed > room) throw outputTooSmall(needed, room);
    let pos = at;
    this.feed(data, unit, (pt) => {
      seal(this.id, this.subkey!, this.nextNonce(false), this.aad!, pt, dst, pos);
      pos += pt.length + TAG_LENGTH;
      this.counter++;
    });
    return pos - at;
  }

  #seal(pt: Uint8Array, last: boolean, out: Buffer[]): void {
    const c = createCipheriv(this.cipher, this.subkey!, this.nextNonce(last), { authTagLength: TAG_LENGTH });
    c.setAAD(this.aad!);
    out.push(c.update(pt));
    c.final();
    out.push(c.getAuthTag());
    this.counter++;
  }
}

/** The decrypting end: releases a segment's plaintext only after its tag verified. */
export class StreamOpener extends StreamState {
  readonly #id: StreamCipherId;
  #key: Buffer | null;
  #additionalData: Buffer | null;
  readonly #header = Buffer.alloc(HEADER_LENGTH);
  #headerFill = 0;
  #segment = 0; // ciphertext segment length, known once the header is read
  /**
   * Context memory budget, charged at creation for the largest segment a
   * header may name: the segment size comes from the (untrusted) stream, so
   * anything less would let a crafted header allocate past the budget.
   */
  readonly memoryCost: number;

  /** `key` is borrowed until the header has been read; the caller keeps the key node alive (it is the parent). */
  constructor(id: StreamCipherId, key: Buffer, additionalData: Uint8Array | undefined) {
    super();
    this.#id = id;
    this.#key = key;
    this.#additionalData = additionalData === undefined ? null : Buffer.from(additionalData);
    this.memoryCost = STREAM_OVERHEAD + MAX_SEGMENT_SIZE + TAG_LENGTH + HEADER_LENGTH + 2 * (additionalData?.length ?? 0);
  }

  update(data: Uint8Array, out: Buffer[]): void {
    let off = 0;
    if (this.#headerFill < HEADER_LENGTH) {
      const take = Math.min(HEADER_LENGTH - this.#headerFill, data.length);
      this.#header.set(data.subarray(0, take), this.#headerFill);
      this.#headerFill += take;
      off = take;
      if (this.#headerFill < HEADER_LENGTH) return;
      this.#start();
    }
    this.feed(off === 0 ? data : data.subarray(off), this.#segment, (seg) => this.#open(seg, false, out));
  }

  /** The held bytes must be the last segment, and it must authenticate as last. */
  final(out: Buffer[]): void {
    if (this.#headerFill < HEADER_LENGTH) {
      throw new DecryptError(`the stream ended inside its ${HEADER_LENGTH}-byte header (${this.#headerFill} bytes)`, { detail: { received: this.#headerFill } });
    }
    if (this.fill < TAG_LENGTH) {
      throw new DecryptError(`the stream is truncated: it ends without its final segment (after ${this.counter} segments)`, { detail: { segment: this.counter } });
    }
    this.#open(this.pending!.subarray(0, this.fill), true, out);
    this.fill = 0;
  }

  #start(): void {
    const h = this.#header;
    if (!h.subarray(0, 4).equals(MAGIC)) throw new DecryptError('not a cryptod AEAD stream: the header does not start with "CDAS"');
    if (h[4] !== VERSION) {
      throw new UnsupportedError(`AEAD stream format version ${h[4]} is not supported; this daemon reads version ${VERSION}`, { detail: { version: h[4] } });
    }
    if (h[5] !== this.#id) {
      const named = STREAM_CIPHERS[h[5] as StreamCipherId]?.label ?? `unknown cipher ${h[5]}`;
      throw new DecryptError(`the stream was sealed with ${named}, the key is ${STREAM_CIPHERS[this.#id].label}`, { detail: { expected: this.#id, actual: h[5] } });
    }
    const size = h.readUInt32BE(SEGMENT_SIZE_OFFSET);
    if (size < MIN_SEGMENT_SIZE || size > MAX_SEGMENT_SIZE) {
      throw new DecryptError(`the stream header names a segment size of ${size} bytes, outside ${MIN_SEGMENT_SIZE}..${MAX_SEGMENT_SIZE}`, { detail: { segmentSize: size } });
    }
    this.#segment = size + TAG_LENGTH;
    this.begin(h, this.#id, this.#key!, this.#additionalData ?? undefined, this.#segment);
    this.#key = null;
    this.#additionalData = null;
  }

  #open(seg: Uint8Array, last: boolean, out: Buffer[]): void {
    const split = seg.length - TAG_LENGTH;
    const d = createDecipheriv(this.cipher, this.subkey!, this.nextNonce(last), { authTagLength: TAG_LENGTH });
    d.setAAD(this.aad!);
    d.setAuthTag(seg.subarray(split));
    const pt = d.update(seg.subarray(0, split));
    try {
      d.final();
    } catch {
      pt.fill(0);
      throw new DecryptError(
        `segment ${this.counter} of the stream failed authentication: the stream was modified, reordered, truncated or extended, or the key or additionalData differ`,
        { detail: { segment: this.counter } },
      );
    }
    out.push(pt);
    this.counter++;
  }

  override dispose(): void {
    super.dispose();
    this.#key = null; // borrowed from the key node, which zeroes it
    this.#additionalData = null;
  }
}
