/**
 * The daemon's Prometheus metrics (README "Metrics"), created only when
 * `--metrics` (or `metrics.listen`) is given: the daemon then imports this
 * file, and with it prom-client, dynamically. Off, nothing here exists.
 *
 * Two kinds of metric:
 *   counted    the parts call {@link MetricHooks} as things happen: requests
 *              by operation and outcome, latency by operation family,
 *              requests in flight, denials, rotations, audit write errors,
 *              the data-key cache's events
 *   read       gauges and counters whose value lives in the daemon already
 *              (connections by listener, live nodes by kind, context memory,
 *              the keystore generation and refreshes, the lease): read from
 *              {@link MetricSources} at each scrape, so they cost nothing
 *              between scrapes
 *
 * Label values never carry key names unless `keyLabels` is true: a key name
 * may say what it protects, and one series per key is a cardinality an
 * operator should choose. Operation names and error codes are fixed sets.
 *
 * Every family is in a registry of its own (not prom-client's global one),
 * so an embedding program's metrics and two daemons in one process stay apart.
 */
import { Counter, Gauge, Histogram, Registry, type LabelValues } from 'prom-client';
import { opName } from '../protocol/ops.js';
import type { DataKeyCacheCounts, LeaseSource, MetricHooks, RotationReason } from './metric-hooks.js';
import { registerProcessMetrics } from './process-metrics.js';

/** Values the daemon already keeps, read at each scrape. */
export interface MetricSources {
  /** Open connections by listener (`unix`, `tls`). */
  connections(): Readonly<Record<string, number>>;
  /** Live data nodes by kind (`key`, `hash`, `hmac`, `cipher`…). */
  nodes(): Readonly<Record<string, number>>;
  /** Bytes of context memory charged now. */
  contextMemory(): number;
  /** The keystore as the key manager sees it; absent without managed keys. */
  keystore?(): { generation: number; refreshes: number; refreshFailures: number };
}

export interface MetricsOptions {
  /** Put key names in label values (rotations, denials). Default false. */
  keyLabels?: boolean;
  version: string;
}

/**
 * Latency histogram buckets, seconds: a PING or an HMAC over the socket
 * takes tens of microseconds, an RSA key generation seconds.
 */
const BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

/**
 * cryptod_request_duration_seconds as a registry metric of its own, built
 * from the plain counts at each scrape (see DaemonMetrics).
 */
function latencyHistogram(families: ReadonlyMap<string, LatencySeries>): { name: string; help: string; type: 'histogram'; aggregator: 'sum'; get(): Promise<unknown> } {
  const name = 'cryptod_request_duration_seconds';
  const help = 'Time from a request frame read to its reply written, by operation family.';
  return {
    name, help, type: 'histogram', aggregator: 'sum',
    get() {
      const values: Array<{ metricName: string; labels: Record<string, string | number>; value: number }> = [];
      for (const [family, l] of families) {
        let cumulative = 0;
        for (const [i, le] of BUCKETS.entries()) {
          cumulative += l.buckets[i]!;
          values.push({ metricName: `${name}_bucket`, labels: { le, family }, value: cumulative });
        }
        values.push({ metricName: `${name}_bucket`, labels: { le: '+Inf', family }, value: l.count });
        values.push({ metricName: `${name}_sum`, labels: { family }, value: l.sum });
        values.push({ metricName: `${name}_count`, labels: { family }, value: l.count });
      }
      return Promise.resolve({ name, help, type: 'histogram', values, aggregator: 'sum' });
    },
  };
}

/** An operation's family, the histogram's label (docs/protocol.md §6.10 groups the codes so). */
export function operationFamily(op: number): string {
  if (op < 0x0010) return 'session';
  if (op < 0x0020) return 'keyless';
  if (op < 0x0040) return op === 0x0023 ? 'session' : 'ephemeral-keys';
  if (op < 0x0100) return 'contexts';
  if (op < 0x0110) return 'managed-data';
  if (op < 0x0200) return 'managed-admin';
  return 'other';
}

/** Latency of one operation family: counts per bucket (not cumulative), their sum and count. */
interface LatencySeries {
  readonly buckets: Float64Array;
  sum: number;
  count: number;
}

