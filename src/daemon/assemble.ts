/**
 * Assembling a daemon from its configuration: the one place that knows what
 * a running cryptod is made of and in which order the parts open and close.
 *
 *   start():  data directory, socket directory ─▶ (metrics hooks) ─▶ audit log ─▶ keystore ─▶ KEK
 *             ─▶ key manager ─▶ client registry (+ its audit watch) ─▶ the file's keys
 *             ─▶ reloader ─▶ listeners (Unix socket, TLS) ─▶ metrics listener
 *   close():  the exact reverse, from the same list (closers.ts)
 *
 * Metrics exist only with `config.metrics`: then prom-client is imported
 * (dynamically: a daemon without metrics never loads it), the hooks are
 * handed to every part that counts, and the metrics listener opens last,
 * so /readyz never answers for a daemon whose socket is not there yet.
 *
 * The audit log opens before the key manager because the manager records
 * the rotations it does on its own there; it closes after everything that
 * may still write to it.
 *
 * A start that fails half way closes what it had opened and rejects; close()
 * called while start() runs (a signal during start-up) waits for start to
 * finish, then closes everything, so no socket file or open database is left
 * behind. Nothing here touches process-wide state (signals, rlimits, core
 * dumps): that is the embedding program's business (src/cli/serve.ts).
 */
import type { Socket } from 'node:net';
import { asCbor } from '../protocol/schema.js';
import { ConfigError, InternalError } from '../protocol/errors.js';
import type { DaemonConfig } from '../config/daemon-config.js';
import { preparePrivateSocketDirectory } from '../config/paths.js';
import { applyKeys, createReloader, type ReloadSummary, type Reloader } from '../config/reload.js';
import type { TlsReloadSummary } from '../config/listeners.js';
import { createLogger, type Logger } from '../observe/logger.js';
import { NO_AUDIT, createAudit, type Audit } from '../observe/audit.js';
import type { MetricHooks } from '../observe/metric-hooks.js';
import { watchClientChanges } from '../auth/revocation.js';
import { ensurePrivateDir } from '../files/private-files.js';
import { openSqliteClientRegistry } from '../store/sqlite/client-registry.js';
import { openPostgresClientRegistry } from '../store/postgres/client-registry.js';
import { resolveStoreUrl } from '../store/postgres/connection-string.js';
import { readKekPassphrase } from '../kek/passphrase.js';
import type { Clock } from '../keys/clock.js';
import type { Operation } from '../ops/operation.js';
import type { FrontDoor } from '../ops/front-door.js';
import { CloseStack } from './closers.js';
import type { PeerIdentity } from './handshake.js';
import type { FleetLink, WorkerReload } from './fleet.js';
import { readinessCheck, type HealthReport } from './health.js';
import { openManagedKeys } from './managed-keys.js';
import { startMetricsListener } from './metrics-listener.js';
import { peerCred, peerCredAvailable } from './peer-cred.js';
import { startDaemon, type Daemon, type DaemonOptions, type DaemonStatus } from './server.js';

export interface CreateDaemonOptions {
  /** Default: JSON lines on stderr at the configuration's log level. */
  logger?: Logger;
  /**
   * Reads a Unix peer's kernel-verified identity. Default: SO_PEERCRED when
   * the native addon is built; null: none (access then rests on the socket's
   * file mode, and --allow-uid/--allow-gid are refused).
   */
  peerIdentity?: ((socket: Socket) => PeerIdentity | null) | null;
  /** The key manager's clock (tests). */
  clock?: Clock;
  /** How often to pick up other daemons' keystore changes (ms; src/daemon/managed-keys.ts). */
  refreshIntervalMs?: number;
  /** How often live token connections are re-checked for revocation (ms). */
  revocationCheckMs?: number;
  /** Operations served (default: all of them). */
  operations?: readonly Operation[];
  /**
   * This daemon is one worker of `cryptod serve --workers N` (src/daemon/fleet.ts):
   * STATUS covers every worker, RELOAD reaches every worker, the primary owns
   * the socket file and each worker appends whole lines to the audit log.
   */
  fleet?: FleetLink;
  /** Further listeners onto the same operations (`cryptod serve --http`: src/http/vault-front-door.ts). */
  frontDoors?: readonly FrontDoor[];
  /** A listening socket inherited from systemd (src/daemon/systemd.ts), served instead of binding the configured path. */
  listenFd?: number;
}

