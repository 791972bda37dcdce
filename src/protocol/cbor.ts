/**
 * A strict subset of CBOR (RFC 8949) — the payload encoding of every frame.
 *
 * Supported (RFC 8949 §3.1 major types):
 *   0 unsigned int, 1 negative int   — only values that are safe JS integers
 *   2 byte string                    — decoded as a Buffer view into the frame (no copy)
 *   3 text string                    — UTF-8, invalid sequences rejected
 *   4 array, 5 map (text keys only)  — definite lengths only
 *   7 false, true, null, undefined, float16/32/64
 * Rejected with CRYPTOD_ERR_BAD_FRAME: indefinite lengths, tags (6), other simple
 * values, integers beyond 2^53-1, duplicate map keys, nesting deeper than
 * {@link MAX_DEPTH}, trailing bytes.
 *
 * Pure: no I/O. Shared by client and daemon.
 */
import { BadFrameError } from './errors.js';

/**
 * A CBOR float (major type 7, additional information 25–27) as the daemon
 * decodes request payloads: kept apart from integers, because `1.0` decodes
 * to the same JavaScript number as `1` and a field that requires an integer
 * must refuse it (docs/protocol.md §3). Encoded as a float64.
 */
export class CborFloat {
  constructor(readonly value: number) {}
}

export type CborValue =
  | CborFloat
  | number
  | string
  | boolean
  | null
  | undefined
  | Uint8Array
  | CborValue[]
  | { [key: string]: CborValue };

export const MAX_DEPTH = 16;

// ignoreBOM: a leading U+FEFF is part of the text, not a byte-order mark to strip.
const textDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

// ── encoding ─────────────────────────────────────────────────────────────

/**
 * Growable output buffer. Uses non-pooled memory (allocUnsafeSlow) so that a
 * frame which carries key material never lands in Node's shared Buffer pool;
 * callers that encode secrets zero the result after it is written.
 */
export class Writer {
  buf: Buffer;
  pos = 0;

  constructor(initial = 256) {
    this.buf = Buffer.allocUnsafeSlow(initial);
  }

  ensure(n: number): void {
    const need = this.pos + n;
    if (need <= this.buf.length) return;
    // Double for small growth; jump straight to the need for a large byte
    // string so a 1 MiB payload costs one allocation and no re-copies.
    const size = Math.max(this.buf.length * 2, need + 256);
    const next = Buffer.allocUnsafeSlow(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf.fill(0, 0, this.pos); // the old buffer may have held secrets
    this.buf = next;
  }

  u8(v: number): void {
    this.ensure(1);
    this.buf[this.pos++] = v;
  }

  head(major: number, len: number): void {
    const m = major << 5;
    if (len < 24) {
      this.u8(m | len);
    } else if (len < 0x100) {
      this.ensure(2);
      this.buf[this.pos++] = m | 24;
      this.buf[this.pos++] = len;
    } else if (len < 0x10000) {
      this.ensure(3);
      this.buf[this.pos++] = m | 25;
      this.buf.writeUInt16BE(len, this.pos);
      this.pos += 2;
    } else if (len < 0x100000000) {
      this.ensure(5);
      this.buf[this.pos++] = m | 26;
      this.buf.writeUInt32BE(len, this.pos);
      this.pos += 4;
    } else {
      this.ensure(9);
      this.buf[this.pos++] = m | 27;
      this.buf.writeUInt32BE(Math.floor(len / 0x100000000), this.pos);
      this.buf.writeUInt32BE(len >>> 0, this.pos + 4);
      this.pos += 8;
    }
  }

  value(v: CborValue, depth = 0): void {
    switch (typeof v) {
      case 'number':
        // -0 is not an integer in CBOR: it goes out as a float so its sign survives.
        if (Number.isSafeInteger(v) && !Object.is(v, -0)) {
          if (v >= 0) this.head(0, v);
          else this.head(1, -1 - v);
        } else {
          this.ensure(9);
          this.buf[this.pos++] = 0xfb;
          this.buf.writeDoubleBE(v, this.pos);
          this.pos += 8;
        }
        return;
      case 'string': {
        const len = Buffer.byteLength(v, 'utf8');
        this.head(3, len);
        this.ensure(len);
        this.pos += this.buf.write(v, this.pos, 'utf8');
        return;
      }
      case 'boolean':
        this.u8(v ? 0xf5 : 0xf4);
        return;
      case 'undefined':
        this.u8(0xf7);
        return;
      case 'object':
        if (v === null) {
          this.u8(0xf6);
        } else if (v instanceof CborFloat) {
          this.ensure(9);
          this.buf[this.pos++] = 0xfb;
          this.buf.writeDoubleBE(v.value, this.pos);
          this.pos += 8;
        } else if (v instanceof Uint8Array) {
          this.head(2, v.length);
          this.ensure(v.length);
          this.buf.set(v, this.pos);
          this.pos += v.length;
        } else if (Array.isArray(v)) {
          this.depth(depth);
          this.head(4, v.length);
          for (const item of v) this.value(item, depth + 1);
        } else {
          this.depth(depth);
          let n = 0;
          for (const k in v) if (v[k] !== undefined) n++;
          this.head(5, n);
          for (const k in v) {
            const item = v[k];
            if (item === undefined) continue;
            this.value(k, depth + 1);
            this.value(item, depth + 1);
          }
        }
        return;
      default:
        throw new TypeError(`cannot encode a ${typeof v} as CBOR`);
    }
  }

  /** The same bound the decoder enforces: a container at depth MAX_DEPTH is one level too deep. */
  depth(depth: number): void {
    if (depth >= MAX_DEPTH) throw new BadFrameError(`value nested deeper than ${MAX_DEPTH} levels`);
  }
}

/** Encode one value to a fresh Buffer. */
export function encode(v: CborValue): Buffer {
  const w = new Writer();
  w.value(v);
  return w.buf.subarray(0, w.pos);
}

// ── decoding ─────────────────────────────────────────────────────────────

class Reader {
  pos: number;
  constructor(
    readonly buf: Buffer,
    start: number,
    readonly end: number,
    readonly boxFloats: boolean,
    readonly freshBytes: boolean,
  ) {
    this.pos = start;
  }

