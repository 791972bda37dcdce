/**
 * One client connection: the outermost object of its ownership hierarchy
 * (design note 2). It holds the creation reference of every data node its
 * requests made and puts them all when it closes — on a clean close, on a
 * crash of the client process, on daemon shutdown — so nothing outlives it
 * but operations already in flight, which finish and free their nodes after.
 *
 * The connection keeps the socket: reading frames (with fairness between
 * connections), back-pressure, batched writes, closing. Each frame it reads
 * goes to its request chain (request-chain.ts, docs/protocol.md §5), which
 * holds the session and answers through write().
 */
import type { Socket } from 'node:net';
import { BadFrameError, FrameTooLargeError } from '../protocol/errors.js';
import { FrameReader, type FrameKind, type FrameSink } from '../protocol/frame.js';
import { BATCH_FLUSH_BYTES, FrameBatch } from '../protocol/frame-batch.js';
import type { CborValue } from '../protocol/cbor.js';
import { Op } from '../protocol/ops.js';
import type { ClientId, DataNodeId, NodeOwner } from '../state/data-manager.js';
import { RequestChain, type ChainHost } from './request-chain.js';
import type { Identity } from './handshake.js';

export interface ConnectionHost extends ChainHost {
  closed(conn: Connection): void;
}

let nextConnectionNumber = 1;

/** A number from the connections' sequence, for a connection of another front door (src/ops/front-door.ts). */
export function takeConnectionNumber(): number {
  return nextConnectionNumber++;
}

/**
 * Fairness: a connection hands at most this many frames, or this many payload
 * bytes, to handlers before it stops reading for one turn of the event loop
 * (setImmediate), so other connections' I/O runs in between. Without it one
 * read callback may carry ~2 MiB of pipelined requests (libuv reads up to 32
 * times per callback), i.e. thousands of small frames run back to back.
 */
const FRAMES_PER_TURN = 32;
const BYTES_PER_TURN = 256 * 1024;

/**
 * Replies queued this long ago (counted from the turn's second reply) are
 * written at once, before the turn ends:
 * a read that brought several batch frames (hundreds of items, a
 * millisecond of work) answers the first while the next are computed, so
 * the client reads and sends more meanwhile instead of the two sides taking
 * turns. A write costs a few µs; this bounds it to one per FLUSH_AFTER_MS
 * of work.
 */
const FLUSH_AFTER_MS = 0.1;

export class Connection implements FrameSink, NodeOwner {
  readonly number = nextConnectionNumber++;
  readonly #socket: Socket;
  readonly #host: ConnectionHost;
  readonly #reader: FrameReader;
  readonly #chain: RequestChain;
  readonly #owned = new Set<DataNodeId>();
  /** HELLO is being checked (a token): no other frame is read meanwhile. */
  #helloBlocked = false;
  /** HELLO was refused: nothing more is read, the connection closes once the error is flushed. */
  #refused = false;
  #inflight = 0;
  /**
   * The replies of this tick, encoded one after another into one buffer
   * (protocol/frame-batch.ts) and written with one socket write on
   * process.nextTick (or as soon as they reach BATCH_FLUSH_BYTES).
   */
  readonly #batch = new FrameBatch();
  #flushQueued = false;
  /** When the second reply of the queued batch was encoded (performance.now()); 0 until then. */
  #queuedAt = 0;
  #closed = false;
  #readPaused = false;
  /** Payload bytes of the requests in flight (back-pressure, like #inflight). */
  #inflightBytes = 0;
  /** Frames and payload bytes handled since this connection last yielded (FRAMES_PER_TURN). */
  #turnFrames = 0;
  #turnBytes = 0;
  #yielding = false;

  /** Serial number (uppercase hex) of the client certificate, on the TLS listener; null on the Unix socket. */
  readonly certSerial: string | null;

  constructor(socket: Socket, host: ConnectionHost, peer: Identity['peer'], cert: { name: string; serial: string } | null = null) {
    this.#socket = socket;
    this.certSerial = cert?.serial ?? null;
    this.#host = host;
    this.#reader = new FrameReader(host.limits.maxFrame, this);
    this.#chain = new RequestChain(this, host, peer, cert?.name ?? null);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('drain', () => this.#maybeResume());
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.#onClose());
  }

