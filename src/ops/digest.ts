/** DIGEST: one-shot hash of a byte string (SubtleCrypto.digest), or of each item of a batch (src/ops/batch.ts). */
import { createHash } from 'node:crypto';
import type { Operation } from './operation.js';
import type { CborValue } from '../protocol/cbor.js';
import { Op } from '../protocol/ops.js';
import { Digest } from '../protocol/messages/subtle.js';
import { DigestBatch } from '../protocol/messages/batch.js';
import { NODE_HASH, normalizeHash } from './algorithms.js';
import { checkBatchSize, isBatch } from './batch.js';

export const digestOperations: Operation[] = [
  {
    op: Op.DIGEST,
    access: { kind: 'none' },
    handle: (ctx, raw) => {
      if (isBatch(raw)) {
        checkBatchSize(ctx, raw);
        const args = DigestBatch.args.parse(raw);
        const hash = NODE_HASH[normalizeHash(args.algorithm, 'algorithm')];
        const items = args.items;
        // Hashing a byte string cannot fail once the algorithm is known: no item errors.
        const out = new Array<CborValue>(items.length);
        for (let i = 0; i < items.length; i++) out[i] = createHash(hash).update(items[i]!.data).digest();
        return { items: out };
      }
      const args = Digest.args.parse(raw);
      const hash = normalizeHash(args.algorithm, 'algorithm');
      return createHash(NODE_HASH[hash]).update(args.data).digest();
    },
  },
];
