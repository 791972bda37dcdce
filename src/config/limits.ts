/**
 * Every limit the daemon enforces, with its default. Documented in README.md
 * ("Limits"); each has its own typed error when it is hit.
 */
import { DEFAULT_MAX_FRAME, MAX_MAX_FRAME, MIN_LENGTH } from '../protocol/frame.js';
import { ConfigError } from '../protocol/errors.js';

export interface Limits {
  /** Largest value of a frame's length field (bytes). CRYPTOD_ERR_FRAME_TOO_LARGE. */
  readonly maxFrame: number;
  /** Live data nodes one client may hold. CRYPTOD_ERR_QUOTA. */
  readonly maxNodesPerClient: number;
  /** Requests one connection may have in flight before the daemon stops reading from it. */
  readonly maxInflightPerConnection: number;
  /**
   * Payload bytes of the requests one connection has in flight (asynchronous
   * ones: sliced updates, key generation) before the daemon stops reading
   * from it. Back-pressure like the count above: without it 1024 requests of
   * 4 MiB would pin 4 GiB. A single request is always accepted.
   */
  readonly maxInflightBytesPerConnection: number;
  /** Open connections one client (ClientId) may have. CRYPTOD_ERR_TOO_MANY_CONNECTIONS at HELLO. */
  readonly maxConnectionsPerClient: number;
  /**
   * Open connections of one uid on the Unix socket, counted from accept (before
   * HELLO, so different client names do not sidestep it). The daemon's own uid
   * and root are not counted against it: they can read the daemon's files
   * anyway, and the default policy admits nobody else. Must be below
   * maxConnections: the last maxConnectionsPerUid connections are kept for
   * those two (src/daemon/admission.ts). Default: a quarter of maxConnections.
   * CRYPTOD_ERR_TOO_MANY_CONNECTIONS at accept.
   */
  readonly maxConnectionsPerUid: number;
  /**
   * Open connections over both listeners, counted from accept. Each costs a
   * file descriptor; the default stays well under the common soft limit of
   * 1024 even if raising it to the hard limit fails at start (peer-cred.ts
   * raiseFileLimit), leaving room for the keystore, the audit log, the
   * listeners and refused connections on their way out (a quarter of this
   * more). CRYPTOD_ERR_TOO_MANY_CONNECTIONS at accept.
   */
  readonly maxConnections: number;
  /**
   * A connection that has not completed HELLO this long after accept is sent
   * CRYPTOD_ERR_HANDSHAKE and closed: an idle socket must not hold a file
   * descriptor and a connection slot forever.
   */
  readonly helloTimeoutMs: number;
  /**
   * A hash, HMAC or cipher context no request used for this long is released
   * (within 25 % more). 0: contexts never expire. Later use: CRYPTOD_ERR_EXPIRED.
   */
  readonly contextIdleMs: number;
  /** Bytes of context state (buffered segments, digest state) over all clients. CRYPTOD_ERR_MEMORY_LIMIT. */
  readonly maxContextMemory: number;
  /**
   * The share of maxContextMemory one client (ClientId) may hold, so one
   * client cannot refuse the others their contexts. CRYPTOD_ERR_MEMORY_LIMIT
   * with `detail.scope` "client". Default: a quarter of maxContextMemory.
   */
  readonly maxContextMemoryPerClient: number;
  /** How long SIGTERM waits for requests in flight before it closes connections (ms). */
  readonly shutdownGraceMs: number;
}

export const DEFAULT_LIMITS: Limits = {
  maxFrame: DEFAULT_MAX_FRAME,
  maxNodesPerClient: 10_000,
  maxInflightPerConnection: 1024,
  maxInflightBytesPerConnection: 32 * 1024 * 1024,
  maxConnectionsPerClient: 128,
  maxConnectionsPerUid: 128,
  maxConnections: 512,
  helloTimeoutMs: 10_000,
  contextIdleMs: 10 * 60_000,
  maxContextMemory: 512 * 1024 * 1024,
  maxContextMemoryPerClient: 128 * 1024 * 1024,
  shutdownGraceMs: 5_000,
};

export function resolveLimits(partial: Partial<Limits> = {}): Limits {
  // The per-client share follows a configured total unless set itself.
  const share = partial.maxContextMemoryPerClient ?? (partial.maxContextMemory === undefined ? DEFAULT_LIMITS.maxContextMemoryPerClient : Math.floor(partial.maxContextMemory / 4));
  // So does the per-uid connection cap (a quarter, as the default 128 of 512).
  const perUid = partial.maxConnectionsPerUid ?? (partial.maxConnections === undefined ? DEFAULT_LIMITS.maxConnectionsPerUid : Math.max(1, Math.floor(partial.maxConnections / 4)));
  const limits = { ...DEFAULT_LIMITS, ...partial, maxContextMemoryPerClient: share, maxConnectionsPerUid: perUid };
  check('maxFrame', limits.maxFrame, 1024, MAX_MAX_FRAME);
  check('maxNodesPerClient', limits.maxNodesPerClient, 1, 10_000_000);
  check('maxInflightPerConnection', limits.maxInflightPerConnection, 1, 1_000_000);
  check('maxInflightBytesPerConnection', limits.maxInflightBytesPerConnection, 1024, 2 ** 40);
  check('maxConnectionsPerClient', limits.maxConnectionsPerClient, 1, 1_000_000);
  check('maxConnections', limits.maxConnections, 2, 1_000_000);
  check('maxConnectionsPerUid', limits.maxConnectionsPerUid, 1, limits.maxConnections - 1);
  check('helloTimeoutMs', limits.helloTimeoutMs, 10, 600_000);
  check('contextIdleMs', limits.contextIdleMs, 0, 7 * 24 * 3_600_000);
  check('maxContextMemory', limits.maxContextMemory, 64 * 1024, 2 ** 44);
  check('maxContextMemoryPerClient', limits.maxContextMemoryPerClient, 16 * 1024, limits.maxContextMemory);
  check('shutdownGraceMs', limits.shutdownGraceMs, 0, 600_000);
  return limits;
}

function check(name: string, value: number, min: number, max: number): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new ConfigError(`limit ${name} must be an integer from ${min} to ${max}, got ${value}`, { detail: { field: name } });
  }
}

/** Largest payload that fits one frame. */
export function maxPayload(limits: Limits): number {
  return limits.maxFrame - MIN_LENGTH;
}
