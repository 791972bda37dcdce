/**
 * The batch forms of the client-owned key operations (docs/protocol.md
 * §6.15): what SIGN, VERIFY, DIGEST, ENCRYPT and DECRYPT share when a
 * request carries `items`.
 *
 *   handler: size check (before the items are read) ─▶ parse the request once
 *            ─▶ algorithm and key checked once, key node acquired once
 *            ─▶ for each item: one node:crypto call ─▶ result or { error }
 *            ─▶ one reply { items }
 *
 * Whole-request errors (the request fails, as the single form would): a
 * malformed request, no items or more than `maxBatchItems`, the algorithm,
 * the key (not found, wrong algorithm or usage), shared parameters. Item
 * errors (the item's `{ error }`, the others unaffected): what only that
 * item's own fields decide — its iv, a ciphertext shorter than its tag, a
 * tag that does not verify.
 */
import type { CborValue } from '../protocol/cbor.js';
import { InvalidArgumentError, toCryptodError } from '../protocol/errors.js';
import { asCbor } from '../protocol/schema.js';
import type { RequestContext } from './operation.js';

/** Whether a request is the batch form: a map with `items` (the single forms refuse that field). */
export function isBatch(raw: CborValue): boolean {
  return raw !== null && typeof raw === 'object' && !(raw instanceof Uint8Array) && !Array.isArray(raw) && (raw as { items?: unknown }).items !== undefined;
}

/**
 * Refuse an empty or oversized batch before its items are checked one by
 * one: a frame of a million tiny items must cost one comparison, not a walk.
 */
export function checkBatchSize(ctx: RequestContext, raw: CborValue): void {
  const items = (raw as { items?: unknown }).items;
  if (!Array.isArray(items)) return; // the schema names the field
  const max = ctx.limits.maxBatchItems;
  if (items.length === 0 || items.length > max) {
    throw new InvalidArgumentError(
      `expected 'items' to hold 1 to ${max} items (the daemon's maxBatchItems), got ${items.length}; ${items.length === 0 ? 'send at least one item' : 'split the batch'}`,
      { detail: { field: 'items', min: 1, max } },
    );
  }
}

/** An item's failure as its result: the error's code, message and detail, as an error frame would carry them. */
export function itemError(err: unknown): CborValue {
  return { error: asCbor(toCryptodError(err).toJSON()) };
}
