/**
 * Keeping this process's snapshot in step with the keystore, which other
 * processes write too (design note 3): read keys back, rebuild their entries
 * (loader.ts) and publish them in one swap.
 *
 *   reload(names)  ─▶ read records (or take a write's own) ─▶ buildEntry each ─▶ reserveFirst ─▶ publish ─▶ plan timers
 *   reloadAll()    ─▶ every stored name, and every held name the store no longer has
 *   refresh()      ─▶ only what changed since the generation last seen
 *   soon()         ─▶ one shared refresh for every miss until it starts, MIN_REFRESH_GAP_MS apart
 *
 * Everything but soon() runs inside the manager's queue; soon() goes through
 * the manager's own refresh(), so it queues like any other management step.
 * A failed build destroys the material it unwrapped and publishes nothing.
 */
import type { KekProvider } from '../kek/provider.js';
import type { TokenKeys } from '../kek/token-keys.js';
import type { Logger } from '../observe/logger.js';
import type { Keystore, KeystoreReader, KeyVersionRecord, ManagedKeyRecord } from '../store/keystore.js';
import type { BudgetOptions, InvocationBudget } from './budget.js';
import type { Clock } from './clock.js';
import { buildEntry, type BuiltEntry, type FreshVersion } from './loader.js';
import { errorText, type Reservations } from './reservations.js';
import type { KeyEntry } from './snapshot.js';

/** A key version (or a derived key's master secret, version 1) whose stored material did not load. */
export interface DamagedVersion {
  readonly key: string;
  readonly version: number;
  readonly reason: string;
}

/** Material just generated for versions this process wrote, by key and version. */
export type FreshMap = Map<string, Map<number, FreshVersion>>;

/**
 * On-demand refreshes (a request named a key or version this process does not
 * hold) start at least this far apart, so requests naming made-up keys cost
 * at most one keystore query per interval, not one each.
 */
export const MIN_REFRESH_GAP_MS = 25;

/** What the refresher needs from the manager; the snapshot itself stays the manager's. */
export interface RefresherContext {
  store: Keystore;
  kek: KekProvider;
  tokens: TokenKeys | undefined;
  clock: Clock;
  log: Logger;
  budget: BudgetOptions;
  /** Where the keystore is (its file), named in damage reports. */
  storeFile: string;
  onDamaged: ((event: DamagedVersion) => void) | undefined;
  reservations: Reservations;
  /** The keys of the current snapshot. */
  keys(): ReadonlyMap<string, KeyEntry>;
  /** Swap in a snapshot of exactly these keys. */
  publish(keys: ReadonlyMap<string, KeyEntry>): void;
  /** Set the key's next timer wake-up from its new entry. */
  plan(name: string): void;
  /** The manager's public, queued refresh (the one soon() shares). */
  refresh(): Promise<unknown>;
}

/** A key as stored: its record (undefined when there is none) and its versions. */
export interface StoredKey {
  readonly name: string;
  readonly record: ManagedKeyRecord | undefined;
  readonly versions: KeyVersionRecord[];
}

/** `names` as `r` sees them (inside a write transaction: with its own writes). */
export async function readBack(r: KeystoreReader, names: readonly string[]): Promise<StoredKey[]> {
  const out: StoredKey[] = [];
  for (const name of names) out.push({ name, record: await r.getKey(name), versions: await r.getVersions(name) });
  return out;
}

export class Refresher {
  readonly #c: RefresherContext;
  /** The keystore generation this process has caught up with. */
  #generation = 0;
  /** Refreshes run and failed since start (metrics: cryptod_keystore_refreshes_total). */
  #refreshes = 0;
  #refreshFailures = 0;
  /** The on-demand refresh not started yet, which every miss until it starts joins. */
  #nextRefresh: Promise<void> | null = null;
  #lastRefreshStart = -Infinity;

  /** The keystore generation this process has caught up with (fleet membership reports it: src/store/members.ts). */
  get generation(): number {
    return this.#generation;
  }

  constructor(context: RefresherContext) {
    this.#c = context;
  }

