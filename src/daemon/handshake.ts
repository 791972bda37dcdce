/**
 * HELLO: the first request on every connection (docs/protocol.md §4).
 * It fixes the protocol version and names the client. The ClientId comes from
 * the strongest proof of identity the connection has, never from what the
 * client merely claims:
 *
 *   token in HELLO, verified ─────────▶ token:<registry name>
 *   TLS client certificate (verified) ─▶ cert:<subject CN>
 *   kernel peer credentials (Unix) ────▶ uid:<uid>/<client name>
 *   none (no SO_PEERCRED) ─────────────▶ local/<client name>
 *
 * With a uid, two processes of one user that pick the same client name share
 * a namespace of handles, and nobody else does; with a token or certificate
 * the name is the credential's, and the HELLO `client` field is not used.
 */
import type { CborValue } from '../protocol/cbor.js';
import type { VerifiedClient } from '../auth/client-registry.js';
import { AuthFailedError, ProtocolVersionError } from '../protocol/errors.js';
import { Hello, HelloVersion } from '../protocol/messages/session.js';
import { PROTOCOL_VERSION } from '../protocol/ops.js';
import { clientId, type ClientId } from '../state/ids.js';
import { helloLimits, type Limits } from '../config/limits.js';
import { DAEMON_VERSION } from './version.js';

export interface PeerIdentity {
  readonly uid: number;
  readonly gid: number;
  readonly pid: number;
}

export interface Identity {
  readonly clientId: ClientId;
  /** The token's or certificate's name when one authenticated the client, else the name it chose. */
  readonly clientName: string;
  readonly peer: PeerIdentity | null;
  /** What proved the identity: a token, a TLS client certificate, the kernel's uid, or nothing. */
  readonly authenticatedBy: 'token' | 'cert' | 'uid' | 'none';
  /** The verified token's lookup id (not secret), so a revocation can cut this connection. */
  readonly tokenId: string | null;
}

/** What the transport and the daemon bring to HELLO besides the peer credentials. */
export interface HelloAuth {
  /** Checks a HELLO token; null when the daemon has no client registry (every token then fails). */
  readonly verifyToken: ((token: string) => Promise<VerifiedClient | null>) | null;
  /** Subject CN of the verified TLS client certificate; null on the Unix socket. */
  readonly certName: string | null;
}

export const NO_HELLO_AUTH: HelloAuth = { verifyToken: null, certName: null };

export interface HandshakeResult {
  identity: Identity;
  reply: CborValue;
}

/**
 * Check HELLO and name the client. Synchronous unless HELLO carries a token,
 * which the registry verifies asynchronously.
 *
 * @throws (or rejects with) AuthFailedError when the token does not verify
 *   or its uid restriction does not match the peer: the caller closes the
 *   connection after sending it.
 */
export function handshake(
  raw: CborValue,
  peer: PeerIdentity | null,
  limits: Limits,
  auth: HelloAuth = NO_HELLO_AUTH,
): HandshakeResult | Promise<HandshakeResult> {
  const { version } = HelloVersion.parse(raw, 'the HELLO arguments');
  if (version !== PROTOCOL_VERSION) {
    throw new ProtocolVersionError(`protocol version ${version} is not supported; this daemon speaks version ${PROTOCOL_VERSION}`, {
      detail: { supported: PROTOCOL_VERSION, requested: version },
    });
  }
  const args = Hello.args.parse(raw, 'the HELLO arguments');
  const name = args.client ?? 'anonymous';
  const token = args.token;
  if (token !== undefined) {
    const verify = auth.verifyToken;
    if (verify === null) return Promise.reject(new AuthFailedError('this daemon has no client registry: it accepts no tokens'));
    return verify(token).then((client) => complete(tokenIdentity(client, peer), limits));
  }
  if (auth.certName !== null) {
    return complete({ clientId: clientId(`cert:${auth.certName}`), clientName: auth.certName, peer, authenticatedBy: 'cert', tokenId: null }, limits);
  }
  const identity: Identity =
    peer === null
      ? { clientId: clientId(`local/${name}`), clientName: name, peer, authenticatedBy: 'none', tokenId: null }
      : { clientId: clientId(`uid:${peer.uid}/${name}`), clientName: name, peer, authenticatedBy: 'uid', tokenId: null };
  return complete(identity, limits);
}

/**
 * The identity a verified token gives. Unknown, malformed and revoked tokens
 * share one message: which of them it was is no business of whoever holds it.
 * A uid mismatch says so, since only a holder of a valid token can see it.
 */
export function tokenIdentity(client: VerifiedClient | null, peer: PeerIdentity | null): Identity {
  if (client === null) throw new AuthFailedError('the token is not valid: unknown, malformed or revoked');
  // A uid-restricted token proves nothing without a kernel-verified uid (TCP, or no SO_PEERCRED).
  if (client.uid !== null && (peer === null || peer.uid !== client.uid)) {
    throw new AuthFailedError('the token is restricted to a uid this connection does not have');
  }
  return { clientId: clientId(`token:${client.name}`), clientName: client.name, peer, authenticatedBy: 'token', tokenId: client.tokenId };
}

function complete(identity: Identity, limits: Limits): HandshakeResult {
  const reply: CborValue = {
    version: PROTOCOL_VERSION,
    daemon: 'cryptod',
    daemonVersion: DAEMON_VERSION,
    clientId: identity.clientId,
    // Every limit declared with `hello: true`, under its own name.
    limits: helloLimits(limits),
  };
  return { identity, reply };
}
