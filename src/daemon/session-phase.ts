/**
 * The session phase of the request chain (phase 2, docs/protocol.md §5): who
 * the client on one connection is. HELLO checks the protocol version,
 * authenticates (handshake.ts), counts the connection against the client's
 * limit and names the client; every other request only asks whether HELLO
 * came first. HELLO must succeed within limits.helloTimeoutMs.
 *
 *   new ──HELLO ok──▶ named ──close──▶ closed (connection.closed audited)
 *    │ ╲
 *    │  HELLO refused (version, authentication, connection count) ──▶ ✖ close
 *    │
 *    └─ helloTimeoutMs passes ──▶ expired ──▶ ✖ close
 *
 * A refusal audits connection.refused; success audits connection.accepted.
 * The phase answers through the chain (SessionReplies), so every ERROR frame
 * still goes through the chain's one error branch.
 */
import type { CborValue } from '../protocol/cbor.js';
import { HandshakeError, toCryptodError, type CryptodError } from '../protocol/errors.js';
import { Op, opName } from '../protocol/ops.js';
import type { IDataManager } from '../state/data-manager.js';
import type { Limits } from '../config/limits.js';
import type { Audit, RefusalReason } from '../observe/audit.js';
import type { Logger } from '../observe/logger.js';
import type { DaemonView, HandlerResult, RequestContext } from '../ops/operation.js';
import { handshake, type HandshakeResult, type HelloAuth, type Identity } from './handshake.js';
import type { Connection } from './connection.js';

/** What the session phase needs from the daemon (part of the chain's ChainHost). */
export interface SessionHost {
  readonly dm: IDataManager;
  readonly limits: Limits;
  readonly view: DaemonView;
  readonly log: Logger;
  /** Checks a HELLO token (the client registry); absent: tokens are refused. */
  readonly verifyToken?: HelloAuth['verifyToken'];
  /**
   * Called once the handshake named the client.
   * @throws TooManyConnectionsError when the client has its limit of connections: HELLO fails and the connection closes.
   */
  attached(conn: Connection): void;
  /** Called when the connection is closed for not completing HELLO within limits.helloTimeoutMs (counted, logged). */
  helloTimedOut?(conn: Connection): void;
}

/** How the session phase answers: the chain's reply phase and its error branch. */
export interface SessionReplies {
  reply(id: number, op: number, result: HandlerResult): boolean;
  replyError(id: number, op: number, err: CryptodError): void;
}

/** HELLO failures after which the connection is closed, and the reason audited. */
const REFUSALS: Readonly<Record<string, RefusalReason>> = {
  CRYPTOD_ERR_PROTOCOL_VERSION: 'protocol-version',
  CRYPTOD_ERR_AUTH_FAILED: 'auth-failed',
  CRYPTOD_ERR_TOO_MANY_CONNECTIONS: 'too-many-connections',
};

export class SessionPhase {
  readonly #conn: Connection;
  readonly #host: SessionHost;
  readonly #audit: Audit;
  readonly #replies: SessionReplies;
  readonly #peer: Identity['peer'];
  /** Subject CN of the verified TLS client certificate; null on the Unix socket. */
  readonly #certName: string | null;
  #identity: Identity | null = null;
  #ctx: RequestContext | null = null;
  readonly #openedAt = Date.now();
  /** Closes the connection if HELLO has not succeeded by limits.helloTimeoutMs; cleared once it has. */
  #helloDeadline: NodeJS.Timeout | null;
  /** The deadline passed: a token check still running must not name the client after all. */
  #helloExpired = false;

  constructor(conn: Connection, host: SessionHost, audit: Audit, replies: SessionReplies, peer: Identity['peer'], certName: string | null) {
    this.#conn = conn;
    this.#host = host;
    this.#audit = audit;
    this.#replies = replies;
    this.#peer = peer;
    this.#certName = certName;
    // An idle socket that never says HELLO would hold a descriptor and a
    // connection slot forever (docs/protocol.md §4).
    this.#helloDeadline = setTimeout(() => this.#helloTimedOut(), host.limits.helloTimeoutMs);
    this.#helloDeadline.unref();
  }

  /** The session, once HELLO succeeded. */
  get context(): RequestContext | null {
    return this.#ctx;
  }
  get identity(): Identity | null {
    return this.#identity;
  }
  /** The kernel's record of the peer on the Unix socket; null on TLS or without SO_PEERCRED. */
  get peer(): Identity['peer'] {
    return this.#peer;
  }

