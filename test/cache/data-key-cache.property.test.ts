/**
 * Model-based test of the data-key cache: random sequences of acquire (on a
 * few wrapped keys, with a few byte counts, some held open), release, clock
 * advance, sweep and KEK eviction, checked after every step against a model
 * that knows only the rules of src/cache/data-key-cache.ts:
 *
 *   hit(k)      ⇔ an entry for k exists, is younger than maxAge, has served
 *                 fewer than maxUses uses and fits the byte bound
 *   an entry    is dropped when it reaches maxUses or maxBytes, ages out,
 *                 falls off the LRU end, or its KEK version is evicted
 *   unwraps     = misses that found no entry (one flight each: unwraps settle at once here)
 *   zeroed(b)   ⇔ b's entry was dropped and no lease on it is held
 *
 * and that every key a lease shows is intact while the lease is held.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { DataKeyCache, type DataKeyLease } from '../../src/cache/data-key-cache.js';
import { ManualClock } from '../../src/keys/clock.js';

const NUM_RUNS = Number(process.env.CRYPTOD_PROPERTY_RUNS ?? 300);
const KEYS = 4;
const CAPACITY = 3;
const MAX_AGE = 100;
const MAX_USES = 3n;
const MAX_BYTES = 10n;

type Cmd =
  | { t: 'acquire'; k: number; bytes: number; hold: boolean }
  | { t: 'release'; i: number }
  | { t: 'advance'; ms: number }
  | { t: 'sweep' }
  | { t: 'evict'; version: number };

const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ t: fc.constant('acquire' as const), k: fc.nat(KEYS - 1), bytes: fc.nat(6), hold: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('release' as const), i: fc.nat(20) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('advance' as const), ms: fc.nat(60) }) },
  { weight: 1, arbitrary: fc.constant({ t: 'sweep' as const }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('evict' as const), version: fc.nat(1) }) },
);

interface ModelEntry {
  k: number;
  insertedAt: number;
  uses: bigint;
  bytes: bigint;
  buf: Buffer;
}

test('the cache behaves like its model under random operations', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(cmd, { maxLength: 60 }), async (cmds) => {
      const clock = new ManualClock(0);
      const cache = new DataKeyCache({ capacity: CAPACITY, maxAgeMs: MAX_AGE, maxUses: MAX_USES, maxBytes: MAX_BYTES, unwrapTimeoutMs: 10_000, sweepIntervalMs: 0, clock });
      // key k: version k % 2 of KEK "kek"; wrapped bytes differ per k
      const keyOf = (k: number) => ({ partition: 'kek', kekVersion: k % 2, wrapped: Buffer.from([k, 1, 2, 3]) });
      const model: ModelEntry[] = []; // LRU order: oldest first
      const dropped: Array<{ buf: Buffer; holders: number }> = [];
      const held: Array<{ lease: DataKeyLease; k: number; buf: Buffer; expect: number }> = [];
      let unwraps = 0;
      let serial = 0;
      const holdersOf = (buf: Buffer): number => held.filter((h) => h.buf === buf).length;
      const drop = (e: ModelEntry): void => {
        model.splice(model.indexOf(e), 1);
        dropped.push({ buf: e.buf, holders: 0 });
      };

      for (const c of cmds) {
        switch (c.t) {
          case 'acquire': {
            const now = clock.now();
            let e = model.find((x) => x.k === c.k);
            if (e !== undefined && now - e.insertedAt >= MAX_AGE) {
              drop(e);
              e = undefined;
            }
            const bytes = BigInt(c.bytes);
            if (e !== undefined && e.uses > 0n && !(e.uses < MAX_USES && e.bytes + bytes <= MAX_BYTES)) {
              drop(e);
              e = undefined;
            }
            const value = ++serial;
            let made: Buffer | null = null;
            const lease = await cache.acquire(keyOf(c.k), async () => {
              made = Buffer.alloc(8, 0);
              made.writeUInt32BE(value, 0);
              made[7] = 0xff;
              return made;
            }, bytes);
            if (e === undefined) {
              assert.ok(made !== null, 'a miss in the model is an unwrap in the cache');
              unwraps++;
              e = { k: c.k, insertedAt: now, uses: 0n, bytes: 0n, buf: made };
              model.push(e);
              while (model.length > CAPACITY) drop(model[0]!);
            } else {
              assert.equal(made, null, 'a hit in the model is a hit in the cache');
              model.splice(model.indexOf(e), 1);
              model.push(e);
            }
            assert.equal(lease.key, e.buf);
            e.uses++;
            e.bytes += bytes;
            if (model.includes(e) && (e.uses >= MAX_USES || e.bytes >= MAX_BYTES)) drop(e);
            const expect = lease.key.readUInt32BE(0);
            if (c.hold) held.push({ lease, k: c.k, buf: e.buf, expect });
            else lease[Symbol.dispose]();
            break;
          }
          case 'release': {
            if (held.length === 0) break;
            const [h] = held.splice(c.i % held.length, 1);
            h!.lease[Symbol.dispose]();
            break;
          }
          case 'advance':
            clock.advance(c.ms);
            break;
          case 'sweep': {
            const now = clock.now();
            for (const e of [...model]) if (now - e.insertedAt >= MAX_AGE) drop(e);
            cache.sweep();
            break;
          }
          case 'evict': {
            for (const e of [...model]) if (e.k % 2 === c.version) drop(e);
            cache.evictKek('kek', (v) => v !== c.version);
            break;
          }
        }
        const s = cache.stats();
        assert.equal(s.size, model.length);
        assert.equal(s.unwraps, unwraps);
        assert.equal(s.inflight, 0);
        for (const h of held) assert.equal(h.buf.readUInt32BE(0), h.expect, 'a held key is intact');
        for (const d of dropped) {
          const zero = d.buf.every((x) => x === 0);
          assert.equal(zero, holdersOf(d.buf) === 0, 'a dropped key is zeroed exactly when no lease holds it');
        }
        for (const e of model) assert.ok(!e.buf.every((x) => x === 0), 'a cached key is not zeroed');
        assert.equal(s.bytes, 8 * (model.length + new Set(dropped.filter((d) => holdersOf(d.buf) > 0).map((d) => d.buf)).size));
      }
      for (const h of held) h.lease[Symbol.dispose]();
      cache.close();
      for (const d of [...dropped.map((x) => x.buf), ...model.map((x) => x.buf)]) assert.ok(d.every((x) => x === 0), 'everything is zeroed after close');
      assert.equal(cache.stats().bytes, 0);
    }),
    { numRuns: NUM_RUNS },
  );
});
