/**
 * AEAD streams on the client: `client.createEncryptStream(key, algorithm)`
 * and `client.createDecryptStream(key, algorithm)` are Node Transforms over a
 * cipher stream context in the daemon (CIPHER_CREATE / CIPHER_UPDATE /
 * CIPHER_FINAL), producing and reading the format of docs/formats.md
 * "AEAD stream format".
 *
 * Memory is bounded on both sides: this side holds one piece being filled
 * and the replies of at most STREAM_WINDOW_BYTES (and STREAM_WINDOW pieces)
 * sent ahead, the daemon at most one segment. A piece is as many whole
 * segments as fit INLINE_UPDATE (256 KiB: four default 64 KiB segments, three
 * ciphertext segments of 64 KiB + 16) — one frame and one reply per piece,
 * not per segment, which is what the per-request cost of the daemon and of
 * both sockets is paid on. Pieces of at most INLINE_UPDATE are sent without
 * waiting for the previous reply: the daemon finishes each before it reads
 * the next frame, so they never find the stream BUSY and the daemon seals
 * one while the next is on its way (docs/protocol.md §6.8). Larger pieces
 * (one segment over 256 KiB) go one at a time. A piece's bytes go to the
 * socket as they are (requestWithTail), not copied into a frame. Replies
 * are pushed in order, and the next input is taken only after the reader
 * wants more, so a slow consumer slows the producer (back-pressure). Small
 * writes are coalesced into whole pieces; input that is already
 * piece-aligned is sent in place.
 *
 * A decrypting stream emits a segment's plaintext only after the daemon
 * verified that segment; if the stream was tampered with, it fails with
 * CRYPTOD_ERR_DECRYPT_FAILED (at the latest when the input ends), after
 * emitting only the authentic segments before the damage.
 *
 * @example
 * ```ts
 * await pipeline(createReadStream('big.bin'), client.createEncryptStream(key, { name: 'AES-GCM' }), createWriteStream('big.cda'));
 * await pipeline(createReadStream('big.cda'), client.createDecryptStream(key, { name: 'AES-GCM' }), createWriteStream('big.out'));
 * ```
 */
import { Transform, type TransformCallback } from 'node:stream';
import { InvalidArgumentError, NotFoundError } from '../protocol/errors.js';
import type { DaemonConnection } from './connection.js';
import { maxDataPerRequest } from './contexts.js';
import { WINDOW_MIN_UPDATE } from './window.js';
import { handleOf, wireAlgorithm, type BufferSource, type CryptoKey } from './subtle.js';

import { MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE, STREAM_HEADER_LENGTH, STREAM_SEGMENT_SIZE_OFFSET, STREAM_TAG_LENGTH } from '../protocol/stream-header.js';
import { CipherCreate, CipherFinal, CipherUpdate, INLINE_UPDATE, Release, type ArgsIn } from '../protocol/messages/index.js';

export { STREAM_HEADER_LENGTH, STREAM_SEGMENT_SIZE_OFFSET, STREAM_TAG_LENGTH };

/** Parameters of an AEAD stream: the key's algorithm and, optionally, data to authenticate. */
export interface AeadStreamParams {
  /** 'AES-GCM' or 'ChaCha20-Poly1305'; must match the key. */
  name: string;
  /** Authenticated with every segment; decryption must pass the same bytes. */
  additionalData?: BufferSource;
  /** Encrypt only: plaintext bytes per segment, 1024..1048576 (default 65536). */
  segmentSize?: number;
}

export type AeadStreamMode = 'encrypt' | 'decrypt';

/** Pieces sent whose replies are not yet pushed, at most. */
export const STREAM_WINDOW = 16;
/** Input bytes sent whose replies are not yet pushed, at most (also below the daemon's in-flight bytes from HELLO). */
export const STREAM_WINDOW_BYTES = 2 * 1024 * 1024;

/**
 * Bytes per piece for segments of `segment` bytes (plaintext when
 * encrypting, ciphertext + tag when decrypting): the whole segments that fit
 * INLINE_UPDATE, at least one, and at most one frame's worth.
 */
