/**
 * The TCP listener, for clients in other containers or on other hosts. It is
 * TLS with client certificates or nothing: TCP carries no kernel identity
 * (SO_PEERCRED exists only for Unix sockets), so the certificate is the only
 * proof of who connects, and plain TCP would hand keys to anyone who can
 * reach the port.
 *
 *   TCP accept ──▶ TLS handshake (≥ 1.2, prefers 1.3; server cert; the client
 *                  MUST present a certificate that chains to --tls-client-ca)
 *        │            └─ no certificate / other CA / expired ─▶ refused (tlsClientError)
 *        ▼
 *   subject CN is a valid client name? ── no ─▶ refused
 *        │ yes
 *        ▼
 *   Connection with ClientId cert:<CN> (a HELLO token, if any, refines it)
 *
 * Every certificate the client CA signs is admitted, unless a CRL
 * (--tls-crl) revokes it: the client CA *is* the admission policy, so give
 * cryptod a CA of its own rather than a shared one.
 *
 * Reload (SIGHUP, RELOAD) re-reads the four files and swaps the TLS context:
 * new handshakes use the new certificate and CRL at once, handshakes already
 * done are not re-run, so the daemon closes the live connections whose
 * certificate serial the new CRL lists (the CRL's own signature is checked
 * by OpenSSL for every handshake; a file that does not parse or load is
 * refused and the running context stays).
 */
import type { AddressInfo, Socket } from 'node:net';
import { createServer, type SecureContextOptions, type Server, type TLSSocket } from 'node:tls';
import { crlSerials, pemBlocks, serialKey } from '../protocol/der.js';
import { ConfigError, CryptodError } from '../protocol/errors.js';
import { readTrustedFileSync } from '../files/trusted-files.js';
import type { RefusedConnection } from './access.js';
import type { TcpListenOptions } from '../config/listeners.js';

export type { TcpListenOptions };

/** `--listen tcp://HOST:PORT` with its TLS material (file paths). */



export interface TlsListener {
  readonly server: Server;
  /** Where it listens (the actual port when 0 was asked for). */
  readonly address: { host: string; port: number };
  /**
   * Re-read the certificate, key, client CA and CRL and use them for the next
   * handshakes; returns the serials the CRL revokes, which the caller
   * uses to end live connections. @throws ConfigError, and nothing changes.
   */
  reload(): { revoked: ReadonlySet<string> };
  /**
   * Stop listening and drop peers still in the TLS handshake. Accepted
   * connections belong to the daemon, which closes them first.
   */
  close(): Promise<void>;
}

export interface TlsListenerHandlers {
  /**
   * A client with a verified certificate whose CN is a valid name; nothing
   * was read from it yet. `serial`: the certificate's serial number (der.ts serialKey).
   */
  accepted(socket: TLSSocket, certName: string, serial: string): void;
  refused(socket: TLSSocket, event: RefusedConnection): void;
}

/**
 * TLS 1.2 suites: ECDHE (forward secrecy) with an AEAD only, as RFC 9325 §4.2
 * recommends; the TLS 1.3 suites are all AEAD. Listed explicitly so that a
 * change of Node's defaults cannot widen them.
 */
const CIPHERS = [
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'TLS_AES_128_GCM_SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
].join(':');

/** An unauthenticated peer gets this long to finish the TLS handshake. */
const HANDSHAKE_TIMEOUT_MS = 10_000;

/** Largest certificate, key or CA file read: a PEM chain of a few certificates is kilobytes. */
export const MAX_PEM_FILE_BYTES = 1024 * 1024;
/** Largest CRL file read: a large CA's CRL runs to megabytes. */
export const MAX_CRL_FILE_BYTES = 64 * 1024 * 1024;

/** Certificate names become ClientIds (`cert:<CN>`): the client-name characters, plus `@`; 64 is X.520's ub-common-name. */
const CERT_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