  get clientId(): ClientId | null {
    return this.#chain.context?.clientId ?? null;
  }
  get clientName(): string | null {
    return this.#chain.context?.clientName ?? null;
  }
  /** Who the client is, once HELLO succeeded. */
  get identity(): Identity | null {
    return this.#chain.identity;
  }
  /** The kernel's record of the peer on the Unix socket; null on TLS or without SO_PEERCRED. */
  get peer(): Identity['peer'] {
    return this.#chain.peer;
  }
  get inflight(): number {
    return this.#inflight;
  }
  get ownedCount(): number {
    return this.#owned.size;
  }
  get isClosed(): boolean {
    return this.#closed;
  }
  get remoteAddress(): string | null {
    return this.#socket.remoteAddress ?? null;
  }

  // ── NodeOwner ──────────────────────────────────────────────────────────
  own(id: DataNodeId): void {
    // An async operation (e.g. RSA key generation) may finish after the close
    // already put every ownership reference: put this one now, or it leaks.
    if (this.#closed) {
      const ctx = this.#chain.context;
      if (ctx !== null) ctx.dm.delete(ctx.clientId, id);
      return;
    }
    this.#owned.add(id);
  }
  disown(id: DataNodeId): void {
    this.#owned.delete(id);
  }

  /** Stop this connection now; requests in flight finish, their replies are dropped. */
  destroy(): void {
    this.#socket.destroy();
  }

