/** Derived epoch keys: the derivation, the windows, and determinism across daemons. */
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { KeyVersionError } from '../../src/protocol/errors.js';
import { deriveEpochKey, epochAt, epochInfo, epochsHeld, epochWindow, nextEpochChange } from '../../src/keys/epoch.js';
import { effectivePolicy } from '../../src/keys/policy.js';
import { advanceTo, HOUR, MIN, openEnv, SEC, T0, type Env } from './env.js';

/** RFC 5869 written out with HMAC, independent of node's hkdfSync. */
function hkdfReference(ikm: Buffer, salt: Buffer, info: Buffer, length: number): Buffer {
  const prk = createHmac('sha256', salt).update(ikm).digest(); // §2.2 extract
  const blocks: Buffer[] = [];
  let t = Buffer.alloc(0);
  for (let i = 1; Buffer.concat(blocks).length < length; i++) {
    t = createHmac('sha256', prk).update(Buffer.concat([t, info, Buffer.from([i])])).digest(); // §2.3 expand
    blocks.push(t);
  }
  return Buffer.concat(blocks).subarray(0, length);
}

describe('derivation', () => {
  test('info is the label followed by u64 big-endian n', () => {
    assert.equal(epochInfo(1).toString('hex'), Buffer.from('cryptod epoch key v1').toString('hex') + '0000000000000001');
    assert.equal(epochInfo(2 ** 40 + 5).subarray(-8).toString('hex'), '0000010000000005');
    assert.throws(() => epochInfo(-1));
  });

  test('HKDF-SHA-256(master, salt = name, info) matches RFC 5869 computed by hand', () => {
    const master = randomBytes(32);
    for (const [n, len] of [[0, 32], [7, 32], [123456, 64]] as const) {
      const got = deriveEpochKey(master, 'tokens', n, len);
      assert.deepEqual(got, hkdfReference(master, Buffer.from('tokens'), epochInfo(n), len));
    }
    // Name and epoch both separate keys.
    assert.notDeepEqual(deriveEpochKey(master, 'tokens', 1, 32), deriveEpochKey(master, 'tokens', 2, 32));
    assert.notDeepEqual(deriveEpochKey(master, 'tokens', 1, 32), deriveEpochKey(master, 'tokens2', 1, 32));
  });
});

describe('epoch windows', () => {
  const s = { epochStart: T0, period: HOUR };
  const p = effectivePolicy('hmac-sha256', { rotationPeriod: HOUR, prefetchPeriod: 5 * MIN, gracePeriod: 10 * MIN });

  test('notBefore(n) = epochStart + n × period', () => {
    assert.deepEqual(epochWindow(s, 3), { notBefore: T0 + 3 * HOUR, notAfter: T0 + 4 * HOUR });
    assert.equal(epochAt(s, T0 + 3 * HOUR - 1), 2);
    assert.equal(epochAt(s, T0 + 3 * HOUR), 3);
    assert.equal(epochAt(s, T0 - 1), -1);
  });

  test('held: next epoch from a prefetch period ahead, previous through its grace', () => {
    assert.deepEqual(epochsHeld(s, p, T0 + 2 * HOUR + 30 * MIN), [2]);
    assert.deepEqual(epochsHeld(s, p, T0 + 3 * HOUR - 5 * MIN - 1), [2]);
    assert.deepEqual(epochsHeld(s, p, T0 + 3 * HOUR - 5 * MIN), [2, 3]);
    assert.deepEqual(epochsHeld(s, p, T0 + 3 * HOUR), [2, 3]);
    assert.deepEqual(epochsHeld(s, p, T0 + 3 * HOUR + 10 * MIN - 1), [2, 3]);
    assert.deepEqual(epochsHeld(s, p, T0 + 3 * HOUR + 10 * MIN), [3]);
    assert.deepEqual(epochsHeld(s, p, T0 - HOUR), []);
    assert.deepEqual(epochsHeld(s, p, T0 - 5 * MIN), [0]);
  });

  test('next change instants', () => {
    assert.equal(nextEpochChange(s, p, T0 + 2 * HOUR + 30 * MIN), T0 + 3 * HOUR - 5 * MIN);
    assert.equal(nextEpochChange(s, p, T0 + 3 * HOUR - 5 * MIN), T0 + 3 * HOUR + 10 * MIN);
    assert.equal(nextEpochChange(s, p, T0 - 10 * HOUR), T0 - 5 * MIN);
  });
});

