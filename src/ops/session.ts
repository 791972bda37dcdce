/** Session operations: PING, STATUS, HEALTH, RELEASE. HELLO is handled by the connection itself. */
import type { Operation } from './operation.js';
import { NotFoundError } from '../protocol/errors.js';
import { Op } from '../protocol/ops.js';
import { Health, Ping, Release, Status } from '../protocol/messages/session.js';

export const sessionOperations: Operation[] = [
  {
    op: Op.PING,
    access: { kind: 'none' },
    handle: (_ctx, raw) => Ping.args.parse(raw) ?? null,
  },
  {
    op: Op.STATUS,
    access: { kind: 'none' },
    handle: (ctx, raw) => {
      Status.args.parse(raw);
      return ctx.daemon.status();
    },
  },
  {
    // Readiness, for `cryptod health`; a daemon without managed keys has nothing to check.
    op: Op.HEALTH,
    access: { kind: 'none' },
    handle: async (ctx, raw) => {
      Health.args.parse(raw);
      return ctx.daemon.health === undefined ? { ready: true, checks: [] } : ctx.daemon.health();
    },
  },
  {
    // Release a handle (key or context) and, with it, every node below it.
    op: Op.RELEASE,
    access: { kind: 'none' },
    handle: (ctx, raw) => {
      const id = Release.args.parse(raw).handle;
      if (!ctx.dm.delete(ctx.clientId, id)) throw new NotFoundError('no such handle: it was released, never existed, or belongs to another client');
      return null;
    },
  },
];
