/**
 * AES-GCM invocation counting (NIST SP 800-38D §8.3) with tiny budgets: the
 * keystore count never falls behind the encryptions made, in one process or
 * several, across a crash; rotation at the threshold; refusal at the limit.
 */
import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { BusyError, KeyVersionError } from '../../src/protocol/errors.js';
import { ManualClock } from '../../src/keys/clock.js';
import type { KeyManager } from '../../src/keys/manager.js';
import { makeTempDir } from '../store/tmpdir.js';
import { openEnv, T0, type Env } from './env.js';

let envs: Env[] = [];
afterEach(async () => {
  for (const e of envs.reverse()) await e.cleanup();
  envs = [];
});

const budget = { block: 8, rotateAt: 20, limit: 32 };

/** One encryption's worth of selection; waits out BusyError (a reservation in flight). Returns the version used. */
async function encrypt(m: KeyManager, name: string, used: Map<number, number>): Promise<number> {
  for (;;) {
    // The `using` lives in its own function: esbuild 0.28 (tsx) lowers a
    // `using` block with function-scoped error flags, so inside a loop an
    // error caught once is rethrown by every later iteration's dispose.
    const v = takeOne(m, name);
    if (v !== null) {
      used.set(v, (used.get(v) ?? 0) + 1);
      return v;
    }
    await m.settle();
  }
}

function takeOne(m: KeyManager, name: string): number | null {
  try {
    using lease = m.acquire();
    return lease.outbound(name, 'encrypt').version.version;
  } catch (err) {
    if (err instanceof BusyError) return null;
    throw err;
  }
}

async function storedCounts(e: Env, name: string): Promise<Map<number, number>> {
  return new Map((await e.store.read((r) => r.getVersions(name))).map((v) => [v.version, v.encryptions]));
}

test('reservations: the stored count is never behind; rotation at the threshold', async () => {
  const e = await openEnv();
  envs.push(e);
  const m = await e.open({ budget });
  await m.create('g', { type: 'aes256-gcm' });
  assert.equal((await storedCounts(e, 'g')).get(1), 8, 'the first block is reserved with the version');
  const used = new Map<number, number>();
  let writes = 0;
  let last = await e.store.generation();
  for (let i = 0; i < 40; i++) {
    await encrypt(m, 'g', used);
    await new Promise((r) => setImmediate(r));
    const counts = await storedCounts(e, 'g');
    for (const [v, n] of used) assert.ok((counts.get(v) ?? 0) >= n, `version ${v}: stored ${counts.get(v)} < used ${n}`);
    const g = await e.store.generation();
    if (g !== last) writes++;
    last = g;
  }
  await m.settle();
  assert.ok(writes <= 40 / 4, `batched: ${writes} keystore writes for 40 encryptions`);
  const v1 = used.get(1) ?? 0;
  const counts = await storedCounts(e, 'g');
  assert.ok(counts.get(1)! >= 20 && counts.get(1)! <= 32, `v1 reserved ${counts.get(1)}`);
  assert.ok(v1 <= counts.get(1)!);
  assert.ok((used.get(2) ?? 0) > 0, 'rotated to version 2 at the threshold');
  // Every version but the current one was rotated away only once its reservations reached rotateAt.
  const current = m.describe('g').currentVersion!;
  assert.ok(current >= 2);
  for (const [v, n] of counts) if (v < current) assert.ok(n >= 20 && n <= 32, `version ${v} reserved ${n}`);
  assert.deepEqual([...used.keys()].sort(), [...counts.keys()].filter((v) => used.has(v)).sort());
});

test('at the limit outbound use is refused, naming the NIST bound', async () => {
  const e = await openEnv();
  envs.push(e);
  const m = await e.open({ budget });
  await m.create('g', { type: 'aes256-gcm' });
  e.kek.failWraps = 1_000; // the threshold rotation cannot happen
  const used = new Map<number, number>();
  let refusal: unknown;
  for (let i = 0; i < 40 && refusal === undefined; i++) {
    try {
      await encrypt(m, 'g', used);
    } catch (err) {
      refusal = err;
    }
  }
  assert.equal(used.get(1), 32, 'exactly the limit');
  assert.ok(refusal instanceof KeyVersionError);
  assert.equal(refusal.detail?.reason, 'exhausted');
  assert.equal(
    refusal.message,
    "version 1 of key 'g' has reached its limit of 32 encryptions (the AES-GCM random-nonce bound of NIST SP 800-38D §8.3 is 2^32); rotate the key",
  );
  e.kek.failWraps = 0;
  await m.rotate('g');
  assert.equal(await encrypt(m, 'g', used), 2);
});

test('a crash loses no count: the next process starts above what was used; waste is bounded', async () => {
  const clock = new ManualClock(T0);
  const dir = makeTempDir('cryptod-keys-');
  const a = await openEnv({ clock, dir });
  const m1 = await a.open({ budget: { block: 8, rotateAt: 1_000, limit: 2_000 } });
  await m1.create('c', { type: 'aes256-gcm' });
  const used = new Map<number, number>();
  for (let i = 0; i < 13; i++) await encrypt(m1, 'c', used);
  await m1.settle();
  const beforeCrash = (await storedCounts(a, 'c')).get(1)!;
  assert.ok(beforeCrash >= 13 && beforeCrash <= 13 + 1.5 * 8, `reserved ${beforeCrash}`);
  // "Crash": drop the process without closing the manager; nothing is flushed at close anyway.
  await a.kek.close();
  await a.store.close();
  const b = await openEnv({ clock, dir });
  envs.push(b, { ...b, managers: [], cleanup: () => dir.cleanup() } as Env);
  const m2 = await b.open({ budget: { block: 8, rotateAt: 1_000, limit: 2_000 } });
  assert.equal((await storedCounts(b, 'c')).get(1), beforeCrash + 8, 'the new process reserves its own block on top');
  for (let i = 0; i < 5; i++) await encrypt(m2, 'c', used);
  assert.ok((await storedCounts(b, 'c')).get(1)! >= used.get(1)!);
});

test('two processes on one keystore: the shared count covers both', async () => {
  const clock = new ManualClock(T0);
  const dir = makeTempDir('cryptod-keys-');
  const a = await openEnv({ clock, dir });
  const b = await openEnv({ clock, dir });
  envs.push(a, b, { ...a, managers: [], cleanup: () => dir.cleanup() } as Env);
  const opts = { budget: { block: 8, rotateAt: 10_000, limit: 20_000 } };
  const ma = await a.open(opts);
  await ma.create('s', { type: 'aes256-gcm' });
  const mb = await b.open(opts);
  const ua = new Map<number, number>();
  const ub = new Map<number, number>();
  for (let i = 0; i < 50; i++) {
    await encrypt(ma, 's', ua);
    await encrypt(mb, 's', ub);
  }
  await ma.settle();
  await mb.settle();
  const stored = (await storedCounts(a, 's')).get(1)!;
  assert.equal(ua.get(1), 50);
  assert.equal(ub.get(1), 50);
  assert.ok(stored >= 100 && stored <= 100 + 2 * 1.5 * 8, `stored ${stored}`);
});
