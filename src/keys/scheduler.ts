/**
 * When the key manager next has work for each key, on one timer.
 *
 *   key ─▶ instant of its next work: scheduled rotation (notAfter − prefetch),
 *          next epoch change, material to drop, or a retry after a failure
 *
 * One timer is armed for the earliest instant; when it fires, every key due
 * by then is handed to its owner (timers.ts), and the timer is re-armed for the rest.
 * Timers come from the injected Clock, so tests move time by hand.
 *
 * Failed work is retried with bounded exponential backoff: initial, 2×, 4×…
 * up to `maxMs`, then every `maxMs` for as long as it keeps failing. The
 * failure never touches the current snapshot: the current version stays in
 * use while its window lasts.
 */
import { ConfigError } from '../protocol/errors.js';
import type { Clock, Timer } from './clock.js';

export interface RetryOptions {
  /** Delay before the first retry. Default 1 s. */
  initialMs: number;
  /** Upper bound of the delay. Default 5 min. */
  maxMs: number;
}

export const DEFAULT_RETRY: RetryOptions = Object.freeze({ initialMs: 1_000, maxMs: 5 * 60_000 });

export function retryOptions(input: Partial<RetryOptions> = {}): RetryOptions {
  const o = { ...DEFAULT_RETRY, ...input };
  if (!Number.isSafeInteger(o.initialMs) || o.initialMs < 1) throw new ConfigError(`expected retry initialMs as a positive integer, got ${String(o.initialMs)}`);
  if (!Number.isSafeInteger(o.maxMs) || o.maxMs < o.initialMs) throw new ConfigError(`expected retry maxMs ≥ initialMs (${o.initialMs}), got ${String(o.maxMs)}`);
  return o;
}

/** Delay before retry number `attempt` (1, 2, …). */
export function backoffDelay(attempt: number, o: RetryOptions): number {
  const exp = Math.min(attempt - 1, 40); // 2^40 × 1 ms is already far past any maxMs
  return Math.min(o.maxMs, o.initialMs * 2 ** exp);
}

export class WakeScheduler {
  readonly #clock: Clock;
  readonly #onDue: (names: string[]) => void;
  readonly #at = new Map<string, number>();
  #timer: Timer | null = null;
  #armedAt = Infinity;
  #closed = false;

  constructor(clock: Clock, onDue: (names: string[]) => void) {
    this.#clock = clock;
    this.#onDue = onDue;
  }

  /** Wake for `name` at `at` (replacing its previous instant); null: no work planned. */
  set(name: string, at: number | null): void {
    if (this.#closed) return;
    if (at === null || !Number.isFinite(at)) this.#at.delete(name);
    else this.#at.set(name, at);
    this.#arm();
  }

  /** The instant planned for `name`, if any. */
  get(name: string): number | undefined {
    return this.#at.get(name);
  }

  close(): void {
    this.#closed = true;
    this.#timer?.cancel();
    this.#timer = null;
    this.#at.clear();
  }

  #arm(): void {
    let next = Infinity;
    for (const t of this.#at.values()) if (t < next) next = t;
    if (next === this.#armedAt) return;
    this.#timer?.cancel();
    this.#timer = null;
    this.#armedAt = next;
    if (next !== Infinity) this.#timer = this.#clock.setTimer(next, () => this.#fire());
  }

  #fire(): void {
    this.#timer = null;
    this.#armedAt = Infinity;
    const now = this.#clock.now();
    const due: string[] = [];
    for (const [name, t] of this.#at) {
      if (t <= now) {
        due.push(name);
        this.#at.delete(name);
      }
    }
    this.#arm();
    if (due.length > 0) this.#onDue(due);
  }
}
