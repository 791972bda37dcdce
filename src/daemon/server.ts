/**
 * The listener: a Unix socket in a 0700 directory, mode 0600 by default.
 * Owns the Data Manager and the set of live connections; shuts down by
 * refusing new requests, letting requests in flight finish (bounded), closing
 * every connection (which releases every node) and removing the socket.
 */
import { unlinkSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { resolve } from 'node:path';
import type { CborValue } from '../protocol/cbor.js';
import { asCbor } from '../protocol/schema.js';
import { AccessDeniedError, ConfigError, TooManyConnectionsError, type CryptodError } from '../protocol/errors.js';
import { DataManager, type ClientId } from '../state/data-manager.js';
import { Connection, type ConnectionHost } from './connection.js';
import { resolveLimits, type Limits } from '../config/limits.js';
import { createLogger, type Logger } from '../observe/logger.js';
import { NO_AUDIT, type Audit } from '../observe/audit.js';
import type { MetricHooks } from '../observe/metric-hooks.js';
import type { DaemonView, Operation } from '../ops/operation.js';
import { allOperations } from '../ops/index.js';
import { managedAccess } from '../ops/managed-auth.js';
import { operationTable } from './operation-table.js';
import { DAEMON_VERSION } from './version.js';
import type { PeerIdentity } from './handshake.js';
import { createAccessControl, widensAccess, type AccessPolicy, type RefusedConnection } from './access.js';
import { ConnectionBudget, type Seat } from './admission.js';
import { Refusals, type RefusalKind } from './refusals.js';
import { listenOnSocket, prepareSocketDirectory, removeStaleSocket } from './socket-file.js';
import { certificateIdentity, mutualTlsServerOptions, startTlsListener, type TcpListenOptions, type TlsListener } from './tls-listener.js';
import type { ClientRegistry } from '../auth/client-registry.js';
import { watchRevocations } from '../auth/revocation.js';
import type { ManagedKeys } from './managed-keys.js';
import { DataKeyCache, type DataKeyCacheStats } from '../cache/data-key-cache.js';
import type { DataKeyKeks } from '../kek/data-key-kek.js';
import { managedKeks } from '../ops/managed-kek.js';
import type { DataKeys } from '../ops/operation.js';
import type { TlsReloadSummary } from '../config/listeners.js';
import { fleetStatus, reportOf, type FleetLink } from './fleet.js';
import type { FrontDoor } from '../ops/front-door.js';
import { createFrontDoorHost } from './front-door-host.js';
import { DEFAULT_REVOCATION_CHECK_MS } from '../auth/revocation.js';
import { windowAddon } from '../protocol/window-addon.js';
import { DaemonWindows } from './windows.js';

export type { TlsReloadSummary };

export interface DaemonOptions {
  /** Path of the Unix socket. */
  socketPath: string;
  /** Socket file mode (default 0o600: only the daemon's user). */
  socketMode?: number;
  limits?: Partial<Limits>;
  logger?: Logger;
  /** Reads the kernel-verified identity of a peer; null when the platform has none. */
  peerIdentity?: (socket: Socket) => PeerIdentity | null;
  /** Operations served (default: all of them). */
  operations?: readonly Operation[];
  /** Who besides the daemon's own user and root may connect on the Unix socket (src/daemon/access.ts); needs `peerIdentity`. */
  access?: AccessPolicy;
  /** Token clients (`cryptod client add`); without a registry every HELLO token fails. */
  clients?: ClientRegistry;
  /** How often live token connections are re-checked for revocation (ms; default 1000). */
  revocationCheckMs?: number;
  /** A second listener: TCP with mutual TLS (src/daemon/tls-listener.ts). */
  tcp?: TcpListenOptions;
  /** Every connection refused at accept, after its warn line is logged (the audit log's hook). */
  onRefused?: (event: RefusedConnection) => void;
  /** The audit log (src/observe/audit.ts); off when absent. The caller opened it and closes it after close(). */
  audit?: Audit;
  /**
   * Managed keys (src/daemon/managed-keys.ts `openManagedKeys`). Without them the
   * managed-key operations answer CRYPTOD_ERR_UNSUPPORTED. The caller opened them
   * and closes them after close().
   */
  keys?: ManagedKeys;
  /** Re-read the configuration file for RELOAD; resolves to a summary of what changed. Without it RELOAD is unsupported. */
  reload?: () => Promise<CborValue>;
  /** The KEKs that wrap data keys (default, with `keys`: its managed aes256-kwp keys, src/ops/managed-kek.ts). */
  dataKeyKeks?: DataKeyKeks;
  /** The data-key cache's clock (tests; default Date.now). */
  dataKeyClock?: { now(): number };
  /**
   * This daemon is one worker of several behind one socket (fleet.ts): the
   * primary process owns the socket file (no stale-socket check, no unlink
   * at close: the others still listen on it), and STATUS covers every worker.
   */
  fleet?: FleetLink;
  /** Further listeners onto the same operations (the Vault-compatible HTTP API, src/http/); started after the socket, closed first. */
  frontDoors?: readonly FrontDoor[];
  /** Metrics hooks (src/observe/metric-hooks.ts); off when absent. */
  metrics?: MetricHooks;
  /** Readiness checks for HEALTH (src/daemon/health.ts). */
  health?: () => Promise<CborValue>;
  /**
   * A listening Unix socket inherited from systemd (socket activation,
   * src/daemon/systemd.ts): served instead of binding `socketPath`, whose
   * file systemd owns — the daemon neither creates nor removes it.
   */
  listenFd?: number;
}

export interface Daemon {
  readonly socketPath: string;
  readonly dm: DataManager;
  readonly limits: Limits;
  /** The audit log ({@link NO_AUDIT} when off): for events the daemon's callers cause. */
  readonly audit: Audit;
  /** Address of the mutual-TLS listener, when `tcp` was given. */
  readonly tcpAddress: { host: string; port: number } | null;
  /**
   * Re-read the TLS listener's files (certificate rotation, a new CRL) and
   * close the live connections whose certificate the CRL now revokes; null
   * without a TLS listener. @throws ConfigError, and nothing changes.
   */
  reloadTls(): TlsReloadSummary | null;
  status(): DaemonStatus;
  /** Open connections by listener (`unix`, `tls`), for metrics. */
  connectionsByListener(): { unix: number; tls: number };
  /** Graceful stop; resolves when every connection is closed and the socket removed. */
  close(): Promise<void>;
}

export interface DaemonStatus {
  daemon: { version: string; pid: number; uptimeMs: number; socket: string; shuttingDown: boolean };
  nodes: number;
  connections: number;
  /** Connections turned away since start, by kind (src/daemon/refusals.ts); kinds that never happened are absent. */
  refused: Record<string, number>;
  clients: Array<{ clientId: string; connections: number; nodes: number; busy: number; byType: Record<string, number> }>;
  /** Managed key versions whose stored material did not load (they answer CRYPTOD_ERR_KEY_DAMAGED); empty when all are healthy. */
  damaged: Array<{ key: string; version: number; reason: string }>;
  /** The data-key cache (src/cache/data-key-cache.ts); absent without managed keys. */
  cache?: DataKeyCacheStats;
  /**
   * The HTTP front door (`--http`); absent without one. `maxInflight` is
   * maxHttpInflight, which each process enforces on its own requests:
   * `maxInflightScope` says whether that process is the whole daemon or one
   * of its workers (then the daemon admits up to workers × maxInflight).
   */
  http?: HttpStatus;
  /**
   * This process's CPU time since start (process.cpuUsage(), microseconds) and
   * resident memory: a benchmark divides the CPU difference between two
   * STATUS calls by the operations between them, a figure machine noise
   * barely moves where wall-clock rates swing.
   */
  process: { cpuUserUs: number; cpuSystemUs: number; rssBytes: number };
}

export interface HttpStatus {
  connections: number;
  inflight: number;
  requests: number;
  maxInflight: number;
  maxInflightScope: 'daemon' | 'worker';
}

export async function startDaemon(options: DaemonOptions): Promise<Daemon> {
  const socketPath = resolve(options.socketPath);
  const limits = resolveLimits(options.limits);
  const log = options.logger ?? createLogger();
  const dm = new DataManager({ maxNodesPerClient: limits.maxNodesPerClient, memoryBudget: limits.maxContextMemory, memoryPerClient: limits.maxContextMemoryPerClient });
  const audit = options.audit ?? NO_AUDIT;
  const operations = operationTable(options.operations ?? allOperations());
  const access = createAccessControl(options.access);
  if (widensAccess(options.access) && options.peerIdentity === undefined) {
    throw new ConfigError('admitting other uids or gids needs peer credentials (SO_PEERCRED), which are unavailable here: build the native addon (npm install) on Linux, or drop --allow-uid/--allow-gid');
  }
  const revocations = options.clients === undefined ? null : watchRevocations(options.clients, log, options.revocationCheckMs);

  const inherited = options.listenFd;
  if (inherited === undefined) {
    prepareSocketDirectory(socketPath);
    if (options.fleet === undefined) await removeStaleSocket(socketPath);
  }

  const connections = new Set<Connection>();
  /** Every open connection's place in the connection caps (src/daemon/admission.ts). */
  const seats = new Map<Connection, Seat>();
  const budget = new ConnectionBudget(limits, access.summary.daemonUid);
  const refusals = new Refusals(log, limits);
  const byClient = new Map<ClientId, Set<Connection>>();
  const startedAt = Date.now();
  let shuttingDown = false;

  const dataKeys = options.keys === undefined ? undefined : openDataKeys(options.keys, limits, options);

  const status = (): DaemonStatus => {
    const clients: DaemonStatus['clients'] = [];
    const seen = new Set<string>();
    for (const s of dm.stats()) {
      seen.add(s.clientId);
      clients.push({ clientId: s.clientId, connections: byClient.get(s.clientId)?.size ?? 0, nodes: s.live, busy: s.busy, byType: s.byType as Record<string, number> });
    }
    for (const [id, conns] of byClient) {
      if (!seen.has(id)) clients.push({ clientId: id, connections: conns.size, nodes: 0, busy: 0, byType: {} });
    }
    return {
      daemon: { version: DAEMON_VERSION, pid: process.pid, uptimeMs: Date.now() - startedAt, socket: socketPath, shuttingDown },
      nodes: dm.liveNodes(),
      connections: connections.size,
      refused: refusals.counts(),
      clients,
      damaged: options.keys?.manager.damaged().map((d) => ({ ...d })) ?? [],
      ...(dataKeys === undefined ? {} : { cache: dataKeys.cache.stats() }),
      ...(doors.length === 0 ? {} : { http: httpStatus() }),
      process: processUsage(),
    };
  };

  const fleet = options.fleet;
  const fleetView = fleet === undefined ? null : async (): Promise<CborValue> => {
    const own = status();
    const { reports, missing } = await fleet.reports(reportOf(own));
    return asCbor(fleetStatus(own, reports, missing));
  };
  // Shared-memory windows (protocol.md §6.16): need the addon and the kernel's word on who sends a memory file.
  const addon = limits.maxWindowBytes > 0 && options.peerIdentity !== undefined ? windowAddon() : null;
  const peerOf = options.peerIdentity;
  const windows = addon === null || peerOf === undefined ? undefined : new DaemonWindows(addon, (socket) => {
    const p = peerOf(socket);
    if (p === null) throw new Error('no peer credentials');
    return p;
  }, log);
  const view: DaemonView = { startedAt, version: DAEMON_VERSION, status: fleetView ?? (() => asCbor(status())), audit,
    ...(windows === undefined ? {} : { windows }),
    ...(options.keys === undefined ? {} : { keys: options.keys }),
    ...(dataKeys === undefined ? {} : { dataKeys }),
    ...(options.reload === undefined ? {} : { reload: options.reload }),
    ...(options.metrics === undefined ? {} : { metrics: options.metrics }),
    ...(options.health === undefined ? {} : { health: options.health }),
  };
  const host: ConnectionHost = {
    dm,
    limits,
    operations,
    authorizer: managedAccess,
    view,
    log,
    audit,
    ...(options.metrics === undefined ? {} : { metrics: options.metrics }),
    get shuttingDown() {
      return shuttingDown;
    },
    verifyToken: options.clients === undefined ? null : (token) => options.clients!.verify(token),
    attached(conn) {
      const id = conn.clientId!;
      const open = byClient.get(id)?.size ?? 0;
      if (open >= limits.maxConnectionsPerClient) {
        const peer = conn.identity?.peer;
        refusals.record('max-connections-per-client', { transport: conn.certSerial === null ? 'unix' : 'tls', clientId: id, uid: peer?.uid, gid: peer?.gid, pid: peer?.pid });
        throw new TooManyConnectionsError(
          `client ${id} already has ${open} connections open, the limit is ${limits.maxConnectionsPerClient}; reuse a connection (each carries many concurrent requests) or close one`,
          { detail: { scope: 'client', limit: limits.maxConnectionsPerClient } },
        );
      }
      revocations?.add(conn);
      let set = byClient.get(id);
      if (set === undefined) byClient.set(id, (set = new Set()));
      set.add(conn);
    },
    helloTimedOut(conn) {
      const peer = conn.peer;
      refusals.record('hello-timeout', { connection: conn.number, helloTimeoutMs: limits.helloTimeoutMs, uid: peer?.uid, gid: peer?.gid, pid: peer?.pid });
    },
    closed(conn) {
      connections.delete(conn);
      const seat = seats.get(conn);
      if (seat !== undefined) {
        seats.delete(conn);
        budget.release(seat);
      }
      revocations?.delete(conn);
      const id = conn.clientId;
      if (id !== null) {
        const set = byClient.get(id);
        set?.delete(conn);
        if (set?.size === 0) byClient.delete(id);
      }
      onConnectionClosed?.();
    },
  };
  let onConnectionClosed: (() => void) | undefined;

  const server = createServer({ allowHalfOpen: false, pauseOnConnect: false }, (socket) => {
    if (shuttingDown) {
      socket.destroy();
      return;
    }
    let peer: PeerIdentity | null = null;
    try {
      peer = options.peerIdentity?.(socket) ?? null;
    } catch (err) {
      onRefused(socket, { transport: 'unix', reason: `could not read peer credentials: ${err instanceof Error ? err.message : String(err)}` });
      return;
    }
    // Admission happens here, before a byte is read (src/daemon/access.ts).
    if (peer !== null && access.admit(peer) === null) {
      const error = new AccessDeniedError(
        `uid ${peer.uid} (gid ${peer.gid}) is not admitted by this daemon's access policy; its operator can admit it with \`cryptod serve --allow-uid ${peer.uid}\` (or access.uids in the configuration file)`,
        { detail: { uid: peer.uid, gid: peer.gid } },
      );
      onRefused(socket, { transport: 'unix', reason: 'uid not admitted by the access policy', uid: peer.uid, gid: peer.gid, pid: peer.pid }, 'access-policy', error);
      return;
    }
    admit(socket, 'unix', peer, () => new Connection(socket, host, peer));
  });

  /** Take a seat in the connection caps for `socket`, or refuse it with a typed error frame. */
  function admit(socket: Socket, transport: 'unix' | 'tls', peer: PeerIdentity | null, open: () => Connection): void {
    const seat = budget.take(transport, peer);
    if ('refused' in seat) {
      const address = transport === 'tls' ? { remoteAddress: socket.remoteAddress, remotePort: socket.remotePort } : {};
      onRefused(socket, { transport, reason: seat.error.message, ...(peer === null ? {} : { uid: peer.uid, gid: peer.gid, pid: peer.pid }), ...address }, seat.refused, seat.error);
      return;
    }
    const conn = open();
    seats.set(conn, seat);
    connections.add(conn);
  }

  /**
   * Close a connection refused at accept: counted and logged (rate-limited),
   * then the audit hook. Nothing was read from it; with `error` it is sent
   * one ERROR frame saying why before it closes.
   */
  function onRefused(socket: Socket, event: RefusedConnection, kind: RefusalKind = event.transport === 'tls' ? 'tls' : 'no-peer-credentials', error?: CryptodError): void {
    if (error === undefined) socket.destroy();
    else refusals.closeWithError(socket, error);
    refusals.record(kind, { ...event });
    options.onRefused?.(event);
    if (audit.enabled) {
      audit.emit({
        event: 'connection.refused',
        connection: null,
        // The two Unix refusals differ in what is known: the access policy saw the uid.
        reason: kind === 'max-connections' || kind === 'max-connections-per-uid' ? 'too-many-connections' : kind === 'tls' ? 'tls' : kind === 'access-policy' ? 'access-policy' : 'no-peer-credentials',
        detail: event.reason,
        client: null,
        transport: event.transport,
        remoteAddress: event.remoteAddress ?? null,
        uid: event.uid ?? null,
        gid: event.gid ?? null,
        pid: event.pid ?? null,
      });
    }
  }

  const doors: FrontDoor[] = [];
  let tls: TlsListener | null = null;
  try {
    if (options.tcp !== undefined) {
      tls = await startTlsListener(options.tcp, {
        accepted(socket, certName, serial) {
          if (shuttingDown) socket.destroy();
          else admit(socket, 'tls', null, () => new Connection(socket, host, null, { name: certName, serial }));
        },
        refused: (socket, event) => onRefused(socket, event, 'tls'),
      });
    }
    if (inherited === undefined) await listenOnSocket(server, socketPath, options.socketMode ?? 0o600);
    else await listenOnFd(server, inherited);
  } catch (err) {
    revocations?.stop();
    dataKeys?.close();
    await tls?.close();
    throw err;
  }
  /** The front doors' counts summed (only the HTTP API is a front door today). */
  const httpStatus = (): HttpStatus => {
    const total = { connections: 0, inflight: 0, requests: 0 };
    for (const d of doors) {
      const s = d.stats?.();
      if (s === undefined) continue;
      total.connections += s.connections;
      total.inflight += s.inflight;
      total.requests += s.requests;
    }
    return { ...total, maxInflight: limits.maxHttpInflight, maxInflightScope: fleet === undefined ? 'daemon' : 'worker' };
  };
  /** The front doors' reload listeners (an HTTPS front door's context and revoked connections). */
  const doorReloads: Array<(revoked: ReadonlySet<string>) => number> = [];
  if (options.frontDoors !== undefined && options.frontDoors.length > 0) {
    const tcp = options.tcp;
    const doorHost = createFrontDoorHost({
      tls: tls === null || tcp === undefined ? null : {
        load: () => mutualTlsServerOptions(tcp).context,
        identify: certificateIdentity,
        onReload: (listener) => void doorReloads.push(listener),
      },
      dm, limits, log, audit, view, operations, authorizer: managedAccess, access,
      peerIdentity: options.peerIdentity,
      verifyToken: options.clients === undefined ? null : (token) => options.clients!.verify(token),
      tokenTtlMs: options.revocationCheckMs ?? DEFAULT_REVOCATION_CHECK_MS,
      sharedListeners: fleet !== undefined,
      shuttingDown: () => shuttingDown,
    });
    try {
      for (const door of options.frontDoors) {
        await door.start(doorHost);
        doors.push(door);
        log.info('listening', { frontDoor: door.description });
      }
    } catch (err) {
      for (const door of doors) await door.close();
      revocations?.stop();
      await tls?.close();
      await new Promise<void>((res) => server.close(() => res()));
      throw err;
    }
  }
  // Idle contexts expire (limits.contextIdleMs): a tick every quarter of the
  // idle time, a context unused for 5 ticks is released, so after 100–125 %
  // of the idle time. Unref'd: the sweep never keeps the process alive.
  const sweep =
    limits.contextIdleMs > 0
      ? setInterval(() => {
          const n = dm.expireIdle(IDLE_TICKS);
          if (n > 0) log.debug('idle contexts expired', { count: n });
        }, Math.max(1, Math.ceil(limits.contextIdleMs / (IDLE_TICKS - 1))))
      : null;
  sweep?.unref();
  log.info('listening', { socket: socketPath, ...(inherited === undefined ? {} : { inheritedFd: inherited }), pid: process.pid, version: DAEMON_VERSION, ...(tls === null ? {} : { tcp: `${tls.address.host}:${tls.address.port}`, tls: 'mutual' }) });

  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      shuttingDown = true;
      if (sweep !== null) clearInterval(sweep);
      const deadline = Date.now() + limits.shutdownGraceMs;
      const serverClosed = new Promise<void>((res) => server.close(() => res()));
      await Promise.all(doors.map((d) => d.close()));
      await waitUntil(() => [...connections].every((c) => c.inflight === 0), limits.shutdownGraceMs);
      const allClosed = new Promise<void>((res) => {
        onConnectionClosed = () => {
          if (connections.size === 0) res();
        };
        if (connections.size === 0) res();
      });
      // Replies already written still reach their clients, within what is left of the grace period.
      const flushMs = Math.max(0, deadline - Date.now());
      for (const conn of connections) conn.end(flushMs);
      await allClosed;
      revocations?.stop();
      refusals.stop();
      dataKeys?.close();
      await windows?.close();
      await tls?.close();
      await serverClosed;
      if (inherited === undefined && fleet === undefined) {
        try {
          unlinkSync(socketPath);
        } catch {
          // already gone (server.close removes it on most platforms)
        }
      }
      log.info('stopped', { nodes: dm.liveNodes() });
    })();
    return closing;
  };

  const reloadTls = (): TlsReloadSummary | null => {
    if (tls === null) return null;
    const { revoked } = tls.reload();
    let closed = 0;
    for (const conn of connections) {
      if (conn.certSerial === null || !revoked.has(conn.certSerial)) continue;
      log.warn('client certificate revoked by the CRL: connection closed', { connection: conn.number, clientId: conn.clientId, serial: conn.certSerial });
      conn.destroy();
      closed++;
    }
    for (const reloadDoor of doorReloads) closed += reloadDoor(revoked);
    log.info('TLS material reloaded', { revokedSerials: revoked.size, closed });
    return { revokedSerials: revoked.size, closed };
  };

  const connectionsByListener = (): { unix: number; tls: number } => {
    let tlsCount = 0;
    for (const c of connections) if (c.certSerial !== null) tlsCount++;
    return { unix: connections.size - tlsCount, tls: tlsCount };
  };

  return { socketPath, dm, limits, audit, tcpAddress: tls?.address ?? null, status, connectionsByListener, close, reloadTls };
}

