/**
 * Admission by count: how many connections the daemon holds, decided at
 * accept, before a byte is read. Every connection costs a file descriptor
 * whether or not it ever sends HELLO, so the per-client cap at HELLO
 * (maxConnectionsPerClient) cannot protect the descriptor table: a peer that
 * never says HELLO, or says it under a new client name each time, is not
 * counted by it. These caps are, from accept until close:
 *
 *   accept ─▶ open ≥ maxConnections ─────────────────────────▶ refused, scope "daemon"
 *             operator (daemon's uid, root) ─────────────────▶ admitted
 *             others' open ≥ maxConnections − maxConnectionsPerUid ─▶ refused, scope "daemon"
 *             this uid's open ≥ maxConnectionsPerUid ─────────▶ refused, scope "uid"
 *             otherwise ─────────────────────────────────────▶ admitted
 *
 * The operator is the daemon's own uid and root (and, on the Unix socket
 * without peer credentials, whoever can open the 0600 socket: the daemon's
 * user). They can read the daemon's files anyway, so a per-uid cap would
 * protect nothing from them, and under the default policy they are the only
 * ones admitted. Everyone else (other uids, TLS clients) shares what is left
 * after one uid's worth of connections: however many uids an attacker holds,
 * the last maxConnectionsPerUid connections stay free for the operator.
 */
import { TooManyConnectionsError, type CryptodError } from '../protocol/errors.js';
import type { PeerIdentity } from './handshake.js';
import type { Limits } from '../config/limits.js';

/** A connection's place in the count, given back when it closes. */
export interface Seat {
  /** The uid counted against maxConnectionsPerUid; null for the operator and TLS clients. */
  readonly uid: number | null;
  readonly operator: boolean;
}

/** Which cap refused a connection: the kind counted in STATUS `refused`. */
export type CapRefusal = 'max-connections' | 'max-connections-per-uid';

export class ConnectionBudget {
  readonly #limits: Limits;
  readonly #daemonUid: number;
  #open = 0;
  /** Open connections that are not the operator's. */
  #others = 0;
  readonly #byUid = new Map<number, number>();

  constructor(limits: Limits, daemonUid: number) {
    this.#limits = limits;
    this.#daemonUid = daemonUid;
  }

  /** Connections holding a seat now. */
  get open(): number {
    return this.#open;
  }

  /**
   * A seat for a new connection, or why there is none. `peer` is the kernel's
   * record on the Unix socket (null without SO_PEERCRED), absent on TLS.
   */
  take(transport: 'unix' | 'tls', peer: PeerIdentity | null): Seat | { refused: CapRefusal; error: CryptodError } {
    const { maxConnections, maxConnectionsPerUid } = this.#limits;
    if (this.#open >= maxConnections) {
      return {
        refused: 'max-connections',
        error: new TooManyConnectionsError(
          `the daemon has ${this.#open} connections open, its limit (--max-connections) is ${maxConnections}; close idle connections or retry later, or ask the operator to raise the limit`,
          { detail: { scope: 'daemon', limit: maxConnections } },
        ),
      };
    }
    const operator = transport === 'unix' && (peer === null || peer.uid === this.#daemonUid || peer.uid === 0);
    if (operator) {
      this.#open++;
      return { uid: null, operator: true };
    }
    const shared = maxConnections - maxConnectionsPerUid;
    if (this.#others >= shared) {
      return {
        refused: 'max-connections',
        error: new TooManyConnectionsError(
          `users other than the daemon's own and root hold ${this.#others} connections, their share is ${shared} (--max-connections ${maxConnections} less the --max-connections-per-uid ${maxConnectionsPerUid} kept for the daemon's user and root); close idle connections or retry later`,
          { detail: { scope: 'daemon', limit: shared } },
        ),
      };
    }
    const uid = transport === 'unix' && peer !== null ? peer.uid : null;
    if (uid !== null) {
      const held = this.#byUid.get(uid) ?? 0;
      if (held >= maxConnectionsPerUid) {
        return {
          refused: 'max-connections-per-uid',
          error: new TooManyConnectionsError(
            `uid ${uid} already has ${held} connections open, the limit (--max-connections-per-uid) is ${maxConnectionsPerUid}; reuse a connection (each carries many concurrent requests) or close one`,
            { detail: { scope: 'uid', uid, limit: maxConnectionsPerUid } },
          ),
        };
      }
      this.#byUid.set(uid, held + 1);
    }
    this.#open++;
    this.#others++;
    return { uid, operator: false };
  }

  /** Give a seat back (its connection closed). */
  release(seat: Seat): void {
    this.#open--;
    if (seat.operator) return;
    this.#others--;
    if (seat.uid === null) return;
    const held = (this.#byUid.get(seat.uid) ?? 1) - 1;
    if (held === 0) this.#byUid.delete(seat.uid);
    else this.#byUid.set(seat.uid, held);
  }
}
