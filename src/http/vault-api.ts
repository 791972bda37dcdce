/**
 * The Vault-compatible API: one request in, one reply out, independent of
 * the HTTP server that carries it (vault-front-door.ts), so the same
 * handler can be measured on node:http and on fastify (bench/vault-http.ts).
 *
 *   request ─▶ route: sys/health, sys/mounts (no token)
 *                     auth/token/lookup-self, <mount>/… (token)
 *           ─▶ authenticate: X-Vault-Token or Authorization: Bearer
 *              (src/ops/front-door.ts: a token client, as in HELLO)
 *           ─▶ transit.ts ─▶ operations through the daemon's chain
 *           ─▶ { data … } or { errors: […] }
 */
import { timingSafeEqual } from 'node:crypto';
import { CryptodError, toCryptodError } from '../protocol/errors.js';
import type { CborValue } from '../protocol/cbor.js';
import type { OpCode } from '../protocol/ops.js';
import { SensitiveReply, type RequestContext } from '../ops/operation.js';
import type { FrontDoorHost, PeerCredentials } from '../ops/front-door.js';
import { KeyTypes, transit, errorReply, type Caller } from './transit.js';
import { VaultHttpError, envelope, errorBody, type VaultReply } from './vault-reply.js';
import { kindOf } from './vault-values.js';

export interface ApiRequest {
  /** Upper-case; LINK is read as LIST (list-method.ts). */
  readonly method: string;
  /** The path without the query. */
  readonly path: string;
  /** The raw query string (after '?'), or ''. */
  readonly query: string;
  readonly token: string | undefined;
  /** The request body as read (bounded by the listener), or empty. */
  readonly body: Buffer;
  readonly peer: PeerCredentials | null;
  /** The verified client certificate's CN on HTTPS, else null. */
  readonly certName: string | null;
  readonly connection: number;
  /** The connection's last verified token, kept by the listener for the connection's life (absent: verify every request). */
  readonly session?: SessionSlot;
}

/**
 * The last token verified on one connection and its session, until the
 * host's memory of it ends (FrontDoorHost.authenticate `until`): the next
 * request with the same token — compared in constant time — is served
 * without hashing it again. The listener zeroes `token` when the
 * connection closes.
 */
export interface SessionSlot {
  token: Buffer | null;
  context: RequestContext | null;
  until: number;
}

export interface VaultApiOptions {
  /** Where the transit engine is mounted (default `transit`). */
  readonly mount: string;
}

export interface VaultApi {
  handle(req: ApiRequest): Promise<VaultReply>;
}

const LIST_VALUES = new Set(['true', 'True', '1']);

