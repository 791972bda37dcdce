/**
 * The data-key cache (design note 5): unwrapped data keys, found by a digest
 * of their wrapped form, unwrapped once however many requests want them at
 * the same moment, bounded, and zeroed when dropped.
 *
 *   acquire(id, unwrap) ──hit──▶ entry ──▶ lease (refs+1, uses+1, bytes+n)
 *            │ miss
 *            ▼
 *   flight for id? ──yes──▶ join its waiters              (coalesced)
 *            │ no
 *            ▼
 *   new flight: one unwrap() under a timeout ──ok──▶ insert entry, hand a lease to
 *            │                                       every waiter in order (a waiter
 *            │                                       the entry can no longer serve —
 *            │                                       uses or bytes spent — starts the
 *            │                                       next flight)
 *            └─ failed, thrown, timed out ──▶ every waiter rejected with that typed
 *                                             error; the flight is gone, the key retryable
 *
 * Identity. An entry is found by SHA-256 over (partition, KEK version,
 * wrapped key), never by plaintext. The partition is the trust domain: the
 * KEK's name. Two KEKs never share an entry even for equal bytes, and
 * dropping a KEK version drops exactly its partition's entries of that
 * version.
 *
 * Lifetime of the key bytes (as the Data Manager does for nodes):
 *
 *   entry ──dropped (capacity, age, uses, bytes, KEK, close)──▶ out of the map
 *     refs > 0 ──▶ zeroed when the last lease is released
 *     refs = 0 ──▶ zeroed at once
 *
 * so an eviction racing a request that holds the key never pulls the bytes
 * from under it, and no key outlives its last user.
 *
 * Bounds: `capacity` entries (least recently used dropped first); `maxAgeMs`
 * from insertion (a use does not extend it); `maxUses` uses and `maxBytes`
 * bytes processed per entry, counted in BigInt so no count is capped at
 * 2^53. The use that reaches a bound is served and the entry is dropped after
 * it: the next request unwraps again. A late result of an unwrap that timed
 * out is zeroed and discarded.
 */
import { createHash } from 'node:crypto';
import { CryptodError, InternalError, KekTimeoutError, ShuttingDownError, toCryptodError } from '../protocol/errors.js';

export const EVICTION_REASONS = ['capacity', 'age', 'uses', 'bytes', 'kek', 'closed'] as const;
export type EvictionReason = (typeof EVICTION_REASONS)[number];

export interface DataKeyCacheOptions {
  /** Most entries held; the least recently used is dropped beyond it. */
  capacity: number;
  /** An entry is dropped this long after insertion, however often it is used. */
  maxAgeMs: number;
  /** Uses one entry serves before it is dropped (the next use unwraps again). */
  maxUses: bigint;
  /** Bytes one entry may process before it is dropped. */
  maxBytes: bigint;
  /** An unwrap that has not settled by then fails every waiter with CRYPTOD_ERR_KEK_TIMEOUT. */
  unwrapTimeoutMs: number;
  /** How often expired entries are swept (an unref'd timer); 0: no timer (expiry is still checked on every lookup). */
  sweepIntervalMs?: number;
  /** The clock of ages (tests inject one; src/keys/clock.ts ManualClock fits). */
  clock?: { now(): number };
}

/** What identifies one cache entry: the trust domain (the KEK's name), its version, and the wrapped key. */
export interface CacheKey {
  readonly partition: string;
  readonly kekVersion: number;
  readonly wrapped: Uint8Array;
}

export interface DataKeyCacheStats {
  hits: number;
  misses: number;
  unwraps: number;
  /** Requests that joined an unwrap already in flight instead of starting one. */
  coalesced: number;
  evictions: Record<EvictionReason, number>;
  /** Entries held. */
  size: number;
  /** Key bytes held (entries still in use after eviction included). */
  bytes: number;
  /** Unwraps in flight (each holds one timeout timer). */
  inflight: number;
  /** Dropped entries whose bytes wait for their last lease. */
  draining: number;
}

/** The key of one use; `key` is valid until dispose. */
export interface DataKeyLease extends Disposable {
  readonly key: Buffer;
  /** Whether this use was served from the cache (no unwrap started or joined). */
  readonly hit: boolean;
}

