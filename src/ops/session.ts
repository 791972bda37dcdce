/** Session operations: PING, STATUS, RELEASE. HELLO is handled by the connection itself. */
import type { Operation } from './operation.js';
import { NotFoundError } from '../protocol/errors.js';
import { Op } from '../protocol/ops.js';
import { asArgs, nodeId } from './args.js';

export const sessionOperations: Operation[] = [
  {
    op: Op.PING,
    access: { kind: 'none' },
    handle: (_ctx, args) => args ?? null,
  },
  {
    op: Op.STATUS,
    access: { kind: 'none' },
    handle: (ctx) => ctx.daemon.status(),
  },
  {
    // Release a handle (key or context) and, with it, every node below it.
    op: Op.RELEASE,
    access: { kind: 'none' },
    handle: (ctx, raw) => {
      const id = nodeId(asArgs(raw), 'handle');
      if (!ctx.dm.delete(ctx.clientId, id)) throw new NotFoundError('no such handle: it was released, never existed, or belongs to another client');
      return null;
    },
  },
];
