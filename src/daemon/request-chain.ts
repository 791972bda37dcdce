/**
 * The request chain (docs/protocol.md §5, drawn there with every branch).
 * Each frame a connection reads runs through these phases, in this order;
 * each passes the request on, or answers it with an ERROR frame and stops:
 *
 *   decode ─▶ session ─▶ limits ─▶ authorize ─▶ execute ─▶ reply ─▶ audit
 *
 *   decode     a request frame, of an operation served, with a CBOR payload
 *   session    HELLO: protocol version and authentication (refusals close
 *              the connection); any other request: HELLO came first
 *              (session-phase.ts)
 *   limits     the daemon still takes requests
 *   authorize  the operation's declared `access` (ops/operation.ts), through
 *              the host's Authorizer; may wait for one keystore refresh
 *   execute    the handler: checks its arguments, resolves its nodes through
 *              the accessors, runs, releases them
 *   reply      encode the result; the connection writes it
 *   audit      what the operation declares on success; refusals worth auditing
 *
 * One chain per connection. Its session phase holds who the client is; the
 * connection (connection.ts) keeps the socket: I/O, fairness, back-pressure
 * and the nodes it owns. The phases are methods called with the frame's
 * fields as arguments: a request allocates nothing beyond its decoded
 * arguments and its reply, and creates no closure unless it goes
 * asynchronous.
 */
import { decode, type CborValue } from '../protocol/cbor.js';
import {
  BadFrameError,
  ShuttingDownError,
  UnknownOperationError,
  toCryptodError,
  type CryptodError,
} from '../protocol/errors.js';
import { FrameKind } from '../protocol/frame.js';
import { Op, opName } from '../protocol/ops.js';
import { NO_AUDIT, auditKindOf, type Audit } from '../observe/audit.js';
import { NO_METRICS, type MetricHooks } from '../observe/metric-hooks.js';
import {
  SensitiveReply,
  type Authorizer,
  type HandlerResult,
  type Operation,
  type RequestContext,
} from '../ops/operation.js';
import type { Identity } from './handshake.js';
import { SessionPhase, type SessionHost } from './session-phase.js';
import type { Connection } from './connection.js';

/** What the chain needs from the daemon; the session phase's part is SessionHost. */
export interface ChainHost extends SessionHost {
  readonly operations: ReadonlyMap<number, Operation>;
  /** Enforces each operation's `access` (src/ops/managed-auth.ts `managedAccess`). */
  readonly authorizer: Authorizer;
  readonly shuttingDown: boolean;
  /** The audit log (absent: off). */
  readonly audit?: Audit;
  /** Metrics (absent: off). */
  readonly metrics?: MetricHooks;
}

/** A phase answered the request with an error: the chain stops. */
const STOP: unique symbol = Symbol('stop');

export class RequestChain {
  readonly #conn: Connection;
  readonly #host: ChainHost;
  readonly #audit: Audit;
  readonly #metrics: MetricHooks;
  /** With metrics on: when each request in flight arrived (performance.now()), by request id. */
  #started: Map<number, number> | null = null;
  readonly #session: SessionPhase;
  #requests = 0;
  /** Limit codes already audited on this connection: one limit.exceeded each. */
  #limitsAudited: Set<string> | null = null;

  constructor(conn: Connection, host: ChainHost, peer: Identity['peer'], certName: string | null) {
    this.#conn = conn;
    this.#host = host;
    this.#audit = host.audit ?? NO_AUDIT;
    this.#metrics = host.metrics ?? NO_METRICS;
    // Once per connection: the session phase answers through the chain's reply phase and error branch.
    const replies = {
      reply: (id: number, op: number, result: HandlerResult) => this.#reply(id, op, result),
      replyError: (id: number, op: number, err: CryptodError) => this.#replyError(id, op, err),
    };
    this.#session = new SessionPhase(conn, host, this.#audit, replies, peer, certName);
  }

  /** The session, once HELLO succeeded. */
  get context(): RequestContext | null {
    return this.#session.context;
  }
  get identity(): Identity | null {
    return this.#session.identity;
  }
  /** The kernel's record of the peer on the Unix socket; null on TLS or without SO_PEERCRED. */
  get peer(): Identity['peer'] {
    return this.#session.peer;
  }

