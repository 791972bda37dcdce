/**
 * The frames one side writes in one tick, encoded straight into one buffer
 * and handed to the socket as a single write.
 *
 * Why not encodeFrame + socket.cork/uncork: every frame then costs a Buffer
 * of its own (allocation, copy out of the encoder's scratch area) and the
 * uncork a writev whose array of chunks Node builds, walks and hands to libuv
 * one iovec per frame. With 256 small requests in flight that was the largest
 * part of the client's per-request cost and a visible part of the daemon's
 * (bench/small-ops.ts, the profiles in docs/benchmarks.md). Here a frame is
 * encoded once, in place, after the frames before it:
 *
 *   buffer  ┌────────┬────────┬─────┬────────┬───────────── free ──┐
 *           │frame 1 │frame 2 │ ... │frame n │                     │
 *           └────────┴────────┴─────┴────────┴─────────────────────┘
 *           0                                pos
 *   flush(): bytes [0, pos) go to the socket; the next frames go into the
 *   other buffer; this one comes back (done) once the socket released it.
 *
 * Two buffers alternate, so a steady stream of ticks allocates nothing. A
 * buffer that grew beyond SPARE_MAX (one large frame) is not kept: an idle
 * connection holds at most two buffers of at most SPARE_MAX bytes.
 *
 * Key material: buffers are outside Node's shared pool (allocUnsafeSlow);
 * a batch that held a sensitive frame is zeroed as a whole once the socket is
 * done with it — the same point at which a frame of its own was zeroed before
 * — and a buffer outgrown while encoding is zeroed by Writer.ensure. A frame
 * that fails to encode, or that is taken back (undo), is zeroed at once.
 *
 * Pure: no I/O; the caller passes the write (FrameBatch.flush).
 */
import { Writer, type CborValue } from './cbor.js';
import { HEADER_SIZE, type FrameKind } from './frame.js';

/** First size of a batch buffer: a handful of small frames. */
const INITIAL = 2 * 1024;
/** Largest batch buffer kept for the next tick. */
const SPARE_MAX = 64 * 1024;

export class FrameBatch {
  #w: Writer | null = null;
  /** The other buffer, back from the socket. */
  #spare: Buffer | null = null;
  /** Whether a frame queued since the last flush carries key material. */
  #sensitive = false;
  /** Where the last frame added starts (for undo). */
  #last = 0;

  /** Bytes queued since the last flush. */
  get size(): number {
    return this.#w?.pos ?? 0;
  }

  /**
   * Encode a frame after the queued ones; returns its length field (bytes
   * after the length itself). On an encoding error nothing is queued and the
   * bytes written so far are zeroed.
   */
  add(kind: FrameKind, id: number, op: number, payload: CborValue | undefined, sensitive: boolean): number {
    const w = (this.#w ??= new Writer(INITIAL));
    const start = w.pos;
    w.ensure(HEADER_SIZE);
    w.pos = start + HEADER_SIZE;
    try {
      if (payload !== undefined) w.value(payload);
    } catch (err) {
      w.buf.fill(0, start, w.pos);
      w.pos = start;
      throw err;
    }
    const length = w.pos - start - 4;
    const b = w.buf;
    b.writeUInt32BE(length, start);
    b[start + 4] = kind;
    b.writeUInt32BE(id >>> 0, start + 5);
    b.writeUInt16BE(op, start + 9);
    if (sensitive) this.#sensitive = true;
    this.#last = start;
    return length;
  }

  /** Queue bytes already encoded (a frame head whose tail the caller writes itself, after a flush). */
  addBytes(bytes: Uint8Array): void {
    const w = (this.#w ??= new Writer(INITIAL));
    this.#last = w.pos;
    w.ensure(bytes.length);
    w.buf.set(bytes, w.pos);
    w.pos += bytes.length;
  }

  /** Take back the frame just added (the caller refused it, e.g. too large): its bytes are zeroed. */
  undo(): void {
    const w = this.#w;
    if (w === null) return;
    w.buf.fill(0, this.#last, w.pos);
    w.pos = this.#last;
  }

  /**
   * Hand the queued bytes to `write`, which must call `done` once the socket
   * no longer needs them (a write callback: called when flushed, or with an
   * error when the socket is destroyed). Nothing queued: nothing happens.
   */
  flush(write: (bytes: Buffer, done: () => void) => void): void {
    const w = this.#w;
    if (w === null || w.pos === 0) return;
    const base = w.buf;
    const n = w.pos;
    const sensitive = this.#sensitive;
    this.#sensitive = false;
    // The next frames go into the other buffer (or a new one while the socket still holds it).
    w.buf = this.#spare ?? Buffer.allocUnsafeSlow(INITIAL);
    this.#spare = null;
    w.pos = 0;
    write(base.subarray(0, n), () => {
      if (sensitive) base.fill(0, 0, n);
      if (base.length <= SPARE_MAX && this.#spare === null && w.buf !== base) this.#spare = base;
    });
  }
}
