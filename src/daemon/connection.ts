/**
 * One client connection: the outermost object of its ownership hierarchy
 * (design note 2). It holds the creation reference of every data node its
 * requests made and puts them all when it closes — on a clean close, on a
 * crash of the client process, on daemon shutdown — so nothing outlives it
 * but operations already in flight, which finish and free their nodes after.
 *
 * Requests run through the fixed chain drawn in docs/protocol.md §5:
 *   frame → decode → handshake gate → lookup op → handler (nodes via accessors)
 *   → encode reply → batched write.
 */
import type { Socket } from 'node:net';
import { decode, type CborValue } from '../protocol/cbor.js';
import {
  BadFrameError,
  FrameTooLargeError,
  HandshakeError,
  ShuttingDownError,
  UnknownOperationError,
  toCryptodError,
  type CryptodError,
} from '../protocol/errors.js';
import { FrameKind, FrameReader, encodeFrame, type FrameSink } from '../protocol/frame.js';
import { Op, opName } from '../protocol/ops.js';
import type { ClientId, DataNodeId, IDataManager, NodeOwner } from '../state/data-manager.js';
import type { Limits } from './limits.js';
import { SensitiveReply, type DaemonView, type HandlerResult, type Operation, type RequestContext } from './operation.js';
import { handshake, type Identity } from './handshake.js';
import type { Logger } from './logger.js';

export interface ConnectionHost {
  readonly dm: IDataManager;
  readonly limits: Limits;
  readonly operations: ReadonlyMap<number, Operation>;
  readonly view: DaemonView;
  readonly log: Logger;
  readonly shuttingDown: boolean;
  /** Called once the handshake named the client. */
  attached(conn: Connection): void;
  closed(conn: Connection): void;
}

let nextConnectionNumber = 1;

export class Connection implements FrameSink, NodeOwner {
  readonly number = nextConnectionNumber++;
  readonly #socket: Socket;
  readonly #host: ConnectionHost;
  readonly #reader: FrameReader;
  readonly #owned = new Set<DataNodeId>();
  readonly #peer: Identity['peer'];
  #ctx: RequestContext | null = null;
  #inflight = 0;
  #corked = false;
  #closed = false;
  #readPaused = false;

  constructor(socket: Socket, host: ConnectionHost, peer: Identity['peer']) {
    this.#socket = socket;
    this.#host = host;
    this.#peer = peer;
    this.#reader = new FrameReader(host.limits.maxFrame, this);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('drain', () => this.#maybeResume());
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.#onClose());
  }

  get clientId(): ClientId | null {
    return this.#ctx?.clientId ?? null;
  }
  get clientName(): string | null {
    return this.#ctx?.clientName ?? null;
  }
  get inflight(): number {
    return this.#inflight;
  }
  get ownedCount(): number {
    return this.#owned.size;
  }