class Entry {
  refs = 0;
  uses = 0n;
  bytes = 0n;
  dropped = false;
  zeroed = false;
  constructor(
    readonly id: string,
    readonly partition: string,
    readonly kekVersion: number,
    readonly key: Buffer,
    readonly insertedAt: number,
  ) {}
}

interface Waiter {
  readonly bytes: bigint;
  readonly resolve: (lease: DataKeyLease) => void;
  readonly reject: (err: CryptodError) => void;
}

interface Flight {
  readonly key: CacheKey;
  readonly unwrap: () => Promise<Buffer>;
  readonly waiters: Waiter[];
  timer: NodeJS.Timeout | null;
}

export class DataKeyCache {
  readonly #o: Required<Omit<DataKeyCacheOptions, 'clock' | 'sweepIntervalMs'>>;
  readonly #clock: { now(): number };
  /** Insertion order is recency order: a hit moves its entry to the end. */
  readonly #entries = new Map<string, Entry>();
  readonly #flights = new Map<string, Flight>();
  /** Dropped entries still leased: their bytes are zeroed by the last release. */
  readonly #draining = new Set<Entry>();
  readonly #sweep: NodeJS.Timeout | null;
  readonly #stats = { hits: 0, misses: 0, unwraps: 0, coalesced: 0 };
  readonly #evictions: Record<EvictionReason, number> = { capacity: 0, age: 0, uses: 0, bytes: 0, kek: 0, closed: 0 };
  #bytes = 0;
  #closed = false;

  constructor(options: DataKeyCacheOptions) {
    const { capacity, maxAgeMs, maxUses, maxBytes, unwrapTimeoutMs } = options;
    if (!Number.isSafeInteger(capacity) || capacity < 0) throw new InternalError(`cache capacity must be an integer ≥ 0, got ${capacity}`);
    if (!Number.isSafeInteger(maxAgeMs) || maxAgeMs < 1) throw new InternalError(`cache maxAgeMs must be an integer ≥ 1, got ${maxAgeMs}`);
    if (typeof maxUses !== 'bigint' || maxUses < 1n) throw new InternalError('cache maxUses must be a bigint ≥ 1');
    if (typeof maxBytes !== 'bigint' || maxBytes < 1n) throw new InternalError('cache maxBytes must be a bigint ≥ 1');
    if (!Number.isSafeInteger(unwrapTimeoutMs) || unwrapTimeoutMs < 1) throw new InternalError(`unwrapTimeoutMs must be an integer ≥ 1, got ${unwrapTimeoutMs}`);
    this.#o = { capacity, maxAgeMs, maxUses, maxBytes, unwrapTimeoutMs };
    this.#clock = options.clock ?? { now: () => Date.now() };
    const every = options.sweepIntervalMs ?? Math.min(60_000, Math.max(1_000, Math.floor(maxAgeMs / 4)));
    this.#sweep = every > 0 ? setInterval(() => this.sweep(), every) : null;
    this.#sweep?.unref();
  }

  /** The entry id of a cache key: SHA-256 of its length-prefixed fields (hex). */
  static idOf(k: CacheKey): string {
    const p = Buffer.from(k.partition, 'utf8');
    const head = Buffer.alloc(8);
    head.writeUInt32BE(p.length, 0);
    head.writeUInt32BE(k.kekVersion, 4);
    return createHash('sha256').update(head).update(p).update(k.wrapped).digest('hex');
  }

