/**
 * The metrics and health listener (`cryptod serve --metrics URL`, YAML
 * `metrics.listen`): plain HTTP for Prometheus and for probes.
 *
 *   GET /metrics   Prometheus text format (src/observe/metrics.ts)
 *   GET /healthz   200 "ok": the process answers (liveness)
 *   GET /readyz    200 when every readiness check passes, else 503; the
 *                  checks as JSON either way (src/daemon/health.ts)
 *
 * Where it listens:
 *   tcp://HOST:PORT   a loopback HOST (127.0.0.0/8, ::1, localhost) is plain
 *                     HTTP; any other address only with mutual TLS, from the
 *                     same --tls-cert/--tls-key/--tls-client-ca files as
 *                     --listen: the metrics name operations and clients'
 *                     outcomes, which are not for the network at large
 *   unix:PATH         a socket file of mode 0600 (Prometheus reaches it
 *                     through a local proxy or node exporter's textfile)
 */
import { chmodSync, unlinkSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { isIP } from 'node:net';
import { ConfigError } from '../protocol/errors.js';
import type { TcpListenOptions } from '../config/listeners.js';
import type { Logger } from '../observe/logger.js';
import type { HealthReport } from './health.js';
import type { TLSSocket } from 'node:tls';
import { certificateIdentity, mutualTlsServerOptions } from './tls-listener.js';

export type MetricsAddress = { readonly kind: 'tcp'; readonly host: string; readonly port: number } | { readonly kind: 'unix'; readonly path: string };

/** Parse `tcp://HOST:PORT` or `unix:PATH`. @throws ConfigError naming what is wrong. */
export function parseMetricsAddress(url: string): MetricsAddress {
  if (url.startsWith('unix:')) {
    const path = url.slice(5);
    if (!path.startsWith('/')) throw new ConfigError(`--metrics unix:PATH needs an absolute PATH, got "${url}"`, { detail: { field: 'metrics' } });
    return { kind: 'unix', path };
  }
  const m = /^tcp:\/\/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$/.exec(url);
  if (m === null || Number(m[2]) > 65535) {
    throw new ConfigError(`--metrics expects tcp://HOST:PORT (e.g. tcp://127.0.0.1:9464) or unix:PATH, got "${url}"`, { detail: { field: 'metrics' } });
  }
  return { kind: 'tcp', host: m[1]!.startsWith('[') ? m[1]!.slice(1, -1) : m[1]!, port: Number(m[2]) };
}

/** Whether `host` can only be reached from this machine. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}

export interface MetricsListenerOptions {
  listen: string;
  /** The --listen TLS files: required for a non-loopback TCP address. */
  tls?: TcpListenOptions;
  /** Null when only health is served (never: --metrics turns both on; kept for embedding). */
  scrape: (() => Promise<{ body: string; contentType: string }>) | null;
  readiness: () => Promise<HealthReport>;
  log: Logger;
}

export interface MetricsListener {
  /** `tcp://HOST:PORT` with the port bound (port 0 picks one), or `unix:PATH`. */
  readonly url: string;
  /**
   * With mutual TLS: re-read the --listen TLS files (SIGHUP, RELOAD) for the
   * next handshakes, and close the live connections of certificates the CRL
   * now revokes; returns how many were closed. Without TLS: nothing, 0.
   * @throws ConfigError when the new material is unusable (the old stays)
   */
  reloadTls(): number;
  close(): Promise<void>;
}