/** Parse `tcp://HOST:PORT`. @throws ConfigError naming what is wrong. */
export function parseListenUrl(url: string): { host: string; port: number } {
  const m = /^tcp:\/\/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$/.exec(url);
  if (m === null) {
    throw new ConfigError(`--listen expects tcp://HOST:PORT (e.g. tcp://127.0.0.1:7300), got "${url}"`, { detail: { field: 'listen' } });
  }
  const port = Number(m[2]);
  if (port > 65535) throw new ConfigError(`--listen port must be 0 to 65535, got ${port}`, { detail: { field: 'listen' } });
  const host = m[1]!.startsWith('[') ? m[1]!.slice(1, -1) : m[1]!;
  return { host, port };
}

/** The listener's files, read. `key` is the caller's to zero. */
export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  ca: Buffer;
  /** PEM CRLs, when --tls-crl is given. */
  crl?: Buffer;
  /** The serials the CRL revokes (empty without one). */
  revoked: Set<string>;
}

/**
 * Read the certificate, key, client CA and CRL. Plain TCP is never an option:
 * a missing file is a ConfigError that names every missing flag at once.
 */
export function loadTlsMaterial(options: TcpListenOptions): TlsMaterial {
  const missing: string[] = [];
  if (options.certFile === undefined) missing.push('--tls-cert FILE (the server certificate)');
  if (options.keyFile === undefined) missing.push('--tls-key FILE (its private key)');
  if (options.clientCaFile === undefined) missing.push('--tls-client-ca FILE (the CA that signs client certificates)');
  if (missing.length > 0) {
    throw new ConfigError(`--listen ${options.url} needs TLS with client certificates; plain TCP is refused. Missing: ${missing.join('; ')}`, {
      detail: { field: 'listen' },
    });
  }
  const material: TlsMaterial = {
    cert: readPem(options.certFile!, '--tls-cert'),
    // Like ssh with a private key: refuse a key file others can read.
    key: readPem(options.keyFile!, '--tls-key', true),
    ca: readPem(options.clientCaFile!, '--tls-client-ca'),
    revoked: new Set(),
  };
  if (options.crlFile !== undefined) {
    const crl = readPem(options.crlFile, '--tls-crl');
    material.crl = crl;
    material.revoked = revokedSerials(crl, options.crlFile);
  }
  return material;
}

/** The serials of every CRL in a PEM file. @throws ConfigError for a file without one, or one that does not parse. */
function revokedSerials(pem: Buffer, file: string): Set<string> {
  const blocks = pemBlocks(pem.toString('latin1'), 'X509 CRL');
  if (blocks.length === 0) {
    throw new ConfigError(`--tls-crl ${file}: expected PEM "-----BEGIN X509 CRL-----" blocks, found none`, { detail: { field: '--tls-crl' } });
  }
  const out = new Set<string>();
  for (const [i, der] of blocks.entries()) {
    try {
      for (const s of crlSerials(der)) out.add(serialKey(s));
    } catch (err) {
      throw new ConfigError(`--tls-crl ${file}: CRL ${i + 1} is malformed: ${(err as Error).message}`, { cause: err, detail: { field: '--tls-crl' } });
    }
  }
  return out;
}

/** Node's TLS context options for the material (mutual TLS, our suites). */
function contextOptions(m: TlsMaterial): SecureContextOptions {
  return { cert: m.cert, key: m.key, ca: m.ca, ...(m.crl === undefined ? {} : { crl: m.crl }), minVersion: 'TLSv1.2', ciphers: CIPHERS };
}

