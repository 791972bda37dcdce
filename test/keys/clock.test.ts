/** Clocks, the wake-up scheduler and the retry backoff. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock, systemClock } from '../../src/keys/clock.js';
import { backoffDelay, retryOptions, WakeScheduler } from '../../src/keys/scheduler.js';

test('ManualClock fires timers in order at their instants, skips cancelled ones, and fires past instants on the next turn', async () => {
  const c = new ManualClock(1_000);
  const fired: Array<[string, number]> = [];
  c.setTimer(3_000, () => fired.push(['c', c.now()]));
  c.setTimer(2_000, () => {
    fired.push(['b', c.now()]);
    c.setTimer(2_500, () => fired.push(['b2', c.now()])); // set while advancing, still due in this advance
  });
  const x = c.setTimer(2_200, () => fired.push(['x', c.now()]));
  x.cancel();
  c.advanceTo(2_999);
  assert.deepEqual(fired, [['b', 2_000], ['b2', 2_500]]);
  assert.equal(c.now(), 2_999);
  c.advance(1);
  assert.deepEqual(fired.at(-1), ['c', 3_000]);
  c.setTimer(10, () => fired.push(['past', c.now()]));
  assert.equal(fired.length, 3);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(fired.at(-1), ['past', 3_000]);
  assert.throws(() => c.advanceTo(0), /does not go backwards/);
});

test('systemClock fires at the instant and can be cancelled', async (ctx) => {
  // Its timers are unref'd (they must not keep a stopping daemon alive): hold the loop open here.
  const keepAlive = setInterval(() => {}, 1_000);
  ctx.after(() => clearInterval(keepAlive));
  const start = Date.now();
  const fired = await new Promise<number>((resolve) => systemClock.setTimer(start + 30, () => resolve(Date.now())));
  assert.ok(fired >= start + 29, `fired after ${fired - start} ms`);
  let late = false;
  const t = systemClock.setTimer(Date.now() + 10, () => (late = true));
  t.cancel();
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(late, false);
  // Far instants (beyond setTimeout's 2^31−1 ms) are accepted and do not fire now.
  systemClock.setTimer(Date.now() + 40 * 86_400_000, () => assert.fail('fired early')).cancel();
});

test('WakeScheduler arms one timer for the earliest instant and hands over everything due', () => {
  const c = new ManualClock(0);
  const due: string[][] = [];
  const s = new WakeScheduler(c, (names) => due.push(names));
  s.set('a', 100);
  s.set('b', 50);
  s.set('c', 50);
  s.set('d', null);
  assert.deepEqual(c.pendingTimers(), [50]);
  c.advanceTo(60);
  assert.deepEqual(due, [['b', 'c']]);
  assert.deepEqual(c.pendingTimers(), [100]);
  s.set('a', 200); // moved later: re-armed
  assert.deepEqual(c.pendingTimers(), [200]);
  s.set('a', null);
  assert.deepEqual(c.pendingTimers(), []);
  s.set('e', 300);
  s.close();
  c.advanceTo(1_000);
  assert.deepEqual(due, [['b', 'c']]);
});

test('backoff doubles from the initial delay up to the bound', () => {
  const o = retryOptions({ initialMs: 1_000, maxMs: 60_000 });
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 8, 100].map((n) => backoffDelay(n, o)), [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000]);
  assert.throws(() => retryOptions({ initialMs: 0 }), /initialMs as a positive integer/);
  assert.throws(() => retryOptions({ initialMs: 10, maxMs: 5 }), /maxMs ≥ initialMs \(10\)/);
});