export async function startMetricsListener(options: MetricsListenerOptions): Promise<MetricsListener> {
  const address = parseMetricsAddress(options.listen);
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    route(req, res, options).catch((err: unknown) => {
      options.log.error('metrics request failed', { path: req.url ?? '', error: err instanceof Error ? err.message : String(err) });
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('internal error\n');
    });
  };
  let server: Server;
  let scheme = 'http';
  let reloadTls = (): number => 0;
  if (address.kind === 'tcp' && !isLoopback(address.host)) {
    const tls = options.tls;
    if (tls?.certFile === undefined || tls.keyFile === undefined || tls.clientCaFile === undefined) {
      throw new ConfigError(
        `--metrics ${options.listen} is not a loopback address: it is served with mutual TLS only, from the --tls-cert, --tls-key and --tls-client-ca files of --listen; give those, or listen on 127.0.0.1 or unix:PATH`,
        { detail: { field: 'metrics' } },
      );
    }
    // The same admission as --listen: its suites, CA and CRL; a revoked certificate is refused here too.
    const { context, revoked } = mutualTlsServerOptions(tls);
    try {
      server = createHttpsServer({ ...context, requestCert: true, rejectUnauthorized: true }, handler);
    } finally {
      context.key.fill(0);
    }
    // Live connections by certificate serial, so a CRL reload can close the revoked ones.
    const live = new Map<TLSSocket, string>();
    server.on('secureConnection', (socket: TLSSocket) => {
      const id = certificateIdentity(socket);
      if ('refused' in id || revoked.has(id.serial)) {
        socket.destroy();
        return;
      }
      live.set(socket, id.serial);
      socket.once('close', () => live.delete(socket));
    });
    reloadTls = () => {
      const next = mutualTlsServerOptions(tls);
      try {
        (server as unknown as { setSecureContext(o: object): void }).setSecureContext(next.context);
      } catch (err) {
        throw new ConfigError(`cannot use the reloaded TLS material for --metrics ${options.listen}: ${(err as Error).message}`, { cause: err });
      } finally {
        next.context.key.fill(0);
      }
      revoked.clear();
      for (const s of next.revoked) revoked.add(s);
      let closed = 0;
      for (const [socket, serial] of live) {
        if (!revoked.has(serial)) continue;
        options.log.warn('client certificate revoked by the CRL: metrics connection closed', { serial });
        socket.destroy();
        closed++;
      }
      return closed;
    };
    scheme = 'https';
  } else {
    server = createHttpServer(handler);
  }
  // Probes are short: no keep-alive connection outlives a stopping daemon for long.
  server.keepAliveTimeout = 1_000;
  if (address.kind === 'unix') {
    try {
      unlinkSync(address.path);
    } catch {
      // no stale socket
    }
  }
  await new Promise<void>((res, rej) => {
    server.once('error', (err) => rej(new ConfigError(`cannot listen for metrics on ${options.listen}: ${err.message}`, { cause: err, detail: { field: 'metrics' } })));
    if (address.kind === 'unix') server.listen(address.path, () => res());
    else server.listen(address.port, address.host, () => res());
  });
  let url: string;
  if (address.kind === 'unix') {
    chmodSync(address.path, 0o600);
    url = `unix:${address.path}`;
  } else {
    const bound = server.address();
    const port = typeof bound === 'object' && bound !== null ? bound.port : address.port;
    url = `tcp://${address.host.includes(':') ? `[${address.host}]` : address.host}:${port}`;
  }
  options.log.info('metrics listening', { url, scheme, paths: ['/metrics', '/healthz', '/readyz'] });
  return {
    url,
    reloadTls: () => reloadTls(),
    close: () =>
      new Promise<void>((res) => {
        server.close(() => res());
        server.closeAllConnections();
      }),
  };
}

async function route(req: IncomingMessage, res: ServerResponse, options: MetricsListenerOptions): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('only GET and HEAD\n');
    return;
  }
  if (path === '/healthz') {
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    return;
  }
  if (path === '/readyz') {
    const report = await options.readiness();
    res.writeHead(report.ready ? 200 : 503, { 'content-type': 'application/json' }).end(`${JSON.stringify(report)}\n`);
    return;
  }
  if (path === '/metrics' && options.scrape !== null) {
    const { body, contentType } = await options.scrape();
    res.writeHead(200, { 'content-type': contentType }).end(body);
    return;
  }
  res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: /metrics, /healthz, /readyz\n');
}