export function createVaultApi(host: FrontDoorHost, options: VaultApiOptions): VaultApi {
  const mount = options.mount.replace(/^\/+|\/+$/g, '');
  const mountSegments = mount.split('/');
  const types = new KeyTypes();

  const session = async (req: ApiRequest): Promise<RequestContext> => {
    if (req.token === undefined || req.token === '') {
      // On mutual TLS the certificate is an identity of its own, as on --listen; a token, when sent, refines it.
      if (req.certName !== null) return host.authenticateCertificate(req.certName);
      throw new VaultHttpError(403, 'permission denied: send a cryptod client token (`cryptod client add NAME`) in the X-Vault-Token header or as Authorization: Bearer');
    }
    const slot = req.session;
    if (slot === undefined) return (await host.authenticate(req.token, req.peer, req.connection)).context;
    const given = Buffer.from(req.token, 'latin1');
    const cached = slot.token;
    if (cached !== null && slot.context !== null && Date.now() < slot.until && cached.length === given.length && timingSafeEqual(cached, given)) {
      given.fill(0);
      return slot.context;
    }
    // Forget the old token first: a failed verification leaves nothing to reuse.
    cached?.fill(0);
    slot.token = null;
    slot.context = null;
    const { context, until } = await host.authenticate(req.token, req.peer, req.connection);
    slot.token = given;
    slot.context = context;
    slot.until = until;
    return context;
  };

  const caller = (ctx: RequestContext, connection: number): Caller => ({
    clientId: ctx.clientId,
    types,
    async run(op: OpCode, args: CborValue): Promise<CborValue> {
      const r = await host.run(ctx, op, args, connection);
      return r instanceof SensitiveReply ? r.value : r;
    },
  });

  const route = async (req: ApiRequest): Promise<VaultReply> => {
    let method = req.method === 'LINK' ? 'LIST' : req.method;
    const params = new URLSearchParams(req.query);
    const list = params.get('list');
    if (method === 'GET' && list !== null && LIST_VALUES.has(list)) method = 'LIST';
    const segments = req.path.split('/').filter((s) => s !== '').map(decodeURIComponent);
    if (segments[0] !== 'v1') throw new VaultHttpError(404, `unsupported path ${req.path}: the API lives under /v1/`);
    const rest = segments.slice(1);
    const at = rest.join('/');
    if (at === 'sys/health') {
      if (method !== 'GET' && method !== 'HEAD') throw new VaultHttpError(405, `${method} is not supported on sys/health; use GET`, { Allow: 'GET, HEAD' });
      const status = host.shuttingDown ? 503 : 200;
      return { status, body: { initialized: true, sealed: false, standby: false, performance_standby: false, server_time_utc: Math.floor(Date.now() / 1000), version: 'cryptod', cluster_name: 'cryptod' } };
    }
    if (at === 'sys/init' || at === 'sys/seal-status') {
      if (method !== 'GET') throw new VaultHttpError(405, `${method} is not supported on ${at}: cryptod has no seal to initialize or unseal`, { Allow: 'GET' });
      return { status: 200, body: at === 'sys/init' ? { initialized: true } : { type: 'shamir', initialized: true, sealed: false, t: 0, n: 0, progress: 0, version: 'cryptod', cluster_name: 'cryptod' } };
    }
    if (at === 'sys/mounts' || at === `sys/mounts/${mount}`) {
      if (method !== 'GET') throw new VaultHttpError(405, `${method} is not supported on sys/mounts: cryptod's one mount is fixed (--http-mount)`, { Allow: 'GET' });
      await session(req);
      const entry = { type: 'transit', description: 'cryptod managed keys', accessor: 'transit_cryptod', config: { default_lease_ttl: 0, max_lease_ttl: 0 }, options: null, local: true, seal_wrap: false };
      return envelope(at === 'sys/mounts' ? { [`${mount}/`]: entry } : entry);
    }
    if (at === 'auth/token/lookup-self') {
      if (method !== 'GET' && method !== 'POST') throw new VaultHttpError(405, `${method} is not supported on auth/token/lookup-self; use GET`, { Allow: 'GET, POST' });
      const ctx = await session(req);
      return envelope({
        accessor: '', creation_ttl: 0, ttl: 0, expire_time: null, explicit_max_ttl: 0, renewable: false, orphan: true, num_uses: 0, type: 'service',
        display_name: ctx.clientName, entity_id: ctx.clientId, id: '', path: 'auth/token/create', meta: { cryptod_client: ctx.clientId }, policies: ['default'],
      });
    }
    if (rest.length >= mountSegments.length && mountSegments.every((s, i) => rest[i] === s)) {
      const ctx = await session(req);
      return transit(caller(ctx, req.connection), { method, path: rest.slice(mountSegments.length), body: parseBody(req.body, method) });
    }
    throw new VaultHttpError(404, `unsupported path /v1/${at}: cryptod serves sys/health, sys/mounts, auth/token/lookup-self and the transit engine at /v1/${mount}/ (docs/vault-compat.md)`);
  };

  return {
    async handle(req) {
      try {
        return await route(req);
      } catch (err) {
        if (err instanceof VaultHttpError) return { status: err.status, body: errorBody([err.message]), ...(Object.keys(err.headers).length > 0 ? { headers: err.headers } : {}) };
        const e = err instanceof CryptodError ? err : toCryptodError(err);
        if (e.code === 'CRYPTOD_ERR_INTERNAL') host.log.error('HTTP request failed', { connection: req.connection, path: req.path });
        return errorReply(e);
      }
    },
  };
}

/** The JSON body of a write (an object), or {} for none. */
function parseBody(body: Buffer, method: string): Record<string, unknown> {
  if (body.length === 0 || method === 'GET' || method === 'LIST' || method === 'DELETE') return {};
  let v: unknown;
  try {
    v = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new VaultHttpError(400, `failed to parse JSON input: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new VaultHttpError(400, `the request body must be a JSON object, got ${kindOf(v)}`);
  return v as Record<string, unknown>;
}
