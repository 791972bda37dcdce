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
  /** A complete frame; the payload is `buf[start, end)` (may be empty). */
  frame(kind: number, id: number, op: number, buf: Buffer, start: number, end: number): void;
  /** A frame whose length exceeds the maximum; its body is being skipped. */
  oversize(kind: number, id: number, op: number, length: number): void;
  /** A length field too small to hold a header; `length` bytes are skipped. */
  malformed(length: number): void;
}

/**
 * Incremental frame parser. Complete frames inside one chunk are handed out
 * as views of that chunk (no copy); a frame split across chunks is collected
 * into one buffer allocated once, after its length was checked.
 */
export class FrameReader {
  readonly #max: number;
  readonly #sink: FrameSink;
  #skip = 0;
  #target: Buffer | null = null;
  #tfill = 0;
  readonly #head = Buffer.alloc(HEADER_SIZE);
  #hfill = 0;

  constructor(maxFrame: number, sink: FrameSink) {
    this.#max = maxFrame;
    this.#sink = sink;
  }

  /** Bytes held for an incomplete frame (for limits and tests). */
  get pending(): number {
    return this.#target !== null ? this.#tfill : this.#hfill;
  }

  push(chunk: Buffer): void {
    let off = 0;
    const end = chunk.length;
    while (off < end) {
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
        this.#tfill += n;
        off += n;
        if (this.#tfill === t.length) {
          this.#target = null;
          this.#tfill = 0;
          this.#emit(t, 0);
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
      const t = Buffer.allocUnsafeSlow(4 + len);
      chunk.copy(t, 0, off, end);
      this.#target = t;
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
      this.#hfill += n;
      off += n;
      if (this.#hfill < HEADER_SIZE) return off;
      this.#hfill = 0;
      this.#skip = len - MIN_LENGTH;
      this.#sink.oversize(h[4]!, h.readUInt32BE(5), h.readUInt16BE(9), len);
      return off;
    }
    const t = Buffer.allocUnsafeSlow(4 + len);
    h.copy(t, 0, 0, this.#hfill);
    this.#tfill = this.#hfill;
    this.#hfill = 0;
    this.#target = t;
    return off;
  }

  #emit(buf: Buffer, off: number): void {
    const len = buf.readUInt32BE(off);
    this.#sink.frame(buf[off + 4]!, buf.readUInt32BE(off + 5), buf.readUInt16BE(off + 9), buf, off + HEADER_SIZE, off + 4 + len);
  }
}

// ── writing ──────────────────────────────────────────────────────────────

const scratch = new Writer(64 * 1024);

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
  const out = sensitive ? Buffer.allocUnsafeSlow(n) : Buffer.allocUnsafe(n);
  w.buf.copy(out, 0, 0, n);
  if (sensitive) w.buf.fill(0, 0, n);
  if (w.buf.length > 1024 * 1024) {
    // Do not keep a large scratch buffer alive after one big frame.
    w.buf.fill(0, 0, n);
    w.buf = Buffer.allocUnsafeSlow(64 * 1024);
  }
  return out;
}
