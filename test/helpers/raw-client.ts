/**
 * A client that writes its own bytes: for hostile-input tests that the real
 * client library would never produce. It parses what the daemon sends back
 * with the same FrameReader, so every reply frame is checked for framing too.
 */
import { createConnection, type Socket } from 'node:net';
import { decode, type CborValue } from '../../src/protocol/cbor.js';
import { FrameKind, FrameReader, encodeFrame, type FrameSink } from '../../src/protocol/frame.js';
import { Op, PROTOCOL_VERSION } from '../../src/protocol/ops.js';

export interface RawFrame {
  kind: number;
  id: number;
  op: number;
  payload: CborValue;
}

export class RawClient implements FrameSink {
  readonly socket: Socket;
  readonly #reader = new FrameReader(64 * 1024 * 1024, this);
  readonly #queue: RawFrame[] = [];
  #wake: (() => void) | null = null;
  /** Set when the daemon ended its side (FIN) or the socket closed. */
  ended = false;
  closed = false;
  readonly whenClosed: Promise<void>;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => this.#reader.push(chunk));
    socket.on('end', () => {
      this.ended = true;
      this.#notify();
    });
    socket.on('error', () => {});
    this.whenClosed = new Promise((res) =>
      socket.on('close', () => {
        this.closed = true;
        this.ended = true;
        this.#notify();
        res();
      }),
    );
  }

  static connect(socketPath: string, options: { allowHalfOpen?: boolean } = {}): Promise<RawClient> {
    return new Promise((res, rej) => {
      const s = createConnection({ path: socketPath, allowHalfOpen: options.allowHalfOpen ?? false });
      s.once('error', rej);
      s.once('connect', () => {
        s.off('error', rej);
        s.setNoDelay?.(true);
        res(new RawClient(s));
      });
    });
  }

  /** Connect and complete the handshake. */
  static async ready(socketPath: string, name = 'raw'): Promise<RawClient> {
    const c = await RawClient.connect(socketPath);
    const r = await c.call(Op.HELLO, { version: PROTOCOL_VERSION, client: name });
    if (r.kind !== FrameKind.RESPONSE) throw new Error(`HELLO failed: ${JSON.stringify(r.payload)}`);
    return c;
  }

  write(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** Write a frame (any kind, id, op; payload already CBOR or a value to encode). */
  send(id: number, op: number, payload?: CborValue, kind: number = FrameKind.REQUEST): void {
    this.write(encodeFrame(kind as FrameKind, id, op, payload));
  }

  #nextId = 1000;
  /** Send one request and wait for the frame that answers it. */
  async call(op: number, payload?: CborValue, timeoutMs = 5000): Promise<RawFrame> {
    const id = this.#nextId++;
    this.send(id, op, payload);
    return this.reply(id, timeoutMs);
  }

  /** The next frame, in arrival order. */
  async next(timeoutMs = 5000): Promise<RawFrame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const f = this.#queue.shift();
      if (f !== undefined) return f;
      if (this.ended) throw new Error('connection ended while waiting for a frame');
      await this.#wait(deadline - Date.now());
    }
  }

  /** The frame answering `id` (frames for other ids stay queued). */
  async reply(id: number, timeoutMs = 5000): Promise<RawFrame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.#queue.findIndex((f) => f.id === id);
      if (i >= 0) return this.#queue.splice(i, 1)[0]!;
      if (this.ended) throw new Error(`connection ended while waiting for the reply to request ${id}`);
      await this.#wait(deadline - Date.now());
    }
  }

  /** Frames received and not yet taken. */
  get queued(): readonly RawFrame[] {
    return this.#queue;
  }

  async #wait(ms: number): Promise<void> {
    if (ms <= 0) throw new Error('timed out waiting for a frame from the daemon');
    await new Promise<void>((res) => {
      const t = setTimeout(() => {
        this.#wake = null;
        res();
      }, ms);
      this.#wake = () => {
        clearTimeout(t);
        this.#wake = null;
        res();
      };
    });
  }

  #notify(): void {
    this.#wake?.();
  }

  destroy(): void {
    this.socket.destroy();
  }

  // ── FrameSink ──────────────────────────────────────────────────────────
  frame(kind: number, id: number, op: number, buf: Buffer, start: number, end: number): void {
    // Copy byte strings out: the chunk is not ours to keep.
    const payload = start === end ? undefined : decode(Buffer.from(buf.subarray(start, end)));
    this.#queue.push({ kind, id, op, payload });
    this.#notify();
  }
  oversize(kind: number, id: number, op: number, length: number): void {
    throw new Error(`the daemon sent an oversize frame (kind ${kind}, id ${id}, op ${op}, length ${length})`);
  }
  malformed(length: number): void {
    throw new Error(`the daemon sent a malformed frame (length ${length})`);
  }
}

/** The error code of an ERROR frame (and a check that it is one). */
export function errorCode(f: RawFrame): string {
  if (f.kind !== FrameKind.ERROR) throw new Error(`expected an error frame, got kind ${f.kind}: ${JSON.stringify(f.payload)}`);
  const p = f.payload as { code?: unknown };
  return String(p.code);
}

/** A frame header with any length field (for frames that lie about their size). */
export function rawHeader(length: number, kind: number, id: number, op: number): Buffer {
  const h = Buffer.alloc(11);
  h.writeUInt32BE(length >>> 0, 0);
  h[4] = kind;
  h.writeUInt32BE(id >>> 0, 5);
  h.writeUInt16BE(op, 9);
  return h;
}

/** A whole frame whose payload is the given bytes, CBOR or not. */
export function rawFrame(kind: number, id: number, op: number, payload: Uint8Array = new Uint8Array(0)): Buffer {
  return Buffer.concat([rawHeader(7 + payload.length, kind, id, op), payload]);
}