  /** Re-read every key the keystore holds, and drop those it no longer holds. */
  async reloadAll(): Promise<void> {
    const { generation, names } = await this.#c.store.read(async (r) => ({ generation: await r.generation(), names: (await r.listKeys()).map((k) => k.name) }));
    const gone = [...this.#c.keys().keys()].filter((n) => !names.includes(n));
    await this.reload([...names, ...gone]);
    this.#generation = Math.max(this.#generation, generation);
  }

  /**
   * Read `names` back from the keystore, rebuild their entries and swap.
   * `stored`: the rows as a write of this process committed them (readBack
   * in its transaction), so that loading what it wrote needs no second trip
   * to the store, which may have gone away since the COMMIT.
   */
  async reload(names: readonly string[], fresh: FreshMap = new Map(), stored?: readonly StoredKey[]): Promise<void> {
    const c = this.#c;
    const rows = stored ?? await c.store.read((r) => readBack(r, names));
    const now = c.clock.now();
    const current = c.keys();
    const ctx = {
      kek: c.kek, tokens: c.tokens, now, budget: c.budget, onBudgetLow: (b: InvocationBudget) => c.reservations.onLow(b),
      storeFile: c.storeFile, onDamaged: (key: string, version: number, reason: string) => this.#damaged({ key, version, reason }),
    };
    const built: Array<{ name: string; b: BuiltEntry | null }> = [];
    try {
      for (const row of rows) {
        built.push({ name: row.name, b: row.record === undefined ? null : await buildEntry(ctx, row.record, row.versions, current.get(row.name), fresh.get(row.name)) });
      }
    } catch (err) {
      for (const { b } of built) for (const m of b?.created ?? []) m.destroy();
      throw err;
    }
    // Reserve before publishing, so that no reader meets a new AES-GCM
    // version with an empty budget (readers use the old snapshot meanwhile).
    await c.reservations.reserveFirst(built.flatMap(({ b }) => b?.reserve ?? []));
    const next = new Map(c.keys());
    for (const { name, b } of built) {
      if (b === null) next.delete(name);
      else next.set(name, b.entry);
    }
    c.publish(next);
    for (const { name } of built) c.plan(name);
  }

  /**
   * Drop `names` from the snapshot without reading the store: a key replaced
   * as a whole (a forced restore) must not keep the material and budgets its
   * versions had before, which `reload` would reuse by version number.
   */
  forget(names: readonly string[]): void {
    const next = new Map(this.#c.keys());
    for (const n of names) next.delete(n);
    this.#c.publish(next);
  }

  /** Re-read exactly what other processes changed since the last refresh. Resolves to the names re-read. */
  async refresh(): Promise<string[]> {
    this.#refreshes++;
    try {
      return await this.#refreshOnce();
    } catch (err) {
      this.#refreshFailures++;
      throw err;
    }
  }

  /**
   * A catch-up whose changes the caller already read from the change log
   * (freshness.ts, SQLite): reload exactly `names` and move from `since` to
   * `generation`. Nothing to do when a refresh in between got that far; and
   * when this process is behind `since` (an earlier catch-up failed), the
   * change log is read from where it really is instead. `names` null: read
   * the change log now (a push that named nothing, or a log that no longer
   * reaches back: then everything is re-read).
   */
  async apply(target: { names: readonly string[] | null; since: number; generation: number }): Promise<string[]> {
    if (target.names === null || this.#generation < target.since) return this.refresh();
    if (this.#generation >= target.generation) return [];
    this.#refreshes++;
    try {
      if (target.names.length > 0) await this.reload(target.names);
    } catch (err) {
      this.#refreshFailures++;
      throw err;
    }
    this.#generation = Math.max(this.#generation, target.generation);
    return [...target.names];
  }

  /** The generation caught up with, and the refreshes run and failed so far. */
  stats(): { generation: number; refreshes: number; refreshFailures: number } {
    return { generation: this.#generation, refreshes: this.#refreshes, refreshFailures: this.#refreshFailures };
  }

  async #refreshOnce(): Promise<string[]> {
    const cs = await this.#c.store.changesSince(this.#generation);
    if (cs.truncated) {
      await this.reloadAll();
      return [...this.#c.keys().keys()];
    }
    if (cs.names.length > 0) await this.reload(cs.names);
    this.#generation = Math.max(this.#generation, cs.generation);
    return cs.names;
  }

  /** KeyManager.refreshSoon: a refresh that starts after this call, shared, and never rejecting. */
  soon(): Promise<void> {
    if (this.#nextRefresh !== null) return this.#nextRefresh;
    const wait = Math.max(0, this.#lastRefreshStart + MIN_REFRESH_GAP_MS - performance.now());
    const next = new Promise<void>((resolve) => setTimeout(resolve, wait)).then(() => {
      this.#nextRefresh = null;
      this.#lastRefreshStart = performance.now();
      return this.#c.refresh().then(
        () => undefined,
        (err: unknown) => this.#c.log.warn('keystore refresh failed; answering from the keys held', { error: errorText(err) }),
      );
    });
    this.#nextRefresh = next;
    return next;
  }

  #damaged(event: DamagedVersion): void {
    const c = this.#c;
    c.log.error('key version damaged: it is refused (CRYPTOD_ERR_KEY_DAMAGED), every other version and key is served', {
      key: event.key, version: event.version, file: c.storeFile, reason: event.reason,
    });
    try {
      c.onDamaged?.(event);
    } catch (err) {
      c.log.error('damage listener failed', { key: event.key, version: event.version, error: errorText(err) });
    }
  }
}