  /**
   * Close once the replies already written have been flushed (daemon
   * shutdown): destroy() would throw away a large reply the client is still
   * reading. A peer that does not take them within `ms` is cut off.
   */
  end(ms: number): void {
    this.#flush();
    const timer = setTimeout(() => this.#socket.destroy(), ms);
    timer.unref();
    this.#socket.end(() => {
      clearTimeout(timer);
      this.#socket.destroy();
    });
  }

  // ── FrameSink: every frame goes to the request chain ───────────────────
  frame(kind: number, id: number, op: number, buf: Buffer, start: number, end: number): boolean {
    this.#spend(end - start);
    return this.#chain.run(kind, id, op, buf, start, end);
  }

  /** Only HELLO and operations that declare key material (or unknown ones) have their copied bytes zeroed. */
  sensitive(op: number): boolean {
    if (op === Op.HELLO) return true;
    const operation = this.#host.operations.get(op);
    return operation === undefined || operation.sensitiveRequest === true;
  }

  oversize(_kind: number, id: number, op: number, length: number): void {
    this.#spend(0);
    const maxFrame = this.#host.limits.maxFrame;
    this.#chain.refuseFrame(id, op, new FrameTooLargeError(`frame of ${length} bytes exceeds the maximum frame size of ${maxFrame} bytes`, { detail: { maxFrame, length } }));
  }

  malformed(length: number): void {
    this.#spend(0);
    this.#chain.refuseFrame(0, 0, new BadFrameError(`frame length ${length} is smaller than the 7-byte frame header`));
  }

  // ── for the request chain ──────────────────────────────────────────────
  /**
   * Encode a reply frame after this tick's others (FrameBatch); one carrying
   * key material has the batch zeroed once written. Throws, queuing nothing,
   * when the payload does not encode.
   */
  writeFrame(kind: FrameKind, id: number, op: number, payload: CborValue | undefined, sensitive: boolean): void {
    const length = this.#batch.add(kind, id, op, payload, sensitive);
    // A client reads frames up to the maxFrame its HELLO reply stated (docs/protocol.md §2): a
    // larger result (a big batch, a RANDOM beyond the frame) is taken back (zeroed) and refused.
    const maxFrame = this.#host.limits.maxFrame;
    if (length > maxFrame) {
      this.#batch.undo();
      throw new FrameTooLargeError(`the reply of ${length} bytes would exceed the maximum frame size of ${maxFrame} bytes; ask for less in one request (fewer batch items, a smaller length) or use a context or stream`, { detail: { maxFrame, length, reply: true } });
    }
    if (this.#batch.size >= BATCH_FLUSH_BYTES) this.#flush();
    else if (!this.#flushQueued) {
      this.#flushQueued = true;
      this.#queuedAt = 0;
      process.nextTick(this.#flushTick);
    } else if (this.#queuedAt === 0) {
      // The clock starts at the tick's second reply: a lone reply (one request in flight) never reads it.
      this.#queuedAt = performance.now();
    } else if (performance.now() - this.#queuedAt >= FLUSH_AFTER_MS) this.#flush();
  }

  /** Write a frame already encoded, after the replies queued before it; one carrying key material is zeroed once written. */
  write(frame: Buffer, sensitive: boolean): void {
    this.#flush();
    if (sensitive) this.#socket.write(frame, () => frame.fill(0));
    else this.#socket.write(frame);
    if (this.#socket.writableNeedDrain) this.#pauseReading();
  }

  /** A request of `bytes` went asynchronous: it counts against the in-flight limits, which stop reading. */
  hold(bytes: number): void {
    this.#inflight++;
    this.#inflightBytes += bytes;
    const limits = this.#host.limits;
    if (this.#inflight >= limits.maxInflightPerConnection || this.#inflightBytes >= limits.maxInflightBytesPerConnection) this.#pauseReading();
  }

  /** That request settled. */
  release(bytes: number): void {
    this.#inflight--;
    this.#inflightBytes -= bytes;
    this.#maybeResume();
  }

  /** HELLO is being checked: read no other frame until releaseFrames(); shutdown waits for it. */
  holdFrames(): void {
    this.#helloBlocked = true;
    this.#inflight++;
    this.#pauseReading();
  }

  releaseFrames(): void {
    this.#inflight--;
    this.#helloBlocked = false;
    this.#maybeResume();
  }

  /**
   * HELLO was refused, or never came: read nothing more, and close once the
   * error is flushed — within `graceMs` when given (end()). A bare
   * socket.end() only half-closes: destroy after it, or a peer that keeps its
   * side open keeps this connection forever.
   */
  refuse(graceMs: number | null = null): void {
    this.#refused = true;
    this.#pauseReading();
    this.#flush(); // the refusal itself is still in the batch
    if (graceMs !== null) this.end(graceMs);
    else this.#socket.end(() => this.#socket.destroy());
  }

  // ── socket I/O, fairness, back-pressure ────────────────────────────────
  #onData(chunk: Buffer | null): void {
    try {
      if (chunk === null) this.#reader.resume();
      else this.#reader.push(chunk);
    } catch (err) {
      // The reader only throws on a bug; never let one connection take the daemon down.
      this.#host.log.error('connection reader failed', { connection: this.number, error: String(err) });
      this.#socket.destroy();
    }
  }

  readonly #flushTick = (): void => {
    if (this.#flushQueued) this.#flush();
  };

  /** Write the replies queued so far as one write; stop reading while the peer does not take them (back-pressure). */
  #flush(): void {
    this.#flushQueued = false;
    this.#batch.flush(this.#writeBatch);
    if (this.#socket.writableNeedDrain) this.#pauseReading();
  }

  /** `done` zeroes (when sensitive) and recycles the batch buffer: once written, or at once when the socket is gone. */
  readonly #writeBatch = (bytes: Buffer, done: () => void): void => {
    if (this.#socket.destroyed || !this.#socket.writable) done();
    else this.#socket.write(bytes, done);
  };

  #pauseReading(): void {
    if (this.#readPaused || this.#closed) return;
    this.#readPaused = true;
    // The reader too: the rest of the chunk being parsed may hold many more requests.
    this.#reader.pause();
    this.#socket.pause();
  }

  /** Count a frame against this turn's share (FRAMES_PER_TURN); yield the loop when it is used up. */
  #spend(bytes: number): void {
    this.#turnBytes += bytes;
    if (++this.#turnFrames < FRAMES_PER_TURN && this.#turnBytes < BYTES_PER_TURN) return;
    this.#turnFrames = 0;
    this.#turnBytes = 0;
    if (this.#yielding || this.#closed) return;
    this.#yielding = true;
    this.#pauseReading(); // the frame being handled still runs; the ones after it wait
    setImmediate(() => {
      this.#yielding = false;
      this.#maybeResume();
    });
  }

  #maybeResume(): void {
    if (!this.#readPaused || this.#closed || this.#helloBlocked || this.#refused || this.#yielding) return;
    const limits = this.#host.limits;
    if (
      this.#inflight < limits.maxInflightPerConnection &&
      this.#inflightBytes < limits.maxInflightBytesPerConnection &&
      !this.#socket.writableNeedDrain
    ) {
      this.#readPaused = false;
      this.#onData(null); // the frames held back first; they may pause reading again
      if (!this.#readPaused) this.#socket.resume();
    }
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    const ctx = this.#chain.context;
    if (ctx !== null) {
      // Put every ownership reference (design note 2). Nodes held by an
      // operation in flight are freed when that operation's accessor goes.
      for (const id of [...this.#owned]) ctx.dm.delete(ctx.clientId, id);
    }
    this.#owned.clear();
    this.#chain.closed();
    this.#host.closed(this);
  }
}
