/**
 * Freshness: an operation that begins after another process committed a
 * change runs on a snapshot that has it (design note 3; README "Running
 * several daemons") — and an operation on a key nobody changed never waits.
 *
 *   operation on key K starts ─▶ check(K)
 *     once per synchronous stretch: store.maybeChanged()  (SQLite: PRAGMA data_version)
 *       true ─▶ store.changesSinceNow(known)  (the change log, read at once)
 *                 no new generation ─▶ nothing (the commit was a heartbeat or a lease renewal)
 *                 keys A, B changed  ─▶ queue a catch-up of exactly A, B; they wait for it
 *                 log truncated      ─▶ queue a whole catch-up; everyone waits for it
 *     K waits for the catch-up that reloads it, else runs at once on the current snapshot
 *   an operation naming no key (list, administration) ─▶ waits for the newest catch-up
 *   store.onCommit(gen)  (PostgreSQL NOTIFY) ─▶ gen > seen ─▶ one catch-up that reads the log
 *
 * A catch-up runs in the manager's queue (KeyManager.#run), after every
 * older one, and reloads only what it names (Refresher.apply). Catch-ups
 * not started yet absorb newer changes, so a burst of commits costs one.
 * Every catch-up — from a look or a push — is started here, so one commit
 * costs one catch-up; what must follow a pushed one (the fleet heartbeat
 * reporting the new generation) listens through `caughtUp`.
 *
 * Why the peek is exact: the change log is read in the same synchronous
 * stretch as the data_version look, so every commit the look saw is in it;
 * a key absent from it had no commit before this request was read, and its
 * entry in the current snapshot is as fresh as the store.
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
import type { ChangeSet, Keystore } from '../store/keystore.js';
import { errorText } from './reservations.js';

/** What one catch-up is to do, fixed when it starts: reload `names` (null: read the change log) to move from `since` to `generation`. */
export interface CatchUpTarget {
  names: readonly string[] | null;
  since: number;
  generation: number;
}

export interface FreshnessContext {
  store: Keystore;
  log: Logger;
  /** The generation the manager's snapshot reflects. */
  seen(): number;
  /** Queue a catch-up in the manager's queue; `target` is asked when it starts. */
  catchUp(target: () => CatchUpTarget): Promise<unknown>;
  /**
   * After every catch-up a store push started, whether it succeeded or not.
   * (Not after those a look started: reporting them would be one more
   * commit to the file, which every other daemon on it would look at.)
   */
  caughtUp(): void;
}

interface Pending {
  /** Null: the change log is read when the catch-up starts. */
  names: Set<string> | null;
  since: number;
  generation: number;
  /** A store push started or joined it. */
  pushed: boolean;
  promise: Promise<void>;
}

export class Freshness {
  readonly #c: FreshnessContext;
  /** The newest catch-up, until it settles (what requests naming no key wait for). */
  #latest: Promise<void> | null = null;
  /** The newest catch-up, while it has not started (newer changes join it). */
  #unstarted: Pending | null = null;
  /** Key name → the catch-up that reloads it, until that settles. */
  readonly #waiting = new Map<string, Promise<void>>();
  /** A catch-up of unknown extent (the log no longer reaches back, or could not be read): every request waits for it. */
  #whole: Promise<void> | null = null;
  /** The newest generation whose changes are known here (caught up with, or queued). */
  #known = 0;
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
      if (generation > Math.max(context.seen(), this.#known)) void this.#queue(null, generation, false, context.seen(), true);
    });
  }

  /**
   * For an operation about to start on key `key` (undefined: on no one key):
   * null when the current snapshot already reflects every commit made to
   * what it uses before now (the common case, synchronous), else a promise
   * that resolves (never rejects) once it does.
   */
  check(key?: string): Promise<void> | null {
    if (!this.#looked) {
      this.#looked = true;
      queueMicrotask(this.#clearLooked);
      if (this.#c.store.maybeChanged?.() === true) this.#look();
    }
    if (key === undefined) return this.#latest;
    return this.#waiting.get(key) ?? this.#whole;
  }

  /** Catch-ups started so far (status, tests, the benchmark). */
  get catchUps(): number {
    return this.#catchUps;
  }

  /** Stop listening for pushes. */
  close(): void {
    this.#unsubscribe?.();
  }

  /** Another connection committed: read what, now, and queue exactly that. */
  #look(): void {
    const since = Math.max(this.#known, this.#c.seen());
    let cs: ChangeSet | null = null;
    if (this.#c.store.changesSinceNow !== undefined) {
      try {
        cs = this.#c.store.changesSinceNow(since);
      } catch (err) {
        this.#c.log.warn('keystore change log could not be read at once; catching up with everything', { error: errorText(err) });
      }
    }
    if (cs === null || cs.truncated) {
      void this.#queue(null, cs?.generation ?? since, true, since);
      return;
    }
    // Another process committed, but not to the keystore (its heartbeat, its lease): nothing changed here.
    if (cs.generation <= since) return;
    void this.#queue(cs.names, cs.generation, false, since);
  }

  #queue(names: readonly string[] | null, generation: number, everyone: boolean, since: number, pushed = false): Promise<void> {
    if (names !== null) this.#known = Math.max(this.#known, generation);
    let p = this.#unstarted;
    if (p !== null) {
      if (names === null) p.names = null;
      else if (p.names !== null) for (const n of names) p.names.add(n);
      p.since = Math.min(p.since, since);
      p.generation = Math.max(p.generation, generation);
      p.pushed ||= pushed;
    } else {
      const pending: Pending = { names: names === null ? null : new Set(names), since, generation, pushed, promise: Promise.resolve() };
      this.#catchUps++;
      pending.promise = this.#c.catchUp(() => {
        if (this.#unstarted === pending) this.#unstarted = null;
        return { names: pending.names === null ? null : [...pending.names], since: pending.since, generation: pending.generation };
      }).then(
        () => undefined,
        (err: unknown) => this.#c.log.warn('keystore catch-up failed; answering from the keys held', { error: errorText(err) }),
      ).finally(() => this.#settled(pending));
      this.#unstarted = pending;
      this.#latest = pending.promise;
      p = pending;
    }
    if (names !== null) for (const n of names) this.#waiting.set(n, p.promise);
    if (everyone) this.#whole = p.promise;
    return p.promise;
  }

  #settled(p: Pending): void {
    if (this.#unstarted === p) this.#unstarted = null;
    if (this.#latest === p.promise) this.#latest = null;
    if (this.#whole === p.promise) this.#whole = null;
    for (const [name, waitFor] of this.#waiting) if (waitFor === p.promise) this.#waiting.delete(name);
    if (!p.pushed) return;
    try {
      this.#c.caughtUp();
    } catch (err) {
      this.#c.log.warn('catch-up listener failed', { error: errorText(err) });
    }
  }
}
