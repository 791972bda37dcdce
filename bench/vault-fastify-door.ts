/**
 * The Vault API (src/http/vault-api.ts) mounted on fastify instead of
 * node:http, for bench/vault-http.ts to measure the two on the same
 * handler. Not served by cryptod: `--http` uses node:http
 * (docs/benchmarks-vault.md says why, from the figures). (No LIST
 * handling here: the benchmark sends POSTs.)
 */
import Fastify, { type FastifyInstance } from 'fastify';
import type { Socket } from 'node:net';
import type { FrontDoor, FrontDoorHost } from '../src/ops/front-door.js';
import { createVaultApi, type SessionSlot } from '../src/http/vault-api.js';

export class FastifyVaultDoor implements FrontDoor {
  #app: FastifyInstance | null = null;
  port = 0;
  readonly description = 'http (fastify) tcp://127.0.0.1';

  async start(host: FrontDoorHost): Promise<void> {
    const api = createVaultApi(host, { mount: 'transit' });
    const app = Fastify({ bodyLimit: host.limits.maxHttpBody, keepAliveTimeout: 65_000 });
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
    // Per connection, as the node:http door keeps them: its number and its last verified token.
    const connections = new WeakMap<Socket, { n: number; session: SessionSlot }>();
    app.all('/*', async (req, reply) => {
      const socket = req.raw.socket;
      let c = connections.get(socket);
      if (c === undefined) {
        const session: SessionSlot = { token: null, context: null, until: 0 };
        socket.once('close', () => session.token?.fill(0));
        connections.set(socket, (c = { n: host.nextConnection(), session }));
      }
      const url = req.raw.url ?? '/';
      const q = url.indexOf('?');
      const tokenHeader = req.headers['x-vault-token'];
      const r = await api.handle({
        method: req.method,
        path: q === -1 ? url : url.slice(0, q),
        query: q === -1 ? '' : url.slice(q + 1),
        token: typeof tokenHeader === 'string' ? tokenHeader : undefined,
        body: Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0),
        peer: null,
        certName: null,
        connection: c.n,
        session: c.session,
      });
      reply.code(r.status);
      if (r.body === null) return reply.send();
      return reply.header('content-type', 'application/json').send(JSON.stringify(r.body));
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const addr = app.server.address();
    this.port = typeof addr === 'object' && addr !== null ? addr.port : 0;
    this.#app = app;
  }

  async close(): Promise<void> {
    await this.#app?.close();
  }
}
