/**
 * The fleet lease (design note 3's cross-process lock): one row per lease in
 * the store, {name, holder, expiresAt, generation}, that decides which one
 * process of the fleet does the work that must happen once — scheduled
 * rotation today.
 *
 *   tryAcquire(name, me, now, period), one transaction:
 *     no row                       ─▶ insert (me, now + period, generation 1)   acquired
 *     holder = me, not expired     ─▶ expiry = now + period, same generation   renewed
 *     expired (anyone's)           ─▶ (me, now + period, generation + 1)        taken
 *     held by another, not expired ─▶ unchanged                                 not acquired
 *
 * The generation is a fencing token: it changes exactly when the lease
 * changes hands (or its holder let it lapse), so work tagged with it can be
 * told apart from a previous holder's.
 *
 * The holder renews at a third of the period, so two renewals can fail
 * before it expires. It treats the lease as lost the moment its own clock
 * passes the expiry it last wrote — before anyone else can take it — and
 * when a renewal finds another holder (a long pause, a clock jump). Losing
 * is not a log line: the tenure's AbortSignal is aborted with a
 * LeaseLostError, and `lost` resolves with it, so the work in progress sees
 * it. A failed attempt is retried with backoff (a tenth of the period,
 * doubling, at most a third); the backoff starts again from the beginning
 * after a success and after the lease was lost, so a process that had a bad
 * minute does not keep waiting the longest delay for good.
 *
 * Times are the callers' clocks (`now`): hosts sharing a lease need
 * synchronized clocks (NTP), with skew well under a third of the period.
 */
import { LeaseLostError } from '../protocol/errors.js';

export interface LeaseRow {
  readonly name: string;
  readonly holder: string;
  /** Epoch milliseconds. */
  readonly expiresAt: number;
  readonly generation: number;
}

/** What a backend provides: both SQLite and PostgreSQL implement it. */
export interface LeaseStore {
  /** Take or renew `name` for `holder` until `now + periodMs` if free, expired, or already held by `holder` (see the header). */
  tryAcquire(name: string, holder: string, now: number, periodMs: number): Promise<{ acquired: boolean; row: LeaseRow }>;
  /** Let the lease lapse now, if `holder` holds it (a clean shutdown: the next contender need not wait out the period). */
  release(name: string, holder: string): Promise<void>;
  /** The row as stored, if any. */
  read(name: string): Promise<LeaseRow | undefined>;
}

/** The SQL both backends run (same text: SQLite ≥ 3.35 and PostgreSQL read it alike), with ? placeholders. */
export const ACQUIRE_SQL = `
  INSERT INTO leases (name, holder, expires_at, generation) VALUES (?, ?, ?, 1)
  ON CONFLICT (name) DO UPDATE SET
    generation = leases.generation + CASE WHEN leases.holder = excluded.holder AND leases.expires_at > ? THEN 0 ELSE 1 END,
    holder = excluded.holder,
    expires_at = excluded.expires_at
  WHERE leases.holder = excluded.holder OR leases.expires_at <= ?
  RETURNING name, holder, expires_at, generation`;

export interface LeaseOptions {
  store: LeaseStore;
  name: string;
  /** Who we are: unique per process (host, pid and a random part). */
  holder: string;
  /** How long a taken or renewed lease lasts, ms. */
  periodMs: number;
  /** Epoch milliseconds; injected in tests (clock jumps). */
  now?: () => number;
  /** Told when the lease is taken (with its generation) and when it is lost; must not throw. */
  onChange?: (event: { held: true; generation: number } | { held: false; error: InstanceType<typeof LeaseLostError> }) => void;
}

/** One tenure: from taking the lease to losing or releasing it. */
export interface Tenure {
  readonly generation: number;
  /** Aborted, with a LeaseLostError as its reason, when the lease is lost. */
  readonly signal: AbortSignal;
  /** Resolves with the LeaseLostError when the lease is lost (never when released by stop()). */
  readonly lost: Promise<InstanceType<typeof LeaseLostError>>;
}

export class Lease {
  readonly #o: Required<Omit<LeaseOptions, 'onChange'>> & Pick<LeaseOptions, 'onChange'>;
  #tenure: (Tenure & { abort(err: InstanceType<typeof LeaseLostError>): void; until: number }) | null = null;
  #timer: NodeJS.Timeout | null = null;
  #failures = 0;
  #stopped = false;
  #running: Promise<void> | null = null;
  /**
   * Bumped at every loss: the next tenure contends under a new holder id, so
   * it waits for the expiry and gets a new generation — a process that gave
   * its tenure up never quietly resumes it (the work it stopped stays stopped).
   */
  #incarnation = 0;

