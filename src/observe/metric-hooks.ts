/**
 * What the daemon's parts tell the metrics (src/observe/metrics.ts), as a
 * small interface, so that nothing below the daemon imports prom-client.
 *
 * Off by default, and then free: every part holds {@link NO_METRICS}, whose
 * `enabled` is false, and checks that flag before it reads a clock or builds
 * a label (STYLE.md: optional features cost nothing until switched on). With
 * metrics off the daemon never loads prom-client and creates no registry.
 *
 * The data-key cache and the lease hand the metrics a reader when they start
 * ({@link MetricHooks.dataKeyCache}, {@link MetricHooks.lease}), read at each
 * scrape, and only then are their metric families registered: a daemon
 * without them exports no empty families that would suggest otherwise. A
 * reader, not a call per event: the cache counts for STATUS anyway, and a
 * scrape every few seconds costs less than a hook on every request.
 */

/** How a managed key came to have a new version. */
export type RotationReason = 'manual' | 'schedule' | 'usage-limit';

/** The data-key cache's counts since start (design note 5), as STATUS shows them (src/cache/data-key-cache.ts). */
export interface DataKeyCacheCounts {
  readonly hits: number;
  readonly misses: number;
  /** Unwraps started by the KEK provider. */
  readonly unwraps: number;
  /** Requests that joined an unwrap already running (single flight). */
  readonly coalesced: number;
  /** Data keys dropped (and zeroed), by reason: `age`, `uses`, `capacity`, `kek`… */
  readonly evictions: Readonly<Record<string, number>>;
  /** Data keys held now. */
  readonly size: number;
  /** Key bytes held now. */
  readonly bytes: number;
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
  /** Export the data-key cache's counts, read at each scrape; registers its families. */
  dataKeyCache(read: () => DataKeyCacheCounts): void;
  /** Export the lease's holder and generation; registers its families. */
  lease(source: LeaseSource): void;
}

/** Metrics switched off. */
export const NO_METRICS: MetricHooks = {
  enabled: false,
  requestStarted() {},
  requestEnded() {},
  requestDropped() {},
  denied() {},
  rotated() {},
  auditWriteFailed() {},
  dataKeyCache() {},
  lease() {},
};