/** What a reload did: the configuration file re-read, or, without one, only the TLS files. */
export type ReloadOutcome = ReloadSummary | { tls: TlsReloadSummary | null };

export interface AssembledDaemon {
  readonly config: DaemonConfig;
  readonly log: Logger;
  /** Open everything, in order; rejects (having closed what it opened) when a part fails. Once only. */
  start(): Promise<void>;
  /**
   * Re-read the configuration file (its keys, and the TLS files), or without
   * one the TLS files alone. Resolves null, logging why, when there is
   * nothing to reload or the daemon is not running yet; rejects when the
   * new configuration is refused (and nothing changed).
   */
  reload(trigger: string): Promise<ReloadOutcome | null>;
  /** @throws InternalError unless running. */
  status(): DaemonStatus;
  /** Address of the mutual-TLS listener, once started with `tcp`. */
  readonly tcpAddress: { host: string; port: number } | null;
  /** The metrics listener's address (`tcp://HOST:PORT` with the port bound, or `unix:PATH`), once started with `metrics`. */
  readonly metricsUrl: string | null;
  /** Run the readiness checks (src/daemon/health.ts). @throws InternalError unless running. */
  readiness(): Promise<HealthReport>;
  /** Stop gracefully (config.limits.shutdownGraceMs) and close every part, in reverse order. Idempotent. */
  close(): Promise<void>;
}