  // ── NodeOwner ──────────────────────────────────────────────────────────
  own(id: DataNodeId): void {
    // An async operation (e.g. RSA key generation) may finish after the close
    // already put every ownership reference: put this one now, or it leaks.
    if (this.#closed) {
      if (this.#ctx !== null) this.#ctx.dm.delete(this.#ctx.clientId, id);
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

  // ── FrameSink ──────────────────────────────────────────────────────────
  frame(kind: number, id: number, op: number, buf: Buffer, start: number, end: number): void {
    if (kind !== FrameKind.REQUEST) {
      this.#replyError(id, op, new BadFrameError(`expected a request frame (kind 1), got kind ${kind}`));
      return;
    }
    if (op === Op.HELLO) {
      let args: CborValue;
      try {
        args = start === end ? undefined : decode(buf, start, end);
      } catch (err) {
        this.#replyError(id, op, toCryptodError(err));
        return;
      }
      this.#hello(id, args);
      return;
    }
    const operation = this.#host.operations.get(op);
    if (operation === undefined) {
      this.#replyError(id, op, new UnknownOperationError(`unknown operation ${opName(op)}; see docs/protocol.md for the operations of protocol version 1`));
      return;
    }
    let args: CborValue;
    try {
      args = start === end ? undefined : decode(buf, start, end);
    } catch (err) {
      if (operation.sensitiveRequest) buf.fill(0, start, end);
      this.#replyError(id, op, toCryptodError(err));
      return;
    }
    const ctx = this.#ctx;
    if (ctx === null) {
      this.#replyError(id, op, new HandshakeError(`${opName(op)} before HELLO: the first request on a connection must be HELLO`));
      return;
    }
    if (this.#host.shuttingDown) {
      this.#replyError(id, op, new ShuttingDownError('the daemon is shutting down and accepts no new requests'));
      return;
    }
    let result: HandlerResult | Promise<HandlerResult>;
    try {
      result = operation.handle(ctx, args);
    } catch (err) {
      if (operation.sensitiveRequest) buf.fill(0, start, end);
      this.#replyError(id, op, toCryptodError(err));
      return;
    }
    if (result instanceof Promise) {
      this.#inflight++;
      if (this.#inflight >= this.#host.limits.maxInflightPerConnection) this.#pauseReading();
      result.then(
        (value) => this.#finish(id, op, value),
        (err: unknown) => this.#finishError(id, op, err),
      ).finally(() => {
        if (operation.sensitiveRequest) buf.fill(0, start, end);
      });
      return;
    }
    if (operation.sensitiveRequest) buf.fill(0, start, end);
    this.#reply(id, op, result);
  }

  oversize(_kind: number, id: number, op: number, length: number): void {
    this.#replyError(
      id,
      op,
      new FrameTooLargeError(`frame of ${length} bytes exceeds the maximum frame size of ${this.#host.limits.maxFrame} bytes`, {
        detail: { maxFrame: this.#host.limits.maxFrame, length },
      }),
    );
  }

  malformed(length: number): void {
    this.#replyError(0, 0, new BadFrameError(`frame length ${length} is smaller than the 7-byte frame header`));
  }

  // ── internals ──────────────────────────────────────────────────────────
  #onData(chunk: Buffer | null): void {
    this.#cork();
    try {
      if (chunk === null) this.#reader.resume();
      else this.#reader.push(chunk);
    } catch (err) {
      // The reader only throws on a bug; never let one connection take the daemon down.
      this.#host.log.error('connection reader failed', { connection: this.number, error: String(err) });
      this.#socket.destroy();
    }
  }

  #hello(id: number, args: CborValue): void {
    if (this.#ctx !== null) {
      this.#replyError(id, Op.HELLO, new HandshakeError('HELLO was already sent on this connection'));
      return;
    }
    try {
      const { identity, reply } = handshake(args, this.#peer, this.#host.limits);
      this.#ctx = {
        clientId: identity.clientId,
        clientName: identity.clientName,
        dm: this.#host.dm,
        owner: this,
        limits: this.#host.limits,
        daemon: this.#host.view,
      };
      this.#host.attached(this);
      this.#reply(id, Op.HELLO, reply);
    } catch (err) {
      const e = toCryptodError(err);
      this.#replyError(id, Op.HELLO, e);
      // A client that speaks another protocol version cannot continue.
      // end() alone half-closes: destroy once the error is flushed, or a peer
      // that keeps its side open keeps this connection forever.
      if (e.code === 'CRYPTOD_ERR_PROTOCOL_VERSION') this.#socket.end(() => this.#socket.destroy());
    }
  }

  #finish(id: number, op: number, value: HandlerResult): void {
    this.#inflight--;
    this.#maybeResume();
    this.#reply(id, op, value);
  }

  #finishError(id: number, op: number, err: unknown): void {
    this.#inflight--;
    this.#maybeResume();
    this.#replyError(id, op, toCryptodError(err));
  }

  #reply(id: number, op: number, result: HandlerResult): void {
    if (this.#closed) return;
    let frame: Buffer;
    const sensitive = result instanceof SensitiveReply;
    try {
      frame = encodeFrame(FrameKind.RESPONSE, id, op, sensitive ? result.value : result, sensitive);
    } catch (err) {
      this.#replyError(id, op, toCryptodError(err));
      return;
    }
    this.#write(frame, sensitive);
  }

  #replyError(id: number, op: number, err: CryptodError): void {
    if (this.#closed) return;
    if (err.code === 'CRYPTOD_ERR_INTERNAL') {
      this.#host.log.error('request failed', { connection: this.number, op: opName(op), cause: describeCause(err.cause) });
    }
    const payload: { [k: string]: CborValue } = { code: err.code, message: err.message };
    if (err.detail !== undefined) payload.detail = { ...err.detail } as CborValue;
    this.#write(encodeFrame(FrameKind.ERROR, id, op, payload), false);
  }

  #write(frame: Buffer, sensitive: boolean): void {
    this.#cork();
    if (sensitive) this.#socket.write(frame, () => frame.fill(0));
    else this.#socket.write(frame);
    if (this.#socket.writableNeedDrain) this.#pauseReading();
  }

  /** Batch every reply produced in this tick into one write (writev). */
  #cork(): void {
    if (this.#corked) return;
    this.#corked = true;
    this.#socket.cork();
    process.nextTick(() => {
      this.#corked = false;
      this.#socket.uncork();
    });
  }

  #pauseReading(): void {
    if (this.#readPaused || this.#closed) return;
    this.#readPaused = true;
    // The reader too: the rest of the chunk being parsed may hold many more requests.
    this.#reader.pause();
    this.#socket.pause();
  }

  #maybeResume(): void {
    if (!this.#readPaused || this.#closed) return;
    if (this.#inflight < this.#host.limits.maxInflightPerConnection && !this.#socket.writableNeedDrain) {
      this.#readPaused = false;
      this.#onData(null); // the frames held back first; they may pause reading again
      if (!this.#readPaused) this.#socket.resume();
    }
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    const ctx = this.#ctx;
    if (ctx !== null) {
      // Put every ownership reference (design note 2). Nodes held by an
      // operation in flight are freed when that operation's accessor goes.
      for (const id of [...this.#owned]) ctx.dm.delete(ctx.clientId, id);
    }
    this.#owned.clear();
    this.#host.closed(this);
  }
}

function describeCause(cause: unknown): string {
  if (cause instanceof Error) return `${cause.name}: ${cause.message}`.slice(0, 200);
  return typeof cause;
}
