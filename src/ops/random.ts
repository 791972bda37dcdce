/**
 * RANDOM: bytes from node:crypto's CSPRNG (OpenSSL's RAND_bytes). The bytes
 * may become a key or a nonce in the caller's hands, so they are treated as
 * key material here: made in memory of their own (not the pooled
 * allocUnsafe slab), and the reply frame and this copy are zeroed once
 * written (sensitiveReply).
 */
import { randomFillSync } from 'node:crypto';
import type { Operation } from './operation.js';
import { Op } from '../protocol/ops.js';
import { Random } from '../protocol/messages/random.js';
import { sensitiveReply } from './keys.js';

export const randomOperations: Operation[] = [
  {
    op: Op.RANDOM,
    access: { kind: 'none' },
    handle: (_ctx, raw) => {
      const { length } = Random.args.parse(raw);
      return sensitiveReply(randomFillSync(Buffer.alloc(length)));
    },
  },
];
