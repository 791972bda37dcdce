/**
 * The HTTP listener of the Vault-compatible API (`cryptod serve --http`), on
 * node:http (measured against fastify on transit encrypt: bench/vault-http.ts,
 * docs/benchmarks-vault.md).
 *
 *   accept ─▶ Unix socket: the peer's uid through the daemon's access policy
 *              (refused: 403 and closed, as the native socket refuses it)
 *          ─▶ llhttp reads the socket directly; a connection's first LIST
 *              moves it onto the LIST rewriter (list-takeover.ts)
 *   request ─▶ in flight < maxHttpInflight, else 429
 *           ─▶ body ≤ maxHttpBody, else 413 (and the connection closes)
 *           ─▶ vault-api.ts ─▶ JSON reply, Content-Type: application/json
 *
 * Fairness: HTTP/1.1 serves one request at a time per connection (a
 * pipelined request waits for the one before it), and every request that
 * waits for a key, a refresh or the keystore yields to the event loop, so
 * one busy connection cannot starve the others; maxHttpInflight bounds the
 * total.
 *
 * TCP on loopback is plain HTTP. Any other TCP address is HTTPS with client
 * certificates required, from the native TCP listener's files (`--listen`
 * with `--tls-cert/--tls-key/--tls-client-ca/--tls-crl`), or refused: a
 * token sent in clear over a network is a token given away.
 *
 *   mutual TLS ─▶ the certificate admits the connection (as on --listen)
 *   request    ─▶ X-Vault-Token given: the token client (it refines the
 *                 certificate's identity, as a HELLO token does natively)
 *              ─▶ no token: the certificate's client, cert:<CN>
 *
 * A TLS reload swaps the context for new handshakes and closes the live
 * connections whose certificate the new CRL revokes, as the native
 * listener does.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import { isIP } from 'node:net';
import { ConfigError } from '../protocol/errors.js';
import type { FrontDoor, FrontDoorHost, FrontDoorStats, PeerCredentials } from '../ops/front-door.js';
import { ListingConnection, refusedList, takeOver } from './list-takeover.js';
import { createVaultApi, type SessionSlot, type VaultApi } from './vault-api.js';
import { errorBody, type VaultReply } from './vault-reply.js';

export interface HttpListenOptions {
  /** `unix:/path/http.sock` or `tcp://127.0.0.1:8200` (loopback only; port 0 picks one). */
  readonly url: string;
  /** Mount path of the transit engine (default `transit`). */
  readonly mount?: string;
}

export type HttpAddress = { readonly unix: string } | { readonly host: string; readonly port: number; readonly loopback: boolean };

/** An unauthenticated peer gets this long to finish the TLS handshake (as on --listen). */
const HANDSHAKE_TIMEOUT_MS = 10_000;

/** The parsed `--http` value. @throws ConfigError naming the accepted forms. */
export function parseHttpUrl(url: string): HttpAddress {
  if (url.startsWith('unix:')) {
    const path = url.slice('unix:'.length).replace(/^\/\/(?=\/)/, '');
    if (!path.startsWith('/')) throw new ConfigError(`--http ${url}: expected unix:/absolute/path.sock`, { detail: { field: 'http' } });
    return { unix: path };
  }
  const m = /^tcp:\/\/(\[[^\]]+\]|[^:/]+):([0-9]{1,5})$/.exec(url);
  if (m === null) throw new ConfigError(`--http ${JSON.stringify(url)}: expected unix:/path/http.sock or tcp://127.0.0.1:PORT`, { detail: { field: 'http' } });
  const host = m[1]!.replace(/^\[|\]$/g, '');
  const port = Number(m[2]);
  if (port > 65535) throw new ConfigError(`--http ${url}: port ${port} is out of range`, { detail: { field: 'http' } });
  return { host, port, loopback: isLoopback(host) };
}

function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  return isIP(host) === 4 && host.startsWith('127.');
}

interface ConnectionInfo {
  readonly number: number;
  readonly peer: PeerCredentials | null;
  /** The verified client certificate (HTTPS only). */
  readonly cert: { readonly name: string; readonly serial: string } | null;
  /** The last token verified on this connection (vault-api.ts SessionSlot). */
  readonly session: SessionSlot;
}

