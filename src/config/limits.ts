/**
 * Every limit the daemon enforces, declared once. A declaration is all the
 * daemon and its documentation say about a limit; everything else is derived
 * from the table below:
 *
 *   LIMITS ──▶ Limits (the type)          resolveLimits / limitIssues (ranges)
 *          ──▶ serve flags and --help      (src/cli/serve-flags.ts)
 *          ──▶ the YAML `limits:` schema   (src/config/config.ts)
 *          ──▶ HELLO's `limits`            (helloLimits, src/daemon/handshake.ts)
 *
 * The name of an entry is the field of `Limits`, the YAML key under `limits:`
 * and, when `hello` is true, the name in HELLO's reply: one vocabulary for
 * operators and clients. README ("Limits") and docs/protocol.md §8 must name
 * every entry; test/limit-docs.test.ts fails when one is missing.
 *
 * A default or maximum may depend on limits declared before it (the table is
 * resolved in order): the per-client share of context memory follows the
 * total unless it is set itself.
 */
import { DEFAULT_MAX_FRAME, MAX_MAX_FRAME, MIN_LENGTH } from '../protocol/frame.js';
import { ConfigError, InternalError } from '../protocol/errors.js';

/** What a value counts, for --help: `--max-frame BYTES`. */
export type LimitUnit = 'BYTES' | 'N' | 'MS';

/**
 * Reads a limit declared before the one being resolved. Naming a later or
 * unknown limit throws when this module loads (DEFAULT_LIMITS resolves them
 * all), so a mistake in the table never reaches a running daemon.
 */
export type EarlierLimit = (name: string) => number;

export interface LimitDeclaration {
  /** A number, or derived from earlier limits; `defaultDoc` then says how, for people. */
  readonly default: number | ((earlier: EarlierLimit) => number);
  readonly defaultDoc?: string;
  readonly min: number;
  /** A number, or derived from earlier limits; `maxDoc` then says how, for people. */
  readonly max: number | ((earlier: EarlierLimit) => number);
  readonly maxDoc?: string;
  /** `cryptod serve --FLAG VALUE`. */
  readonly flag: string;
  readonly unit: LimitUnit;
  /** Whether HELLO's reply reports it (under the entry's name), so a client can size its requests. */
  readonly hello: boolean;
  /** One line for --help and the docs: what it bounds. */
  readonly doc: string;
  /** The error a client gets when it hits the limit; null when hitting it slows the client instead (back-pressure) or ends the daemon's wait. */
  readonly error: string | null;
}

const KiB = 1024;
const MiB = 1024 * KiB;