  /**
   * One frame, through every phase in order. Returns true when nothing refers
   * to `buf` any more (an operation that keepsNoInput, done synchronously),
   * so the reader may reuse it.
   */
  run(kind: number, id: number, op: number, buf: Buffer, start: number, end: number): boolean {
    if (this.#metrics.enabled) this.#begin(id);
    const operation = this.#decodeFrame(kind, id, op, buf, start, end);
    if (operation === STOP) return false;
    const args = this.#decodePayload(operation, id, op, buf, start, end);
    if (args === STOP) return false;
    if (operation === null) {
      this.#session.hello(id, args);
      return false;
    }
    const ctx = this.#session.request(id, op);
    if (ctx === null || !this.#limits(id, op)) {
      zero(operation, buf, start, end);
      return false;
    }
    if (operation.access.kind !== 'none' && this.#authorize(ctx, operation, id, op, args, buf, start, end)) return false;
    return this.#execute(ctx, operation, id, op, args, buf, start, end) && operation.keepsNoInput === true;
  }

  /** A frame the reader refused (too large, too short): the decode phase's error branch. */
  refuseFrame(id: number, op: number, err: CryptodError): void {
    this.#replyError(id, op, err);
  }

  // ── 1. decode ──────────────────────────────────────────────────────────
  /** A request frame, of an operation this daemon serves; null for HELLO, which the session phase answers. */
  #decodeFrame(kind: number, id: number, op: number, buf: Buffer, start: number, end: number): Operation | null | typeof STOP {
    if (kind !== FrameKind.REQUEST) {
      this.#replyError(id, op, new BadFrameError(`expected a request frame (kind 1), got kind ${kind}`));
      return STOP;
    }
    if (id === 0) {
      // Id 0 is reserved for errors the daemon cannot attribute (docs/protocol.md §2, §7): serving it would make its reply ambiguous.
      buf.fill(0, start, end); // unread, and it may be a HELLO carrying a token
      this.#replyError(0, op, new BadFrameError('request id 0 is reserved for errors the daemon cannot attribute; use 1 to 4294967295', { detail: { field: 'requestId' } }));
      return STOP;
    }
    if (op === Op.HELLO) return null;
    const operation = this.#host.operations.get(op);
    if (operation !== undefined) return operation;
    this.#replyError(id, op, new UnknownOperationError(`unknown operation ${opName(op)}; see docs/protocol.md for the operations of protocol version 1`));
    return STOP;
  }

  /** The CBOR payload (§3). HELLO's is zeroed at once (it may carry a token); another sensitive one when the request ends. */
  #decodePayload(operation: Operation | null, id: number, op: number, buf: Buffer, start: number, end: number): CborValue | typeof STOP {
    try {
      return start === end ? undefined : decode(buf, start, end, 'boxed');
    } catch (err) {
      if (operation !== null) zero(operation, buf, start, end);
      this.#replyError(id, op, toCryptodError(err));
      return STOP;
    } finally {
      if (operation === null) buf.fill(0, start, end);
    }
  }

  // ── 2. session (session-phase.ts) ──────────────────────────────────────
  // HELLO names the client (version, authentication, connection count, the
  // HELLO deadline); any other request needs the session HELLO opened.

