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
import type { Limits } from '../config/limits.js';
import { NO_AUDIT, auditKindOf, type Audit, type RefusalReason } from '../observe/audit.js';
import { SensitiveReply, type DaemonView, type HandlerResult, type Operation, type RequestContext } from '../ops/operation.js';
import { handshake, type HandshakeResult, type HelloAuth, type Identity } from './handshake.js';
import type { Logger } from '../observe/logger.js';

export interface ConnectionHost {
  readonly dm: IDataManager;
  readonly limits: Limits;
  readonly operations: ReadonlyMap<number, Operation>;
  readonly view: DaemonView;
  readonly log: Logger;
  readonly shuttingDown: boolean;
  /** Checks a HELLO token (the client registry); absent: tokens are refused. */
  readonly verifyToken?: HelloAuth['verifyToken'];
  /** The audit log (absent: off). */
  readonly audit?: Audit;
  /**
   * Called once the handshake named the client.
   * @throws TooManyConnectionsError when the client has its limit of connections: HELLO fails and the connection closes.
   */
  attached(conn: Connection): void;
  /** Called when the connection is closed for not completing HELLO within limits.helloTimeoutMs (counted, logged). */
  helloTimedOut?(conn: Connection): void;
  closed(conn: Connection): void;
}

let nextConnectionNumber = 1;

/**
 * Fairness: a connection hands at most this many frames, or this many payload
 * bytes, to handlers before it stops reading for one turn of the event loop
 * (setImmediate), so other connections' I/O runs in between. Without it one
 * read callback may carry ~2 MiB of pipelined requests (libuv reads up to 32
 * times per callback), i.e. thousands of small frames run back to back.
 */
const FRAMES_PER_TURN = 32;
const BYTES_PER_TURN = 256 * 1024;

/** HELLO failures after which the connection is closed, and the reason audited. */
const REFUSALS: Readonly<Record<string, RefusalReason>> = {
  CRYPTOD_ERR_PROTOCOL_VERSION: 'protocol-version',
  CRYPTOD_ERR_AUTH_FAILED: 'auth-failed',
  CRYPTOD_ERR_TOO_MANY_CONNECTIONS: 'too-many-connections',
};

export class Connection implements FrameSink, NodeOwner {
  readonly number = nextConnectionNumber++;
  readonly #socket: Socket;
  readonly #host: ConnectionHost;
  readonly #reader: FrameReader;
  readonly #owned = new Set<DataNodeId>();
  readonly #peer: Identity['peer'];
  /** Subject CN of the verified TLS client certificate; null on the Unix socket. */
  readonly #certName: string | null;
  #identity: Identity | null = null;
  /** HELLO is being checked (a token) or failed for good: no other frame is read meanwhile. */
  #helloBlocked = false;
  #ctx: RequestContext | null = null;
  #inflight = 0;
  #corked = false;
  #closed = false;
  #readPaused = false;
  /** Payload bytes of the requests in flight (back-pressure, like #inflight). */
  #inflightBytes = 0;
  /** Frames and payload bytes handled since this connection last yielded (FRAMES_PER_TURN). */
  #turnFrames = 0;
  #turnBytes = 0;
  #yielding = false;
  readonly #audit: Audit;
  readonly #openedAt = Date.now();
  #requests = 0;
  /** Limit codes already audited on this connection: one limit.exceeded each. */
  #limitsAudited: Set<string> | null = null;
  /** Closes the connection if HELLO has not succeeded by limits.helloTimeoutMs; cleared once it has. */
  #helloDeadline: NodeJS.Timeout | null;
  /** The deadline passed: a token check still running must not name the client after all. */
  #helloExpired = false;

  /** Serial number (uppercase hex) of the client certificate, on the TLS listener; null on the Unix socket. */
  readonly certSerial: string | null;

