/**
 * Per-client authorization of managed keys (rules match the authenticated
 * ClientId) and inbound selection over time with an injected clock (grace).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Client } from '../src/client/client.js';
import { ManualClock } from '../src/keys/clock.js';
import { effectivePolicy } from '../src/keys/policy.js';
import { allows, ruleNames } from '../src/ops/managed-auth.js';
import { CryptodError, ForbiddenError, KeyVersionError, NotExtractableError, NotFoundError } from '../src/protocol/errors.js';
import { startManagedDaemon, type ManagedEnv } from './managed-env.js';

const te = new TextEncoder();
let env: ManagedEnv;
let admin: Client;

before(async () => {
  env = await startManagedDaemon();
  admin = await env.admin();
});
after(async () => env.stop());

test('rules match the authenticated ClientId: full id, then uid:<n> for uid clients, then *', () => {
  assert.deepEqual(ruleNames('uid:1000/worker'), ['uid:1000/worker', 'uid:1000']);
  assert.deepEqual(ruleNames('token:billing'), ['token:billing']);
  const p = effectivePolicy('aes256-gcm', { clients: { 'uid:1000': ['decrypt'], 'uid:1000/enc': ['encrypt'], '*': [] } });
  assert.equal(allows(p, 'uid:1000/enc', 'encrypt'), true);
  assert.equal(allows(p, 'uid:1000/enc', 'decrypt'), false, 'the most specific rule replaces the broader one');
  assert.equal(allows(p, 'uid:1000/other', 'decrypt'), true);
  assert.equal(allows(p, 'uid:1001/enc', 'encrypt'), false, 'a self-chosen name under another uid matches nothing');
  assert.equal(allows(p, 'token:uid:1000', 'decrypt'), false);
});

test('one client allowed, one forbidden, one not seeing the key', async () => {
  await admin.keys.create('billing', {
    type: 'aes256-gcm',
    clients: { 'token:billing': ['encrypt', 'decrypt', 'rewrap'], 'token:reader': ['decrypt'] },
  });
  const billing = await env.token('billing');
  const reader = await env.token('reader');
  const other = await env.token('other');

  const ct = await billing.encrypt('billing', te.encode('invoice'));
  assert.equal(Buffer.from(await reader.decrypt('billing', ct)).toString(), 'invoice');
  await assert.rejects(reader.encrypt('billing', te.encode('x')), (e: unknown) =>
    e instanceof ForbiddenError && e.detail?.key === 'billing' && e.detail?.op === 'encrypt' && /token:reader/.test((e as Error).message));
  await assert.rejects(reader.rewrap('billing', ct), ForbiddenError);
  // No right at all: the key does not exist for this client, in every operation.
  await assert.rejects(other.decrypt('billing', ct), NotFoundError);
  await assert.rejects(other.keys.describe('billing'), NotFoundError);
  await assert.rejects(other.keys.rotate('billing'), NotFoundError);
  assert.ok(!(await other.keys.list()).some((k) => k.name === 'billing'));
  assert.ok((await reader.keys.list()).some((k) => k.name === 'billing'));
  // Batch: the whole request is refused, not item by item.
  await assert.rejects(reader.encryptBatch('billing', [{ data: te.encode('x') }]), ForbiddenError);
  // The admin is not in the rules: it administers, but data operations follow the policy.
  await assert.rejects(admin.encrypt('billing', te.encode('x')), ForbiddenError);
  assert.ok((await admin.keys.list()).some((k) => k.name === 'billing'));
});

test('administration needs an administrator or the admin right on the key', async () => {
  const ops = await env.token('ops');
  await assert.rejects(ops.keys.create('mine', { type: 'hmac-sha256' }), ForbiddenError);
  await assert.rejects(ops.reload(), ForbiddenError);
  await admin.keys.create('managed-by-ops', { type: 'hmac-sha256', clients: { 'token:ops': ['admin', 'mac'], '*': ['verify-mac'] } });
  assert.equal(await ops.keys.rotate('managed-by-ops'), 2);
  await ops.keys.setPolicy('managed-by-ops', { gracePeriod: '1m' });
  const k = await ops.keys.describe('managed-by-ops');
  assert.equal(k.policy.gracePeriod, '1m');
  const tag = await ops.mac('managed-by-ops', te.encode('m'));
  const anyone = await env.token('anyone');
  assert.equal(await anyone.verifyMac('managed-by-ops', te.encode('m'), tag), true);
  await assert.rejects(anyone.mac('managed-by-ops', te.encode('m')), ForbiddenError);
  await assert.rejects(anyone.keys.trim('managed-by-ops', 2), ForbiddenError);
  await assert.rejects(anyone.keys.destroy('managed-by-ops'), ForbiddenError);
});

test('export needs the export right and an exportable key', async () => {
  await admin.keys.create('shared', { type: 'chacha20-poly1305', exportable: true, clients: { 'token:exporter': ['export', 'encrypt'], '*': ['decrypt'] } });
  const exporter = await env.token('exporter');
  const plain = await env.token('plain');
  const x = await exporter.keys.export('shared');
  assert.equal(x.material.length, 32);
  await assert.rejects(plain.keys.export('shared'), ForbiddenError);
  await admin.keys.create('sealed', { type: 'chacha20-poly1305', clients: { 'token:exporter': ['export', 'encrypt'] } });
  await assert.rejects(exporter.keys.export('sealed'), NotExtractableError);
});

test('grace period: an old MAC verifies until notAfter + grace, then is refused naming version 1 and "expired"', async () => {
  const T0 = Date.UTC(2030, 0, 1);
  const clock = new ManualClock(T0);
  const e2 = await startManagedDaemon({ clock });
  try {
    const c = await e2.admin();
    await c.keys.create('sessions', { type: 'hmac-sha256', rotationPeriod: '1h', gracePeriod: '10m', prefetchPeriod: '5m' });
    const m = te.encode('session-id');
    const tag1 = await c.mac('sessions', m);
    clock.advanceTo(T0 + 56 * 60_000); // past notAfter − prefetch: version 2 is prepared
    await e2.keys.manager.settle();
    assert.equal((await c.keys.describe('sessions')).versions.length, 2);
    assert.equal((await c.keys.describe('sessions')).currentVersion, 1, 'version 2 starts at notAfter(1), not before');
    clock.advanceTo(T0 + 60 * 60_000);
    await e2.keys.manager.settle();
    const tag2 = await c.mac('sessions', m);
    assert.notDeepEqual(Buffer.from(tag2), Buffer.from(tag1));
    assert.equal(await c.verifyMac('sessions', m, tag1), true, 'within grace');
    clock.advanceTo(T0 + 70 * 60_000 - 1);
    await e2.keys.manager.settle();
    assert.equal(await c.verifyMac('sessions', m, tag1), true, 'last millisecond of grace');
    clock.advanceTo(T0 + 70 * 60_000);
    await e2.keys.manager.settle();
    await assert.rejects(c.verifyMac('sessions', m, tag1), (e: unknown) =>
      e instanceof KeyVersionError && e.detail?.version === 1 && e.detail?.reason === 'expired' && /version 1/.test((e as Error).message));
    assert.equal(await c.verifyMac('sessions', m, tag2), true);
  } finally {
    await e2.stop();
  }
});

test('a daemon without managed keys answers UNSUPPORTED', async () => {
  const { startTestDaemon } = await import('./helpers/daemon.js');
  const td = await startTestDaemon();
  try {
    const c = await td.connect();
    await assert.rejects(c.encrypt('x', te.encode('x')), (e: unknown) => e instanceof CryptodError && e.code === 'CRYPTOD_ERR_UNSUPPORTED' && /data directory/.test((e as Error).message));
    await assert.rejects(c.keys.list(), (e: unknown) => e instanceof CryptodError && e.code === 'CRYPTOD_ERR_UNSUPPORTED');
  } finally {
    await td.stop();
  }
});

test('RELOAD calls the daemon reload callback for administrators only', async () => {
  let calls = 0;
  const e3 = await startManagedDaemon({ daemon: { reload: async () => ({ reloaded: ++calls }) } });
  try {
    const a = await e3.admin();
    assert.equal((await a.reload()).reloaded, 1);
    const t = await e3.token('someone');
    await assert.rejects(t.reload(), ForbiddenError);
    assert.equal(calls, 1);
  } finally {
    await e3.stop();
  }
});

test('key changes and refusals are audited with the caller as `by`', async () => {
  const events: Array<Record<string, unknown>> = [];
  const audit = { enabled: true, emit: (e: object) => void events.push({ ...e }), close() {} };
  const e4 = await startManagedDaemon({ daemon: { audit } });
  try {
    const a = await e4.admin();
    await a.keys.create('audited', { type: 'aes256-gcm', exportable: true, clients: { '*': ['decrypt'] } });
    await a.keys.rotate('audited');
    await a.keys.setPolicy('audited', { minDecryptionVersion: 1 });
    await a.keys.export('audited');
    await a.keys.trim('audited', 2);
    const t = await e4.token('nosy');
    await assert.rejects(t.encrypt('audited', te.encode('x')), ForbiddenError);
    await a.keys.destroy('audited');
    const kinds = events.map((e) => e.event);
    for (const k of ['key.created', 'key.rotated', 'policy.changed', 'key.exported', 'key.destroyed', 'request.denied']) assert.ok(kinds.includes(k), `missing ${k} in ${kinds.join(', ')}`);
    const rotated = events.find((e) => e.event === 'key.rotated')!;
    assert.deepEqual([rotated.key, rotated.version, rotated.previousVersion, rotated.by], ['audited', 2, 1, 'local/admin']);
    const denied = events.find((e) => e.event === 'request.denied')!;
    assert.equal(denied.clientId, 'token:nosy');
    assert.ok(!JSON.stringify(events).includes('"material"'), 'no key material in audit events');
  } finally {
    await e4.stop();
  }
});

test('uid clients: the daemon uid administers; uid:<n>/<name> and uid:<n> rules apply end to end', async () => {
  const uid = process.getuid!();
  const e5 = await startManagedDaemon({ daemon: { peerIdentity: () => ({ uid, gid: process.getgid!(), pid: process.pid }) } });
  try {
    const a = await e5.admin('ops');
    assert.equal(a.info.clientId, `uid:${uid}/ops`);
    await a.keys.create('by-uid', { type: 'aes256-gcm', clients: { [`uid:${uid}/enc`]: ['encrypt'], [`uid:${uid}`]: ['decrypt'] } });
    const enc = await e5.admin('enc');
    const other = await e5.admin('other');
    const ct = await enc.encrypt('by-uid', te.encode('x'));
    await assert.rejects(enc.decrypt('by-uid', ct), ForbiddenError, 'the named rule replaces the uid rule');
    assert.equal(Buffer.from(await other.decrypt('by-uid', ct)).toString(), 'x');
    await assert.rejects(other.encrypt('by-uid', te.encode('x')), ForbiddenError);
  } finally {
    await e5.stop();
  }
});
