/** KEK administration (docs/protocol.md §6.13): KEK_REWRAP_ALL moves stored key versions to the root KEK, one batch per request. */
import { Op } from '../ops.js';
import { array, map, optional, text, uint } from '../schema.js';
import { message } from './message.js';

const count = uint(0, 0xffff_ffff);
const u32 = uint(1, 0xffff_ffff);

export const KekRewrapAll = message(
  Op.KEK_REWRAP_ALL,
  map({ limit: optional(uint(1, 1000)) }),
  map(
    {
      root: text(), total: count, rewrapped: count, remaining: count,
      failed: array(map({ key: text(), version: u32, code: text(), message: text() }, { open: true })),
    },
    { open: true },
  ),
);
