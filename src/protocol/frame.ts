/**
 * Frame layout (all integers big-endian), specified in docs/protocol.md §2:
 *
 *   0      4     5          9       11                4+length
 *   ┌──────┬─────┬──────────┬───────┬──────────────────┐
 *   │length│kind │ request  │  op   │ payload (CBOR,   │
 *   │ u32  │ u8  │ id u32   │  u16  │ optional)        │
 *   └──────┴─────┴──────────┴───────┴──────────────────┘
 *   length counts every byte after itself, so length ≥ 7.
 *
 * The reader enforces the maximum frame size from the length field alone,
 * before it allocates anything for the frame; an oversize frame is skipped
 * byte by byte and reported with its request id, so the connection survives.
 */
import { Writer, type CborValue } from './cbor.js';

export const FrameKind = {
  REQUEST: 1,
  RESPONSE: 2,
  ERROR: 3,
} as const;
export type FrameKind = (typeof FrameKind)[keyof typeof FrameKind];

/** Bytes before the payload, including the length field. */
export const HEADER_SIZE = 11;
/** Smallest valid value of the length field. */
export const MIN_LENGTH = HEADER_SIZE - 4;
/** Default maximum of the length field: 4 MiB. */
export const DEFAULT_MAX_FRAME = 4 * 1024 * 1024;
/** The largest maximum a daemon may be configured with: 64 MiB. */
export const MAX_MAX_FRAME = 64 * 1024 * 1024;

export interface FrameSink {
  /**
   * A complete frame; the payload is `buf[start, end)` (may be empty).
   * Returning true says nothing refers to `buf` any more: a buffer the reader
   * joined the frame in is then reused for the next split frame.
   */
  frame(kind: number, id: number, op: number, buf: Buffer, start: number, end: number): boolean | void;
  /**
   * Whether a frame of `op` may carry key material. Absent, or true: the
   * bytes the reader copies out of a chunk are zeroed in it. A frame whose op
   * has not arrived yet is always treated as sensitive.
   */
  sensitive?(op: number): boolean;
  /** A frame whose length exceeds the maximum; its body is being skipped. */
  oversize(kind: number, id: number, op: number, length: number): void;
  /** A length field too small to hold a header; `length` bytes are skipped. */
  malformed(length: number): void;
}

/**
 * Incremental frame parser. Complete frames inside one chunk are handed out
 * as views of that chunk (no copy); a frame split across chunks is collected
 * into one buffer allocated once, after its length was checked.
 *
 * Every byte copied out of a chunk (into a frame being joined, or into the
 * bytes held while paused) is zeroed in the chunk as it is copied. The sink
 * zeroes a sensitive frame's payload once its handler is done, but it only
 * ever sees the joined copy: the pieces would otherwise keep key material in
 * the socket's buffers until the garbage collector reuses them. The reader
 * cannot tell a sensitive frame before its op arrives (possibly in a later
 * chunk), so it zeroes all it copies — unless the sink says the frame's op
 * carries none (FrameSink.sensitive). Ranges handed out as views are never
 * touched.
 *
 * Joining a frame needs a buffer of its size; when the sink says it is done
 * with a joined frame (frame() returned true), that buffer is kept (up to
 * SPARE_MAX bytes) for the next one, so a stream of split frames — 256 KiB
 * updates arriving in 64 KiB reads — allocates nothing in steady state.
 */
/** Largest joining buffer a reader keeps for reuse (a connection's idle cost stays small). */
const SPARE_MAX = 512 * 1024 + HEADER_SIZE + 64;

export class FrameReader {
  readonly #max: number;
  readonly #sink: FrameSink;
  #skip = 0;
  #target: Buffer | null = null;
  #tfill = 0;
  /** Whether bytes copied into #target are zeroed in their chunk. */
  #wipe = true;
  /** The whole buffer #target is a view of, when it came from #spare. */
  #targetBase: Buffer | null = null;
  /** A joining buffer the sink was done with, for the next split frame. */
  #spare: Buffer | null = null;
  readonly #head = Buffer.alloc(HEADER_SIZE);
  #hfill = 0;
  #paused = false;
  /** Bytes read while paused (or left of a chunk when pause() came mid-chunk). */
  #rest: Buffer | null = null;

  constructor(maxFrame: number, sink: FrameSink) {
    this.#max = maxFrame;
    this.#sink = sink;
  }