  constructor(socket: Socket, host: ConnectionHost, peer: Identity['peer'], cert: { name: string; serial: string } | null = null) {
    this.#socket = socket;
    this.certSerial = cert?.serial ?? null;
    this.#host = host;
    this.#peer = peer;
    this.#certName = cert?.name ?? null;
    this.#reader = new FrameReader(host.limits.maxFrame, this);
    this.#audit = host.audit ?? NO_AUDIT;
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('drain', () => this.#maybeResume());
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.#onClose());
    // An idle socket that never says HELLO would hold a descriptor and a
    // connection slot forever (docs/protocol.md §4).
    this.#helloDeadline = setTimeout(() => this.#helloTimedOut(), host.limits.helloTimeoutMs);
    this.#helloDeadline.unref();
  }

  get clientId(): ClientId | null {
    return this.#ctx?.clientId ?? null;
  }
  get clientName(): string | null {
    return this.#ctx?.clientName ?? null;
  }
  /** The kernel's record of the peer on the Unix socket; null on TLS or without SO_PEERCRED. */
  get peer(): Identity['peer'] {
    return this.#peer;
  }
  /** Who the client is, once HELLO succeeded. */
  get identity(): Identity | null {
    return this.#identity;
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

  /**
   * Close once the replies already written have been flushed (daemon
   * shutdown): destroy() would throw away a large reply the client is still
   * reading. A peer that does not take them within `ms` is cut off.
   */
  end(ms: number): void {
    const timer = setTimeout(() => this.#socket.destroy(), ms);
    timer.unref();
    this.#socket.end(() => {
      clearTimeout(timer);
      this.#socket.destroy();
    });
  }

  // ── FrameSink ──────────────────────────────────────────────────────────
  frame(kind: number, id: number, op: number, buf: Buffer, start: number, end: number): void {
    this.#spend(end - start);
    if (kind !== FrameKind.REQUEST) {
      this.#replyError(id, op, new BadFrameError(`expected a request frame (kind 1), got kind ${kind}`));
      return;
    }
    if (id === 0) {
      // Id 0 is reserved for errors the daemon cannot attribute (docs/protocol.md §2, §7): serving it would make its reply ambiguous.
      buf.fill(0, start, end); // unread, and it may be a HELLO carrying a token
      this.#replyError(0, op, new BadFrameError('request id 0 is reserved for errors the daemon cannot attribute; use 1 to 4294967295', { detail: { field: 'requestId' } }));
      return;
    }
    if (op === Op.HELLO) {
      let args: CborValue;
      try {
        args = start === end ? undefined : decode(buf, start, end, 'boxed');
      } catch (err) {
        this.#replyError(id, op, toCryptodError(err));
        return;
      } finally {
        buf.fill(0, start, end); // HELLO may carry a token
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
      args = start === end ? undefined : decode(buf, start, end, 'boxed');
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
    this.#requests++;
    let result: HandlerResult | Promise<HandlerResult>;
    try {
      result = operation.handle(ctx, args);
    } catch (err) {
      if (operation.sensitiveRequest) buf.fill(0, start, end);
      this.#replyError(id, op, toCryptodError(err));
      return;
    }
    if (result instanceof Promise) {
      const size = end - start;
      this.#inflight++;
      this.#inflightBytes += size;
      const limits = this.#host.limits;
      if (this.#inflight >= limits.maxInflightPerConnection || this.#inflightBytes >= limits.maxInflightBytesPerConnection) this.#pauseReading();
      result.then(
        (value) => {
          if (this.#audit.enabled) this.#auditSuccess(op, args);
          this.#finish(id, op, value, size);
        },
        (err: unknown) => this.#finishError(id, op, err, size),
      ).finally(() => {
        if (operation.sensitiveRequest) buf.fill(0, start, end);
      });
      return;
    }
    if (operation.sensitiveRequest) buf.fill(0, start, end);
    if (this.#audit.enabled) this.#auditSuccess(op, args);
    this.#reply(id, op, result);
  }

  oversize(_kind: number, id: number, op: number, length: number): void {
    this.#spend(0);
    this.#replyError(
      id,
      op,
      new FrameTooLargeError(`frame of ${length} bytes exceeds the maximum frame size of ${this.#host.limits.maxFrame} bytes`, {
        detail: { maxFrame: this.#host.limits.maxFrame, length },
      }),
    );
  }

  malformed(length: number): void {
    this.#spend(0);
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
    let result: HandshakeResult | Promise<HandshakeResult>;
    try {
      result = handshake(args, this.#peer, this.#host.limits, { verifyToken: this.#host.verifyToken ?? null, certName: this.#certName });
    } catch (err) {
      this.#helloFailed(id, err);
      return;
    }
    if (!(result instanceof Promise)) {
      this.#attach(id, result);
      return;
    }
    // A token is being verified: requests pipelined behind HELLO wait until
    // the client is named (or refused), and shutdown waits for the check.
    this.#helloBlocked = true;
    this.#inflight++;
    this.#pauseReading();
    result.then(
      (r) => {
        this.#inflight--;
        this.#helloBlocked = false;
        this.#attach(id, r);
        this.#maybeResume();
      },
      (err: unknown) => {
        this.#inflight--;
        this.#helloFailed(id, err);
        if (!this.#helloBlocked) this.#maybeResume();
      },
    );
  }

  #attach(id: number, { identity, reply }: HandshakeResult): void {
    if (this.#closed || this.#helloExpired) return; // the client left, or the deadline passed, while its token was checked
    this.#identity = identity;
    this.#ctx = {
      clientId: identity.clientId,
      clientName: identity.clientName,
      dm: this.#host.dm,
      owner: this,
      limits: this.#host.limits,
      daemon: this.#host.view,
    };
    try {
      this.#host.attached(this);
    } catch (err) {
      this.#identity = null;
      this.#ctx = null;
      this.#helloFailed(id, err, identity.clientName);
      return;
    }
    if (this.#audit.enabled) {
      const peer = identity.peer;
      this.#audit.emit({
        event: 'connection.accepted',
        connection: this.number,
        clientId: identity.clientId,
        client: identity.clientName,
        authenticatedBy: identity.authenticatedBy,
        uid: peer?.uid ?? null,
        gid: peer?.gid ?? null,
        pid: peer?.pid ?? null,
      });
    }
    this.#clearHelloDeadline();
    this.#reply(id, Op.HELLO, reply);
  }

  #helloTimedOut(): void {
    this.#helloDeadline = null;
    if (this.#closed || this.#ctx !== null) return;
    this.#helloExpired = true;
    const ms = this.#host.limits.helloTimeoutMs;
    this.#replyError(0, 0, new HandshakeError(`no HELLO completed within ${ms} ms of connecting: send HELLO first (docs/protocol.md §4); the connection is closed`, { detail: { helloTimeoutMs: ms } }));
    this.#host.helloTimedOut?.(this);
    this.#helloBlocked = true;
    this.#pauseReading();
    this.end(ms);
  }

  #clearHelloDeadline(): void {
    if (this.#helloDeadline === null) return;
    clearTimeout(this.#helloDeadline);
    this.#helloDeadline = null;
  }

  #helloFailed(id: number, err: unknown, client: string | null = null): void {
    const e = toCryptodError(err);
    this.#replyError(id, Op.HELLO, e);
    // A client that speaks another protocol version, failed to authenticate,
    // or has all the connections it may have, cannot continue: read nothing
    // more, and close once the error is flushed. end() alone half-closes:
    // destroy after it, or a peer that keeps its side open keeps this
    // connection forever.
    const refusal = REFUSALS[e.code];
    if (refusal !== undefined) {
      if (this.#audit.enabled) {
        const peer = this.#peer;
        this.#audit.emit({
          event: 'connection.refused',
          connection: this.number,
          reason: refusal,
          detail: e.message,
          client,
          transport: this.#certName === null ? 'unix' : 'tls',
          remoteAddress: this.#socket.remoteAddress ?? null,
          uid: peer?.uid ?? null,
          gid: peer?.gid ?? null,
          pid: peer?.pid ?? null,
        });
      }
      if (e.code === 'CRYPTOD_ERR_AUTH_FAILED') {
        // Never the token: only who tried, and which check failed.
        this.#host.log.warn('authentication failed; connection closed', { connection: this.number, ...this.#peer, cert: this.#certName ?? undefined, reason: e.message });
      }
      this.#helloBlocked = true;
      this.#pauseReading();
      this.#socket.end(() => this.#socket.destroy());
    } else {
      this.#helloBlocked = false;
    }
  }

  #finish(id: number, op: number, value: HandlerResult, size: number): void {
    this.#inflight--;
    this.#inflightBytes -= size;
    this.#maybeResume();
    this.#reply(id, op, value);
  }

  #finishError(id: number, op: number, err: unknown, size: number): void {
    this.#inflight--;
    this.#inflightBytes -= size;
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
    if (this.#audit.enabled && this.#ctx !== null) this.#auditFailure(op, err);
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
    if (!this.#readPaused || this.#closed || this.#helloBlocked || this.#yielding) return;
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
    this.#clearHelloDeadline();
    const ctx = this.#ctx;
    if (ctx !== null) {
      // Put every ownership reference (design note 2). Nodes held by an
      // operation in flight are freed when that operation's accessor goes.
      for (const id of [...this.#owned]) ctx.dm.delete(ctx.clientId, id);
    }
    this.#owned.clear();
    if (this.#audit.enabled && ctx !== null) {
      this.#audit.emit({
        event: 'connection.closed',
        connection: this.number,
        clientId: ctx.clientId,
        client: ctx.clientName,
        durationMs: Date.now() - this.#openedAt,
        requests: this.#requests,
      });
    }
    this.#host.closed(this);
  }

  // ── audit (only called when the audit log is on) ───────────────────────
  /** Key material that left the daemon: an export, or a wrap (src/observe/audit.ts). */
  #auditSuccess(op: number, args: CborValue): void {
    if (op !== Op.EXPORT_KEY && op !== Op.WRAP_KEY) return;
    const ctx = this.#ctx!;
    const a = (args ?? {}) as { [k: string]: CborValue };
    this.#audit.emit({
      event: 'key.exported',
      op: opName(op),
      key: typeof a.key === 'string' ? a.key : '?',
      format: typeof a.format === 'string' ? a.format : '?',
      connection: this.number,
      clientId: ctx.clientId,
      client: ctx.clientName,
    });
  }

