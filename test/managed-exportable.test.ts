/**
 * Who may make a managed key exportable, against a real daemon: `exportable`
 * false → true needs a daemon administrator (a per-key `admin` is not
 * enough), is audited as `key.exportable`, and is refused for ever on
 * material that was non-extractable when it entered the daemon.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Client } from '../src/client/client.js';
import { ForbiddenError, NotExtractableError } from '../src/protocol/errors.js';
import { startManagedDaemon, type ManagedEnv } from './managed-env.js';

let env: ManagedEnv;
let admin: Client;
const events: Array<Record<string, unknown>> = [];

before(async () => {
  const audit = { enabled: true, emit: (e: object) => void events.push({ ...e }), close() {} };
  env = await startManagedDaemon({ daemon: { audit } });
  admin = await env.admin();
});
after(async () => env.stop());

test('a client with admin on a key cannot make it exportable and take the raw key', async () => {
  await admin.keys.create('orders', { type: 'aes256-gcm', clients: { 'token:deployer': ['admin'], '*': ['encrypt', 'decrypt'] } });
  const deployer = await env.token('deployer');
  await assert.rejects(deployer.keys.export('orders'), ForbiddenError);
  await assert.rejects(
    deployer.keys.setPolicy('orders', { exportable: true, clients: { 'token:deployer': ['admin', 'export'], '*': ['encrypt', 'decrypt'] } }),
    (e: unknown) => e instanceof ForbiddenError && e.detail?.key === 'orders' && /daemon administrator/.test((e as Error).message),
  );
  const d = await admin.keys.describe('orders');
  assert.equal(d.policy.exportable, false, 'the refused change left the policy as it was');
  await assert.rejects(deployer.keys.export('orders'), ForbiddenError);
  // Other changes, and widening the rules, stay with the key's admin.
  await deployer.keys.setPolicy('orders', { clients: { 'token:deployer': ['admin', 'export'], '*': ['encrypt', 'decrypt'] } });
  await assert.rejects(deployer.keys.export('orders'), NotExtractableError);
});

test('a daemon administrator may make a key exportable; the change is audited as its own event', async () => {
  await admin.keys.create('handover', { type: 'chacha20-poly1305', clients: { 'token:mover': ['admin', 'export'] } });
  const mover = await env.token('mover');
  events.length = 0;
  await admin.keys.setPolicy('handover', { exportable: true });
  const flip = events.find((e) => e.event === 'key.exportable');
  assert.ok(flip !== undefined, `no key.exportable event in ${events.map((e) => e.event).join(', ')}`);
  assert.deepEqual([flip.key, flip.by], ['handover', 'local/admin']);
  assert.equal((await mover.keys.export('handover')).material.length, 32);
  // Already exportable: a per-key admin may restate it; nothing new is audited.
  events.length = 0;
  await mover.keys.setPolicy('handover', { exportable: true, gracePeriod: '1m' });
  assert.ok(!events.some((e) => e.event === 'key.exportable'));
});

test('a key generated non-extractable stays so after KEY_PERSIST, even for administrators', async () => {
  const k = await admin.subtle.generateKey({ name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
  await assert.rejects(admin.subtle.exportKey('raw', k), NotExtractableError);
  await admin.keys.persist(k, 'persisted', {});
  await assert.rejects(
    admin.keys.setPolicy('persisted', { exportable: true }),
    (e: unknown) => e instanceof NotExtractableError && e.detail?.key === 'persisted' && /non-extractable/.test((e as Error).message),
  );
  assert.equal((await admin.keys.describe('persisted')).policy.exportable, false);
  await assert.rejects(admin.keys.export('persisted'), NotExtractableError);
  // The mark is stored with the key: a restarted key manager still refuses.
  await env.keys.manager.reload();
  await assert.rejects(admin.keys.setPolicy('persisted', { exportable: true }), NotExtractableError);
  // An extractable handle persists as before and may be made exportable.
  const x = await admin.subtle.generateKey({ name: 'AES-GCM', length: 256 }, true, ['encrypt', 'decrypt']);
  await admin.keys.persist(x, 'persisted-x', {});
  await admin.keys.setPolicy('persisted-x', { exportable: true });
  assert.equal((await admin.keys.export('persisted-x')).material.length, 32);
});