  /** Bytes held for an incomplete frame (for limits and tests). */
  get pending(): number {
    return this.#target !== null ? this.#tfill : this.#hfill;
  }

  /**
   * Stop handing out frames, even in the middle of a chunk: a sink that
   * limits work in flight calls this from inside `frame()`, and the frames
   * after it in the same chunk wait for {@link resume} instead of running.
   */
  pause(): void {
    this.#paused = true;
  }

  /** Hand out the frames held back by {@link pause}, then read on. */
  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    const rest = this.#rest;
    this.#rest = null;
    if (rest !== null) this.push(rest);
  }

  push(chunk: Buffer): void {
    if (this.#paused) {
      this.#rest = this.#rest === null ? chunk : joinWiping(this.#rest, chunk);
      return;
    }
    let off = 0;
    const end = chunk.length;
    while (off < end) {
      if (this.#paused) {
        this.#rest = chunk.subarray(off);
        return;
      }
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, end - off);
        this.#skip -= n;
        off += n;
        continue;
      }
      if (this.#target !== null) {
        const t = this.#target;
        const n = Math.min(t.length - this.#tfill, end - off);
        chunk.copy(t, this.#tfill, off, off + n);
        if (this.#wipe) chunk.fill(0, off, off + n);
        this.#tfill += n;
        off += n;
        if (this.#tfill === t.length) {
          const base = this.#targetBase ?? t;
          this.#target = null;
          this.#targetBase = null;
          this.#tfill = 0;
          if (this.#emit(t, 0) === true && base.length <= SPARE_MAX) this.#spare = base;
        }
        continue;
      }
      if (this.#hfill > 0) {
        off = this.#continueHead(chunk, off);
        continue;
      }
      const avail = end - off;
      if (avail < 4) {
        off = this.#continueHead(chunk, off);
        continue;
      }
      const len = chunk.readUInt32BE(off);
      if (len < MIN_LENGTH) {
        off += 4;
        this.#skip = len;
        this.#sink.malformed(len);
        continue;
      }
      if (len > this.#max) {
        if (avail < HEADER_SIZE) {
          off = this.#continueHead(chunk, off);
          continue;
        }
        this.#skip = len - MIN_LENGTH;
        this.#sink.oversize(chunk[off + 4]!, chunk.readUInt32BE(off + 5), chunk.readUInt16BE(off + 9), len);
        off += HEADER_SIZE;
        continue;
      }
      if (avail >= 4 + len) {
        this.#emit(chunk, off);
        off += 4 + len;
        continue;
      }
      const t = this.#join(4 + len, avail >= HEADER_SIZE ? chunk.readUInt16BE(off + 9) : -1);
      chunk.copy(t, 0, off, end);
      if (this.#wipe) chunk.fill(0, off, end);
      this.#tfill = avail;
      off = end;
    }
  }

  /** Collect header bytes that straddle chunk boundaries; returns the new offset. */
  #continueHead(chunk: Buffer, off: number): number {
    const h = this.#head;
    if (this.#hfill < 4) {
      const n = Math.min(4 - this.#hfill, chunk.length - off);
      chunk.copy(h, this.#hfill, off, off + n);
      chunk.fill(0, off, off + n);
      this.#hfill += n;
      off += n;
      if (this.#hfill < 4) return off;
    }
    const len = h.readUInt32BE(0);
    if (len < MIN_LENGTH) {
      this.#hfill = 0;
      this.#skip = len;
      this.#sink.malformed(len);
      return off;
    }
    if (len > this.#max) {
      const n = Math.min(HEADER_SIZE - this.#hfill, chunk.length - off);
      chunk.copy(h, this.#hfill, off, off + n);
      chunk.fill(0, off, off + n);
      this.#hfill += n;
      off += n;
      if (this.#hfill < HEADER_SIZE) return off;
      this.#hfill = 0;
      this.#skip = len - MIN_LENGTH;
      this.#sink.oversize(h[4]!, h.readUInt32BE(5), h.readUInt16BE(9), len);
      return off;
    }
    const t = this.#join(4 + len, this.#hfill >= HEADER_SIZE ? h.readUInt16BE(9) : -1);
    h.copy(t, 0, 0, this.#hfill);
    this.#tfill = this.#hfill;
    this.#hfill = 0;
    return off;
  }

  /**
   * The buffer a split frame of `size` bytes is joined in: the spare one when
   * it is large enough, else a new one outside the shared pool. `op` is -1
   * while the header is incomplete.
   */
  #join(size: number, op: number): Buffer {
    this.#wipe = op < 0 || this.#sink.sensitive?.(op) !== false;
    const spare = this.#spare;
    if (spare !== null && spare.length >= size) {
      this.#spare = null;
      this.#targetBase = spare;
      return (this.#target = spare.subarray(0, size));
    }
    this.#targetBase = null;
    return (this.#target = Buffer.allocUnsafeSlow(size));
  }

  #emit(buf: Buffer, off: number): boolean | void {
    const len = buf.readUInt32BE(off);
    return this.#sink.frame(buf[off + 4]!, buf.readUInt32BE(off + 5), buf.readUInt16BE(off + 9), buf, off + HEADER_SIZE, off + 4 + len);
  }
}

/**
 * `a ‖ b` outside the shared pool, with `a` and `b` zeroed: for bytes that
 * may be key material (FrameReader's held chunks, an unwrapped key).
 */
export function joinWiping(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.allocUnsafeSlow(a.length + b.length);
  a.copy(out, 0);
  b.copy(out, a.length);
  a.fill(0);
  b.fill(0);
  return out;
}

// ── writing ──────────────────────────────────────────────────────────────

const SCRATCH = 64 * 1024;
/** Frames of at least this size are returned without a copy. */
const HAND_OFF = 32 * 1024;
const scratch = new Writer(SCRATCH);

/**
 * Encode a frame into a Buffer of exactly its size. With `sensitive` (frames
 * that carry key material) the result is outside Node's shared Buffer pool and
 * the scratch area is zeroed after the copy; the caller zeroes the result once
 * the socket has written it.
 */
export function encodeFrame(kind: FrameKind, id: number, op: number, payload?: CborValue, sensitive = false): Buffer {
  const w = scratch;
  w.pos = HEADER_SIZE;
  try {
    if (payload !== undefined) w.value(payload);
  } catch (err) {
    w.buf.fill(0, 0, w.pos);
    throw err;
  }
  const n = w.pos;
  w.buf.writeUInt32BE(n - 4, 0);
  w.buf[4] = kind;
  w.buf.writeUInt32BE(id >>> 0, 5);
  w.buf.writeUInt16BE(op, 9);
  if (n >= HAND_OFF) {
    // A large frame: hand the scratch buffer itself to the caller instead of
    // copying it (bulk updates are bound by memory bandwidth), and start a new one.
    const out = w.buf.subarray(0, n);
    w.buf = Buffer.allocUnsafeSlow(SCRATCH);
    return out;
  }
  const out = sensitive ? Buffer.allocUnsafeSlow(n) : Buffer.allocUnsafe(n);
  w.buf.copy(out, 0, 0, n);
  if (sensitive) w.buf.fill(0, 0, n);
  return out;
}

/**
 * The head of a request frame whose payload is the map `fields` plus, last,
 * `tailKey` → a byte string of `tailLength` bytes that is not in the head: the
 * caller writes those bytes right after it (socket.write(head);
 * socket.write(tail)), so a large input goes out without being copied into
 * a frame. The frame is the same as encodeFrame's for `{ ...fields, [tailKey]: tail }`.
 */
export function encodeFrameHead(kind: FrameKind, id: number, op: number, fields: { readonly [k: string]: CborValue }, tailKey: string, tailLength: number): Buffer {
  const w = scratch;
  w.pos = HEADER_SIZE;
  let entries = 1;
  for (const k in fields) if (fields[k] !== undefined) entries++;
  w.head(5, entries);
  for (const k in fields) {
    const v = fields[k];
    if (v === undefined) continue;
    w.value(k, 1);
    w.value(v, 1);
  }
  w.value(tailKey, 1);
  w.head(2, tailLength);
  const n = w.pos;
  w.buf.writeUInt32BE(n - 4 + tailLength, 0);
  w.buf[4] = kind;
  w.buf.writeUInt32BE(id >>> 0, 5);
  w.buf.writeUInt16BE(op, 9);
  const out = Buffer.allocUnsafe(n);
  w.buf.copy(out, 0, 0, n);
  return out;
}