  fail(what: string): never {
    throw new BadFrameError(`malformed CBOR payload: ${what} at offset ${this.pos}`);
  }

  need(n: number): void {
    if (this.end - this.pos < n) this.fail(`truncated: ${n} more byte(s) expected`);
  }

  length(info: number): number {
    if (info < 24) return info;
    switch (info) {
      case 24:
        this.need(1);
        return this.buf[this.pos++]!;
      case 25: {
        this.need(2);
        const v = this.buf.readUInt16BE(this.pos);
        this.pos += 2;
        return v;
      }
      case 26: {
        this.need(4);
        const v = this.buf.readUInt32BE(this.pos);
        this.pos += 4;
        return v;
      }
      case 27: {
        this.need(8);
        const hi = this.buf.readUInt32BE(this.pos);
        const lo = this.buf.readUInt32BE(this.pos + 4);
        this.pos += 8;
        if (hi > 0x1fffff) this.fail('integer larger than 2^53-1');
        return hi * 0x100000000 + lo;
      }
      case 31:
        return this.fail('indefinite length is not supported');
      default:
        return this.fail(`reserved additional information ${info}`);
    }
  }

  /** A map key: a short ASCII text string through the key cache (internKey), anything else as a value (the caller checks it is text). */
  key(depth: number): CborValue {
    this.need(1);
    const ib = this.buf[this.pos]!;
    const len = ib - 0x60;
    // Major type 3 with the length in the initial byte (< 24).
    if (len >= 0 && len < 24 && len <= KEY_MAX && this.end - this.pos - 1 >= len) {
      const start = this.pos + 1;
      const end = start + len;
      let ascii = true;
      for (let i = start; i < end; i++) {
        if (this.buf[i]! >= 0x80) {
          ascii = false;
          break;
        }
      }
      if (ascii) {
        this.pos = end;
        return internKey(this.buf, start, end);
      }
    }
    return this.value(depth);
  }

