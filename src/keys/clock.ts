/**
 * Time for the key manager, injected so that rotation, grace and epochs can be
 * tested to the millisecond without waiting: `systemClock` in the daemon,
 * `ManualClock` in tests.
 *
 * Timers are set for an absolute instant rather than a delay: rotation
 * instants are absolute (notAfter − prefetch), and a process that sleeps (a
 * laptop lid, a paused VM) must fire late timers at once rather than a full
 * delay after waking.
 */

export interface Timer {
  cancel(): void;
}

export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
  /** Call `fn` once at or after instant `at` (at once if `at` has passed). */
  setTimer(at: number, fn: () => void): Timer;
}

/** setTimeout's delay is a signed 32-bit millisecond count. */
const MAX_DELAY = 2 ** 31 - 1;

/** Wall-clock time. Timers do not keep the process alive. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(at, fn) {
    let handle: NodeJS.Timeout;
    let cancelled = false;
    const arm = (): void => {
      const delay = at - Date.now();
      // Long timers (a 30-day rotation) are re-armed in 24-day steps.
      handle = delay > MAX_DELAY ? setTimeout(arm, MAX_DELAY) : setTimeout(() => cancelled || fn(), Math.max(0, delay));
      handle.unref();
    };
    arm();
    return {
      cancel() {
        cancelled = true;
        clearTimeout(handle);
      },
    };
  },
};

interface Pending {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/**
 * A clock that moves only when told to. `advance` fires due timers in order
 * of their instants, with `now()` set to each timer's instant while it runs.
 *
 * @example
 *   const clock = new ManualClock(Date.UTC(2030, 0, 1));
 *   clock.setTimer(clock.now() + 1000, () => console.log('tick'));
 *   clock.advance(1000); // prints "tick"
 */
export class ManualClock implements Clock {
  #now: number;
  #seq = 0;
  #timers: Pending[] = [];

  constructor(start = 0) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  /** A timer for an instant already reached fires on the next turn of the event loop, as a real one would. */
  setTimer(at: number, fn: () => void): Timer {
    const t: Pending = { at, seq: this.#seq++, fn, cancelled: false };
    if (at <= this.#now) {
      setImmediate(() => t.cancelled || fn());
      return { cancel: () => void (t.cancelled = true) };
    }
    this.#timers.push(t);
    return {
      cancel: () => {
        t.cancelled = true;
        this.#timers = this.#timers.filter((x) => x !== t);
      },
    };
  }

  /** Move forward by `ms`, firing every timer due on the way (including ones they set). */
  advance(ms: number): void {
    this.advanceTo(this.#now + ms);
  }

  advanceTo(t: number): void {
    if (t < this.#now) throw new RangeError('a ManualClock does not go backwards; use set() to model a clock step');
    for (;;) {
      const due = this.#timers.filter((x) => x.at <= t).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (due === undefined) break;
      this.#timers = this.#timers.filter((x) => x !== due);
      this.#now = Math.max(this.#now, due.at);
      if (!due.cancelled) due.fn();
    }
    this.#now = t;
  }

  /** Jump to `t` (forwards or backwards) without firing timers: a stepped system clock. */
  set(t: number): void {
    this.#now = t;
  }

  /** Instants of the pending timers, ascending. */
  pendingTimers(): number[] {
    return this.#timers.map((x) => x.at).sort((a, b) => a - b);
  }
}