export class VaultFrontDoor implements FrontDoor {
  readonly #address: HttpAddress;
  /** The `--http` value as given, for messages. */
  readonly #url: string;
  readonly #mount: string;
  #server: Server | null = null;
  #host: FrontDoorHost | null = null;
  #api: VaultApi | null = null;
  readonly #connections = new WeakMap<Socket | ListingConnection, ConnectionInfo>();
  /** Sockets whose connection moved to a ListingConnection at their first LIST. */
  readonly #takenOver = new WeakSet<Socket>();
  /** Live HTTPS connections by certificate serial, to close on a CRL reload. */
  readonly #tlsSockets = new Set<TLSSocket>();
  #inflight = 0;
  /** Admitted connections open now, and requests received since start (STATUS). */
  #open = 0;
  #requests = 0;
  #port: number | null = null;

  constructor(options: HttpListenOptions) {
    this.#address = parseHttpUrl(options.url);
    this.#url = options.url;
    this.#mount = options.mount ?? 'transit';
    if (!/^[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/.test(this.#mount)) {
      throw new ConfigError(`--http-mount ${JSON.stringify(this.#mount)}: expected a path such as transit or crypto/transit (letters, digits, _ and -)`, { detail: { field: 'httpMount' } });
    }
  }

  get description(): string {
    const a = this.#address;
    return 'unix' in a ? `http unix:${a.unix} /v1/${this.#mount}` : `${a.loopback ? 'http' : 'https (client certificates)'} tcp://${a.host}:${this.#port ?? a.port} /v1/${this.#mount}`;
  }

  /** The TCP port listened on (after start), or null on a Unix socket. */
  get port(): number | null {
    return this.#port;
  }

  async start(host: FrontDoorHost): Promise<void> {
    this.#host = host;
    this.#api = createVaultApi(host, { mount: this.#mount });
    const a = this.#address;
    const secure = !('unix' in a) && !a.loopback;
    if (secure && host.tls === null) {
      throw new ConfigError(`--http ${this.#url}: a non-loopback address needs mutual TLS, from the files --listen uses (--listen tcp://HOST:PORT with --tls-cert, --tls-key and --tls-client-ca); without them the HTTP listener serves loopback (127.0.0.1, ::1, localhost) or a Unix socket only`, {
        detail: { field: 'http' },
      });
    }
    const httpOptions = { keepAliveTimeout: 65_000, requestTimeout: 60_000 };
    let server: Server;
    if (secure) {
      const context = host.tls!.load();
      try {
        server = createHttpsServer({ ...httpOptions, ...context, requestCert: true, rejectUnauthorized: true, handshakeTimeout: HANDSHAKE_TIMEOUT_MS }, (req, res) => this.#request(req, res));
      } catch (err) {
        throw new ConfigError(`cannot use the TLS material for --http ${this.#url}: ${(err as Error).message}`, { cause: err, detail: { field: 'http' } });
      } finally {
        context.key.fill(0);
      }
      server.on('secureConnection', (socket: TLSSocket) => this.#accepted(socket));
      server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
        host.log.warn('HTTPS connection refused: TLS handshake failed', { reason: err.code ?? err.message, remoteAddress: socket.remoteAddress });
      });
      host.tls!.onReload((revoked) => this.#reloadTls(revoked));
    } else {
      server = createServer(httpOptions, (req, res) => this.#request(req, res));
      server.on('connection', (socket: Socket) => this.#accepted(socket));
    }
    // Each connection costs a descriptor: the HTTP listener takes at most as many as the native listeners together (--max-connections); node:http closes the ones beyond.
    server.maxConnections = host.limits.maxConnections;
    server.on('drop', () => host.log.warn('HTTP connection refused: maxConnections reached', { limit: host.limits.maxConnections }));
    // Malformed HTTP: the parser's refusal, answered in Vault's shape when the socket can still take it.
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
      // The parser that refused a LIST keeps refusing what it is fed: the connection lives on in a ListingConnection.
      if (this.#takenOver.has(socket)) return;
      if (!(socket instanceof ListingConnection) && this.#connections.has(socket)) {
        const first = refusedList(err);
        if (first !== null) {
          this.#takenOver.add(socket);
          takeOver(server, socket, first, secure, (c) => this.#connections.set(c, this.#connections.get(socket)!));
          return;
        }
      }
      if (socket.writable && (err.code === 'HPE_INVALID_METHOD' || err.code === 'HPE_INVALID_URL' || err.code?.startsWith('HPE_') === true)) {
        const body = JSON.stringify(errorBody([`malformed HTTP request (${err.code ?? 'parse error'}); cryptod speaks HTTP/1.1 with GET, POST, PUT, DELETE and LIST`]));
        socket.end(`HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
      } else {
        socket.destroy();
      }
    });
    if ('unix' in a) {
      await host.listenOnUnixSocket(server, a.unix);
    } else {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: a.host, port: a.port }, () => {
          server.off('error', reject);
          resolve();
        });
      });
      const addr = server.address();
      this.#port = typeof addr === 'object' && addr !== null ? addr.port : a.port;
    }
    this.#server = server;
  }

  #accepted(socket: Socket): void {
    // A ListingConnection re-entering through 'connection' was registered by takeOver.
    if (this.#connections.has(socket)) return;
    const host = this.#host!;
    let peer: PeerCredentials | null = null;
    if ('unix' in this.#address) {
      let admitted: ReturnType<FrontDoorHost['admitUnixPeer']>;
      try {
        admitted = host.admitUnixPeer(socket);
      } catch (err) {
        host.log.warn('HTTP connection refused: could not read peer credentials', { error: err instanceof Error ? err.message : String(err) });
        socket.destroy();
        return;
      }
      if (admitted !== null && 'refused' in admitted) {
        host.log.warn('HTTP connection refused by the access policy', { reason: admitted.refused });
        const body = JSON.stringify(errorBody([`permission denied: ${admitted.refused}`]));
        socket.end(`HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
        return;
      }
      peer = admitted;
    }
    let cert: ConnectionInfo['cert'] = null;
    if (host.tls !== null && 'encrypted' in socket) {
      const tlsSocket = socket as TLSSocket;
      const identity = host.tls.identify(tlsSocket);
      if ('refused' in identity) {
        host.log.warn('HTTPS connection refused', { reason: identity.refused, remoteAddress: socket.remoteAddress });
        socket.destroy();
        return;
      }
      cert = identity;
      this.#tlsSockets.add(tlsSocket);
      tlsSocket.once('close', () => this.#tlsSockets.delete(tlsSocket));
    }
    const session: SessionSlot = { token: null, context: null, until: 0 };
    socket.once('close', () => session.token?.fill(0));
    this.#connections.set(socket, { number: host.nextConnection(), peer, cert, session });
    this.#open++;
    socket.once('close', () => this.#open--);
    // No 'data' listener here: the socket stays on llhttp's direct path until it sends LIST (list-takeover.ts).
  }

  /** After a TLS reload: swap the context for new handshakes, close the connections whose certificate is now revoked. */
  #reloadTls(revoked: ReadonlySet<string>): number {
    const host = this.#host!;
    const server = this.#server;
    if (server === null) return 0;
    const context = host.tls!.load();
    try {
      (server as unknown as { setSecureContext(o: object): void }).setSecureContext(context);
    } finally {
      context.key.fill(0);
    }
    let closed = 0;
    for (const socket of this.#tlsSockets) {
      const cert = this.#connections.get(socket)?.cert;
      if (cert == null || !revoked.has(cert.serial)) continue;
      host.log.warn('client certificate revoked by the CRL: HTTPS connection closed', { connection: this.#connections.get(socket)!.number, client: cert.name, serial: cert.serial });
      socket.destroy();
      closed++;
    }
    return closed;
  }

  #request(req: IncomingMessage, res: ServerResponse): void {
    const host = this.#host!;
    const info = this.#connections.get(req.socket);
    if (info === undefined) {
      req.socket.destroy();
      return;
    }
    this.#requests++;
    if (this.#inflight >= host.limits.maxHttpInflight) {
      res.shouldKeepAlive = false;
      send(res, { status: 429, body: errorBody([`too many requests in flight (limit maxHttpInflight ${host.limits.maxHttpInflight}); retry shortly`]) });
      req.resume();
      return;
    }
    const max = host.limits.maxHttpBody;
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > max) {
      res.shouldKeepAlive = false;
      send(res, tooLarge(max));
      req.destroy();
      return;
    }
    this.#inflight++;
    let counted = true;
    /** Once per request, whichever of reply, refusal or abort comes first. */
    const release = (): void => {
      if (!counted) return;
      counted = false;
      this.#inflight--;
    };
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    req.on('data', (c: Buffer) => {
      if (refused) return;
      size += c.length;
      if (size > max) {
        refused = true;
        res.shouldKeepAlive = false;
        send(res, tooLarge(max));
        for (const b of chunks) b.fill(0);
        chunks.length = 0;
        release();
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (refused) return;
      const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
      const [path, query] = splitUrl(req.url ?? '/');
      this.#api!.handle({ method: req.method ?? 'GET', path, query, token: tokenOf(req), certName: info.cert?.name ?? null, body, peer: info.peer, connection: info.number, session: info.session }).then(
        (reply) => {
          // The body may carry plaintext or key material: gone once handled.
          body.fill(0);
          release();
          send(res, reply);
        },
        (err: unknown) => {
          body.fill(0);
          release();
          host.log.error('HTTP request failed', { error: err instanceof Error ? err.name : typeof err });
          send(res, { status: 500, body: errorBody(['internal error']) });
        },
      );
    });
    // Aborted before its body ended: nothing runs for it.
    req.on('error', () => {
      if (size <= max && !req.complete) {
        refused = true;
        release();
      }
    });
  }

  stats(): FrontDoorStats {
    return { connections: this.#open, inflight: this.#inflight, requests: this.#requests };
  }

  async close(): Promise<void> {
    const server = this.#server;
    if (server === null) return;
    this.#server = null;
    const closed = new Promise<void>((res) => server.close(() => res()));
    server.closeIdleConnections();
    const grace = this.#host?.limits.shutdownGraceMs ?? 0;
    const deadline = Date.now() + grace;
    while (this.#inflight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    server.closeAllConnections();
    await closed;
  }
}

function tooLarge(max: number): VaultReply {
  return { status: 413, body: errorBody([`http: request body too large: the limit is ${max} bytes (maxHttpBody, --max-http-body)`]) };
}

function splitUrl(url: string): [string, string] {
  const q = url.indexOf('?');
  return q === -1 ? [url, ''] : [url.slice(0, q), url.slice(q + 1)];
}

function tokenOf(req: IncomingMessage): string | undefined {
  const v = req.headers['x-vault-token'];
  if (typeof v === 'string' && v !== '') return v;
  const auth = req.headers.authorization;
  if (typeof auth === 'string') {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    if (m !== null) return m[1];
  }
  return undefined;
}

function send(res: ServerResponse, reply: VaultReply): void {
  if (res.headersSent || res.destroyed) return;
  // Headers as a flat list: node:http writes them as given, with no object to build and copy per reply.
  if (reply.body === null) {
    res.writeHead(reply.status, reply.headers === undefined ? NO_BODY_HEADERS : [...NO_BODY_HEADERS, ...Object.entries(reply.headers).flat()]);
    res.end();
    return;
  }
  const text = JSON.stringify(reply.body);
  // Exactly application/json: older hvac parses error bodies of no other type.
  const headers = ['Cache-Control', 'no-store', 'Content-Type', 'application/json', 'Content-Length', String(Buffer.byteLength(text))];
  if (reply.headers !== undefined) for (const [name, value] of Object.entries(reply.headers)) headers.push(name, value);
  res.writeHead(reply.status, headers);
  res.end(text);
}

const NO_BODY_HEADERS: string[] = ['Cache-Control', 'no-store'];
