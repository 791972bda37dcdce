/** Snapshot swap and deferred zeroing (snapshot.ts), and the invocation budget (budget.ts). */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { InternalError } from '../../src/protocol/errors.js';
import { InvocationBudget, budgetOptions } from '../../src/keys/budget.js';
import { KeyMaterial } from '../../src/keys/material.js';
import { effectivePolicy } from '../../src/keys/policy.js';
import { KeySnapshot, SnapshotCell, type KeyEntry } from '../../src/keys/snapshot.js';
import { isZero } from './env.js';

function secret(): KeyMaterial {
  const b = Buffer.alloc(32);
  randomBytes(32).copy(b);
  return KeyMaterial.secret(b);
}

function entry(name: string, ...materials: KeyMaterial[]): KeyEntry {
  return {
    name, type: 'hmac-sha256', policy: effectivePolicy('hmac-sha256', {}), origin: 'api', disabled: false, createdAt: 0, updatedAt: 0,
    derived: null, master: null, damaged: null,
    versions: materials.map((material, i) => ({
      version: i + 1, state: 'active', createdAt: 0, notBefore: 0, notAfter: null, encryptions: 0, material, budget: null, damaged: null,
    })),
  };
}

let seq = 0;
function snap(...entries: KeyEntry[]): KeySnapshot {
  return new KeySnapshot(++seq, new Map(entries.map((e) => [e.name, e])));
}

const ctx = { now: () => 1_000 };

describe('snapshot cell', () => {
  test('a swap with no readers zeroes what the new snapshot dropped, and nothing it kept', () => {
    const keep = secret();
    const drop = secret();
    const cell = new SnapshotCell(snap(entry('k', keep, drop)), ctx);
    const keptBytes = keep.secret;
    const droppedBytes = drop.secret;
    cell.swap(snap(entry('k', keep)));
    assert.ok(drop.destroyed);
    assert.ok(isZero(droppedBytes));
    assert.ok(!keep.destroyed);
    assert.ok(!isZero(keptBytes));
  });

  test('dropped material stays intact while a reader holds the old snapshot, and is zeroed when it releases', () => {
    const m1 = secret();
    const m2 = secret();
    const cell = new SnapshotCell(snap(entry('k', m1)), ctx);
    const bytes = m1.secret;
    const copy = Buffer.from(bytes);
    const lease = cell.acquire();
    cell.swap(snap(entry('k', m2)));
    assert.equal(cell.draining, 1);
    assert.deepEqual(lease.outbound('k', 'mac').material.secret, copy); // still the old view, still intact
    assert.equal(cell.acquire().snapshot.keys.get('k')!.versions[0]!.material, m2);
    lease[Symbol.dispose]();
    assert.ok(isZero(bytes));
    assert.equal(cell.draining, 0);
  });

  test('material is not zeroed under a reader of an even older snapshot', () => {
    const m = secret();
    const cell = new SnapshotCell(snap(entry('k', m)), ctx);
    const oldest = cell.acquire(); // S1 holds m
    cell.swap(snap(entry('k', m), entry('x', secret()))); // S2 still holds m; S1 draining
    cell.swap(snap(entry('x', secret()))); // S3 drops m; S2 had no readers and is released at once
    assert.ok(!m.destroyed, 'S1 still has a reader that may use m');
    oldest[Symbol.dispose]();
    assert.ok(m.destroyed);
  });

  test('leases: using releases, double release is harmless, use after release throws', () => {
    const m = secret();
    const cell = new SnapshotCell(snap(entry('k', m)), ctx);
    const s = cell.current;
    {
      using lease = cell.acquire();
      assert.equal(s.readers, 1);
      assert.equal(lease.snapshot, s);
    }
    assert.equal(s.readers, 0);
    const lease = cell.acquire();
    lease[Symbol.dispose]();
    lease[Symbol.dispose]();
    assert.equal(s.readers, 0);
    assert.throws(() => lease.snapshot, InternalError);
    assert.throws(() => cell.leave(s), /below zero/);
  });

  test('lease lookups: unknown key, disabled key, wrong operation for the type', () => {
    const cell = new SnapshotCell(snap(entry('k', secret()), { ...entry('off', secret()), disabled: true }), ctx);
    using lease = cell.acquire();
    assert.throws(() => lease.outbound('nope', 'mac'), { code: 'CRYPTOD_ERR_NOT_FOUND', message: "no managed key named 'nope'" });
    assert.throws(() => lease.outbound('off', 'mac'), { code: 'CRYPTOD_ERR_KEY_DISABLED', message: "key 'off' is disabled" });
    assert.throws(() => lease.outbound('k', 'encrypt'), { code: 'CRYPTOD_ERR_INVALID_KEY', message: "key 'k' (hmac-sha256) cannot be used to encrypt; it allows mac, verify-mac" });
  });
});

describe('invocation budget', () => {
  test('reserve, take, refill at half a block, refuse past the limit', () => {
    const lows: number[] = [];
    const opts = budgetOptions({ block: 10, rotateAt: 25, limit: 32 });
    const b = new InvocationBudget('k', 1, 0, opts, (x) => lows.push(x.available));
    assert.equal(b.take(0), 'empty'); // nothing reserved yet: asks for a refill
    assert.deepEqual(lows, [0]);
    b.grant(10, 10);
    for (let i = 0; i < 4; i++) assert.equal(b.take(0), 'ok');
    assert.deepEqual(lows, [0]);
    assert.equal(b.take(0), 'ok'); // 5 left = block / 2
    assert.deepEqual(lows, [0, 5]);
    b.refilling = true; // a refill in flight is not started twice
    assert.equal(b.take(0), 'ok');
    assert.deepEqual(lows, [0, 5]);
    b.refilling = false;
    b.grant(20, 10);
    b.grant(30, 10);
    assert.ok(b.needsRotation);
    assert.equal(b.nextReservation(), 2); // only 2 left below the limit
    b.grant(40, 10); // another process took 30..40: only 30, 31 are below the limit
    assert.equal(b.available, 4 + 10 + 10 + 2);
    for (let i = 0; i < 26; i++) assert.equal(b.take(0), 'ok');
    assert.equal(b.take(0), 'exhausted');
    assert.equal(b.used, 6 + 26); // what this process took
  });

  test('a failed reservation is not retried before retryAt', () => {
    let calls = 0;
    const b = new InvocationBudget('k', 1, 0, budgetOptions({ block: 4 }), () => calls++);
    b.retryAt = 100;
    assert.equal(b.take(50), 'empty');
    assert.equal(calls, 0);
    assert.equal(b.take(100), 'empty');
    assert.equal(calls, 1);
  });

  test('a version loaded at or over the limit is exhausted at once', () => {
    const b = new InvocationBudget('k', 1, 2 ** 32, budgetOptions(), () => assert.fail('no refill past the limit'));
    assert.equal(b.take(0), 'exhausted');
    assert.throws(() => budgetOptions({ block: 0 }), /expected budget block as a positive integer/);
    assert.throws(() => budgetOptions({ rotateAt: 10, limit: 5 }), /rotateAt \(10\) ≤ limit \(5\)/);
  });
});