export function pieceSize(segment: number, maxData: number): number {
  const perPiece = Math.max(1, Math.floor(INLINE_UPDATE / segment));
  if (perPiece * segment <= maxData) return perPiece * segment;
  // A small maxFrame: still whole segments, so the daemon holds no partial one across pieces
  // and each reply stays within the frame; only a segment larger than a frame is cut.
  const fit = Math.floor(maxData / segment);
  return fit >= 1 ? fit * segment : maxData;
}

/** Bytes a reply adds around its sealed segments: frame header and CBOR, with room to spare. */
const SEALED_REPLY_OVERHEAD = 64;

/**
 * Bytes per encrypting piece: as {@link pieceSize}, and also whole segments
 * whose sealed form (each segment plus its tag, and one tag more for a final
 * segment) fits the reply frame — the daemon never sends a frame above
 * maxFrame (docs/protocol.md §2), and sealing makes the reply larger than the
 * request. When not even one segment fits, the piece is one frame's worth and
 * the daemon refuses the reply that would not fit (FRAME_TOO_LARGE).
 */
export function encryptPieceSize(segment: number, maxData: number, maxFrame: number): number {
  const fit = Math.floor((maxFrame - SEALED_REPLY_OVERHEAD - STREAM_TAG_LENGTH) / (segment + STREAM_TAG_LENGTH));
  const piece = pieceSize(segment, maxData);
  return fit >= 1 ? Math.min(piece, fit * segment) : piece;
}

/**
 * Bytes per piece through a shared-memory window slot of `slot` bytes (the
 * daemon writes a piece's output into the slot it read it from): the whole
 * segments whose output — with the segment the daemon held back and a tag
 * each — fits the slot; null when not even one does (then pieces go inline).
 * `segment` is plaintext bytes per segment.
 *
 * Encrypting, the output goes right after the piece in the slot
 * ({@link outputAfterInput}): regions apart let the daemon seal each segment
 * straight into the window (native/fastcrypto.c), where output over its own
 * input would need a copy of every segment. So a piece is the k segments
 * whose input and output — k + 1 sealed segments — fit together.
 */
export function windowPieceSize(segment: number, slot: number, mode: AeadStreamMode): number | null {
  const sealed = segment + STREAM_TAG_LENGTH;
  const k = mode === 'encrypt' ? Math.floor((slot - sealed) / (segment + sealed)) : Math.min(Math.floor(slot / sealed), Math.floor(slot / segment) - 1);
  if (k < 1) return null;
  return mode === 'encrypt' ? k * segment : k * sealed;
}

/** Where a piece's output goes in its slot: after the piece when encrypting (windowPieceSize), over it when decrypting. */
function outputAfterInput(mode: AeadStreamMode, length: number): number {
  return mode === 'encrypt' ? length : 0;
}

/**
 * Output is copied out of a window slot in buffers of at most this size:
 * a buffer of a MiB is a fresh mapping whose pages fault in one by one
 * (~0.6–0.9 ms per MiB here, against ~0.1 ms in 64 KiB buffers, which the
 * allocator reuses).
 */
const COPY_OUT_CHUNK = 64 * 1024;

function copyOut(bytes: Uint8Array, at: number, n: number): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0; off < n; off += COPY_OUT_CHUNK) out.push(Buffer.from(bytes.subarray(at + off, at + Math.min(n, off + COPY_OUT_CHUNK))));
  return out;
}

export class AeadStream extends Transform {
  readonly mode: AeadStreamMode;
  readonly #conn: DaemonConnection;
  readonly #createArgs: ArgsIn<typeof CipherCreate>;
  #handle: string | null = null;
  #finished = false;
  /** Bytes per request: set at creation (encrypt) or once the header was read (decrypt). */
  #piece = 0;
  /** Decrypt: false until the first piece (header plus one segment) was sent. */
  #headerSent: boolean;
  /** Decrypt: ciphertext bytes per segment, from the header (0 until read). */
  #segment = 0;
  /** Encrypt: plaintext bytes per segment, from CIPHER_CREATE's reply (0 until then). */
  #sealSegment = 0;
  #buf: Buffer | null = null;
  #fill = 0;
  #wake: (() => void) | null = null;
  /** Replies of the pieces sent ahead, oldest first; pushed in this order. */
  readonly #ahead: Promise<Buffer | Buffer[]>[] = [];
  /** Input bytes of each piece in #ahead, and their sum (the window). */
  readonly #aheadSizes: number[] = [];
  #aheadBytes = 0;
  /** Pieces of the current input chunk handed to the socket and not yet taken by it. */
  #written: Promise<void>[] = [];
  /** Pieces go through the connection's shared-memory window (set with #piece, by #windowPiece). */
  #windowed = false;

