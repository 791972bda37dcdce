/**
 * The request chain's hot path, alone: 200k PING, 200k HMAC-SHA256 (64 B)
 * and 200k AES-256-GCM encrypt (1 KiB) requests pipelined over one
 * Unix-socket connection to a daemon in this
 * process. Requests are encoded up front and replies only counted, so the
 * client costs little beside the daemon. Prints ops/s per run.
 *
 *   node --import tsx bench/pipeline.ts [requests] [runs]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon } from '../src/daemon/index.js';
import { decode, type CborValue } from '../src/protocol/cbor.js';
import { FrameKind, encodeFrame } from '../src/protocol/frame.js';
import { Op } from '../src/protocol/ops.js';

const N = Number(process.argv[2] ?? 200_000);
const RUNS = Number(process.argv[3] ?? 1);

/** Counts reply frames; resolves the first one whose id is `want` with its payload. */
class Replies {
  #pending = Buffer.alloc(0);
  count = 0;
  /** ERROR frames: a run that counts any is not measuring what it says. */
  errors = 0;
  #waiters = new Map<number, (v: CborValue) => void>();
  #target = 0;
  #onTarget: (() => void) | null = null;
  constructor(socket: Socket) {
    socket.on('data', (chunk: Buffer) => this.#push(chunk));
  }
  #push(chunk: Buffer): void {
    let buf = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    let at = 0;
    while (buf.length - at >= 4) {
      const len = buf.readUInt32BE(at);
      if (buf.length - at - 4 < len) break;
      if (this.#waiters.size > 0) {
        const id = buf.readUInt32BE(at + 5);
        const w = this.#waiters.get(id);
        if (w !== undefined) {
          this.#waiters.delete(id);
          const end = at + 4 + len;
          w(end === at + 11 ? null : decode(buf, at + 11, end));
        }
      }
      if (buf[at + 4] === FrameKind.ERROR) this.errors++;
      this.count++;
      at += 4 + len;
    }
    this.#pending = at === buf.length ? Buffer.alloc(0) : Buffer.from(buf.subarray(at));
    buf = Buffer.alloc(0);
    if (this.#onTarget !== null && this.count >= this.#target) {
      const f = this.#onTarget;
      this.#onTarget = null;
      f();
    }
  }
  reply(id: number): Promise<CborValue> {
    return new Promise((resolve) => this.#waiters.set(id, resolve));
  }
  until(n: number): Promise<void> {
    this.#target = n;
    return new Promise((resolve) => (this.#onTarget = resolve));
  }
}

async function pipeline(socket: Socket, replies: Replies, frames: Buffer): Promise<number> {
  const before = replies.count;
  const done = replies.until(before + N);
  const t0 = process.hrtime.bigint();
  const CHUNK = 256 * 1024;
  for (let at = 0; at < frames.length; at += CHUNK) {
    if (!socket.write(frames.subarray(at, at + CHUNK))) await new Promise((r) => socket.once('drain', r));
  }
  await done;
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  return N / s;
}

const dir = mkdtempSync(join(tmpdir(), 'cryptod-pipe-'));
const daemon = await startDaemon({ socketPath: join(dir, 's.sock'), limits: { maxFrame: 64 * 1024 * 1024 } });
try {
  const socket = createConnection(join(dir, 's.sock'));
  await new Promise((r) => socket.once('connect', r));
  const replies = new Replies(socket);
  socket.write(encodeFrame(FrameKind.REQUEST, 1, Op.HELLO, { version: 1, client: 'pipe' }));
  await replies.reply(1);
  socket.write(encodeFrame(FrameKind.REQUEST, 2, Op.IMPORT_KEY, { format: 'raw', keyData: Buffer.alloc(32, 7), algorithm: { name: 'HMAC', hash: 'SHA-256' }, extractable: false, usages: ['sign'] }));
  const key = (await replies.reply(2)) as { handle: string };
  socket.write(encodeFrame(FrameKind.REQUEST, 3, Op.IMPORT_KEY, { format: 'raw', keyData: Buffer.alloc(32, 9), algorithm: { name: 'AES-GCM' }, extractable: false, usages: ['encrypt'] }));
  const aes = (await replies.reply(3)) as { handle: string };
  const msg = Buffer.alloc(64, 1);
  const kib = Buffer.alloc(1024, 2);
  const ping: Buffer[] = [];
  const hmac: Buffer[] = [];
  const gcm: Buffer[] = [];
  for (let i = 0; i < N; i++) {
    ping.push(encodeFrame(FrameKind.REQUEST, 10 + i, Op.PING));
    hmac.push(encodeFrame(FrameKind.REQUEST, 10 + i, Op.SIGN, { algorithm: { name: 'HMAC' }, key: key.handle, data: msg }));
    const iv = Buffer.alloc(12);
    iv.writeUInt32BE(i, 8);
    gcm.push(encodeFrame(FrameKind.REQUEST, 10 + i, Op.ENCRYPT, { algorithm: { name: 'AES-GCM', iv }, key: aes.handle, data: kib }));
  }
  const pings = Buffer.concat(ping);
  const hmacs = Buffer.concat(hmac);
  const gcms = Buffer.concat(gcm);
  // One warm-up pass of each, then the measured runs.
  await pipeline(socket, replies, pings);
  await pipeline(socket, replies, hmacs);
  await pipeline(socket, replies, gcms);
  for (let r = 0; r < RUNS; r++) {
    const p = await pipeline(socket, replies, pings);
    const h = await pipeline(socket, replies, hmacs);
    const g = await pipeline(socket, replies, gcms);
    console.log(JSON.stringify({ ping: Math.round(p), hmac: Math.round(h), aesGcm1k: Math.round(g), errors: replies.errors }));
  }
  socket.destroy();
} finally {
  await daemon.close();
  rmSync(dir, { recursive: true, force: true });
}
