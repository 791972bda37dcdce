/**
 * The work the key manager does by itself, without a request: scheduled
 * rotation, rotation at the encryption-count threshold, epoch changes, and
 * dropping material nothing can use any more (design note 4, "Update Single
 * Key").
 *
 *   plan(name) ─▶ WakeScheduler.set(name, earliest of:
 *                   notAfter − prefetch     scheduled rotation (not before a failed one's retry)
 *                   next epoch boundary     derived keys
 *                   notAfter + grace        a version's material to drop)
 *   wake-up    ─▶ queued tick(name): rotate if due ─▶ refreshEntry ─▶ publish ─▶ plan(name)
 *   threshold  ─▶ queued rotation, if the version that reached it is still current
 *
 * A failed scheduled rotation is retried with backoff (scheduler.ts); the
 * current version stays in use meanwhile. Rotations made here are told to
 * the listener (the daemon audits them); a failing listener fails nothing.
 */
import type { Logger } from '../observe/logger.js';
import { LeaseLostError } from '../protocol/errors.js';
import type { InvocationBudget } from './budget.js';
import type { Clock } from './clock.js';
import { nextEpochChange } from './epoch.js';
import { refreshEntry } from './loader.js';
import { errorText } from './reservations.js';
import { planScheduled } from './rotation.js';
import { backoffDelay, WakeScheduler, type RetryOptions } from './scheduler.js';
import { inboundUntil } from './selection.js';
import type { KeyEntry } from './snapshot.js';
import { scheduledPlanner, thresholdPlanner, type Planner } from './writes.js';

/** A rotation the manager did by itself. */
export interface AutoRotation {
  readonly key: string;
  readonly version: number;
  /** The version that was current before, if any. */
  readonly previousVersion: number | null;
  readonly reason: 'schedule' | 'usage-limit';
}

/** What the timers need from the manager; the snapshot and the queue stay the manager's. */
export interface TimerContext {
  clock: Clock;
  log: Logger;
  retry: RetryOptions;
  onRotated: ((event: AutoRotation) => void) | undefined;
  /** The keys of the current snapshot. */
  keys(): ReadonlyMap<string, KeyEntry>;
  /** Swap in a snapshot of exactly these keys. */
  publish(keys: ReadonlyMap<string, KeyEntry>): void;
  /** Run a management step in the manager's queue, one at a time with the others. */
  run<T>(task: () => Promise<T>): Promise<T>;
  /** Add the version `plan` makes (inside the queue); null when another process rotated first. */
  addVersion(name: string, plan: Planner): Promise<number | null>;
  /** The fleet lease's tenure signal, or null when another process holds the lease; undefined: no lease (KeyManagerOptions.fleetWork). */
  fleetWork: (() => AbortSignal | null) | undefined;
}

/**
 * A process without the fleet lease looks again this long after a due
 * rotation, in case the holder has died and it has taken the lease meanwhile;
 * normally the holder's new version arrives first (refresh) and moves the
 * due date on.
 */
const FOLLOWER_RECHECK_MS = 5_000;

export class KeyTimers {
  readonly #c: TimerContext;
  readonly #scheduler: WakeScheduler;
  /** Keys whose scheduled rotation failed: attempts in a row and when to try again. */
  readonly #failing = new Map<string, { attempts: number; at: number }>();
  /** Keys whose scheduled rotation was due while another process held the fleet lease: when to look again. */
  readonly #deferred = new Map<string, number>();

  constructor(context: TimerContext) {
    this.#c = context;
    this.#scheduler = new WakeScheduler(context.clock, (names) => this.#onDue(names));
  }

