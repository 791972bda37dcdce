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
 *   flush(): bytes [0, pos) go to the socket; this buffer comes back
 *   (done) once the socket released it, and takes the next tick's frames.
 *
 * A write to a Unix socket normally completes at once, so the buffer is back
 * before the next tick's frames and a steady stream of ticks allocates
 * nothing; while the socket still holds it (a full kernel buffer) the next
 * frames go into a new one. One buffer is kept between ticks — an idle
 * connection's cost: INITIAL bytes, up to SPARE_MAX after a burst (a buffer
 * grown beyond that, for one large frame, is dropped).
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
const INITIAL = 1024;
/** The batch's buffer between a flush and the next frame: none. */
const NONE = Buffer.alloc(0);
/** Largest batch buffer kept for the next tick. */
const SPARE_MAX = 64 * 1024;
/**
 * Queued bytes at which a side writes its batch at once instead of waiting
 * for the tick to end: a tick of 256 requests of 1 KiB would otherwise grow
 * a buffer past SPARE_MAX (copying at every doubling) and drop it after each
 * write. Below SPARE_MAX / 2, so that a batch of small frames stays in a
 * buffer that is kept.
 */
export const BATCH_FLUSH_BYTES = 32 * 1024;

export class FrameBatch {
  readonly #w = new Writer(0);
  /** A buffer back from the socket, for the next frames. */
  #spare: Buffer | null = null;
  /** Whether a frame queued since the last flush carries key material. */
  #sensitive = false;
  /** Where the last frame added starts (for undo). */
  #last = 0;
  /**
   * Length of the buffer last handed to the socket (at most SPARE_MAX): a
   * new buffer starts at that size, so that a steady stream of full
   * batches (256 requests of 1 KiB in flight) does not regrow from INITIAL
   * — six doublings, each a copy and a zeroing — while the socket still
   * holds the previous one.
   */
  #lastSize = INITIAL;

  /** Bytes queued since the last flush. */
  get size(): number {
    return this.#w.pos;
  }

  /** The writer, with a buffer to write into: the spare one, or a new one. */
  #writer(): Writer {
    const w = this.#w;
    if (w.buf.length === 0) {
      w.buf = this.#spare ?? Buffer.allocUnsafeSlow(this.#lastSize);
      this.#spare = null;
    }
    return w;
  }

  /**
   * Encode a frame after the queued ones; returns its length field (bytes
   * after the length itself). On an encoding error nothing is queued and the
   * bytes written so far are zeroed.
   */
  add(kind: FrameKind, id: number, op: number, payload: CborValue | undefined, sensitive: boolean): number {
    const w = this.#writer();
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
    const w = this.#writer();
    this.#last = w.pos;
    w.ensure(bytes.length);
    w.buf.set(bytes, w.pos);
    w.pos += bytes.length;
  }

  /** Take back the frame just added (the caller refused it, e.g. too large): its bytes are zeroed. */
  undo(): void {
    const w = this.#w;
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
    if (w.pos === 0) return;
    const base = w.buf;
    const n = w.pos;
    const sensitive = this.#sensitive;
    this.#sensitive = false;
    // The socket holds `base` until done; the next frame takes it back then, or a new one.
    w.buf = NONE;
    w.pos = 0;
    this.#lastSize = Math.min(Math.max(base.length, INITIAL), SPARE_MAX);
    write(base.subarray(0, n), () => {
      if (sensitive) base.fill(0, 0, n);
      if (base.length <= SPARE_MAX && this.#spare === null) this.#spare = base;
    });
  }
}
