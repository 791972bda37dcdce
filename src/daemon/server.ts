/**
 * The listener: a Unix socket in a 0700 directory, mode 0600 by default.
 * Owns the Data Manager and the set of live connections; shuts down by
 * refusing new requests, letting requests in flight finish (bounded), closing
 * every connection (which releases every node) and removing the socket.
 */
import { chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { dirname, resolve } from 'node:path';
import type { CborValue } from '../protocol/cbor.js';
import { ConfigError, DaemonRunningError } from '../protocol/errors.js';
import { DataManager, type ClientId } from '../state/data-manager.js';
import { Connection, type ConnectionHost } from './connection.js';
import { resolveLimits, type Limits } from './limits.js';
import { createLogger, type Logger } from './logger.js';
import type { DaemonView, Operation } from './operation.js';
import { allOperations } from '../ops/index.js';
import { DAEMON_VERSION } from './version.js';
import type { PeerIdentity } from './handshake.js';

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
}

export interface Daemon {
  readonly socketPath: string;
  readonly dm: DataManager;
  readonly limits: Limits;
  status(): DaemonStatus;
  /** Graceful stop; resolves when every connection is closed and the socket removed. */
  close(): Promise<void>;
}

export interface DaemonStatus {
  daemon: { version: string; pid: number; uptimeMs: number; socket: string; shuttingDown: boolean };
  nodes: number;
  connections: number;
  clients: Array<{ clientId: string; connections: number; nodes: number; busy: number; byType: Record<string, number> }>;
}

export async function startDaemon(options: DaemonOptions): Promise<Daemon> {
  const socketPath = resolve(options.socketPath);
  const limits = resolveLimits(options.limits);
  const log = options.logger ?? createLogger();
  const dm = new DataManager({ maxNodesPerClient: limits.maxNodesPerClient });
  const operations = new Map<number, Operation>();
  for (const op of options.operations ?? allOperations()) {
    if (operations.has(op.op)) throw new ConfigError(`operation 0x${op.op.toString(16)} registered twice`);
    operations.set(op.op, op);
  }

  prepareSocketDirectory(socketPath);
  await removeStaleSocket(socketPath);

  const connections = new Set<Connection>();
  const byClient = new Map<ClientId, Set<Connection>>();
  const startedAt = Date.now();
  let shuttingDown = false;

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
      clients,
    };
  };

  const view: DaemonView = { startedAt, version: DAEMON_VERSION, status: () => status() as unknown as CborValue };
  const host: ConnectionHost = {
    dm,
    limits,
    operations,
    view,
    log,
    get shuttingDown() {
      return shuttingDown;
    },
    attached(conn) {
      const id = conn.clientId!;
      let set = byClient.get(id);
      if (set === undefined) byClient.set(id, (set = new Set()));
      set.add(conn);
    },
    closed(conn) {
      connections.delete(conn);
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
      log.warn('could not read peer credentials; connection refused', { error: String(err) });
      socket.destroy();
      return;
    }
    connections.add(new Connection(socket, host, peer));
  });

  await listen(server, socketPath, options.socketMode ?? 0o600);
  log.info('listening', { socket: socketPath, pid: process.pid, version: DAEMON_VERSION });

  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      shuttingDown = true;
      const serverClosed = new Promise<void>((res) => server.close(() => res()));
      await waitUntil(() => [...connections].every((c) => c.inflight === 0), limits.shutdownGraceMs);
      const allClosed = new Promise<void>((res) => {
        onConnectionClosed = () => {
          if (connections.size === 0) res();
        };
        if (connections.size === 0) res();
      });
      for (const conn of connections) conn.destroy();
      await allClosed;
      await serverClosed;
      try {
        unlinkSync(socketPath);
      } catch {
        // already gone (server.close removes it on most platforms)
      }
      log.info('stopped', { nodes: dm.liveNodes() });
    })();
    return closing;
  };

  return { socketPath, dm, limits, status, close };
}

function prepareSocketDirectory(socketPath: string): void {
  const dir = dirname(socketPath);
  let created: string | undefined;
  try {
    created = mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new ConfigError(`cannot create the socket directory ${dir}: ${(err as Error).message}`, { cause: err });
  }
  // Tighten only a directory we created; never chmod a shared one like /tmp.
  if (created !== undefined) chmodSync(dir, 0o700);
}

async function removeStaleSocket(socketPath: string): Promise<void> {
  let stat;
  try {
    stat = lstatSync(socketPath);
  } catch {
    return; // nothing there
  }
  if (!stat.isSocket()) {
    throw new ConfigError(`${socketPath} exists and is not a socket; remove it or choose another --socket`);
  }
  const alive = await new Promise<boolean>((res) => {
    const probe = createConnection(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      res(true);
    });
    probe.once('error', () => res(false));
  });
  if (alive) {
    throw new DaemonRunningError(`another cryptod is already listening on ${socketPath}; stop it first or choose another --socket`, {
      detail: { socket: socketPath },
    });
  }
  // A socket file nobody listens on: left by a daemon that crashed.
  unlinkSync(socketPath);
}

function listen(server: Server, socketPath: string, mode: number): Promise<void> {
  return new Promise((res, rej) => {
    server.once('error', (err) => rej(new ConfigError(`cannot listen on ${socketPath}: ${err.message}`, { cause: err })));
    // The bind happens synchronously inside listen(): a umask around it
    // creates the socket with the right mode, with no window where it is wider.
    const old = process.umask(0o777 & ~mode);
    try {
      server.listen(socketPath, () => {
        chmodSync(socketPath, mode);
        res();
      });
    } finally {
      process.umask(old);
    }
  });
}

async function waitUntil(pred: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
}