  /** A refusal worth auditing: a denial every time, a limit once per connection (see audit.ts). */
  #auditFailure(op: number, err: CryptodError): void {
    const kind = auditKindOf(err.code);
    if (kind === null) return;
    const ctx = this.#ctx!;
    const who = { connection: this.number, clientId: ctx.clientId, client: ctx.clientName, op: opName(op), code: err.code };
    if (kind === 'denied') {
      const key = err.detail?.key;
      this.#audit.emit({ event: 'request.denied', ...who, key: typeof key === 'string' ? key : null });
      return;
    }
    this.#limitsAudited ??= new Set();
    if (this.#limitsAudited.has(err.code)) return;
    this.#limitsAudited.add(err.code);
    this.#audit.emit({ event: 'limit.exceeded', ...who, limit: kind });
  }
}

/**
 * An unexpected error for the log: its class, its code (node:crypto's
 * `ERR_OSSL_…`) and where it was thrown — never its message, which a foreign
 * library may have built from the request's bytes (test/no-secrets.test.ts).
 */
function describeCause(cause: unknown): string {
  if (!(cause instanceof Error)) return typeof cause;
  const code = (cause as { code?: unknown }).code;
  // The stack starts with "Name: message" (which may span lines): look only after it.
  const head = `${cause.name}: ${cause.message}`;
  const stack = cause.stack?.startsWith(head) === true ? cause.stack.slice(head.length) : '';
  const at = stack.split('\n').find((line) => /^\s+at /.test(line))?.trim();
  return [cause.name, typeof code === 'string' ? code : null, at ?? null].filter((x) => x !== null).join(' ').slice(0, 300);
}
