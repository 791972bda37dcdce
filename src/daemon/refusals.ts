/**
 * Connections the daemon turns away: counted by kind (STATUS `refused`),
 * logged without letting a flood of them flood the log, and closed with one
 * ERROR frame that says why (docs/protocol.md §7, request id 0).
 *
 * Closing right after writing that frame would lose it: the client writes
 * HELLO as soon as it is connected, and a write to a closed Unix socket
 * fails with EPIPE (or the read with ECONNRESET, when the daemon closed with
 * HELLO unread) before the client reads what the daemon sent. So a refused
 * connection lingers: the daemon sends the frame and its FIN, discards what
 * the client sends, and closes when the client does, or at the HELLO
 * deadline. Lingering costs a descriptor, so at most a quarter of
 * maxConnections linger at once; past that a refused connection is closed at
 * once, and its client may see a plain connection error instead.
 */
import type { Socket } from 'node:net';
import type { CborValue } from '../protocol/cbor.js';
import type { CryptodError } from '../protocol/errors.js';
import { FrameKind, encodeFrame } from '../protocol/frame.js';
import type { Limits } from '../config/limits.js';
import type { Logger } from '../observe/logger.js';

/** Why a connection was turned away (STATUS `refused` keys). */
export type RefusalKind =
  | 'access-policy'
  | 'no-peer-credentials'
  | 'tls'
  | 'max-connections'
  | 'max-connections-per-uid'
  | 'max-connections-per-client'
  | 'hello-timeout';

/**
 * Log lines per window: the first LOG_BURST refusals of a window are logged
 * one by one, the rest only counted and summed up in one line when the window
 * ends. Fixed, not a limit: it shapes the log, not what the daemon serves.
 */
const LOG_BURST = 10;
const LOG_WINDOW_MS = 10_000;

export class Refusals {
  readonly #log: Logger;
  readonly #limits: Limits;
  readonly #counts = new Map<RefusalKind, number>();
  #windowStart = 0;
  #loggedInWindow = 0;
  readonly #suppressed = new Map<RefusalKind, number>();
  #summary: NodeJS.Timeout | null = null;
  /** Refused connections waiting for their client to read the error frame. */
  readonly #lingering = new Set<Socket>();

  constructor(log: Logger, limits: Limits) {
    this.#log = log;
    this.#limits = limits;
  }

  /** Refusals so far, by kind (kinds that never happened are absent). */
  counts(): Record<string, number> {
    return Object.fromEntries(this.#counts);
  }

  /** Count one refusal and log its warn line, unless this window's lines are used up. */
  record(kind: RefusalKind, fields: Record<string, unknown>): void {
    this.#counts.set(kind, (this.#counts.get(kind) ?? 0) + 1);
    const now = Date.now();
    if (now - this.#windowStart >= LOG_WINDOW_MS) {
      this.#windowStart = now;
      this.#loggedInWindow = 0;
    }
    if (this.#loggedInWindow < LOG_BURST) {
      this.#loggedInWindow++;
      this.#log.warn('connection refused', { refusal: kind, ...fields });
      return;
    }
    this.#suppressed.set(kind, (this.#suppressed.get(kind) ?? 0) + 1);
    if (this.#summary === null) {
      this.#summary = setTimeout(() => this.#flushSummary(), this.#windowStart + LOG_WINDOW_MS - now);
      this.#summary.unref();
    }
  }

  /** Send `error` as an ERROR frame with request id 0, then close (lingering, see above). */
  closeWithError(socket: Socket, error: CryptodError): void {
    const payload: { [k: string]: CborValue } = { code: error.code, message: error.message };
    if (error.detail !== undefined) payload.detail = { ...error.detail } as CborValue;
    socket.on('error', () => socket.destroy());
    if (this.#lingering.size >= Math.max(1, Math.floor(this.#limits.maxConnections / 4))) {
      socket.end(encodeFrame(FrameKind.ERROR, 0, 0, payload), () => socket.destroy());
      return;
    }
    this.#lingering.add(socket);
    const timer = setTimeout(() => socket.destroy(), this.#limits.helloTimeoutMs);
    timer.unref();
    socket.once('close', () => {
      this.#lingering.delete(socket);
      clearTimeout(timer);
    });
    socket.resume(); // read and discard what the client sends (its HELLO)
    socket.end(encodeFrame(FrameKind.ERROR, 0, 0, payload));
  }

  /**
   * Daemon shutdown: close the refused connections still lingering (the
   * listener's close waits for them), log what the window suppressed, and
   * stop the summary timer.
   */
  stop(): void {
    for (const socket of this.#lingering) socket.destroy();
    this.#flushSummary();
  }

  #flushSummary(): void {
    if (this.#summary !== null) clearTimeout(this.#summary);
    this.#summary = null;
    if (this.#suppressed.size === 0) return;
    this.#log.warn('connections refused (not logged one by one)', { suppressed: Object.fromEntries(this.#suppressed), windowMs: LOG_WINDOW_MS });
    this.#suppressed.clear();
  }
}
