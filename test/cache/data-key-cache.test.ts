/**
 * The data-key cache (src/cache/data-key-cache.ts) on its own: single flight,
 * failures and timeouts that leave nothing in flight, the four bounds with an
 * injected clock, eviction racing a use, KEK eviction, and zeroing.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { DataKeyCache, type CacheKey, type DataKeyCacheOptions } from '../../src/cache/data-key-cache.js';
import { ManualClock } from '../../src/keys/clock.js';
import { DecryptError, KekTimeoutError, ShuttingDownError } from '../../src/protocol/errors.js';

function cacheOf(o: Partial<DataKeyCacheOptions> = {}): DataKeyCache {
  return new DataKeyCache({ capacity: 100, maxAgeMs: 60_000, maxUses: 1_000_000n, maxBytes: 2n ** 64n, unwrapTimeoutMs: 5_000, sweepIntervalMs: 0, ...o });
}

function keyOf(partition = 'tenants', kekVersion = 1): CacheKey {
  return { partition, kekVersion, wrapped: randomBytes(48) };
}

/** An unwrap that counts its calls and hands out a fresh copy of `plain`; the copies are kept to check zeroing. */
function provider(plain: Buffer, delay: () => Promise<void> = () => Promise.resolve()) {
  const made: Buffer[] = [];
  let calls = 0;
  return {
    made,
    get calls() {
      return calls;
    },
    unwrap: async (): Promise<Buffer> => {
      calls++;
      await delay();
      const out = Buffer.alloc(plain.length);
      plain.copy(out);
      made.push(out);
      return out;
    },
  };
}

const zeroed = (b: Buffer): boolean => b.every((x) => x === 0);

test('1,000 concurrent requests on one cold wrapped key start exactly one unwrap and all get the key', async () => {
  const cache = cacheOf();
  const plain = randomBytes(32);
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const p = provider(plain, () => gate);
  const k = keyOf();
  const pending = Array.from({ length: 1000 }, () => cache.acquire(k, p.unwrap, 1024n));
  assert.equal(cache.stats().inflight, 1);
  release();
  const leases = await Promise.all(pending);
  assert.equal(p.calls, 1);
  for (const l of leases) assert.ok(l.key.equals(plain));
  const s = cache.stats();
  assert.equal(s.unwraps, 1);
  assert.equal(s.misses, 1000);
  assert.equal(s.coalesced, 999);
  assert.equal(s.inflight, 0);
  for (const l of leases) l[Symbol.dispose]();
  using again = await cache.acquire(k, p.unwrap);
  assert.equal(again.hit, true);
  assert.equal(p.calls, 1);
  cache.close();
});

test('a failing unwrap rejects every waiter with its typed error and leaves the key retryable', async () => {
  const cache = cacheOf();
  const k = keyOf();
  let fail = true;
  let calls = 0;
  const unwrap = async (): Promise<Buffer> => {
    calls++;
    await new Promise((r) => setImmediate(r));
    if (fail) throw new DecryptError('cannot unwrap: not authentic');
    return Buffer.alloc(32, 7);
  };
  const results = await Promise.allSettled(Array.from({ length: 50 }, () => cache.acquire(k, unwrap)));
  assert.equal(calls, 1);
  for (const r of results) {
    assert.equal(r.status, 'rejected');
    assert.ok((r as PromiseRejectedResult).reason instanceof DecryptError);
  }
  assert.equal(cache.stats().inflight, 0);
  assert.equal(cache.stats().size, 0);
  fail = false;
  using l = await cache.acquire(k, unwrap);
  assert.equal(calls, 2);
  assert.equal(l.key[0], 7);
  cache.close();
});

test('an unwrap that throws synchronously, or throws a foreign error, rejects with a typed error', async () => {
  const cache = cacheOf();
  const k = keyOf();
  await assert.rejects(cache.acquire(k, () => {
    throw new Error('token exploded with secret 1234');
  }), (e: Error & { code?: string }) => e.code === 'CRYPTOD_ERR_INTERNAL' && !e.message.includes('1234'));
  assert.equal(cache.stats().inflight, 0);
  using l = await cache.acquire(k, async () => Buffer.alloc(32, 1));
  assert.equal(l.key[0], 1);
  cache.close();
});