/** What a request updates: plain numbers, no label hashing; turned into samples at scrape time. */
interface OpSeries {
  readonly name: string;
  readonly latency: LatencySeries;
  /** Requests by outcome code. */
  readonly byCode: Map<string, number>;
}

export class DaemonMetrics implements MetricHooks {
  readonly enabled = true;
  readonly registry = new Registry();
  readonly #keyLabels: boolean;
  readonly #denials: Counter<string>;
  readonly #rotations: Counter<string>;
  readonly #auditErrors: Counter;
  /*
   * The request path's counters are plain numbers: prom-client validates and
   * hashes the labels on every inc() and observe(), which on a request of a
   * few microseconds is a cost worth not paying (bench/metrics.ts). The
   * families read them at scrape time.
   */
  readonly #ops = new Map<number, OpSeries>();
  readonly #families = new Map<string, LatencySeries>();
  #inflight = 0;
  readonly #stopProcessMetrics: () => void;

  constructor(sources: MetricSources, options: MetricsOptions) {
    const registers = [this.registry];
    this.#keyLabels = options.keyLabels === true;
    this.#stopProcessMetrics = registerProcessMetrics(this.registry);
    new Gauge({ name: 'cryptod_info', help: 'Always 1; the version label names the daemon version.', labelNames: ['version'], registers }).set({ version: options.version }, 1);
    const ops = this.#ops;
    new Counter({
      name: 'cryptod_requests_total', help: 'Requests answered, by operation and outcome code (OK or a CRYPTOD_ERR_ code).', labelNames: ['op', 'code'], registers,
      collect() {
        this.reset();
        for (const s of ops.values()) for (const [code, n] of s.byCode) this.inc({ op: s.name, code }, n);
      },
    });
    this.registry.registerMetric(latencyHistogram(this.#families) as unknown as Parameters<Registry['registerMetric']>[0]);
    const inflight = (): number => this.#inflight;
    new Gauge({
      name: 'cryptod_requests_in_flight', help: 'Requests read and not answered yet.', registers,
      collect() {
        this.set(inflight());
      },
    });
    const keyLabel = this.#keyLabels ? ['key'] : [];
    this.#denials = new Counter({ name: 'cryptod_authorization_denials_total', help: 'Requests a key policy refused (FORBIDDEN, NOT_EXTRACTABLE), by operation and code.', labelNames: ['op', 'code', ...keyLabel], registers });
    this.#rotations = new Counter({ name: 'cryptod_key_rotations_total', help: 'New managed key versions, by reason: manual (KEY_ROTATE), schedule, usage-limit.', labelNames: ['reason', ...keyLabel], registers });
    this.#auditErrors = new Counter({ name: 'cryptod_audit_write_errors_total', help: 'Audit events that could not be written (and were dropped).', registers });
    new Gauge({
      name: 'cryptod_connections', help: 'Open connections, by listener (unix, tls).', labelNames: ['listener'], registers,
      collect() {
        this.reset();
        for (const [listener, n] of Object.entries({ unix: 0, tls: 0, ...sources.connections() })) this.set({ listener }, n);
      },
    });
    new Gauge({
      name: 'cryptod_nodes', help: 'Live data nodes (keys and contexts) of every client, by kind.', labelNames: ['kind'], registers,
      collect() {
        this.reset();
        for (const [kind, n] of Object.entries({ key: 0, hash: 0, hmac: 0, cipher: 0, ...sources.nodes() })) this.set({ kind }, n);
      },
    });
    new Gauge({
      name: 'cryptod_context_memory_bytes', help: 'Context memory charged now, over all clients (limit: maxContextMemory).', registers,
      collect() {
        this.set(sources.contextMemory());
      },
    });
    const keystore = sources.keystore;
    if (keystore !== undefined) {
      new Gauge({
        name: 'cryptod_keystore_generation', help: 'The keystore generation this daemon has caught up with.', registers,
        collect() {
          this.set(keystore().generation);
        },
      });
      new Counter({
        name: 'cryptod_keystore_refreshes_total', help: 'Refreshes from the keystore (picking up what other processes changed), by outcome.', labelNames: ['outcome'], registers,
        collect() {
          const k = keystore();
          this.reset();
          this.inc({ outcome: 'ok' }, k.refreshes - k.refreshFailures);
          this.inc({ outcome: 'failed' }, k.refreshFailures);
        },
      });
    }
  }

  requestStarted(): void {
    this.#inflight++;
  }

  requestEnded(op: number, code: string, seconds: number | null): void {
    let s = this.#ops.get(op);
    if (s === undefined) this.#ops.set(op, (s = this.#series(op)));
    s.byCode.set(code, (s.byCode.get(code) ?? 0) + 1);
    if (seconds === null) return;
    this.#inflight--;
    const l = s.latency;
    let b = 0;
    while (b < BUCKETS.length && seconds > BUCKETS[b]!) b++;
    if (b < BUCKETS.length) l.buckets[b]!++;
    l.sum += seconds;
    l.count++;
  }

  #series(op: number): OpSeries {
    const family = operationFamily(op);
    let latency = this.#families.get(family);
    if (latency === undefined) this.#families.set(family, (latency = { buckets: new Float64Array(BUCKETS.length), sum: 0, count: 0 }));
    return { name: opName(op), latency, byCode: new Map() };
  }

  requestDropped(): void {
    this.#inflight--;
  }

  denied(op: number, code: string, key: string | null): void {
    const labels: LabelValues<string> = { op: opName(op), code };
    if (this.#keyLabels) labels.key = key ?? '';
    this.#denials.inc(labels);
  }

  rotated(reason: RotationReason, key: string): void {
    this.#rotations.inc(this.#keyLabels ? { reason, key } : { reason });
  }

  auditWriteFailed(): void {
    this.#auditErrors.inc();
  }

  dataKeyCache(read: () => DataKeyCacheCounts): void {
    const registers = [this.registry];
    // Counters that mirror the cache's own counts: set from them at each scrape.
    const mirror = (name: string, help: string, value: (c: DataKeyCacheCounts) => number): void => {
      new Counter({
        name, help, registers,
        collect() {
          this.reset();
          this.inc(value(read()));
        },
      });
    };
    mirror('cryptod_datakey_cache_hits_total', 'Data-key requests served from the cache.', (c) => c.hits);
    mirror('cryptod_datakey_cache_misses_total', 'Data-key requests that found no cached key.', (c) => c.misses);
    mirror('cryptod_datakey_cache_unwraps_total', 'Unwraps started in the KEK provider.', (c) => c.unwraps);
    mirror('cryptod_datakey_cache_coalesced_total', 'Requests that waited on an unwrap already running (single flight).', (c) => c.coalesced);
    new Counter({
      name: 'cryptod_datakey_cache_evictions_total', help: 'Data keys dropped and zeroed, by reason.', labelNames: ['reason'], registers,
      collect() {
        this.reset();
        for (const [reason, n] of Object.entries(read().evictions)) this.inc({ reason }, n);
      },
    });
    new Gauge({
      name: 'cryptod_datakey_cache_keys', help: 'Data keys held in the cache now.', registers,
      collect() {
        this.set(read().size);
      },
    });
    new Gauge({
      name: 'cryptod_datakey_cache_bytes', help: 'Key bytes the data-key cache holds now.', registers,
      collect() {
        this.set(read().bytes);
      },
    });
  }

  lease(source: LeaseSource): void {
    const registers = [this.registry];
    new Gauge({
      name: 'cryptod_lease_held', help: '1 while this process holds the keystore lease, else 0.', registers,
      collect() {
        this.set(source.held() ? 1 : 0);
      },
    });
    new Gauge({
      name: 'cryptod_lease_generation', help: 'The lease generation this process last saw.', registers,
      collect() {
        this.set(source.generation());
      },
    });
  }

  /** Stop the event-loop sampler (the daemon closes). */
  close(): void {
    this.#stopProcessMetrics();
  }

  /** The text exposition format, and its content type. */
  async scrape(): Promise<{ body: string; contentType: string }> {
    return { body: await this.registry.metrics(), contentType: this.registry.contentType };
  }
}