describe('two daemons, one master', () => {
  const envs: Env[] = [];
  after(async () => {
    for (const e of envs) await e.cleanup();
  });

  test('derive the same key for the same epoch at the same instant, and switch together', async () => {
    const master = randomBytes(32);
    // Separate keystores and separate KEKs: they share nothing but the master and the definition.
    const a = await openEnv({ start: T0 + 10 * MIN });
    const b = await openEnv({ start: T0 + 10 * MIN });
    envs.push(a, b);
    const def = { type: 'hmac-sha256', rotationPeriod: '1h', prefetchPeriod: '5m', gracePeriod: '10m', derived: { epochStart: '2030-01-01T00:00:00Z' } };
    const ma = await a.open();
    const mb = await b.open();
    await ma.create('tokens', def, { material: master });
    await mb.create('tokens', def, { material: master });

    const view = (m: typeof ma) => {
      using lease = m.acquire();
      const out = lease.outbound('tokens', 'mac');
      return { version: out.version.version, key: Buffer.from(out.material.secret).toString('hex'), held: lease.key('tokens').versions.map((v) => v.version) };
    };
    const expected = (n: number) => deriveEpochKey(master, 'tokens', n, 32).toString('hex');

    assert.deepEqual(view(ma), view(mb));
    assert.deepEqual(view(ma), { version: 0, key: expected(0), held: [0] });

    // A prefetch period before the boundary both derive epoch 1, still using epoch 0.
    for (const [t, version, held] of [
      [T0 + HOUR - 5 * MIN - 1, 0, [0]],
      [T0 + HOUR - 5 * MIN, 0, [0, 1]],
      [T0 + HOUR - 1, 0, [0, 1]],
      [T0 + HOUR, 1, [0, 1]],
      [T0 + HOUR + 10 * MIN, 1, [1]],
    ] as const) {
      a.clock.advanceTo(t);
      b.clock.advanceTo(t);
      await ma.settle();
      await mb.settle();
      const va = view(ma);
      assert.deepEqual(va, view(mb), `at +${(t - T0) / SEC}s`);
      assert.deepEqual(va, { version, key: expected(version), held: [...held] }, `at +${(t - T0) / SEC}s`);
    }

    // Inbound: epoch 0 past its grace, epoch 5 in the future: refused with reasons.
    using lease = ma.acquire();
    assert.throws(() => lease.inbound('tokens', 0, 'verify-mac'), (e: unknown) => e instanceof KeyVersionError && /expired at 2030-01-01T01:00:00.000Z/.test(e.message));
    assert.throws(() => lease.inbound('tokens', 5, 'verify-mac'), (e: unknown) => e instanceof KeyVersionError && e.detail?.reason === 'not-yet-valid');
    assert.equal(lease.inbound('tokens', 1, 'verify-mac').material.secret.toString('hex'), expected(1));
  });

  test('a restarted daemon derives the same epoch key from the stored master', async () => {
    const a = await openEnv({ start: T0 + 3 * HOUR + 30 * MIN });
    envs.push(a);
    const m1 = await a.open();
    await m1.create('fleet', { type: 'hmac-sha512', rotationPeriod: '1h', gracePeriod: '1m', derived: { epochStart: T0 } });
    const before = (() => {
      using l = m1.acquire();
      return Buffer.from(l.outbound('fleet', 'mac').material.secret);
    })();
    await m1.close();
    const m2 = await a.open();
    using l = m2.acquire();
    const u = l.outbound('fleet', 'mac');
    assert.equal(u.version.version, 3);
    assert.equal(u.material.secret.length, 64);
    assert.deepEqual(u.material.secret, before);
    await advanceTo(a, m2, T0 + 4 * HOUR);
    using l2 = m2.acquire();
    assert.equal(l2.outbound('fleet', 'mac').version.version, 4);
  });

  test('epoch keys cannot be rotated by hand and keep their epoch length', async () => {
    const a = await openEnv();
    envs.push(a);
    const m = await a.open();
    await m.create('e', { type: 'hmac-sha256', rotationPeriod: '1h', gracePeriod: '1m', derived: { epochStart: T0 } });
    await assert.rejects(m.rotate('e'), /derived epoch key/);
    await assert.rejects(m.setPolicy('e', { rotationPeriod: '2h' }), /epoch length \(rotationPeriod\) of a derived key cannot change/);
    await assert.rejects(m.setPolicy('e', { gracePeriod: null }), /derived epoch key needs gracePeriod|gracePeriod/);
    await assert.rejects(m.create('g', { type: 'aes256-gcm', rotationPeriod: '1h', gracePeriod: '1m', derived: { epochStart: T0 } }), /2\^32 encryption limit/);
  });
});