test('a hanging unwrap times out every waiter with KEK_TIMEOUT; nothing leaks, a late result is zeroed, the retry works', async () => {
  const cache = cacheOf({ unwrapTimeoutMs: 50 });
  const k = keyOf();
  let finish!: (b: Buffer) => void;
  const late = Buffer.alloc(32, 9);
  const hang = (): Promise<Buffer> => new Promise<Buffer>((r) => (finish = r));
  const results = await Promise.allSettled(Array.from({ length: 20 }, () => cache.acquire(k, hang)));
  for (const r of results) {
    assert.equal(r.status, 'rejected');
    const err = (r as PromiseRejectedResult).reason as InstanceType<typeof KekTimeoutError>;
    assert.ok(err instanceof KekTimeoutError);
    assert.equal(err.detail?.timeoutMs, 50);
  }
  const s = cache.stats();
  assert.deepEqual([s.size, s.inflight, s.bytes, s.draining], [0, 0, 0, 0]);
  finish(late);
  await new Promise((r) => setImmediate(r));
  assert.ok(zeroed(late), 'a result after the deadline is zeroed');
  assert.equal(cache.stats().size, 0);
  using l = await cache.acquire(k, async () => Buffer.alloc(32, 3));
  assert.equal(l.key[0], 3);
  cache.close();
});

test('maximum age counts from insertion: use does not extend it; the sweep drops and zeroes', async () => {
  const clock = new ManualClock(1_000);
  const cache = cacheOf({ clock, maxAgeMs: 1_000 });
  const p = provider(randomBytes(32));
  const k = keyOf();
  (await cache.acquire(k, p.unwrap))[Symbol.dispose]();
  for (let i = 0; i < 9; i++) {
    clock.advance(100);
    (await cache.acquire(k, p.unwrap))[Symbol.dispose]();
  }
  assert.equal(p.calls, 1);
  clock.advance(100); // 1,000 ms after insertion, however recently used
  (await cache.acquire(k, p.unwrap))[Symbol.dispose]();
  assert.equal(p.calls, 2);
  assert.ok(zeroed(p.made[0]!));
  assert.equal(cache.stats().evictions.age, 1);
  clock.advance(1_000);
  assert.equal(cache.sweep(), 1);
  assert.ok(zeroed(p.made[1]!));
  assert.deepEqual([cache.stats().size, cache.stats().bytes], [0, 0]);
  cache.close();
});

test('maximum uses: the use that reaches it is served, the next one unwraps again', async () => {
  const cache = cacheOf({ maxUses: 3n });
  const p = provider(randomBytes(32));
  const k = keyOf();
  for (let i = 0; i < 7; i++) (await cache.acquire(k, p.unwrap))[Symbol.dispose]();
  assert.equal(p.calls, 3); // uses 1-3, 4-6, 7
  assert.equal(cache.stats().evictions.uses, 2);
  assert.ok(zeroed(p.made[0]!) && zeroed(p.made[1]!));
  cache.close();
});

test('maximum uses holds inside one flight too: waiters past it are served by the next unwrap', async () => {
  const cache = cacheOf({ maxUses: 10n });
  const p = provider(randomBytes(32), () => new Promise((r) => setImmediate(r)));
  const k = keyOf();
  const leases = await Promise.all(Array.from({ length: 35 }, () => cache.acquire(k, p.unwrap)));
  assert.equal(p.calls, 4);
  for (const l of leases) l[Symbol.dispose]();
  cache.close();
});

test('maximum bytes is a BigInt: counts past 2^53 are exact', async () => {
  const max = 2n ** 60n;
  const cache = cacheOf({ maxBytes: max });
  const p = provider(randomBytes(32));
  const k = keyOf();
  const step = 2n ** 58n + 1n;
  for (let i = 0; i < 3; i++) (await cache.acquire(k, p.unwrap, step))[Symbol.dispose]();
  assert.equal(p.calls, 1); // 3·(2^58+1) < 2^60
  (await cache.acquire(k, p.unwrap, step))[Symbol.dispose](); // would pass 2^60 by 4 bytes: a new unwrap
  assert.equal(p.calls, 2);
  assert.equal(cache.stats().evictions.bytes, 1);
  // A use larger than the bound is still served once, by a fresh key.
  (await cache.acquire(keyOf('x'), p.unwrap, max * 2n))[Symbol.dispose]();
  cache.close();
});

