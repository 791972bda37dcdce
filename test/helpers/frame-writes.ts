/**
 * Socket writes of frames, observed with a spy on net.Socket.prototype.write
 * (the real write still runs): with the daemon in the test's process,
 * request frames (kind 1) are the client's writes and reply frames (kind 2,
 * 3) the daemon's.
 */
import { Socket } from 'node:net';
import { decode, type CborValue } from '../../src/protocol/cbor.js';
import { FrameKind, HEADER_SIZE } from '../../src/protocol/frame.js';

/** The frames in `bytes`: kind, id, op of each; null when `bytes` is not whole frames (a head whose tail follows, a stream's bytes). */
export function framesIn(bytes: Uint8Array): Array<{ kind: number; id: number; op: number }> | null {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const out: Array<{ kind: number; id: number; op: number }> = [];
  let at = 0;
  while (at < b.length) {
    if (b.length - at < 11) return null;
    const len = b.readUInt32BE(at);
    if (len < 7 || at + 4 + len > b.length) return null;
    out.push({ kind: b[at + 4]!, id: b.readUInt32BE(at + 5), op: b.readUInt16BE(at + 9) });
    at += 4 + len;
  }
  return out;
}

export interface Write {
  /** The frames as written. */
  bytes: Buffer;
  /** The buffer handed to the socket: zeroed or reused since. */
  written: Buffer;
  kinds: Set<number>;
  ops: Set<number>;
}

/** Record every socket write of frames (whole-frame writes only) while `body` runs. */
export async function spyWrites<T>(body: (writes: Write[]) => Promise<T>): Promise<T> {
  const writes: Write[] = [];
  const real = Socket.prototype.write;
  Socket.prototype.write = function (this: Socket, chunk: unknown, ...rest: unknown[]): boolean {
    const frames = Buffer.isBuffer(chunk) ? framesIn(chunk) : null;
    // `bytes` is a copy: the batch buffer is reused for later frames once written (and zeroed when it held key material).
    if (frames !== null) writes.push({ bytes: Buffer.from(chunk as Buffer), written: chunk as Buffer, kinds: new Set(frames.map((f) => f.kind)), ops: new Set(frames.map((f) => f.op)) });
    return (real as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
  } as typeof real;
  try {
    return await body(writes);
  } finally {
    Socket.prototype.write = real;
  }
}

export const requestWrites = (writes: Write[]): Write[] => writes.filter((w) => w.kinds.has(FrameKind.REQUEST));
export const replyWrites = (writes: Write[]): Write[] => writes.filter((w) => w.kinds.has(FrameKind.RESPONSE) || w.kinds.has(FrameKind.ERROR));


/** The payload of each frame in `bytes` (whole frames only), decoded. */
export function payloadsIn(bytes: Uint8Array): CborValue[] {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const out: CborValue[] = [];
  for (let at = 0; at < b.length; at += 4 + b.readUInt32BE(at)) {
    const end = at + 4 + b.readUInt32BE(at);
    out.push(end === at + HEADER_SIZE ? undefined : decode(b, at + HEADER_SIZE, end));
  }
  return out;
}
