/**
 * Fleet membership: every daemon on a store registers a row
 * {id, host, pid, seen generation, expiry} and renews it by heartbeat, so
 * that a destroy can wait until every live daemon has seen it.
 *
 *   destroy committed at generation G (daemon A)
 *     └─▶ A: awaitAcknowledged(G): every *other* live member (expiry > now)
 *            reports seen ≥ G? ── yes ─▶ the command returns
 *                                  └─ no, after the timeout ─▶ NotAcknowledgedError naming them
 *   daemon B: NOTIFY / poll ─▶ refresh (drops the destroyed version) ─▶ heartbeat(seen = G)
 *
 * The other half of the promise ("no process anywhere uses a version after
 * its destroy has returned"): a daemon whose own heartbeat has lapsed — it
 * could not reach the store for a whole period, so a destroy elsewhere may
 * have stopped waiting for it — is `healthy() === false`, and the daemon
 * refuses managed-key operations until a heartbeat succeeds again, after
 * catching up with the store first. A destroy that waited for it either saw
 * its acknowledgement or saw its row expire; from then on it does not serve.
 *
 * Times are the callers' clocks, as for the lease (lease.ts).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { NotAcknowledgedError } from '../protocol/errors.js';

export interface MemberRow {
  readonly id: string;
  readonly host: string;
  readonly pid: number;
  readonly seenGeneration: number;
  /** Epoch milliseconds. */
  readonly expiresAt: number;
}

/** What a backend provides: SQLite and PostgreSQL both implement it. */
export interface MemberStore {
  /** Insert or replace the member's row. */
  heartbeat(row: MemberRow): Promise<void>;
  /** Members whose row has not expired at `now`. */
  live(now: number): Promise<MemberRow[]>;
  /** Remove the member's row (a clean shutdown: nobody waits for it). */
  leave(id: string): Promise<void>;
}

export interface MembershipOptions {
  store: MemberStore;
  id: string;
  host: string;
  pid: number;
  /** How long a heartbeat keeps the row live, ms; renewed at a third of it. */
  periodMs: number;
  /** The store generation this process has caught up with. */
  seen: () => number;
  /** Bring this process up to date with the store (after a lapse, before it serves again). */
  catchUp: () => Promise<unknown>;
  now?: () => number;
}

export class Membership {
  readonly #o: Required<MembershipOptions>;
  /** Expiry of the last heartbeat that reached the store. */
  #until = 0;
  #reported = -1;
  #timer: NodeJS.Timeout | null = null;
  #beating: Promise<void> | null = null;
  #again = false;
  #stopped = false;

  constructor(options: MembershipOptions) {
    if (!Number.isSafeInteger(options.periodMs) || options.periodMs < 30) throw new RangeError(`heartbeat period must be an integer >= 30 ms, got ${options.periodMs}`);
    this.#o = { now: Date.now, ...options };
  }

  get id(): string {
    return this.#o.id;
  }

  /** Register (the first heartbeat) and keep beating until stop(). */
  async start(): Promise<void> {
    await this.#beat();
  }

  /** Whether this process's own row is live: false after a lapse, until it has caught up and beaten again. */
  healthy(): boolean {
    return this.#o.now() < this.#until;
  }

  /**
   * Report a new seen generation now, rather than at the next scheduled beat
   * (prompt acknowledgements). The caller has just caught up, so this beat
   * does not catch up again: one change costs one read of the change log.
   */
  poke(): void {
    if (this.#stopped || this.#o.seen() === this.#reported) return;
    if (this.#beating !== null) {
      this.#again = true;
      return;
    }
    void this.#beat(false);
  }

  /**
   * Wait until every other live member reports a seen generation ≥ `generation`.
   * @throws NotAcknowledgedError naming the laggards after `timeoutMs`.
   */
  async awaitAcknowledged(generation: number, timeoutMs: number, pollMs = 25): Promise<void> {
    const deadline = this.#o.now() + timeoutMs;
    for (;;) {
      let laggards: MemberRow[] | null = null;
      try {
        laggards = (await this.#o.store.live(this.#o.now())).filter((m) => m.id !== this.#o.id && m.seenGeneration < generation);
      } catch {
        // The store is unreachable: keep trying until the deadline; the error then says so.
      }
      if (laggards !== null && laggards.length === 0) return;
      if (this.#o.now() >= deadline) {
        const names = laggards === null ? 'unknown (the store could not be read)' : laggards.map((m) => `${m.host}:${m.pid}`).join(', ');
        throw new NotAcknowledgedError(
          `the change is committed (generation ${generation}), but these live daemons have not acknowledged it within ${timeoutMs} ms: ${names}; ` +
            'each stops serving managed keys when its heartbeat lapses',
          { detail: { generation, laggards: names, timeoutMs } },
        );
      }
      await sleep(pollMs);
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#beating;
    await this.#o.store.leave(this.#o.id).catch(() => undefined);
  }

  #beat(catchUp = true): Promise<void> {
    const run = (async () => {
      const { store, id, host, pid, periodMs } = this.#o;
      try {
        // Catch up before every beat, so the generation it reports is the
        // store's: an idle daemon (or one that does not poll) still
        // acknowledges a destroy within a beat. After a lapse this also puts
        // a destroy that stopped waiting for us in effect here before the row
        // says we are live again.
        if (catchUp) await this.#o.catchUp();
        const seen = this.#o.seen();
        const now = this.#o.now();
        await store.heartbeat({ id, host, pid, seenGeneration: seen, expiresAt: now + periodMs });
        this.#until = now + periodMs;
        this.#reported = seen;
      } catch {
        // Retried at the next beat; healthy() turns false when the row lapses.
      }
    })();
    this.#beating = run.finally(() => {
      this.#beating = null;
      if (this.#again) {
        this.#again = false;
        this.poke();
      }
    });
    this.#schedule();
    return this.#beating;
  }

  #schedule(): void {
    if (this.#stopped) return;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      if (this.#beating === null) void this.#beat();
      else this.#schedule();
    }, Math.floor(this.#o.periodMs / 3));
    this.#timer.unref();
  }
}