  /** @internal use `client.createEncryptStream` / `client.createDecryptStream` */
  constructor(conn: DaemonConnection, key: CryptoKey, algorithm: AeadStreamParams | string, mode: AeadStreamMode) {
    super();
    this.mode = mode;
    this.#conn = conn;
    const params = typeof algorithm === 'string' ? { name: algorithm } : algorithm;
    if (typeof params.name !== 'string') throw new InvalidArgumentError("expected 'algorithm.name' to be 'AES-GCM' or 'ChaCha20-Poly1305'");
    this.#createArgs = { key: handleOf(key, 'key'), mode, algorithm: wireAlgorithm(params) };
    this.#headerSent = mode === 'encrypt';
    if (mode === 'decrypt') this.#piece = STREAM_HEADER_LENGTH;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#consume(chunk).then(() => callback(), callback);
  }

  override _flush(callback: TransformCallback): void {
    this.#end().then(() => callback(), callback);
  }

  override _read(size: number): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
    super._read(size);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#buf?.fill(0);
    this.#buf = null;
    this.#wake?.();
    this.#wake = null;
    const handle = this.#handle;
    if (handle !== null && !this.#finished && !this.#conn.closed) {
      this.#finished = true;
      this.#release(handle);
    }
    callback(error);
  }

  /**
   * Release an abandoned context. The daemon already deleted a stream that
   * failed or finished (NOT_FOUND), and a closed connection released it too,
   * so a failure here has nothing left to clean up.
   */
  #release(handle: string): void {
    this.#conn.send(Release, { handle }).catch(() => undefined);
  }

  async #open(): Promise<string> {
    if (this.#handle !== null) return this.#handle;
    const r = await this.#conn.call(CipherCreate, this.#createArgs, undefined, 'the reply to CIPHER_CREATE');
    if (this.destroyed) {
      // Destroyed while the context was being created: do not leave it behind.
      this.#release(r.handle);
      throw new NotFoundError('the stream was destroyed');
    }
    this.#handle = r.handle;
    if (this.mode === 'encrypt') {
      if (r.header === undefined || r.segmentSize === undefined) {
        throw new InvalidArgumentError('the daemon replied to CIPHER_CREATE without the stream header');
      }
      const maxFrame = this.#conn.hello.limits.maxFrame;
      if (r.segmentSize + STREAM_TAG_LENGTH + SEALED_REPLY_OVERHEAD + STREAM_TAG_LENGTH > maxFrame) {
        this.#release(r.handle);
        this.#handle = null;
        throw new InvalidArgumentError(`a sealed segment of ${r.segmentSize} bytes does not fit the daemon's maximum frame of ${maxFrame} bytes; choose a segmentSize of at most ${maxFrame - SEALED_REPLY_OVERHEAD - 2 * STREAM_TAG_LENGTH}`);
      }
      this.#sealSegment = r.segmentSize;
      this.#piece = (await this.#windowPiece(r.segmentSize)) ?? encryptPieceSize(r.segmentSize, maxDataPerRequest(this.#conn), maxFrame);
      await this.#push(Buffer.from(r.header));
    }
    return r.handle;
  }

  /** Cut the input into pieces of `#piece` bytes; send each, in place when aligned. */
  async #consume(chunk: Buffer): Promise<void> {
    const handle = await this.#open();
    let off = 0;
    try {
      while (off < chunk.length) {
        if (this.destroyed) return; // its context was released in _destroy
        const piece = this.#piece;
        if (this.#fill === 0 && chunk.length - off >= piece && this.#headerSent) {
          await this.#send(handle, chunk.subarray(off, off + piece));
          off += piece;
          continue;
        }
        const buf = this.#buffer(piece);
        const take = Math.min(piece - this.#fill, chunk.length - off);
        chunk.copy(buf, this.#fill, off, off + take);
        this.#fill += take;
        off += take;
        if (this.#fill === piece) await this.#pieceFull(handle);
      }
    } finally {
      // The caller may reuse `chunk` once this returns: wait until the socket took the pieces sent in place.
      const written = this.#written;
      this.#written = [];
      await Promise.all(written);
    }
  }

  async #pieceFull(handle: string): Promise<void> {
    if (this.mode === 'decrypt' && !this.#headerSent && this.#piece === STREAM_HEADER_LENGTH) {
      // Header read: the first piece grows to header + one ciphertext segment.
      // A header with an impossible segment size is sent as is for the daemon to reject.
      const size = this.#buf!.readUInt32BE(STREAM_SEGMENT_SIZE_OFFSET);
      if (size >= MIN_SEGMENT_SIZE && size <= MAX_SEGMENT_SIZE) {
        this.#segment = size + STREAM_TAG_LENGTH;
        this.#piece = Math.min(STREAM_HEADER_LENGTH + this.#segment, maxDataPerRequest(this.#conn));
        return;
      }
    }
    const data = this.#buf!.subarray(0, this.#fill);
    this.#fill = 0;
    await this.#send(handle, data);
    // The next piece is filled into the same buffer: only once the socket took this one.
    const written = this.#written;
    this.#written = [];
    await Promise.all(written);
  }

  async #send(handle: string, data: Uint8Array): Promise<void> {
    // Windowed pieces were sized so that their output fits their slot (#windowPiece); the header's
    // piece, and a piece the daemon works on in slices (which would find the stream BUSY behind the
    // pieces ahead), go inline.
    const windowed = this.#windowed && this.#headerSent && data.length <= this.#piece;
    if (!windowed && data.length > INLINE_UPDATE) await this.#drain(0, 0);
    const window = windowed ? await this.#conn.window() : null;
    const slot = window === null ? null : await window.take();
    let out: Promise<Buffer | Buffer[]>;
    if (window !== null && slot !== null) {
      // Through the shared-memory window: the piece is copied into a slot and the daemon writes
      // the piece's output in the same slot (docs/protocol.md §6.16); it is free once that is copied out.
      window.bytes.set(data, slot);
      const at = outputAfterInput(this.mode, data.length);
      out = this.#conn.call(CipherUpdate, { handle, window: window.handle, offset: slot, length: data.length, outputOffset: slot + at, outputLength: window.slotSize - at }, undefined, 'the reply to CIPHER_UPDATE').then(
        (r) => {
          const n = Buffer.isBuffer(r) ? -1 : r.length;
          if (n < 0 || n > window.slotSize - at) throw new InvalidArgumentError('the daemon answered a CIPHER_UPDATE on the window with bytes or an impossible length');
          const copy = copyOut(window.bytes, slot + at, n);
          window.give(slot);
          return copy;
        },
        (err: unknown) => {
          window.give(slot);
          throw err;
        },
      );
    } else {
      // `data` goes to the socket without a copy into a frame; `written` says when it was taken.
      const { reply, written } = this.#conn.requestWithTail(CipherUpdate.op, { handle }, 'data', data);
      this.#written.push(written);
      out = reply.then((v) => {
        const r = CipherUpdate.result.parse(v, 'the reply to CIPHER_UPDATE');
        if (!Buffer.isBuffer(r)) throw new InvalidArgumentError('the daemon answered an inline CIPHER_UPDATE with a length');
        return r;
      });
    }
    // Its failure is reported when its turn to be pushed comes; never unhandled meanwhile.
    out.catch(() => undefined);
    this.#ahead.push(out);
    this.#aheadSizes.push(data.length);
    this.#aheadBytes += data.length;
    if (!this.#headerSent) {
      // Later pieces are whole ciphertext segments, aligned with the daemon's.
      this.#headerSent = true;
      if (this.#segment > 0) this.#piece = (await this.#windowPiece(this.#segment - STREAM_TAG_LENGTH)) ?? pieceSize(this.#segment, maxDataPerRequest(this.#conn));
    }
    if (windowed) await this.#drain(STREAM_WINDOW - 1, Infinity); // bounded by the window's slots
    else if (data.length > INLINE_UPDATE) await this.#drain(0, 0);
    else await this.#drain(STREAM_WINDOW - 1, this.#windowBytes() - this.#piece);
  }

  /**
   * The piece size through the connection's shared-memory window for
   * segments of `segment` plaintext bytes, or null (no window, or segments
   * too large for a slot): then pieces go inline, as {@link pieceSize} says.
   */
  async #windowPiece(segment: number): Promise<number | null> {
    const window = await this.#conn.window();
    const piece = window === null ? null : windowPieceSize(segment, window.slotSize, this.mode);
    this.#windowed = piece !== null && piece >= WINDOW_MIN_UPDATE;
    return this.#windowed ? piece : null;
  }

  /** The window in bytes: STREAM_WINDOW_BYTES, below the daemon's in-flight bytes per connection. */
  #windowBytes(): number {
    const limit = this.#conn.hello.limits.maxInflightBytesPerConnection ?? STREAM_WINDOW_BYTES;
    return Math.min(STREAM_WINDOW_BYTES, limit);
  }

  /** Push the oldest replies until at most `keep` pieces and `keepBytes` input bytes are ahead. */
  async #drain(keep: number, keepBytes: number): Promise<void> {
    while (this.#ahead.length > keep || (this.#ahead.length > 0 && this.#aheadBytes > keepBytes)) {
      const out = await this.#ahead[0]!;
      this.#ahead.shift();
      this.#aheadBytes -= this.#aheadSizes.shift()!;
      await this.#push(out);
    }
  }

  async #end(): Promise<void> {
    const handle = await this.#open();
    await this.#drain(0, 0);
    if (this.#fill > 0 && this.#finalReplyBound(this.#fill) > this.#conn.hello.limits.maxFrame) {
      // The daemon holds back one whole segment until it knows whether it is the last; with the
      // rest it would not fit one reply frame, so the rest goes as an update, FINAL carries nothing.
      await this.#send(handle, this.#buf!.subarray(0, this.#fill));
      this.#fill = 0;
      await this.#drain(0, 0);
    }
    const data = this.#fill > 0 ? this.#buf!.subarray(0, this.#fill) : undefined;
    this.#fill = 0;
    const reply = this.#conn.call(CipherFinal, { handle, data });
    this.#buf?.fill(0);
    this.#finished = true;
    await this.#push(await reply);
  }

  /**
   * Largest reply CIPHER_FINAL with `fill` bytes may bring: the segment the
   * daemon held back, and `fill` bytes sealed (encrypt: a tag per segment)
   * or opened (decrypt: never more than the ciphertext), with the frame's overhead.
   */
  #finalReplyBound(fill: number): number {
    if (this.mode === 'encrypt') {
      const s = this.#sealSegment;
      return s + STREAM_TAG_LENGTH + fill + STREAM_TAG_LENGTH * Math.max(1, Math.ceil(fill / s)) + SEALED_REPLY_OVERHEAD;
    }
    return this.#segment + fill + SEALED_REPLY_OVERHEAD;
  }

  /** Push output; when the reader is full, wait until it asks for more. */
  async #push(out: Buffer | Buffer[]): Promise<void> {
    if (Array.isArray(out)) {
      for (const b of out) await this.#push(b);
      return;
    }
    if (out.length === 0) return;
    if (!this.push(out) && !this.destroyed) await new Promise<void>((resolve) => (this.#wake = resolve));
  }

  #buffer(size: number): Buffer {
    if (this.#buf === null || this.#buf.length < size) {
      // Holds plaintext when encrypting: owned memory, zeroed when done.
      const next = Buffer.alloc(size);
      if (this.#buf !== null) {
        this.#buf.copy(next, 0, 0, this.#fill);
        this.#buf.fill(0);
      }
      this.#buf = next;
    }
    return this.#buf;
  }
}