  /** Set the key's next wake-up: rotation, retry, epoch change or material to drop, whichever is first. */
  plan(name: string): void {
    const e = this.#c.keys().get(name);
    if (e === undefined || e.disabled) {
      this.#scheduler.set(name, null);
      return;
    }
    const now = this.#c.clock.now();
    let at = Infinity;
    if (e.derived !== null) at = nextEpochChange(e.derived, e.policy, now);
    else {
      const s = planScheduled(e.versions, e.policy, now);
      if (s !== null) at = Math.max(s.due, this.#failing.get(name)?.at ?? -Infinity, this.#deferred.get(name) ?? -Infinity);
      for (const v of e.versions) {
        if (v.material === null) continue;
        const until = inboundUntil(v, e.policy);
        if (until > now && until < at) at = until;
      }
    }
    this.#scheduler.set(name, at === Infinity ? null : at);
  }

  /** At the rotateAt threshold, rotate — if the version is still the current one (another process may have rotated). */
  onThreshold(b: InvocationBudget): void {
    const { key, version } = b;
    this.#c.run(() => this.#c.addVersion(key, thresholdPlanner(key, version))).then(
      (v) => {
        if (v === null) return; // another process rotated first: its audit, not ours
        this.#c.log.info('key rotated at its encryption threshold', { key, version: v, reserved: b.reserved });
        this.#told({ key, version: v, previousVersion: version, reason: 'usage-limit' });
      },
      (err: unknown) => {
        b.rotationRequested = false; // asked again at the next reservation
        this.#c.log.warn('threshold rotation failed', { key, version, error: errorText(err) });
      },
    );
  }

  /** Cancel every wake-up; later plans are ignored. */
  close(): void {
    this.#scheduler.close();
  }

  #onDue(names: string[]): void {
    for (const name of names) {
      this.#c.run(() => this.#tick(name)).catch((err: unknown) => this.#c.log.error('key timer failed', { key: name, error: errorText(err) }));
    }
  }

  /** Timer work for one key: scheduled rotation if due, then bring the entry up to date with the clock. */
  async #tick(name: string): Promise<void> {
    const c = this.#c;
    const entry = c.keys().get(name);
    if (entry === undefined) return;
    const now = c.clock.now();
    if (!entry.disabled && entry.derived === null) {
      const s = planScheduled(entry.versions, entry.policy, now);
      const failing = this.#failing.get(name);
      const deferred = this.#deferred.get(name);
      const due = s !== null && s.due <= now && (failing === undefined || failing.at <= now) && (deferred === undefined || deferred <= now);
      // Scheduled rotation is fleet-wide work: only the lease holder does it.
      const fleet = due && c.fleetWork !== undefined ? c.fleetWork() : undefined;
      if (due && fleet === null) {
        this.#deferred.set(name, now + FOLLOWER_RECHECK_MS);
      } else if (due) {
        this.#deferred.delete(name);
        try {
          // A lease lost since (a pause, a clock jump) stops the work here, as a LeaseLostError.
          fleet?.throwIfAborted();
          // The newest version, not the current one: with prefetch the new version follows the newest.
          const previous = entry.versions.at(-1)?.version ?? null;
          const v = await c.addVersion(name, scheduledPlanner);
          this.#failing.delete(name);
          if (v !== null) this.#told({ key: name, version: v, previousVersion: previous, reason: 'schedule' });
        } catch (err) {
          if (err instanceof LeaseLostError) {
            // Not a failure to back off from: the new holder rotates; we look again as a follower.
            this.#deferred.set(name, c.clock.now() + FOLLOWER_RECHECK_MS);
            c.log.info('scheduled rotation left to the new holder of the fleet lease', { key: name });
            return this.plan(name);
          }
          const attempts = (failing?.attempts ?? 0) + 1;
          const at = c.clock.now() + backoffDelay(attempts, c.retry);
          this.#failing.set(name, { attempts, at });
          c.log.warn('scheduled rotation failed; the current version stays in use', { key: name, attempts, retryAt: at, error: errorText(err) });
        }
      }
    }
    const cur = c.keys().get(name);
    if (cur !== undefined) {
      const next = refreshEntry(cur, c.clock.now());
      if (next !== cur) c.publish(new Map(c.keys()).set(name, next));
    }
    this.plan(name);
  }

  /** Hand an automatic rotation to the listener; its failure must not fail the rotation, which is done. */
  #told(event: AutoRotation): void {
    const onRotated = this.#c.onRotated;
    if (onRotated === undefined) return;
    try {
      onRotated(event);
    } catch (err) {
      this.#c.log.error('rotation listener failed', { key: event.key, version: event.version, error: errorText(err) });
    }
  }
}