/** Assemble a daemon; nothing is opened until start(). */
export function createDaemon(config: DaemonConfig, options: CreateDaemonOptions = {}): AssembledDaemon {
  if (config.http !== undefined && options.frontDoors === undefined) {
    // The daemon layer cannot build the HTTP listener (it lives above it): the embedding program passes it.
    throw new ConfigError('the configuration asks for the HTTP listener (http): pass frontDoors: [new VaultFrontDoor(config.http)] from src/http/vault-front-door.ts, as cryptod serve does');
  }
  const log = options.logger ?? createLogger({ level: config.logLevel });
  const parts = new CloseStack();
  let state: 'new' | 'starting' | 'running' | 'closed' = 'new';
  let starting: Promise<void> | null = null;
  let closing: Promise<void> | null = null;
  let listener: Daemon | null = null;
  let reloader: Reloader | null = null;
  let readiness: (() => Promise<HealthReport>) | null = null;
  let metricsUrl: string | null = null;
  /** The metrics listener's TLS reload (mutual TLS on a non-loopback address); 0 closed otherwise. */
  let reloadMetricsTls = (): number => 0;
  /** Every listener's TLS files, re-read: --listen (and the HTTPS front door through it), then --metrics. */
  const reloadAllTls = (): TlsReloadSummary | null => {
    const summary = listener?.reloadTls() ?? null;
    if (summary === null) return null;
    return { ...summary, closed: summary.closed + reloadMetricsTls() };
  };

  const open = async (): Promise<void> => {
    const dataDir = ensurePrivateDir(config.dataDir);
    // A default socket's directory is checked before anything opens: someone
    // else's would let them impersonate the daemon.
    if (options.listenFd === undefined) preparePrivateSocketDirectory(config.socket);
    const metrics = config.metrics === undefined ? null : await createMetrics(config.metrics.keyLabels, () => listener, () => managedRef);
    if (metrics !== null) parts.defer('metrics', () => metrics.close());
    let managedRef: Awaited<ReturnType<typeof openManagedKeys>> | null = null;
    let audit: Audit = NO_AUDIT;
    if (config.auditLog !== undefined) {
      const opened = createAudit({
        target: config.auditLog, log,
        ...(options.fleet === undefined ? {} : { worker: true }),
        ...(metrics === null ? {} : { onWriteError: () => metrics.auditWriteFailed() }),
      });
      audit = opened;
      parts.defer('audit log', () => opened.close());
    }
    // The PostgreSQL keystore (--store): its URL is a secret, only `redacted` is ever shown.
    const pgUrl = config.store === undefined ? undefined : resolveStoreUrl(config.store);
    const postgres = pgUrl === undefined ? undefined : {
      url: pgUrl.url, poolSize: config.limits.storePoolSize,
      connectTimeoutMs: config.limits.storeConnectTimeoutMs, queryTimeoutMs: config.limits.storeQueryTimeoutMs,
    };
    if (pgUrl !== undefined) log.info('keystore', { backend: 'postgres', store: pgUrl.redacted });
    const passphrase = readKekPassphrase(config.kek);
    let keys;
    try {
      keys = await openManagedKeys({
        dataDir, init: config.init, logger: log, audit, providers: config.providers, root: config.root,
        ...(config.adminClients === undefined ? {} : { adminClients: config.adminClients }),
        ...(postgres === undefined ? {} : { postgres }),
        ...(metrics === null ? {} : { metrics }),
        ...(passphrase === undefined ? {} : { passphrase }),
        ...(options.clock === undefined ? {} : { clock: options.clock }),
        ...(options.refreshIntervalMs === undefined ? {} : { refreshIntervalMs: options.refreshIntervalMs }),
      });
    } finally {
      passphrase?.fill(0);
    }
    const managed = keys;
    managedRef = managed;
    parts.defer('keystore, KEK and key manager', () => managed.close());
    const ready = readinessCheck({
      store: managed.store, kek: managed.kek, manager: managed.manager,
      ...(managed.storeFile === undefined ? {} : { storeFile: managed.storeFile }),
      configuredKeys: () => Object.keys(reloader?.current.keys ?? config.file?.config.keys ?? {}),
    });
    readiness = ready;
    // Token clients (`cryptod client add`) live in the keystore's file.
    const clients = postgres === undefined
      ? openSqliteClientRegistry({ dataDir })
      : await openPostgresClientRegistry({ url: postgres.url, connectTimeoutMs: postgres.connectTimeoutMs, queryTimeoutMs: postgres.queryTimeoutMs });
    parts.defer('client registry', () => clients.close());
    // `cryptod client add|revoke` write the registry from another process; the
    // audit log records what the daemon observes there (src/auth/revocation.ts).
    if (audit.enabled) {
      const watch = watchClientChanges(clients, audit, log);
      parts.defer('client registry watch', () => watch.stop());
    }
    // The file's keys are applied before the socket exists: a client never
    // sees a daemon without the keys its configuration declares.
    const file = config.file;
    if (file !== null) {
      const changes = await applyKeys(managed.manager, file);
      log.info('configuration applied', { file: file.config.path, ...changes, reloadable: ['keys'] });
      reloader = createReloader({ file: file.config.path, initial: file.config, manager: managed.manager, log, reloadTls: reloadAllTls });
    }
    const peerIdentity = options.peerIdentity === undefined ? defaultPeerIdentity(log) : options.peerIdentity;
    const daemon = await startDaemon({
      socketPath: config.socket.path,
      socketMode: config.socketMode,
      limits: config.limits,
      logger: log,
      clients,
      audit,
      keys: managed,
      ...(config.access === undefined ? {} : { access: config.access }),
      ...(config.tcp === undefined ? {} : { tcp: config.tcp }),
      ...(peerIdentity === null ? {} : { peerIdentity }),
      ...(options.operations === undefined ? {} : { operations: options.operations }),
      ...(options.revocationCheckMs === undefined ? {} : { revocationCheckMs: options.revocationCheckMs }),
      ...(options.fleet === undefined ? {} : { fleet: options.fleet }),
      ...(options.frontDoors === undefined ? {} : { frontDoors: options.frontDoors }),
      ...(metrics === null ? {} : { metrics }),
      ...(options.listenFd === undefined ? {} : { listenFd: options.listenFd }),
      health: async () => asCbor(await ready()),
      ...reloadOperation(),
    });
    listener = daemon;
    parts.defer('listeners', () => daemon.close());
    if (metrics !== null && config.metrics !== undefined) {
      const http = await startMetricsListener({
        listen: config.metrics.listen, log, readiness: ready, scrape: () => metrics.scrape(),
        ...(config.tcp === undefined ? {} : { tls: config.tcp }),
      });
      metricsUrl = http.url;
      reloadMetricsTls = () => http.reloadTls();
      parts.defer('metrics listener', () => http.close());
    }
  };

  /** RELOAD re-reads the file, or the TLS files alone; with neither it stays unsupported. */
  const reloadOperation = (): Pick<DaemonOptions, 'reload'> => {
    if (config.file === null && config.tcp === undefined) return {};
    return {
      reload: async () => {
        // Once this worker reloaded, the others do too; the reply is this worker's
        // outcome plus `workers`: each one's, those that did not answer in time named.
        const outcome = await reload('RELOAD');
        if (options.fleet === undefined) return asCbor(outcome);
        const others = await options.fleet.reloadOthers('RELOAD');
        const workers: WorkerReload[] = [{ pid: process.pid, outcome: 'reloaded' } as const, ...others].sort((a, b) => a.pid - b.pid);
        return asCbor({ ...outcome, workers });
      },
    };
  };

  const reload = async (trigger: string): Promise<ReloadOutcome | null> => {
    if (config.file === null && config.tcp === undefined) {
      log.warn(`${trigger} ignored: the daemon was started without --config, so there is nothing to reload`);
      return null;
    }
    if (state !== 'running' || listener === null) {
      log.warn(`${trigger} ignored: the daemon is ${state === 'closed' ? 'stopped' : 'still starting'}`);
      return null;
    }
    if (reloader !== null) return reloader.reload(trigger);
    return { tls: reloadTlsOnly(trigger) };
  };

  /** Without --config: only the TLS files. Logged; rethrown for RELOAD to answer, swallowed for a signal. */
  const reloadTlsOnly = (trigger: string): TlsReloadSummary | null => {
    try {
      return reloadAllTls();
    } catch (err) {
      log.error('TLS reload refused; the running certificate, CA and CRL stay', { trigger, error: err instanceof Error ? err.message : String(err) });
      if (trigger === 'RELOAD') throw err;
      return null;
    }
  };

  return {
    config,
    log,
    start() {
      if (state !== 'new') return Promise.reject(new InternalError(`start() was already called (the daemon is ${state})`));
      state = 'starting';
      starting = open().then(
        () => {
          state = 'running';
        },
        async (err: unknown) => {
          await parts.close((name, e) => log.error('closing after a failed start', { part: name, error: e instanceof Error ? e.message : String(e) })).catch(() => undefined);
          state = 'closed';
          throw err;
        },
      );
      return starting;
    },
    reload,
    status() {
      if (state !== 'running' || listener === null) throw new InternalError(`the daemon is not running (${state})`);
      return listener.status();
    },
    get tcpAddress() {
      return listener?.tcpAddress ?? null;
    },
    get metricsUrl() {
      return metricsUrl;
    },
    readiness() {
      if (state !== 'running' || readiness === null) return Promise.reject(new InternalError(`the daemon is not running (${state})`));
      return readiness();
    },
    close() {
      closing ??= (async () => {
        await starting?.catch(() => undefined);
        state = 'closed';
        await parts.close((name, err) => log.error('closing failed', { part: name, error: err instanceof Error ? err.message : String(err) }));
      })();
      return closing;
    },
  };
}