export const LIMITS = {
  maxFrame: {
    default: DEFAULT_MAX_FRAME, min: 1024, max: MAX_MAX_FRAME, flag: 'max-frame', unit: 'BYTES', hello: true,
    doc: "largest value of a frame's length field",
    error: 'CRYPTOD_ERR_FRAME_TOO_LARGE',
  },
  maxNodesPerClient: {
    default: 10_000, min: 1, max: 10_000_000, flag: 'max-nodes-per-client', unit: 'N', hello: true,
    doc: 'live keys and contexts one client may hold, over all its connections',
    error: 'CRYPTOD_ERR_QUOTA',
  },
  maxInflightPerConnection: {
    default: 1024, min: 1, max: 1_000_000, flag: 'max-inflight', unit: 'N', hello: true,
    doc: 'requests in flight per connection before the daemon stops reading from it',
    error: null,
  },
  // Back-pressure like the count above: without it 1024 requests of 4 MiB
  // would pin 4 GiB. A single request is always accepted.
  maxInflightBytesPerConnection: {
    default: 32 * MiB, min: 1024, max: 2 ** 40, flag: 'max-inflight-bytes', unit: 'BYTES', hello: true,
    doc: 'payload bytes of the requests in flight per connection before the daemon stops reading from it',
    error: null,
  },
  maxConnectionsPerClient: {
    default: 128, min: 1, max: 1_000_000, flag: 'max-connections-per-client', unit: 'N', hello: true,
    doc: 'open connections one client (ClientId) may have; refused at HELLO',
    error: 'CRYPTOD_ERR_TOO_MANY_CONNECTIONS',
  },
  // Counted from accept, over both listeners. Each costs a file descriptor:
  // the default stays well under the common soft limit of 1024 even if raising
  // it at start fails, leaving room for the keystore, the audit log, the
  // listeners and refused connections on their way out (a quarter more).
  maxConnections: {
    default: 512, min: 2, max: 1_000_000, flag: 'max-connections', unit: 'N', hello: true,
    doc: 'open connections over both listeners; the last --max-connections-per-uid are kept for the daemon\'s own uid and root',
    error: 'CRYPTOD_ERR_TOO_MANY_CONNECTIONS',
  },
  // Counted from accept, before HELLO, so different client names do not
  // sidestep it. The daemon's own uid and root are not counted: they can read
  // the daemon's files anyway. Below maxConnections, whose last
  // maxConnectionsPerUid connections stay free for those two (src/daemon/admission.ts).
  maxConnectionsPerUid: {
    default: (limit) => Math.max(1, Math.floor(limit('maxConnections') / 4)), defaultDoc: 'a quarter of --max-connections',
    min: 1, max: (limit) => limit('maxConnections') - 1, maxDoc: '--max-connections − 1',
    flag: 'max-connections-per-uid', unit: 'N', hello: true,
    doc: "open connections per uid on the Unix socket, counted from accept; not applied to the daemon's own uid and root",
    error: 'CRYPTOD_ERR_TOO_MANY_CONNECTIONS',
  },
  // An idle socket must not hold a file descriptor and a connection slot forever.
  helloTimeoutMs: {
    default: 10_000, min: 10, max: 600_000, flag: 'hello-timeout-ms', unit: 'MS', hello: true,
    doc: 'close a connection that has not completed HELLO within MS of connecting',
    error: 'CRYPTOD_ERR_HANDSHAKE',
  },
  // Released within 25 % more than this (the idle sweep's tick, src/daemon/server.ts).
  contextIdleMs: {
    default: 10 * 60_000, min: 0, max: 7 * 24 * 3_600_000, flag: 'context-idle-ms', unit: 'MS', hello: true,
    doc: 'release hash, HMAC and cipher contexts that no request used for MS; 0: never',
    error: 'CRYPTOD_ERR_EXPIRED',
  },
  maxContextMemory: {
    default: 512 * MiB, min: 64 * KiB, max: 2 ** 44, flag: 'max-context-memory', unit: 'BYTES', hello: true,
    doc: 'memory for context state over all clients',
    error: 'CRYPTOD_ERR_MEMORY_LIMIT',
  },
  // A share, so that one client filling its contexts cannot refuse the others theirs.
  maxContextMemoryPerClient: {
    default: (limit) => Math.floor(limit('maxContextMemory') / 4), defaultDoc: 'a quarter of --max-context-memory',
    min: 16 * KiB, max: (limit) => limit('maxContextMemory'), maxDoc: '--max-context-memory',
    flag: 'max-context-memory-per-client', unit: 'BYTES', hello: true,
    doc: 'the share of the context memory one client may hold',
    error: 'CRYPTOD_ERR_MEMORY_LIMIT',
  },
  // Not in HELLO: it is the daemon's business how long it waits for itself.
  shutdownGraceMs: {
    default: 5_000, min: 0, max: 600_000, flag: 'shutdown-grace-ms', unit: 'MS', hello: false,
    doc: 'how long shutdown waits for requests in flight before it closes connections',
    error: null,
  },
  // The data-key cache (src/cache/data-key-cache.ts, design note 5). Not in
  // HELLO: how long the daemon keeps keys is its business, not the client's.
  dataKeyCacheCapacity: {
    default: 10_000, min: 0, max: 10_000_000, flag: 'data-key-cache-capacity', unit: 'N', hello: false,
    doc: 'unwrapped data keys the cache holds (least recently used dropped first); 0: no caching, concurrent requests still share one unwrap',
    error: null,
  },
  dataKeyCacheMaxAgeMs: {
    default: 5 * 60_000, min: 1, max: 7 * 24 * 3_600_000, flag: 'data-key-cache-max-age-ms', unit: 'MS', hello: false,
    doc: 'drop a cached data key MS after it was unwrapped, however often it is used',
    error: null,
  },
  dataKeyCacheMaxUses: {
    default: 1_000_000, min: 1, max: Number.MAX_SAFE_INTEGER, flag: 'data-key-cache-max-uses', unit: 'N', hello: false,
    doc: 'requests one cached data key serves before it is dropped (the next one unwraps again)',
    error: null,
  },
  // Counted in BigInt by the cache; a limit is a safe integer (2^53 − 1 bytes is 8 PiB).
  dataKeyCacheMaxBytes: {
    default: 2 ** 40, min: 1, max: Number.MAX_SAFE_INTEGER, flag: 'data-key-cache-max-bytes', unit: 'BYTES', hello: false,
    doc: 'bytes one cached data key encrypts or decrypts before it is dropped (the next request unwraps again)',
    error: null,
  },
  dataKeyUnwrapTimeoutMs: {
    default: 10_000, min: 1, max: 600_000, flag: 'data-key-unwrap-timeout-ms', unit: 'MS', hello: false,
    doc: 'fail every request waiting for one data-key unwrap that has not finished within MS',
    error: 'CRYPTOD_ERR_KEK_TIMEOUT',
  },
  // The Vault-compatible HTTP listener (`--http`, src/http/). Base64 in JSON
  // makes a body about 4/3 of its data, so the default leaves room for a
  // batch as large as the largest frame.
  maxHttpBody: {
    default: 8 * MiB, min: 1024, max: 2 ** 31, flag: 'max-http-body', unit: 'BYTES', hello: false,
    doc: 'largest request body on the HTTP listener; larger ones are refused with 413',
    error: null,
  },
  maxHttpInflight: {
    default: 1024, min: 1, max: 1_000_000, flag: 'max-http-inflight', unit: 'N', hello: false,
    doc: 'HTTP requests in flight over all HTTP connections; more are refused with 429',
    error: null,
  },
  // The PostgreSQL keystore (--store). Not in HELLO: the store is the daemon's business.
  // Two at least: a read may run while a transaction holds a connection.
  storePoolSize: {
    default: 10, min: 2, max: 1_000, flag: 'store-pool-size', unit: 'N', hello: false,
    doc: 'connections to the PostgreSQL keystore (per daemon process)',
    error: null,
  },
  // Bounds every wait on an unreachable server: an operation that needs the store fails after it instead of hanging.
  storeConnectTimeoutMs: {
    default: 5_000, min: 100, max: 600_000, flag: 'store-connect-timeout-ms', unit: 'MS', hello: false,
    doc: 'how long getting a PostgreSQL keystore connection may take',
    error: 'CRYPTOD_ERR_STORE_UNAVAILABLE',
  },
  storeQueryTimeoutMs: {
    default: 10_000, min: 100, max: 600_000, flag: 'store-query-timeout-ms', unit: 'MS', hello: false,
    doc: 'how long one PostgreSQL keystore statement may take',
    error: 'CRYPTOD_ERR_STORE_UNAVAILABLE',
  },
  // The batch forms of SIGN, VERIFY, DIGEST, ENCRYPT and DECRYPT (src/ops/batch.ts).
  // In HELLO: the client splits a larger batch into several frames. The frame
  // size bounds the bytes; this bounds how long one frame holds the event loop.
  maxBatchItems: {
    default: 4096, min: 1, max: 65_536, flag: 'max-batch-items', unit: 'N', hello: true,
    doc: 'items one batch request of SIGN, VERIFY, DIGEST, ENCRYPT or DECRYPT may carry',
    error: 'CRYPTOD_ERR_INVALID_ARGUMENT',
  },
  // Shared-memory windows (docs/protocol.md §6.16): the client's memory,
  // mapped by the daemon; bounded so a connection cannot pin address space.
  maxWindowBytes: {
    default: 16 * MiB, min: 0, max: 1024 * MiB, flag: 'max-window-bytes', unit: 'BYTES', hello: true,
    doc: 'size of one shared-memory window a client may offer the daemon (0: no windows; large inputs go inline)',
    error: 'CRYPTOD_ERR_INVALID_ARGUMENT',
  },
  maxWindowsPerConnection: {
    default: 2, min: 1, max: 64, flag: 'max-windows-per-connection', unit: 'N', hello: false,
    doc: 'shared-memory windows one connection may hold, offers not yet attached included',
    error: 'CRYPTOD_ERR_QUOTA',
  },
} as const satisfies Readonly<Record<string, LimitDeclaration>>;