  constructor(options: LeaseOptions) {
    if (!Number.isSafeInteger(options.periodMs) || options.periodMs < 30) throw new RangeError(`lease period must be an integer >= 30 ms, got ${options.periodMs}`);
    this.#o = { now: Date.now, ...options };
  }

  /**
   * Contend for the lease now and keep contending/renewing until stop().
   * Resolves after the first attempt, so a daemon alone on its store holds
   * the lease before its first scheduled work (never rejects: a failed
   * attempt is retried).
   */
  start(): Promise<void> {
    if (this.#stopped || this.#running !== null || this.#timer !== null) return Promise.resolve();
    const first = this.#attempt().finally(() => { this.#running = null; });
    this.#running = first;
    return first;
  }

  /** The current tenure, or null when another process holds the lease (or it has been lost). Checks the expiry on the spot. */
  current(): Tenure | null {
    const t = this.#tenure;
    if (t !== null && this.#o.now() >= t.until) this.#lose('expired', `the lease "${this.#o.name}" expired before it could be renewed`);
    return this.#tenure;
  }

  /** Stop contending; release the lease if held. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#running;
    if (this.#tenure !== null) {
      this.#tenure = null;
      await this.#o.store.release(this.#o.name, this.#holder()).catch(() => undefined);
    }
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#running = this.#attempt().finally(() => { this.#running = null; });
    }, delayMs);
    this.#timer.unref();
  }

  async #attempt(): Promise<void> {
    const { store, name, periodMs } = this.#o;
    const holder = this.#holder();
    const third = Math.floor(periodMs / 3);
    // A pause longer than the expiry (a stopped VM, a clock jump) is a loss even before the store says so.
    this.current();
    const now = this.#o.now();
    let next: number;
    try {
      const { acquired, row } = await store.tryAcquire(name, holder, now, periodMs);
      this.#failures = 0;
      const t = this.#tenure;
      if (acquired) {
        if (t !== null && t.generation === row.generation) t.until = row.expiresAt;
        else {
          if (t !== null) this.#lose('taken', `the lease "${name}" changed hands (generation ${t.generation} → ${row.generation})`);
          this.#begin(row);
        }
        next = third;
      } else {
        if (t !== null) this.#lose('taken', `another process (${row.holder}) took the lease "${name}" (generation ${row.generation})`);
        // Try again right after the holder's expiry, or at a third of the period, whichever is first.
        next = Math.max(1, Math.min(third, row.expiresAt - now + 5));
      }
    } catch {
      this.#failures += 1;
      next = Math.min(Math.floor(periodMs / 10) * 2 ** (this.#failures - 1), third);
      // Still held? Make sure we notice the expiry on time, not after the backoff.
      const t = this.#tenure;
      if (t !== null) next = Math.max(1, Math.min(next, t.until - this.#o.now()));
    }
    this.#schedule(next);
  }

  #begin(row: LeaseRow): void {
    const controller = new AbortController();
    let resolveLost!: (e: InstanceType<typeof LeaseLostError>) => void;
    const lost = new Promise<InstanceType<typeof LeaseLostError>>((r) => { resolveLost = r; });
    this.#tenure = {
      generation: row.generation,
      signal: controller.signal,
      lost,
      until: row.expiresAt,
      abort(err) {
        controller.abort(err);
        resolveLost(err);
      },
    };
    this.#tell({ held: true, generation: row.generation });
  }

  #lose(reason: 'expired' | 'taken', message: string): void {
    const t = this.#tenure;
    if (t === null) return;
    this.#tenure = null;
    this.#failures = 0;
    this.#incarnation += 1;
    const err = new LeaseLostError(`${message}; fleet-wide work stops here`, { detail: { lease: this.#o.name, generation: t.generation, reason } });
    t.abort(err);
    this.#tell({ held: false, error: err });
  }

  #holder(): string {
    return `${this.#o.holder}#${this.#incarnation}`;
  }

  #tell(event: Parameters<NonNullable<LeaseOptions['onChange']>>[0]): void {
    try {
      this.#o.onChange?.(event);
    } catch {
      // A listener's failure must not stop the lease.
    }
  }
}
