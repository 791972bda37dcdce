/**
 * A second front door onto the same operations: a listener that does not
 * speak cryptod's frames (the Vault-compatible HTTP API, src/http/) but
 * runs every request through the daemon's own Operation objects, their
 * declared `access`, and the audit log.
 *
 *   front door (src/http)          daemon (src/daemon/front-door-host.ts)
 *   ─────────────────────          ──────────────────────────────────────
 *   bearer token, peer uid ──────▶ authenticate: token client, as in HELLO
 *   op + arguments ──────────────▶ run: limits ─▶ authorize ─▶ execute ─▶ audit
 *
 * Declared here, below both, because the daemon may not import the HTTP
 * layer nor the HTTP layer the daemon (test/layers.test.ts): the daemon
 * starts the front doors it is given and hands each this host.
 */
import type { Server, Socket } from 'node:net';
import type { SecureContextOptions, TLSSocket } from 'node:tls';
import type { CborValue } from '../protocol/cbor.js';
import type { OpCode } from '../protocol/ops.js';
import type { Limits } from '../config/limits.js';
import type { Logger } from '../observe/logger.js';
import type { HandlerResult, RequestContext } from './operation.js';

/** The kernel's record of a Unix peer (SO_PEERCRED). */
export interface PeerCredentials {
  readonly uid: number;
  readonly gid: number;
  readonly pid: number;
}

/** What a front door may ask of the daemon. */
export interface FrontDoorHost {
  readonly limits: Limits;
  readonly log: Logger;
  readonly shuttingDown: boolean;
  /** A number for a new connection, from the same sequence as the native connections (audit records name it). */
  nextConnection(): number;
  /**
   * The peer of a Unix connection, or null without SO_PEERCRED; a string
   * when the daemon's access policy refuses it (the reason, for the reply).
   * @throws when the credentials cannot be read.
   */
  admitUnixPeer(socket: Socket): PeerCredentials | null | { refused: string };
  /** Listen on a Unix socket as the daemon does on its own: private directory, stale socket removed, mode 0600. */
  listenOnUnixSocket(server: Server, path: string): Promise<void>;
  /**
   * The session of a token client (`cryptod client add`), named as HELLO
   * names it (`token:<name>`); a token restricted to a uid needs that peer.
   * Verified tokens are remembered no longer than the revocation check
   * interval, so a revoked token stops working as soon as on a native
   * connection. `until` (Date.now() milliseconds) is when that memory
   * ends: a front door may serve the same token on the same connection
   * from the context until then, and must ask again after.
   * @throws (rejects with) AuthFailedError
   */
  authenticate(token: string, peer: PeerCredentials | null, connection: number): Promise<{ context: RequestContext; until: number }>;
  /**
   * One operation, through the request chain's phases after the session:
   * limits (shutting down), authorize (`access`), execute, audit.
   * @throws (rejects with) the CryptodError the native protocol would answer
   */
  run(ctx: RequestContext, op: OpCode, args: CborValue, connection: number): Promise<HandlerResult>;
  /**
   * The mutual-TLS material of the native TCP listener (`--listen` with
   * `--tls-cert/--tls-key/--tls-client-ca/--tls-crl`), or null when none is
   * configured: a front door on a non-loopback address serves only with it,
   * so it admits exactly the clients the native listener admits.
   */
  readonly tls: FrontDoorTls | null;
  /**
   * The session of a verified client certificate, named as the native TLS
   * listener names it (`cert:<CN>`).
   */
  authenticateCertificate(certName: string): RequestContext;
}

/** The native TLS listener's material and policy, lent to a front door. */
export interface FrontDoorTls {
  /**
   * Server options read afresh from the TLS files: certificate, key, client
   * CA, CRL, minimum version and cipher suites. The caller zeroes `key` once
   * its context is built. @throws ConfigError when a file is missing or bad.
   */
  load(): SecureContextOptions & { key: Buffer };
  /** The verified certificate's name and serial, checked as the native listener checks them, or why it is refused. */
  identify(socket: TLSSocket): { name: string; serial: string } | { refused: string };
  /**
   * Called after each successful TLS reload (SIGHUP, `cryptod reload`) with
   * the serials the new CRL revokes; the front door swaps its context and
   * closes its live connections whose certificate is revoked, returning how
   * many it closed.
   */
  onReload(listener: (revoked: ReadonlySet<string>) => number): void;
}

export interface FrontDoor {
  /** For the start-up log line: `http unix:/run/cryptod/http.sock`. */
  readonly description: string;
  /** Listen; rejects (having opened nothing) when the address cannot be used. */
  start(host: FrontDoorHost): Promise<void>;
  /** Stop listening, let requests in flight finish, close every connection. */
  close(): Promise<void>;
  /** Its counts now, for STATUS (absent: the front door keeps none). */
  stats?(): FrontDoorStats;
}

/** A front door's counts, in this process. */
export interface FrontDoorStats {
  /** Connections open now. */
  readonly connections: number;
  /** Requests being served now (what maxHttpInflight bounds). */
  readonly inflight: number;
  /** Requests received since start, refused ones included. */
  readonly requests: number;
}