export type LimitName = keyof typeof LIMITS;
export type Limits = { readonly [K in LimitName]: number };

/** The names, in declaration (and resolution) order. */
export const LIMIT_NAMES = Object.keys(LIMITS) as LimitName[];

/** One limit out of range; `field` is the limit's name. */
export interface LimitIssue {
  readonly field: LimitName;
  readonly message: string;
}

/**
 * Every problem of `partial` at once, with the values the others were
 * checked against. An invalid value is replaced by its default for the
 * limits after it, so one mistake is reported once.
 */
export function limitIssues(partial: Partial<Limits> = {}): { limits: Limits; issues: LimitIssue[] } {
  const resolved: Record<string, number> = {};
  const issues: LimitIssue[] = [];
  for (const name of LIMIT_NAMES) {
    const d: LimitDeclaration = LIMITS[name];
    const earlier: EarlierLimit = (other) => {
      const v = resolved[other];
      if (v === undefined) throw new InternalError(`limit ${name} reads ${other}, which is not declared before it`);
      return v;
    };
    const fallback = typeof d.default === 'function' ? d.default(earlier) : d.default;
    const max = typeof d.max === 'function' ? d.max(earlier) : d.max;
    const value = partial[name] ?? fallback;
    if (!Number.isSafeInteger(value) || value < d.min || value > max) {
      issues.push({ field: name, message: `limit ${name} must be an integer from ${d.min} to ${max}, got ${value}` });
      resolved[name] = fallback;
    } else {
      resolved[name] = value;
    }
  }
  return { limits: resolved as Limits, issues };
}

/** `partial` over the defaults. @throws ConfigError naming the first limit out of range (`detail.field`). */
export function resolveLimits(partial: Partial<Limits> = {}): Limits {
  const { limits, issues } = limitIssues(partial);
  const first = issues[0];
  if (first !== undefined) throw new ConfigError(first.message, { detail: { field: first.field } });
  return limits;
}

export const DEFAULT_LIMITS: Limits = resolveLimits();

/** The `limits` of HELLO's reply (docs/protocol.md §4): the limits a client sizes its requests by. */
export function helloLimits(limits: Limits): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name of LIMIT_NAMES) if (LIMITS[name].hello) out[name] = limits[name];
  return out;
}

/** Largest payload that fits one frame. */
export function maxPayload(limits: Limits): number {
  return limits.maxFrame - MIN_LENGTH;
}
