/**
 * What the daemon's parts tell the metrics (src/observe/metrics.ts), as a
 * small interface, so that nothing below the daemon imports prom-client.
 *
 * Off by default, and then free: every part holds {@link NO_METRICS}, whose
 * `enabled` is false, and checks that flag before it reads a clock or builds
 * a label (STYLE.md: optional features cost nothing until switched on). With
 * metrics off the daemon never loads prom-client and creates no registry.
 *
 * The data-key cache and the lease are added by other parts of cryptod; they
 * ask for their hooks ({@link MetricHooks.dataKeyCache}, {@link MetricHooks.lease})
 * when they start, and only then are their metric families registered: a
 * daemon without them exports no empty families that would suggest otherwise.
 */

/** How a managed key came to have a new version. */
export type RotationReason = 'manual' | 'schedule' | 'usage-limit';

/** The data-key cache's events (design note 5): one call each. */
export interface DataKeyCacheHooks {
  hit(): void;
  miss(): void;
  /** An unwrap by the KEK provider ended (`ok` or `failed`). */
  unwrap(outcome: 'ok' | 'failed'): void;
  /** A request that joined an unwrap already running (single flight). */
  coalesced(): void;
  /** A data key dropped (and zeroed): `age`, `uses`, `capacity`, `rewrap`… */
  evicted(reason: string): void;
  /** Data keys held now; read at each scrape. */
  size(read: () => number): void;
}

/** The cross-process lease (design note 3), read at each scrape. */
export interface LeaseSource {
  /** Whether this process holds the lease now. */
  held(): boolean;
  /** The lease's generation as this process last saw it. */
  generation(): number;
}

export interface MetricHooks {
  readonly enabled: boolean;
  /** A request frame arrived (in flight from now). */
  requestStarted(): void;
  /** The request was answered with `code` (`OK` or an error code); `seconds` since it arrived, null when its start was not seen. */
  requestEnded(op: number, code: string, seconds: number | null): void;
  /** A request left unanswered because its connection closed. */
  requestDropped(): void;
  /** A policy refused a client (FORBIDDEN, NOT_EXTRACTABLE); `key` when the refusal names one. */
  denied(op: number, code: string, key: string | null): void;
  rotated(reason: RotationReason, key: string): void;
  /** The audit log failed to write an event. */
  auditWriteFailed(): void;
  /** The data-key cache's hooks; registers its families on first call. */
  dataKeyCache(): DataKeyCacheHooks;
  /** Export the lease's holder and generation; registers its families. */
  lease(source: LeaseSource): void;
}

const NO_CACHE: DataKeyCacheHooks = { hit() {}, miss() {}, unwrap() {}, coalesced() {}, evicted() {}, size() {} };

/** Metrics switched off. */
export const NO_METRICS: MetricHooks = {
  enabled: false,
  requestStarted() {},
  requestEnded() {},
  requestDropped() {},
  denied() {},
  rotated() {},
  auditWriteFailed() {},
  dataKeyCache: () => NO_CACHE,
  lease() {},
};
