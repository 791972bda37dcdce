/**
 * Freshness: an operation that begins after another process committed a
 * change runs on a snapshot that has it (design note 3; README "Running
 * several daemons").
 *
 *   operation starts ─▶ check()
 *        store.maybeChanged()  (SQLite: PRAGMA data_version, ~1 µs, synchronous)
 *          false, nothing in flight ─▶ null: run at once on the current snapshot
 *          false, a catch-up in flight ─▶ wait for it (it covers a change seen before we began)
 *          true ─▶ join the catch-up not started yet, or queue a new one ─▶ wait
 *   store.onCommit(gen)  (PostgreSQL NOTIFY) ─▶ gen > seen ─▶ start a catch-up at once
 *
 * A catch-up is the key manager's refresh(): exactly the keys the change log
 * names since the generation last seen, in the manager's queue. The change
 * log stays the source of truth: a push only says "look now", and a push
 * that is lost leaves the data_version check and the poll.
 *
 * Why "not started yet" matters: a catch-up that already read the change log
 * may have missed the commit that made this check true, so a check that sees
 * a change never joins a running one; it queues a new one behind it. Every
 * operation waits for the newest catch-up, which runs after every older one.
 *
 * One look per task, not per operation. The look costs a few system calls
 * (SQLite takes and drops its shared lock: two fcntl and an fstat), several
 * microseconds where system calls are slow — more than a pipelined HMAC
 * costs. Requests handled in one synchronous stretch (the frames of one
 * socket read, up to the connection's fairness quantum) share one look; the
 * next I/O callback or timer looks again (the flag clears in a microtask).
 * That keeps the promise: every frame of one read was sent before the read,
 * which came before the look, so a commit the look missed was not yet made
 * when any of them was sent.
 *
 * In-flight operations are never disturbed: they hold the snapshot they
 * started with (snapshot.ts); a catch-up publishes a new one beside it.
 * A failed catch-up is logged and the operation runs on the keys held.
 */
import type { Logger } from '../observe/logger.js';
import type { Keystore } from '../store/keystore.js';
import { errorText } from './reservations.js';

export interface FreshnessContext {
  store: Keystore;
  log: Logger;
  /** The generation the manager's snapshot reflects. */
  seen(): number;
  /** Queue a refresh in the manager's queue; `started` is called when it begins reading the change log. */
  refresh(started: () => void): Promise<unknown>;
}

export class Freshness {
  readonly #c: FreshnessContext;
  /** The newest catch-up, until it settles. */
  #latest: Promise<void> | null = null;
  /** The newest catch-up, while it has not started reading the change log (new checks may join it). */
  #unstarted: Promise<void> | null = null;
  readonly #unsubscribe: (() => void) | null;
  #catchUps = 0;
  /** Looked at the store in this synchronous stretch (cleared by a microtask). */
  #looked = false;
  readonly #clearLooked = (): void => {
    this.#looked = false;
  };

  constructor(context: FreshnessContext) {
    this.#c = context;
    const store = context.store;
    this.#unsubscribe = store.onCommit === undefined ? null : store.onCommit((generation) => {
      if (generation > context.seen()) void this.#start();
    });
  }

  /**
   * For an operation about to start: null when the current snapshot already
   * reflects every commit made before now (the common case, synchronous),
   * else a promise that resolves (never rejects) once it does.
   */
  check(): Promise<void> | null {
    if (this.#looked) return this.#latest;
    this.#looked = true;
    queueMicrotask(this.#clearLooked);
    if (this.#c.store.maybeChanged?.() === true) return this.#start();
    return this.#latest;
  }

  /** Catch-ups started so far (status, tests, the benchmark). */
  get catchUps(): number {
    return this.#catchUps;
  }

  /** Stop listening for pushes. */
  close(): void {
    this.#unsubscribe?.();
  }

  #start(): Promise<void> {
    if (this.#unstarted !== null) return this.#unstarted;
    this.#catchUps++;
    const p: Promise<void> = this.#c.refresh(() => {
      if (this.#unstarted === p) this.#unstarted = null;
    }).then(
      () => undefined,
      (err: unknown) => this.#c.log.warn('keystore catch-up failed; answering from the keys held', { error: errorText(err) }),
    ).finally(() => {
      if (this.#unstarted === p) this.#unstarted = null;
      if (this.#latest === p) this.#latest = null;
    });
    this.#unstarted = p;
    this.#latest = p;
    return p;
  }
}