  /** Any request but HELLO: the connection's session, or HANDSHAKE when HELLO has not named the client yet. */
  request(id: number, op: number): RequestContext | null {
    const ctx = this.#ctx;
    if (ctx === null) this.#replies.replyError(id, op, new HandshakeError(`${opName(op)} before HELLO: the first request on a connection must be HELLO`));
    return ctx;
  }

  /** HELLO: check the version, authenticate, name the client (handshake.ts). */
  hello(id: number, args: CborValue): void {
    if (this.#ctx !== null) {
      this.#replies.replyError(id, Op.HELLO, new HandshakeError('HELLO was already sent on this connection'));
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
    this.#conn.holdFrames();
    result.then(
      (r) => {
        this.#attach(id, r);
        this.#conn.releaseFrames();
      },
      (err: unknown) => {
        this.#helloFailed(id, err);
        this.#conn.releaseFrames();
      },
    );
  }

  #attach(id: number, { identity, reply }: HandshakeResult): void {
    if (this.#conn.isClosed || this.#helloExpired) return; // the client left, or the deadline passed, while its token was checked
    this.#identity = identity;
    this.#ctx = {
      clientId: identity.clientId,
      clientName: identity.clientName,
      peer: identity.peer,
      dm: this.#host.dm,
      owner: this.#conn,
      limits: this.#host.limits,
      daemon: this.#host.view,
    };
    try {
      this.#host.attached(this.#conn);
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
        connection: this.#conn.number,
        clientId: identity.clientId,
        client: identity.clientName,
        authenticatedBy: identity.authenticatedBy,
        uid: peer?.uid ?? null,
        gid: peer?.gid ?? null,
        pid: peer?.pid ?? null,
      });
    }
    this.#clearHelloDeadline();
    this.#replies.reply(id, Op.HELLO, reply);
  }

  /** No HELLO succeeded in time: an ERROR with id 0, then the connection closes (✖). */
  #helloTimedOut(): void {
    this.#helloDeadline = null;
    if (this.#conn.isClosed || this.#ctx !== null) return;
    this.#helloExpired = true;
    const ms = this.#host.limits.helloTimeoutMs;
    this.#replies.replyError(0, 0, new HandshakeError(`no HELLO completed within ${ms} ms of connecting: send HELLO first (docs/protocol.md §4); the connection is closed`, { detail: { helloTimeoutMs: ms } }));
    this.#host.helloTimedOut?.(this.#conn);
    this.#conn.refuse(ms);
  }

  #clearHelloDeadline(): void {
    if (this.#helloDeadline === null) return;
    clearTimeout(this.#helloDeadline);
    this.#helloDeadline = null;
  }

  /**
   * HELLO failed. A client that speaks another protocol version, failed to
   * authenticate, or has all the connections it may have, cannot continue:
   * the connection reads nothing more and closes once the error is flushed.
   */
  #helloFailed(id: number, err: unknown, client: string | null = null): void {
    const e = toCryptodError(err);
    this.#replies.replyError(id, Op.HELLO, e);
    const refusal = REFUSALS[e.code];
    if (refusal === undefined) return;
    if (this.#audit.enabled) {
      const peer = this.#peer;
      this.#audit.emit({
        event: 'connection.refused',
        connection: this.#conn.number,
        reason: refusal,
        detail: e.message,
        client,
        transport: this.#certName === null ? 'unix' : 'tls',
        remoteAddress: this.#conn.remoteAddress,
        uid: peer?.uid ?? null,
        gid: peer?.gid ?? null,
        pid: peer?.pid ?? null,
      });
    }
    if (e.code === 'CRYPTOD_ERR_AUTH_FAILED') {
      // Never the token: only who tried, and which check failed.
      this.#host.log.warn('authentication failed; connection closed', { connection: this.#conn.number, ...this.#peer, cert: this.#certName ?? undefined, reason: e.message });
    }
    this.#conn.refuse();
  }

  /** The connection closed: the session's last event, with the number of requests the chain took. */
  closed(requests: number): void {
    this.#clearHelloDeadline();
    const ctx = this.#ctx;
    if (!this.#audit.enabled || ctx === null) return;
    this.#audit.emit({
      event: 'connection.closed',
      connection: this.#conn.number,
      clientId: ctx.clientId,
      client: ctx.clientName,
      durationMs: Date.now() - this.#openedAt,
      requests,
    });
  }
}