/** Serve a listening socket inherited as descriptor `fd`. */
function listenOnFd(server: ReturnType<typeof createServer>, fd: number): Promise<void> {
  return new Promise((res, rej) => {
    server.once('error', (err) => rej(new ConfigError(`cannot listen on the inherited socket (fd ${fd}): ${err.message}`, { cause: err })));
    server.listen({ fd }, () => res());
  });
}

/** Ticks of the idle clock after which an unused context expires (see DataManager.expireIdle). */
const IDLE_TICKS = 5;

async function waitUntil(pred: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
}

/**
 * Data keys of a daemon with managed keys: the cache bounded by the limits,
 * and a subscription to the key manager so that a KEK version destroyed,
 * disabled or retired — here or by another daemon — drops what it wrapped at once.
 */
function openDataKeys(keys: ManagedKeys, limits: Limits, options: DaemonOptions): DataKeys & { close(): void } {
  const keks = options.dataKeyKeks ?? managedKeks(keys.manager);
  const cache = new DataKeyCache({
    capacity: limits.dataKeyCacheCapacity,
    maxAgeMs: limits.dataKeyCacheMaxAgeMs,
    maxUses: BigInt(limits.dataKeyCacheMaxUses),
    maxBytes: BigInt(limits.dataKeyCacheMaxBytes),
    unwrapTimeoutMs: limits.dataKeyUnwrapTimeoutMs,
    ...(options.dataKeyClock === undefined ? {} : { clock: options.dataKeyClock }),
  });
  const stop = keys.manager.onChange(() => {
    for (const p of cache.partitions()) cache.evictKek(p, (v) => keks.usable(p, v));
  });
  if (options.metrics?.enabled === true) options.metrics.dataKeyCache(() => cache.stats());
  return {
    keks, cache,
    close() {
      stop();
      cache.close();
    },
  };
}

function processUsage(): DaemonStatus['process'] {
  const cpu = process.cpuUsage();
  return { cpuUserUs: cpu.user, cpuSystemUs: cpu.system, rssBytes: process.memoryUsage.rss() };
}
