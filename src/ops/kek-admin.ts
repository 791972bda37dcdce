/**
 * KEK administration: KEK_REWRAP_ALL (`cryptod kek rewrap-all`), for
 * administrators only. One request rewraps one bounded batch of stored key
 * versions under the root KEK (src/keys/rewrap-all.ts); the CLI repeats it
 * until nothing is left, which gives it progress to show and makes an
 * interruption cost at most one batch of work, never consistency.
 */
import { KekRewrapAll } from '../protocol/messages/kek.js';
import { Op } from '../protocol/ops.js';
import { UnsupportedError } from '../protocol/errors.js';
import type { Operation } from './operation.js';

export const kekOperations: Operation[] = [
  {
    op: Op.KEK_REWRAP_ALL,
    access: { kind: 'admin', arg: null, action: 'rewrap every key version under the root KEK' },
    async handle(ctx, raw) {
      const args = KekRewrapAll.args.parse(raw);
      const rewrap = ctx.daemon.keys?.rewrapAll;
      if (rewrap === undefined) throw new UnsupportedError('this daemon has no keystore to rewrap (start it with a data directory)');
      const r = await rewrap(args.limit);
      return { root: r.root, total: r.total, rewrapped: r.rewrapped, remaining: r.remaining, failed: r.failed.map((f) => ({ ...f })) };
    },
  },
];