  /**
   * The data key of `k` for one use processing `bytes` bytes: from the cache,
   * or by joining or starting the one unwrap of it. `unwrap` returns fresh
   * memory the cache then owns (and zeroes); it is called at most once per
   * flight. Rejects with the unwrap's typed error, CRYPTOD_ERR_KEK_TIMEOUT,
   * or CRYPTOD_ERR_SHUTTING_DOWN once closed.
   *
   * @example
   *   using lease = await cache.acquire({ partition: 'tenants', kekVersion: 2, wrapped }, () => kek.unwrap(blob, aad), 1024n);
   *   encrypt(lease.key, data);
   */
  acquire(k: CacheKey, unwrap: () => Promise<Buffer>, bytes: bigint = 0n): Promise<DataKeyLease> {
    if (this.#closed) return Promise.reject(new ShuttingDownError('the data-key cache is closed'));
    const id = DataKeyCache.idOf(k);
    const e = this.#live(id);
    if (e !== undefined && this.#fits(e, bytes)) {
      this.#stats.hits++;
      this.#entries.delete(id);
      this.#entries.set(id, e);
      return Promise.resolve(this.#lease(e, bytes, true));
    }
    if (e !== undefined) this.#drop(e, e.uses >= this.#o.maxUses ? 'uses' : 'bytes');
    this.#stats.misses++;
    return new Promise<DataKeyLease>((resolve, reject) => {
      const waiter: Waiter = { bytes, resolve, reject };
      const flight = this.#flights.get(id);
      if (flight !== undefined) {
        this.#stats.coalesced++;
        flight.waiters.push(waiter);
        return;
      }
      this.#start(id, { key: k, unwrap, waiters: [waiter], timer: null });
    });
  }

  /**
   * Put a key this daemon already holds under another wrapped form (a
   * rewrap's result), so the next request for it needs no unwrap. Takes
   * ownership of `key`; ignored (and zeroed) if the entry exists or is in flight.
   */
  insert(k: CacheKey, key: Buffer): void {
    const id = DataKeyCache.idOf(k);
    if (this.#closed || this.#o.capacity === 0 || this.#live(id) !== undefined || this.#flights.has(id)) {
      key.fill(0);
      return;
    }
    this.#add(new Entry(id, k.partition, k.kekVersion, key, this.#clock.now()));
  }

  /** Drop every entry of `partition` whose KEK version `keep` refuses (a version destroyed, disabled or retired; the KEK gone). */
  evictKek(partition: string, keep: (kekVersion: number) => boolean): number {
    let n = 0;
    for (const e of [...this.#entries.values()]) {
      if (e.partition === partition && !keep(e.kekVersion)) {
        this.#drop(e, 'kek');
        n++;
      }
    }
    return n;
  }

  /** The partitions holding entries (the daemon checks each against its KEKs on every key change). */
  partitions(): Set<string> {
    const out = new Set<string>();
    for (const e of this.#entries.values()) out.add(e.partition);
    return out;
  }

  /** Drop the entries past their age. Runs on the sweep timer; tests call it with an injected clock. */
  sweep(): number {
    const now = this.#clock.now();
    let n = 0;
    for (const e of [...this.#entries.values()]) {
      if (now - e.insertedAt >= this.#o.maxAgeMs) {
        this.#drop(e, 'age');
        n++;
      }
    }
    return n;
  }

  stats(): DataKeyCacheStats {
    return {
      ...this.#stats,
      evictions: { ...this.#evictions },
      size: this.#entries.size,
      bytes: this.#bytes,
      inflight: this.#flights.size,
      draining: this.#draining.size,
    };
  }

  /** Fail every waiter (CRYPTOD_ERR_SHUTTING_DOWN), drop every entry, stop the sweep. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#sweep !== null) clearInterval(this.#sweep);
    const err = new ShuttingDownError('the data-key cache closed while the key was being unwrapped');
    for (const [id, f] of [...this.#flights]) this.#fail(id, f, err);
    for (const e of [...this.#entries.values()]) this.#drop(e, 'closed');
  }

  // ── internals ───────────────────────────────────────────────────────────

  /** The entry of `id` if it is within its age (an expired one is dropped here). */
  #live(id: string): Entry | undefined {
    const e = this.#entries.get(id);
    if (e === undefined) return undefined;
    if (this.#clock.now() - e.insertedAt >= this.#o.maxAgeMs) {
      this.#drop(e, 'age');
      return undefined;
    }
    return e;
  }

  /** Whether `e` may serve one more use of `bytes` bytes (a fresh entry always serves its first). */
  #fits(e: Entry, bytes: bigint): boolean {
    if (e.uses === 0n) return true;
    return e.uses < this.#o.maxUses && e.bytes + bytes <= this.#o.maxBytes;
  }

  #start(id: string, f: Flight): void {
    this.#flights.set(id, f);
    this.#stats.unwraps++;
    let settled = false;
    f.timer = setTimeout(() => {
      settled = true;
      this.#fail(id, f, new KekTimeoutError(`unwrapping the data key took longer than ${this.#o.unwrapTimeoutMs} ms; the KEK provider may be slow or unavailable, try again`, {
        detail: { kek: f.key.partition, kekVersion: f.key.kekVersion, timeoutMs: this.#o.unwrapTimeoutMs },
      }));
    }, this.#o.unwrapTimeoutMs);
    let pending: Promise<Buffer>;
    try {
      pending = f.unwrap();
    } catch (err) {
      pending = Promise.reject(err);
    }
    pending.then(
      (key) => {
        if (settled) {
          key.fill(0); // timed out or closed meanwhile: nobody waits for it
          return;
        }
        settled = true;
        this.#succeed(id, f, key);
      },
      (err: unknown) => {
        if (settled) return;
        settled = true;
        this.#fail(id, f, toCryptodError(err));
      },
    );
  }

  #succeed(id: string, f: Flight, key: Buffer): void {
    this.#end(id, f);
    const e = new Entry(id, f.key.partition, f.key.kekVersion, key, this.#clock.now());
    if (this.#o.capacity > 0) this.#add(e);
    else {
      // No room at all: the key serves this flight's waiters and is zeroed after them.
      this.#bytes += key.length;
      e.dropped = true;
      this.#draining.add(e);
    }
    // Every lease is taken now, synchronously: nothing can drop the entry
    // between the unwrap ending and a waiter holding the key.
    let i = 0;
    for (; i < f.waiters.length; i++) {
      const w = f.waiters[i]!;
      if (e.uses > 0n && !this.#fits(e, w.bytes)) break;
      w.resolve(this.#lease(e, w.bytes, false));
    }
    if (e.dropped && e.refs === 0) this.#zero(e);
    const rest = f.waiters.slice(i);
    if (rest.length > 0) {
      // The entry is spent: the others are served by the next unwrap.
      if (!e.dropped) this.#drop(e, e.uses >= this.#o.maxUses ? 'uses' : 'bytes');
      if (this.#closed) {
        for (const w of rest) w.reject(new ShuttingDownError('the data-key cache is closed'));
        return;
      }
      this.#start(id, { key: f.key, unwrap: f.unwrap, waiters: rest, timer: null });
    }
  }

  #fail(id: string, f: Flight, err: CryptodError): void {
    this.#end(id, f);
    for (const w of f.waiters) w.reject(err);
  }

  /** The flight is over: nothing of it stays in flight. */
  #end(id: string, f: Flight): void {
    if (f.timer !== null) clearTimeout(f.timer);
    f.timer = null;
    if (this.#flights.get(id) === f) this.#flights.delete(id);
  }

  #add(e: Entry): void {
    this.#entries.set(e.id, e);
    this.#bytes += e.key.length;
    while (this.#entries.size > this.#o.capacity) {
      const oldest = this.#entries.values().next().value as Entry;
      this.#drop(oldest, 'capacity');
    }
  }

  #lease(e: Entry, bytes: bigint, hit: boolean): DataKeyLease {
    e.refs++;
    e.uses++;
    e.bytes += bytes;
    if (!e.dropped && (e.uses >= this.#o.maxUses || e.bytes >= this.#o.maxBytes)) this.#drop(e, e.uses >= this.#o.maxUses ? 'uses' : 'bytes');
    let released = false;
    return {
      key: e.key,
      hit,
      [Symbol.dispose]: () => {
        if (released) return;
        released = true;
        e.refs--;
        if (e.dropped && e.refs === 0) this.#zero(e);
      },
    };
  }

  #drop(e: Entry, why: EvictionReason): void {
    if (e.dropped) return;
    e.dropped = true;
    if (this.#entries.get(e.id) === e) this.#entries.delete(e.id);
    this.#evictions[why]++;
    if (e.refs === 0) this.#zero(e);
    else this.#draining.add(e);
  }

  #zero(e: Entry): void {
    if (e.zeroed) return;
    e.zeroed = true;
    e.key.fill(0);
    this.#bytes -= e.key.length;
    this.#draining.delete(e);
  }
}