test('capacity: the least recently used entry is dropped and zeroed', async () => {
  const cache = cacheOf({ capacity: 2 });
  const p = provider(randomBytes(32));
  const [a, b, c] = [keyOf(), keyOf(), keyOf()];
  (await cache.acquire(a, p.unwrap))[Symbol.dispose]();
  (await cache.acquire(b, p.unwrap))[Symbol.dispose]();
  (await cache.acquire(a, p.unwrap))[Symbol.dispose](); // a is now the most recent
  (await cache.acquire(c, p.unwrap))[Symbol.dispose](); // drops b
  assert.ok(zeroed(p.made[1]!));
  assert.ok(!zeroed(p.made[0]!));
  assert.equal(cache.stats().size, 2);
  assert.equal(cache.stats().evictions.capacity, 1);
  (await cache.acquire(a, p.unwrap))[Symbol.dispose]();
  assert.equal(p.calls, 3);
  cache.close();
});

test('an eviction racing a use: the key stays intact until the last lease is released, then it is zeroed', async () => {
  const clock = new ManualClock(0);
  const cache = cacheOf({ clock, maxAgeMs: 100, capacity: 1 });
  const plain = randomBytes(32);
  const p = provider(plain);
  const k = keyOf();
  const first = await cache.acquire(k, p.unwrap);
  const second = await cache.acquire(k, p.unwrap);
  clock.advance(100);
  cache.sweep();
  assert.equal(cache.stats().size, 0);
  assert.equal(cache.stats().draining, 1);
  assert.ok(first.key.equals(plain), 'still in use: not zeroed');
  (await cache.acquire(keyOf(), p.unwrap))[Symbol.dispose](); // capacity pressure meanwhile
  first[Symbol.dispose]();
  first[Symbol.dispose](); // twice is harmless
  assert.ok(second.key.equals(plain));
  second[Symbol.dispose]();
  assert.ok(zeroed(p.made[0]!));
  assert.equal(cache.stats().draining, 0);
  cache.close();
});

test('evictKek drops exactly the entries of the versions it refuses in that partition, at once', async () => {
  const cache = cacheOf();
  const p = provider(randomBytes(32));
  const v1 = keyOf('tenants', 1);
  const v2 = keyOf('tenants', 2);
  const other = keyOf('orders', 1);
  for (const k of [v1, v2, other]) (await cache.acquire(k, p.unwrap))[Symbol.dispose]();
  const held = await cache.acquire(v1, p.unwrap);
  assert.equal(cache.evictKek('tenants', (v) => v !== 1), 1);
  assert.ok(!zeroed(held.key));
  held[Symbol.dispose]();
  assert.ok(zeroed(p.made[0]!));
  assert.ok(!zeroed(p.made[1]!) && !zeroed(p.made[2]!));
  assert.equal(cache.stats().evictions.kek, 1);
  cache.close();
});

test('equal wrapped bytes under two KEKs or two versions never share an entry', async () => {
  const cache = cacheOf();
  const wrapped = randomBytes(48);
  using a = await cache.acquire({ partition: 'a', kekVersion: 1, wrapped }, async () => Buffer.alloc(32, 1));
  using b = await cache.acquire({ partition: 'b', kekVersion: 1, wrapped }, async () => Buffer.alloc(32, 2));
  using c = await cache.acquire({ partition: 'a', kekVersion: 2, wrapped }, async () => Buffer.alloc(32, 3));
  assert.deepEqual([a.key[0], b.key[0], c.key[0]], [1, 2, 3]);
  cache.close();
});

test('close fails the waiters, zeroes every key, and refuses later requests', async () => {
  const cache = cacheOf();
  const p = provider(randomBytes(32));
  (await cache.acquire(keyOf(), p.unwrap))[Symbol.dispose]();
  const waiting = cache.acquire(keyOf(), () => new Promise<Buffer>(() => undefined));
  cache.close();
  await assert.rejects(waiting, ShuttingDownError);
  await assert.rejects(cache.acquire(keyOf(), p.unwrap), ShuttingDownError);
  assert.ok(zeroed(p.made[0]!));
  const s = cache.stats();
  assert.deepEqual([s.size, s.bytes, s.inflight], [0, 0, 0]);
});

test('capacity 0 caches nothing but still coalesces and zeroes after use', async () => {
  const cache = cacheOf({ capacity: 0 });
  const p = provider(randomBytes(32), () => new Promise((r) => setImmediate(r)));
  const k = keyOf();
  const leases = await Promise.all([cache.acquire(k, p.unwrap), cache.acquire(k, p.unwrap)]);
  assert.equal(p.calls, 1);
  for (const l of leases) l[Symbol.dispose]();
  assert.ok(zeroed(p.made[0]!));
  assert.equal(cache.stats().bytes, 0);
  cache.close();
});