/** Start the mutual-TLS listener. @throws ConfigError when the material is bad or the address cannot be bound. */
export async function startTlsListener(options: TcpListenOptions, handlers: TlsListenerHandlers): Promise<TlsListener> {
  const { host, port } = parseListenUrl(options.url);
  const material = loadTlsMaterial(options);
  let server: Server;
  try {
    server = createServer({
      ...contextOptions(material),
      requestCert: true,
      rejectUnauthorized: true,
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
    });
  } catch (err) {
    throw new ConfigError(`cannot use the TLS material for --listen ${options.url}: ${(err as Error).message}`, { cause: err });
  } finally {
    material.key.fill(0);
  }
  // Every TCP socket, so close() can drop those still in the handshake.
  const raw = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    raw.add(socket);
    socket.once('close', () => raw.delete(socket));
  });
  server.on('secureConnection', (socket: TLSSocket) => {
    // rejectUnauthorized already ended unverified handshakes; check anyway,
    // the cost is nothing and the invariant is the whole point.
    if (!socket.authorized) {
      handlers.refused(socket, refusal(socket, `client certificate not verified: ${String(socket.authorizationError)}`));
      return;
    }
    const peer = socket.getPeerCertificate();
    const cn = peer.subject?.CN as unknown;
    if (typeof cn !== 'string' || !CERT_NAME.test(cn)) {
      handlers.refused(socket, refusal(socket, 'the client certificate has no single subject CN of 1-64 characters of A-Z a-z 0-9 . _ - @'));
      return;
    }
    handlers.accepted(socket, cn, serialKey(String(peer.serialNumber ?? '')));
  });
  server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
    handlers.refused(socket, refusal(socket, `TLS handshake failed: ${err.code ?? err.message}`));
  });
  await new Promise<void>((res, rej) => {
    server.once('error', (err) => rej(new ConfigError(`cannot listen on ${options.url}: ${err.message}`, { cause: err })));
    server.listen(port, host, () => res());
  });
  const addr = server.address() as AddressInfo;
  return {
    server,
    address: { host: addr.address, port: addr.port },
    reload() {
      const next = loadTlsMaterial(options);
      try {
        server.setSecureContext(contextOptions(next));
      } catch (err) {
        throw new ConfigError(`cannot use the reloaded TLS material for --listen ${options.url}: ${(err as Error).message}`, { cause: err });
      } finally {
        next.key.fill(0);
      }
      return { revoked: next.revoked };
    },
    close() {
      const closed = new Promise<void>((res) => server.close(() => res()));
      for (const socket of raw) socket.destroy();
      return closed;
    },
  };
}

/**
 * The listener's server options (mutual TLS, our suites, the CRL), freshly
 * read, for another listener that must admit exactly the same clients (the
 * HTTPS front door). The caller zeroes `key` once the context is built.
 * @throws ConfigError as loadTlsMaterial
 */
export function mutualTlsServerOptions(options: TcpListenOptions): { context: SecureContextOptions & { key: Buffer }; revoked: Set<string> } {
  const m = loadTlsMaterial(options);
  return { context: { ...contextOptions(m), key: m.key }, revoked: m.revoked };
}

/** A verified peer's certificate name and serial, checked as this listener checks them, or why it is refused. */
export function certificateIdentity(socket: TLSSocket): { name: string; serial: string } | { refused: string } {
  if (!socket.authorized) return { refused: `client certificate not verified: ${String(socket.authorizationError)}` };
  const peer = socket.getPeerCertificate();
  const cn = peer.subject?.CN as unknown;
  if (typeof cn !== 'string' || !CERT_NAME.test(cn)) return { refused: 'the client certificate has no single subject CN of 1-64 characters of A-Z a-z 0-9 . _ - @' };
  return { name: cn, serial: serialKey(String(peer.serialNumber ?? '')) };
}

function refusal(socket: TLSSocket, reason: string): RefusedConnection {
  return { transport: 'tls', reason, remoteAddress: socket.remoteAddress, remotePort: socket.remotePort };
}

/**
 * A TLS file, read as a file the daemon trusts (src/files/trusted-files.ts).
 * Synchronous also on reload: the checks make it a regular file of bounded
 * size before a byte is read, so the read cannot wait on a FIFO or a device.
 */
function readPem(file: string, flag: string, secret = false): Buffer {
  const maxBytes = flag === '--tls-crl' ? MAX_CRL_FILE_BYTES : MAX_PEM_FILE_BYTES;
  try {
    return readTrustedFileSync(file, { what: flag, maxBytes, secret });
  } catch (err) {
    const detail = err instanceof CryptodError && err.detail !== undefined ? { ...err.detail, field: flag } : { field: flag };
    throw new ConfigError((err as Error).message, { cause: err, detail });
  }
}