  value(depth: number): CborValue {
    this.need(1);
    const ib = this.buf[this.pos++]!;
    const major = ib >> 5;
    const info = ib & 0x1f;
    switch (major) {
      case 0:
        return this.length(info);
      case 1: {
        // -1 - n is a safe integer only for n < 2^53-1 (RFC 8949 §3.1, major type 1).
        const n = this.length(info);
        if (n >= Number.MAX_SAFE_INTEGER) this.fail('integer smaller than -(2^53-1)');
        return -1 - n;
      }
      case 2: {
        const len = this.length(info);
        this.need(len);
        if (this.freshBytes) {
          // Copied through a plain view: Buffer#subarray goes through the species constructor, a visible cost per small reply.
          const own = new Uint8Array(len);
          own.set(new Uint8Array(this.buf.buffer, this.buf.byteOffset + this.pos, len));
          this.pos += len;
          return own;
        }
        const out = this.buf.subarray(this.pos, this.pos + len);
        this.pos += len;
        return out;
      }
      case 3: {
        const len = this.length(info);
        this.need(len);
        const start = this.pos;
        this.pos += len;
        // ASCII fast path: most keys and algorithm names are short ASCII.
        let ascii = true;
        for (let i = start; i < this.pos; i++) {
          if (this.buf[i]! >= 0x80) {
            ascii = false;
            break;
          }
        }
        if (ascii) return this.buf.toString('latin1', start, this.pos);
        try {
          return textDecoder.decode(this.buf.subarray(start, this.pos));
        } catch {
          return this.fail('text string is not valid UTF-8');
        }
      }
      case 4: {
        if (depth >= MAX_DEPTH) this.fail(`nested deeper than ${MAX_DEPTH} levels`);
        const len = this.length(info);
        if (len > this.end - this.pos) this.fail('array longer than the payload');
        const out: CborValue[] = new Array(len);
        for (let i = 0; i < len; i++) out[i] = this.value(depth + 1);
        return out;
      }
      case 5: {
        if (depth >= MAX_DEPTH) this.fail(`nested deeper than ${MAX_DEPTH} levels`);
        const len = this.length(info);
        if (len * 2 > this.end - this.pos) this.fail('map longer than the payload');
        // A plain object, not Object.create(null): V8 keeps those in
        // dictionary mode, which made every map built here and every field
        // read from it by the schema checks about twice as slow. Keys are
        // own properties only (Object.hasOwn), and a key named "__proto__"
        // is defined, never assigned, so it is just a key.
        const out: { [key: string]: CborValue } = {};
        for (let i = 0; i < len; i++) {
          const k = this.key(depth + 1);
          if (typeof k !== 'string') this.fail('map key is not a text string');
          if (Object.hasOwn(out, k)) this.fail(`duplicate map key "${k.slice(0, 32)}"`);
          const v = this.value(depth + 1);
          if (k === '__proto__') Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
          else out[k] = v;
        }
        return out;
      }
      case 6:
        return this.fail('tags are not supported');
      default: {
        switch (info) {
          case 20:
            return false;
          case 21:
            return true;
          case 22:
            return null;
          case 23:
            return undefined;
          case 25: {
            this.need(2);
            const n = decodeHalf(this.buf.readUInt16BE(this.pos));
            const v = this.boxFloats ? new CborFloat(n) : n;
            this.pos += 2;
            return v;
          }
          case 26: {
            this.need(4);
            const n = this.buf.readFloatBE(this.pos);
            const v = this.boxFloats ? new CborFloat(n) : n;
            this.pos += 4;
            return v;
          }
          case 27: {
            this.need(8);
            const n = this.buf.readDoubleBE(this.pos);
            const v = this.boxFloats ? new CborFloat(n) : n;
            this.pos += 8;
            return v;
          }
          default:
            return this.fail(`unsupported simple value ${info}`);
        }
      }
    }
  }
}

/**
 * Map keys: the same few names in every request ("algorithm", "key",
 * "data"…). Decoding one as a fresh string costs a call into C++ to build it
 * and, once it names a property, a lookup in V8's string table to intern it;
 * a short ASCII key already seen is found here instead, by a hash of its
 * bytes and a byte-for-byte comparison, as the interned string itself.
 * Direct-mapped: a key that collides replaces the one in its slot. Bounded
 * (KEY_SLOTS × KEY_MAX bytes) whatever a peer sends; map keys are field
 * names, never key material, so keeping them costs no secrecy. The checks
 * are unchanged: a key must still be text, and unique in its map.
 */
const KEY_SLOTS = 256;
/** Longer keys are decoded as any text string. */
const KEY_MAX = 24;
const keySlots: Array<string | undefined> = new Array<string | undefined>(KEY_SLOTS).fill(undefined);

/** `buf[start, end)` (ASCII, at most KEY_MAX bytes) as an interned string. */
function internKey(buf: Buffer, start: number, end: number): string {
  let h = end - start;
  for (let i = start; i < end; i++) h = (Math.imul(h, 31) + buf[i]!) | 0;
  const slot = (h ^ (h >>> 8)) & (KEY_SLOTS - 1);
  const cached = keySlots[slot];
  if (cached !== undefined && cached.length === end - start) {
    let same = true;
    for (let i = 0; i < cached.length; i++) {
      if (cached.charCodeAt(i) !== buf[start + i]) {
        same = false;
        break;
      }
    }
    if (same) return cached;
  }
  // Used as a property name once, the string comes back from Object.keys interned.
  const fresh = Object.keys({ [buf.toString('latin1', start, end)]: 0 })[0]!;
  keySlots[slot] = fresh;
  return fresh;
}

function decodeHalf(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * 2 ** (exp - 15) * (1 + frac / 1024);
}

/**
 * Decode exactly one value spanning `buf[start, end)`. Byte strings in the
 * result are views into `buf`: copy them before the buffer is reused.
 * With `floats: 'boxed'` (the daemon's request payloads) every float is a
 * {@link CborFloat}; otherwise a plain number. With `freshBytes` every byte
 * string is instead a Uint8Array over an ArrayBuffer of its own, exactly its
 * length (offset 0): the client hands such a reply's `.buffer` to its caller
 * as WebCrypto's result, one copy instead of a view and then a copy.
 */
export function decode(buf: Buffer, start = 0, end = buf.length, floats: 'number' | 'boxed' = 'number', freshBytes = false): CborValue {
  const r = new Reader(buf, start, end, floats === 'boxed', freshBytes);
  const v = r.value(0);
  if (r.pos !== end) r.fail(`${end - r.pos} trailing byte(s)`);
  return v;
}
