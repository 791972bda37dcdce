/**
 * Invocation budgets for AES-GCM versions: with random 96-bit nonces one key
 * may encrypt at most 2^32 times (NIST SP 800-38D §8.3). Each version's
 * keystore record counts its encryptions; the count must never fall behind
 * the truth, or the bound could be crossed unseen, and it is shared by every
 * daemon using the keystore.
 *
 * Batching by reservation. Writing the count at every encryption would put
 * an fsync on every encrypt. Counting locally and writing later would lose
 * the unwritten part in a crash and under-count. So a process reserves
 * first and encrypts after:
 *
 *   addEncryptions(name, v, block) ─▶ total     the store counter moves first
 *   available += block                          then up to `block` local encryptions
 *   available ≤ block/2 ─▶ reserve the next block in the background
 *
 * The store counter is therefore always ≥ the encryptions really made, across
 * all processes (each reservation is an atomic add). A crash only wastes what
 * was reserved and not used: at most 1.5 blocks per counted version held
 * (the remainder of one block plus one refill), i.e. 1.5 × 2^20 of 2^32 with
 * the defaults. Reservations are async and never block a reader; if one is
 * slower than half a block of encryptions, outbound use gets BusyError until
 * it lands (with the default block that takes > 500 000 encryptions during
 * one keystore transaction).
 *
 * Thresholds on the store total: at `rotateAt` (default 2^31) the key is
 * rotated; at `limit` (2^32) no more is reserved, and once the local
 * remainder is spent outbound use is refused.
 */
import { ConfigError } from '../protocol/errors.js';

export interface BudgetOptions {
  /** Encryptions reserved per keystore write. Default 2^20. */
  block: number;
  /** Store total at which the version is rotated. Default 2^31. */
  rotateAt: number;
  /** Hard bound: no reservation beyond it. Default 2^32 (AES-GCM). */
  limit: number;
}

export const DEFAULT_BUDGET: BudgetOptions = Object.freeze({ block: 2 ** 20, rotateAt: 2 ** 31, limit: 2 ** 32 });

export type TakeResult = 'ok' | 'empty' | 'exhausted';

/**
 * The local budget of one version in one process. Shared by every snapshot
 * that holds the version: it is the one piece of mutable state snapshots
 * point at, like an atomic counter beside an RCU-protected structure.
 */
export class InvocationBudget {
  readonly key: string;
  readonly version: number;
  readonly options: BudgetOptions;
  #available = 0;
  #used = 0;
  #reserved: number;
  #exhausted = false;
  /** A reservation is in flight. */
  refilling = false;
  /** After a failed reservation: no new attempt before this instant. */
  retryAt = 0;
  /** Reservations that failed in a row (for the retry backoff). */
  failures = 0;
  /** A threshold rotation was asked for (once per version). */
  rotationRequested = false;
  readonly #onLow: (b: InvocationBudget) => void;

  /** `reserved`: the store's count when the version was loaded. */
  constructor(key: string, version: number, reserved: number, options: BudgetOptions, onLow: (b: InvocationBudget) => void) {
    this.key = key;
    this.version = version;
    this.options = options;
    this.#reserved = reserved;
    this.#exhausted = reserved >= options.limit;
    this.#onLow = onLow;
  }

  /**
   * Take one invocation. Synchronous and O(1): the refill it may start runs
   * in the background.
   */
  take(now: number): TakeResult {
    if (this.#available > 0) {
      this.#available--;
      this.#used++;
      if (this.#available <= this.options.block / 2) this.#maybeRefill(now);
      return 'ok';
    }
    if (this.#exhausted) return 'exhausted';
    this.#maybeRefill(now);
    return 'empty';
  }

  #maybeRefill(now: number): void {
    if (this.refilling || this.#exhausted || now < this.retryAt) return;
    this.#onLow(this);
  }

  /** How much to ask for next: a block, or less near the limit. */
  nextReservation(): number {
    return Math.max(1, Math.min(this.options.block, this.options.limit - this.#reserved));
  }

  /**
   * A reservation of `n` landed and the store total is now `total`: this
   * process owns invocations [total − n, total), of which those below
   * `limit` are usable.
   */
  grant(total: number, n: number): void {
    const start = total - n;
    const usable = Math.max(0, Math.min(total, this.options.limit) - start);
    this.#available += usable;
    this.#reserved = Math.max(this.#reserved, total);
    if (total >= this.options.limit) this.#exhausted = true;
  }

  /** Store total as last seen: an upper bound on encryptions made fleet-wide. */
  get reserved(): number {
    return this.#reserved;
  }

  get available(): number {
    return this.#available;
  }

  /** Encryptions this process made with the version. */
  get used(): number {
    return this.#used;
  }

  get needsRotation(): boolean {
    return this.#reserved >= this.options.rotateAt;
  }
}

/** Check budget options at the edge: "expected block ≥ 1, got 0". */
export function budgetOptions(input: Partial<BudgetOptions> = {}): BudgetOptions {
  const o = { ...DEFAULT_BUDGET, ...input };
  for (const [k, v] of Object.entries(o)) {
    if (!Number.isSafeInteger(v) || v < 1) throw new ConfigError(`expected budget ${k} as a positive integer, got ${String(v)}`);
  }
  if (!(o.rotateAt <= o.limit)) throw new ConfigError(`expected budget rotateAt (${o.rotateAt}) ≤ limit (${o.limit})`);
  return o;
}
