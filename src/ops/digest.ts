/** DIGEST: one-shot hash of a byte string (SubtleCrypto.digest). */
import { createHash } from 'node:crypto';
import type { Operation } from './operation.js';
import { Op } from '../protocol/ops.js';
import { Digest } from '../protocol/messages/subtle.js';
import { NODE_HASH, normalizeHash } from './algorithms.js';

export const digestOperations: Operation[] = [
  {
    op: Op.DIGEST,
    access: { kind: 'none' },
    handle: (_ctx, raw) => {
      const args = Digest.args.parse(raw);
      const hash = normalizeHash(args.algorithm, 'algorithm');
      return createHash(NODE_HASH[hash]).update(args.data).digest();
    },
  },
];