  // ── 3. limits ──────────────────────────────────────────────────────────
  /**
   * The daemon still takes requests. (The in-flight limits refuse nothing:
   * the connection stops reading at them, back-pressure.)
   */
  #limits(id: number, op: number): boolean {
    if (this.#host.shuttingDown) {
      this.#replyError(id, op, new ShuttingDownError('the daemon is shutting down and accepts no new requests'));
      return false;
    }
    this.#requests++;
    return true;
  }

  // ── 4. authorize ───────────────────────────────────────────────────────
  /**
   * The operation's declared access. Returns whether it took the request
   * over: refused (answered), or waiting for a keystore refresh (execute
   * follows when it allows).
   */
  #authorize(ctx: RequestContext, operation: Operation, id: number, op: number, args: CborValue, buf: Buffer, start: number, end: number): boolean {
    let wait: void | Promise<void>;
    try {
      wait = this.#host.authorizer.authorize(ctx, operation.access, args);
    } catch (err) {
      zero(operation, buf, start, end);
      this.#replyError(id, op, toCryptodError(err));
      return true;
    }
    if (wait === undefined) return false;
    const size = end - start;
    this.#conn.hold(size);
    wait.then(
      () => {
        this.#conn.release(size);
        this.#execute(ctx, operation, id, op, args, buf, start, end);
      },
      (err: unknown) => {
        this.#conn.release(size);
        zero(operation, buf, start, end);
        this.#replyError(id, op, toCryptodError(err));
      },
    );
    return true;
  }

  // ── 5. execute ─────────────────────────────────────────────────────────
  /** The handler; an asynchronous one counts as in flight until it settles. Returns whether it was done synchronously. */
  #execute(ctx: RequestContext, operation: Operation, id: number, op: number, args: CborValue, buf: Buffer, start: number, end: number): boolean {
    let result: HandlerResult | Promise<HandlerResult>;
    try {
      result = operation.handle(ctx, args);
    } catch (err) {
      zero(operation, buf, start, end);
      this.#replyError(id, op, toCryptodError(err));
      return true;
    }
    if (!(result instanceof Promise)) {
      zero(operation, buf, start, end);
      this.#succeeded(operation, id, op, args, result);
      return true;
    }
    const size = end - start;
    this.#conn.hold(size);
    result
      .then(
        (value) => {
          this.#conn.release(size);
          this.#succeeded(operation, id, op, args, value);
        },
        (err: unknown) => {
          this.#conn.release(size);
          this.#replyError(id, op, toCryptodError(err));
        },
      )
      .finally(() => zero(operation, buf, start, end));
    return false;
  }

  #succeeded(operation: Operation, id: number, op: number, args: CborValue, result: HandlerResult): void {
    if (this.#reply(id, op, result) && operation.audit !== undefined && this.#audit.enabled) this.#auditSuccess(operation, args, result);
  }

  // ── 6. reply ───────────────────────────────────────────────────────────
  /** Encode and write the result; whether it was sent (not when the connection closed, or it did not encode). */
  #reply(id: number, op: number, result: HandlerResult): boolean {
    if (this.#conn.isClosed) return false;
    if (this.#metrics.enabled) this.#end(id, op, 'OK');
    const sensitive = result instanceof SensitiveReply;
    try {
      // Encoded straight into the connection's batch of this tick's replies.
      this.#conn.writeFrame(FrameKind.RESPONSE, id, op, sensitive ? result.value : result, sensitive);
    } catch (err) {
      this.#replyError(id, op, toCryptodError(err));
      return false;
    }
    return true;
  }

  /** Every phase's error branch: an ERROR frame with the same request id and op. */
  #replyError(id: number, op: number, err: CryptodError): void {
    if (this.#conn.isClosed) return;
    if (this.#metrics.enabled) this.#endWithError(id, op, err);
    if (err.code === 'CRYPTOD_ERR_INTERNAL') {
      this.#host.log.error('request failed', { connection: this.#conn.number, op: opName(op), cause: describeCause(err.cause) });
    }
    if (this.#audit.enabled && this.#session.context !== null) this.#auditRefusal(op, err);
    const payload: { [k: string]: CborValue } = { code: err.code, message: err.message };
    if (err.detail !== undefined) payload.detail = { ...err.detail } as CborValue;
    this.#conn.writeFrame(FrameKind.ERROR, id, op, payload, false);
  }

  // ── 7. audit (only with the audit log on) ──────────────────────────────
  /** What the operation declares it records on success (src/observe/audit.ts). */
  #auditSuccess(operation: Operation, args: CborValue, result: HandlerResult): void {
    const ctx = this.#session.context!;
    this.#audit.emit(operation.audit!({ op: operation.op, args, result, connection: this.#conn.number, clientId: ctx.clientId, client: ctx.clientName }));
  }

  /** A refusal worth auditing: a denial every time, a limit once per connection (see audit.ts). */
  #auditRefusal(op: number, err: CryptodError): void {
    const kind = auditKindOf(err.code);
    if (kind === null) return;
    const ctx = this.#session.context!;
    const who = { connection: this.#conn.number, clientId: ctx.clientId, client: ctx.clientName, op: opName(op), code: err.code };
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

  // ── metrics (only with metrics on) ─────────────────────────────────────
  #begin(id: number): void {
    this.#started ??= new Map();
    // A client that reuses the id of a request still in flight: the first is no longer timed.
    if (this.#started.has(id)) this.#metrics.requestDropped();
    this.#started.set(id, performance.now());
    this.#metrics.requestStarted();
  }

  #end(id: number, op: number, code: string): void {
    const t0 = this.#started?.get(id);
    if (t0 !== undefined) this.#started!.delete(id);
    this.#metrics.requestEnded(op, code, t0 === undefined ? null : (performance.now() - t0) / 1000);
  }

  #endWithError(id: number, op: number, err: CryptodError): void {
    this.#end(id, op, err.code);
    if (auditKindOf(err.code) === 'denied') {
      const key = err.detail?.key;
      this.#metrics.denied(op, err.code, typeof key === 'string' ? key : null);
    }
  }

  /** The connection closed: the session's last event. */
  closed(): void {
    if (this.#started !== null) {
      for (let n = this.#started.size; n > 0; n--) this.#metrics.requestDropped();
      this.#started.clear();
    }
    this.#session.closed(this.#requests);
  }
}

/** A request payload that carries key material (or HELLO's token) is zeroed once the request is done with it. */
function zero(operation: Operation | null, buf: Buffer, start: number, end: number): void {
  if (operation === null || operation.sensitiveRequest === true) buf.fill(0, start, end);
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
