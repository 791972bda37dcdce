/**
 * Keystore side of the AES-GCM invocation budgets (budget.ts): the first
 * reservation for versions a process loads, background refills when a
 * reader's `take()` runs low, and the threshold rotation request.
 *
 *   load / reload ──▶ reserveFirst(budgets)     one transaction for all, before the snapshot is published
 *   reader take() ──▶ onLow(b) ──▶ refill(b)    in the background; the reader never waits
 *   total ≥ rotateAt ──▶ onThreshold(b)         timers.ts rotates if b's version is still current
 *
 * A failed reservation is logged and retried at the budget's next use after
 * a bounded backoff (InvocationBudget.retryAt); meanwhile the version's
 * remaining budget stays usable, and when that is spent encrypt gets
 * BusyError — never an uncounted encryption.
 */
import type { Logger } from '../observe/logger.js';
import type { Keystore } from '../store/keystore.js';
import type { InvocationBudget } from './budget.js';
import type { Clock } from './clock.js';
import { backoffDelay, type RetryOptions } from './scheduler.js';

export interface ReservationContext {
  store: Keystore;
  clock: Clock;
  log: Logger;
  retry: RetryOptions;
  /** Count background work, so that `settle()` and `close()` can wait for it. */
  track(p: Promise<unknown>): void;
  /** The budget's store total reached rotateAt. Called once per version (until a rotation attempt fails). */
  onThreshold(b: InvocationBudget): void;
  closed(): boolean;
}

export class Reservations {
  readonly #c: ReservationContext;

  constructor(context: ReservationContext) {
    this.#c = context;
  }

  /** First reservation for budgets of versions just loaded. Never throws: failures are retried at first use. */
  async reserveFirst(budgets: readonly InvocationBudget[]): Promise<void> {
    if (budgets.length === 0) return;
    for (const b of budgets) b.refilling = true;
    try {
      const totals = await this.#c.store.transaction(async (tx) => {
        const out: Array<[InvocationBudget, number, number]> = [];
        for (const b of budgets) {
          const n = b.nextReservation();
          out.push([b, await tx.addEncryptions(b.key, b.version, n), n]);
        }
        return out;
      });
      // Granted only after the commit: an encryption is never counted by a write that might roll back.
      for (const [b, total, n] of totals) this.#granted(b, total, n);
    } catch (err) {
      const now = this.#c.clock.now();
      for (const b of budgets) b.retryAt = now + backoffDelay(++b.failures, this.#c.retry);
      this.#c.log.warn('encryption budget reservation failed', { keys: budgets.map((b) => b.key).join(','), error: errorText(err) });
    } finally {
      for (const b of budgets) b.refilling = false;
    }
  }

  /** Called synchronously from a reader's `take()`: start a refill in the background. */
  onLow(b: InvocationBudget): void {
    if (this.#c.closed()) return;
    b.refilling = true;
    this.#c.track(this.#refill(b));
  }

  async #refill(b: InvocationBudget): Promise<void> {
    try {
      const n = b.nextReservation();
      const total = await this.#c.store.transaction((tx) => tx.addEncryptions(b.key, b.version, n));
      this.#granted(b, total, n);
    } catch (err) {
      b.retryAt = this.#c.clock.now() + backoffDelay(++b.failures, this.#c.retry);
      this.#c.log.warn('encryption budget reservation failed', { key: b.key, version: b.version, error: errorText(err) });
    } finally {
      b.refilling = false;
    }
  }

  #granted(b: InvocationBudget, total: number, n: number): void {
    b.grant(total, n);
    b.failures = 0;
    if (b.needsRotation && !b.rotationRequested && !this.#c.closed()) {
      b.rotationRequested = true;
      this.#c.onThreshold(b);
    }
  }
}

export function errorText(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}
