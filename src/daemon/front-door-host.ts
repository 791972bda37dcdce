/**
 * The daemon's side of a front door (src/ops/front-door.ts): the request
 * chain's phases after decoding, for requests that did not arrive as frames.
 *
 *   authenticate   a bearer token, verified by the client registry exactly
 *                  as HELLO verifies it (handshake.ts tokenIdentity): the
 *                  same ClientId `token:<name>`, the same uid restriction
 *   run            limits (shutting down) ─▶ authorize (the operation's
 *                  `access`, managed-auth.ts) ─▶ execute (the handler)
 *                  ─▶ audit (the operation's event on success; a denial or
 *                  limit as request.denied / limit.exceeded)
 *
 * HTTP carries no session: every request names its token. A verified token
 * is remembered for one revocation-check interval, keyed by its SHA-256
 * digest (never the token), so a revoked token stops working as soon as it
 * would on a live native connection, without a registry query per request.
 */
import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';
import type { CborValue } from '../protocol/cbor.js';
import { AuthFailedError, InternalError, ShuttingDownError, UnknownOperationError, toCryptodError } from '../protocol/errors.js';
import { opName, type OpCode } from '../protocol/ops.js';
import type { IDataManager } from '../state/data-manager.js';
import type { Limits } from '../config/limits.js';
import type { Logger } from '../observe/logger.js';
import { auditKindOf, type Audit } from '../observe/audit.js';
import type { VerifiedClient } from '../auth/client-registry.js';
import type { FrontDoorHost, FrontDoorTls, PeerCredentials } from '../ops/front-door.js';
import type { Authorizer, DaemonView, HandlerResult, Operation, RequestContext } from '../ops/operation.js';
import { takeConnectionNumber } from './connection.js';
import { tokenIdentity, type PeerIdentity } from './handshake.js';
import { clientId } from '../state/ids.js';
import type { AccessControl } from './access.js';
import { listenOnSocket, prepareSocketDirectory, removeStaleSocket } from './socket-file.js';

export interface FrontDoorHostOptions {
  readonly dm: IDataManager;
  readonly limits: Limits;
  readonly log: Logger;
  readonly audit: Audit;
  readonly view: DaemonView;
  readonly operations: ReadonlyMap<number, Operation>;
  readonly authorizer: Authorizer;
  readonly access: AccessControl;
  readonly peerIdentity: ((socket: Socket) => PeerIdentity | null) | undefined;
  readonly verifyToken: ((token: string) => Promise<VerifiedClient | null>) | null;
  /** How long a verified token is remembered (the revocation check interval). */
  readonly tokenTtlMs: number;
  /** The native TCP listener's TLS material, or null without `--listen`. */
  readonly tls: FrontDoorTls | null;
  /**
   * This daemon is one worker of several (fleet.ts): the primary prepared the
   * HTTP socket's directory and cleared a stale file before forking, and
   * binds the socket once for every worker; a worker only listens on it.
   */
  readonly sharedListeners: boolean;
  shuttingDown(): boolean;
}

/** Verified tokens remembered at most; past it the memory starts over (a flood of distinct valid tokens is not a real load). */
const MAX_REMEMBERED_TOKENS = 4096;

export function createFrontDoorHost(o: FrontDoorHostOptions): FrontDoorHost {
  const remembered = new Map<string, { client: VerifiedClient; until: number }>();

  /** HTTP requests create no nodes: an operation that tried would be a bug in the front door. */
  const owner = {
    own(): void {
      throw new InternalError('a front-door request tried to keep a node; HTTP requests hold no state between requests');
    },
    disown(): void {},
  };

  const verify = async (token: string): Promise<{ client: VerifiedClient | null; until: number }> => {
    if (o.verifyToken === null) throw new AuthFailedError('this daemon has no client registry: it accepts no tokens');
    const digest = createHash('sha256').update(token, 'latin1').digest('base64');
    const now = Date.now();
    const hit = remembered.get(digest);
    if (hit !== undefined && hit.until > now) return hit;
    const client = await o.verifyToken(token);
    const until = now + o.tokenTtlMs;
    if (client !== null) {
      if (remembered.size >= MAX_REMEMBERED_TOKENS) remembered.clear();
      remembered.set(digest, { client, until });
    } else {
      remembered.delete(digest);
    }
    return { client, until };
  };

  const auditRefusal = (ctx: RequestContext, op: OpCode, connection: number, code: string, key: unknown): void => {
    const kind = auditKindOf(code);
    if (kind === null) return;
    const who = { connection, clientId: ctx.clientId, client: ctx.clientName, op: opName(op), code };
    if (kind === 'denied') o.audit.emit({ event: 'request.denied', ...who, key: typeof key === 'string' ? key : null });
    else o.audit.emit({ event: 'limit.exceeded', ...who, limit: kind });
  };

  return {
    limits: o.limits,
    log: o.log,
    get shuttingDown() {
      return o.shuttingDown();
    },
    nextConnection: takeConnectionNumber,
    admitUnixPeer(socket) {
      const peer = o.peerIdentity?.(socket) ?? null;
      if (peer === null) return null;
      if (o.access.admit(peer) === null) {
        return { refused: `uid ${peer.uid} (gid ${peer.gid}) is not admitted by this daemon's access policy; its operator can admit it with \`cryptod serve --allow-uid ${peer.uid}\`` };
      }
      return peer;
    },
    async listenOnUnixSocket(server, path) {
      // In a worker the other workers are already listening on `path`: a stale-socket check would find them alive.
      if (!o.sharedListeners) {
        prepareSocketDirectory(path);
        await removeStaleSocket(path);
      }
      await listenOnSocket(server, path, 0o600);
    },
    async authenticate(token: string, peer: PeerCredentials | null): Promise<{ context: RequestContext; until: number }> {
      const { client, until } = await verify(token);
      const identity = tokenIdentity(client, peer);
      return { context: { clientId: identity.clientId, clientName: identity.clientName, dm: o.dm, owner, limits: o.limits, daemon: o.view }, until };
    },
    tls: o.tls,
    authenticateCertificate(certName: string): RequestContext {
      return { clientId: clientId(`cert:${certName}`), clientName: certName, dm: o.dm, owner, limits: o.limits, daemon: o.view };
    },
    async run(ctx, op, args: CborValue, connection): Promise<HandlerResult> {
      const operation = o.operations.get(op);
      if (operation === undefined) throw new UnknownOperationError(`operation ${opName(op)} is not served by this daemon`);
      if (o.shuttingDown()) throw new ShuttingDownError('the daemon is shutting down and accepts no new requests');
      try {
        if (operation.access.kind !== 'none') {
          const wait = o.authorizer.authorize(ctx, operation.access, args);
          if (wait !== undefined) await wait;
        }
        const result = await operation.handle(ctx, args);
        if (operation.audit !== undefined && o.audit.enabled) {
          o.audit.emit(operation.audit({ op: operation.op, args, result, connection, clientId: ctx.clientId, client: ctx.clientName }));
        }
        return result;
      } catch (err) {
        const e = toCryptodError(err);
        if (e.code === 'CRYPTOD_ERR_INTERNAL') o.log.error('request failed', { connection, op: opName(op), front: 'http' });
        if (o.audit.enabled) auditRefusal(ctx, op, connection, e.code, e.detail?.key);
        throw e;
      }
    },
  };
}
