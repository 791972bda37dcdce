/**
 * AEAD streams on the client: `client.createEncryptStream(key, algorithm)`
 * and `client.createDecryptStream(key, algorithm)` are Node Transforms over a
 * cipher stream context in the daemon (CIPHER_CREATE / CIPHER_UPDATE /
 * CIPHER_FINAL), producing and reading the format of docs/formats.md
 * "AEAD stream format".
 *
 * Memory is bounded on both sides: this side holds one piece being filled
 * (one segment, or one frame's worth if the daemon's frames are smaller) and
 * the replies of at most STREAM_WINDOW pieces sent ahead, the daemon at most
 * one segment. Pieces of at most INLINE_UPDATE (256 KiB; the default segment
 * is 64 KiB) are sent without waiting for the previous reply: the daemon
 * finishes each before it reads the next frame, so they never find the
 * stream BUSY and the daemon seals one while the next is on its way
 * (docs/protocol.md §6.8). Larger pieces go one at a time. Replies are
 * pushed in order, and the next input is taken only after the reader wants
 * more, so a slow consumer slows the producer (back-pressure). Small writes
 * are coalesced into whole pieces; input that is already piece-aligned is
 * sent in place.
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

/** Pieces sent whose replies are not yet pushed, at most (16 × 64 KiB segments = 1 MiB ahead). */
export const STREAM_WINDOW = 16;

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
  #buf: Buffer | null = null;
  #fill = 0;
  #wake: (() => void) | null = null;
  /** Replies of the pieces sent ahead, oldest first; pushed in this order. */
  readonly #ahead: Promise<Buffer>[] = [];

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
      this.#piece = Math.min(r.segmentSize, maxDataPerRequest(this.#conn));
      await this.#push(Buffer.from(r.header));
    }
    return r.handle;
  }

  /** Cut the input into pieces of `#piece` bytes; send each, in place when aligned. */
  async #consume(chunk: Buffer): Promise<void> {
    const handle = await this.#open();
    let off = 0;
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
  }

  async #send(handle: string, data: Uint8Array): Promise<void> {
    // A piece the daemon works on in slices would find the stream BUSY behind the pieces ahead.
    if (data.length > INLINE_UPDATE) await this.#drain(0);
    // request() encodes `data` into its frame synchronously, so the buffer is free again at once.
    const reply = this.#conn.call(CipherUpdate, { handle, data });
    // Its failure is reported when its turn to be pushed comes; never unhandled meanwhile.
    reply.catch(() => undefined);
    this.#ahead.push(reply);
    if (!this.#headerSent) {
      // Later pieces are one ciphertext segment each, aligned with the daemon's.
      this.#headerSent = true;
      if (this.#segment > 0) this.#piece = Math.min(this.#segment, maxDataPerRequest(this.#conn));
    }
    await this.#drain(data.length > INLINE_UPDATE ? 0 : STREAM_WINDOW - 1);
  }

  /** Push the oldest replies until at most `keep` pieces are ahead. */
  async #drain(keep: number): Promise<void> {
    while (this.#ahead.length > keep) {
      const out = await this.#ahead[0]!;
      this.#ahead.shift();
      await this.#push(out);
    }
  }

  async #end(): Promise<void> {
    const handle = await this.#open();
    await this.#drain(0);
    const data = this.#fill > 0 ? this.#buf!.subarray(0, this.#fill) : undefined;
    this.#fill = 0;
    const reply = this.#conn.call(CipherFinal, { handle, data });
    this.#buf?.fill(0);
    this.#finished = true;
    await this.#push(await reply);
  }

  /** Push output; when the reader is full, wait until it asks for more. */
  async #push(out: Buffer): Promise<void> {
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
