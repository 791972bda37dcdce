/** Declarative reload (applyConfig): add, keep, change, disable, re-enable; an invalid set kept out as a whole. */
import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { KeyConfigError } from '../../src/keys/policy.js';
import { HOUR, MIN, openEnv, T0, type Env } from './env.js';

let e: Env | undefined;
afterEach(async () => {
  await e?.cleanup();
  e = undefined;
});

const base = {
  orders: { type: 'aes256-gcm', rotationPeriod: '30d' },
  sessions: { type: 'hmac-sha256', rotationPeriod: '1h', gracePeriod: '10m', prefetchPeriod: '5m' },
};

test('add, keep, change, disable (never destroy), re-enable', async () => {
  e = await openEnv();
  const m = await e.open();
  await m.create('api-made', { type: 'ed25519' });
  assert.deepEqual(await m.applyConfig(base), { created: ['orders', 'sessions'], updated: [], enabled: [], disabled: [], unchanged: [] });
  assert.equal(m.describe('orders').origin, 'config');

  // Same file again: nothing written.
  const gen = await e.store.generation();
  assert.deepEqual(await m.applyConfig(base), { created: [], updated: [], enabled: [], disabled: [], unchanged: ['orders', 'sessions'] });
  assert.equal(await e.store.generation(), gen);

  // orders dropped from the file, sessions changed: orders disabled, sessions updated, material kept.
  let ordersKey: Buffer;
  {
    using lease = m.acquire();
    ordersKey = Buffer.from(lease.outbound('orders', 'encrypt').material.secret);
  }
  const changed = { sessions: { ...base.sessions, gracePeriod: '15m' } };
  assert.deepEqual(await m.applyConfig(changed), { created: [], updated: ['sessions'], enabled: [], disabled: ['orders'], unchanged: [] });
  assert.equal(m.describe('sessions').policy.gracePeriod, '15m');
  assert.equal(m.describe('orders').disabled, true);
  assert.equal(m.describe('api-made').disabled, false, 'keys created through the API are not the configuration\'s to disable');
  {
    using lease = m.acquire();
    assert.throws(() => lease.outbound('orders', 'encrypt'), { code: 'CRYPTOD_ERR_KEY_DISABLED' });
    assert.throws(() => lease.inbound('orders', 1, 'decrypt'), { code: 'CRYPTOD_ERR_KEY_DISABLED' });
  }
  const stored = await e.store.read((r) => r.getVersions('orders'));
  assert.equal(stored[0]?.state, 'active');
  assert.ok(stored[0]?.wrapped !== null, 'disabled, never destroyed');

  // Declared again: enabled, with the same material.
  assert.deepEqual(await m.applyConfig(base), { created: [], updated: ['sessions'], enabled: ['orders'], disabled: [], unchanged: [] });
  using lease = m.acquire();
  assert.deepEqual(lease.outbound('orders', 'encrypt').material.secret, ordersKey);
});

test('an invalid set is refused as a whole, naming key and field; the running state stays', async () => {
  e = await openEnv();
  const m = await e.open();
  await m.applyConfig(base);
  const before = JSON.stringify(m.list());
  const gen = await e.store.generation();
  const seq = m.stats().seq;

  const bad = {
    orders: { type: 'chacha20-poly1305', rotationPeriod: '30d' }, // type change
    sessions: { type: 'hmac-sha256', rotationPeriod: '10m', gracePeriod: '10m', prefetchPeriod: '5m' }, // too short
    fresh: { type: 'hmac-sha512', gracePeriod: 'ten minutes' },
    typo: { type: 'hmac-sha256', rotatonPeriod: '1h' },
  };
  await assert.rejects(m.applyConfig(bad), (err: unknown) => {
    assert.ok(err instanceof KeyConfigError);
    assert.equal(err.code, 'CRYPTOD_ERR_CONFIG');
    assert.deepEqual(err.issues.map((i) => [i.key, i.field]), [
      ['sessions', 'rotationPeriod'],
      ['fresh', 'gracePeriod'],
      ['typo', 'rotatonPeriod'],
    ]);
    assert.match(err.message, /^invalid key configuration \(3 problems\); nothing was applied:\nkey 'sessions': rotationPeriod: rotationPeriod 10m is shorter than prefetchPeriod 5m \+ gracePeriod 10m \+ clockTolerance 1s \(default\) = 15m1s/);
    return true;
  });
  // Checks against stored state run in the transaction and roll back everything, new keys included.
  await assert.rejects(m.applyConfig({ ...base, orders: bad.orders, fresh: { type: 'hmac-sha512' } }), (err: unknown) => {
    assert.ok(err instanceof KeyConfigError);
    assert.deepEqual(err.issues.map((i) => [i.key, i.field]), [['orders', 'type']]);
    assert.match(err.issues[0]!.message, /the type of an existing key cannot change \(it is aes256-gcm, got chacha20-poly1305\)/);
    return true;
  });
  await assert.rejects(m.applyConfig({ ...base, orders: { ...base.orders, minDecryptionVersion: 3 } }), /minDecryptionVersion 3 is above the current version 1/);
  await assert.rejects(m.applyConfig([] as never), /expected keys to map key names to definitions/);

  assert.equal(JSON.stringify(m.list()), before);
  assert.equal(await e.store.generation(), gen, 'nothing was written');
  assert.equal(m.stats().seq, seq, 'no snapshot was swapped');
  assert.equal((await e.store.read((r) => r.getKey('fresh'))), undefined);
});

test('exportable stays on across reloads; a changed rotation period takes effect at the next rotation', async () => {
  e = await openEnv();
  const m = await e.open();
  await m.applyConfig({ k: { type: 'aes256-gcm', rotationPeriod: '1h', exportable: true } });
  await assert.rejects(m.applyConfig({ k: { type: 'aes256-gcm', rotationPeriod: '1h' } }), /exportable cannot go back to false/);
  await m.applyConfig({ k: { type: 'aes256-gcm', rotationPeriod: '2h', exportable: true } });
  assert.equal(m.describe('k').versions[0]!.notAfter, new Date(T0 + HOUR).toISOString(), 'the current window stays');
  e.clock.advanceTo(T0 + HOUR - 5 * MIN);
  await m.settle();
  assert.equal(m.describe('k').versions[1]!.notAfter, new Date(T0 + 3 * HOUR).toISOString());
});