/**
 * The metrics registry and its hooks, with prom-client imported only now.
 * The sources read the listener and the key manager at each scrape, through
 * getters: both open after the hooks exist.
 */
async function createMetrics(
  keyLabels: boolean,
  listener: () => Daemon | null,
  managed: () => { manager: { keystoreStats(): { generation: number; refreshes: number; refreshFailures: number } } } | null,
): Promise<MetricHooks & { scrape(): Promise<{ body: string; contentType: string }>; close(): void }> {
  const { DaemonMetrics } = await import('../observe/metrics.js');
  const { DAEMON_VERSION } = await import('./version.js');
  return new DaemonMetrics(
    {
      connections: () => listener()?.connectionsByListener() ?? {},
      nodes: () => {
        const out: Record<string, number> = {};
        for (const s of listener()?.dm.stats() ?? []) for (const [kind, n] of Object.entries(s.byType)) out[kind] = (out[kind] ?? 0) + (n ?? 0);
        return out;
      },
      contextMemory: () => listener()?.dm.memoryUsed() ?? 0,
      keystore: () => managed()?.manager.keystoreStats() ?? { generation: 0, refreshes: 0, refreshFailures: 0 },
    },
    { keyLabels, version: DAEMON_VERSION },
  );
}

/**
 * Clients are named by the kernel-verified uid when SO_PEERCRED is readable;
 * otherwise only the socket's file mode stands between other users and the
 * daemon, which the operator should know (once, at start).
 */
function defaultPeerIdentity(log: Logger): ((socket: Socket) => PeerIdentity | null) | null {
  if (peerCredAvailable()) return peerCred;
  log.warn('peer credentials are unavailable (native addon not built, or not Linux): clients are not identified by uid, and access rests on the socket file mode alone', {
    platform: process.platform,
  });
  return null;
}
