/**
 * Moving a managed key between two real daemons (separate data directories,
 * so separate root KEKs) without its plaintext: KEY_BACKUP on the sender,
 * KEY_RESTORE on the receiver (src/keys/backup.ts, docs/formats.md "Key backups").
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Client } from '../src/client/client.js';
import { BackupInvalidError, DecryptError, ForbiddenError, InvalidArgumentError, NotExtractableError } from '../src/protocol/errors.js';
import { zeroTransfer } from '../src/keys/transfer.js';
import { startManagedDaemon, type ManagedEnv } from './managed-env.js';

let sender: ManagedEnv;
let receiver: ManagedEnv;
let a: Client;
let b: Client;
let recipient: Uint8Array;
let trust: Uint8Array;
const sent: Array<Record<string, unknown>> = [];
const received: Array<Record<string, unknown>> = [];

const auditTo = (into: Array<Record<string, unknown>>) => ({ enabled: true, emit: (e: object) => void into.push({ ...e }), close() {} });

before(async () => {
  sender = await startManagedDaemon({ daemon: { audit: auditTo(sent) } });
  receiver = await startManagedDaemon({ daemon: { audit: auditTo(received) } });
  a = await sender.admin();
  b = await receiver.admin();
  await b.keys.create('transfer', { type: 'x25519' });
  recipient = (await b.keys.publicKey('transfer')).spki;
  await a.keys.create('backup-signer', { type: 'ed25519' });
  trust = (await a.keys.publicKey('backup-signer')).spki;
});
after(async () => {
  await sender.stop();
  await receiver.stop();
});

test('the two daemons have different root keys', () => {
  const root = (e: ManagedEnv): Buffer => readFileSync(join(e.data.path, 'root.key'));
  assert.notDeepEqual(root(sender), root(receiver));
});

test('an x25519 transfer key serves its public key and nothing else', async () => {
  const pub = await b.keys.publicKey('transfer');
  assert.equal(pub.type, 'x25519');
  assert.equal(pub.jwk.crv, 'X25519');
  await assert.rejects(b.encrypt('transfer', Buffer.from('x')), (e: unknown) => (e as { code?: string }).code === 'CRYPTOD_ERR_INVALID_KEY');
});

test('a backed-up AES-GCM key decrypts its old ciphertexts on the receiver, every version', async () => {
  await a.keys.create('orders', { type: 'aes256-gcm', allowBackup: true });
  const ct1 = await a.encrypt('orders', Buffer.from('first'), { aad: Buffer.from('o-1') });
  await a.keys.rotate('orders');
  const ct2 = await a.encrypt('orders', Buffer.from('second'));
  const { backup, versions } = await a.keys.backup('orders', { recipient, signingKey: 'backup-signer' });
  assert.equal(versions, 2);
  const r = await b.keys.restore(backup, { trust });
  assert.equal(r.replaced, false);
  assert.equal(r.key.name, 'orders');
  assert.equal((r.key.policy as Record<string, unknown>).allowBackup, true);
  const was = await a.keys.describe('orders');
  assert.deepEqual(r.key.versions.map((v) => [v.version, v.state, v.notBefore, v.notAfter]), was.versions.map((v) => [v.version, v.state, v.notBefore, v.notAfter]));
  assert.equal(r.key.currentVersion, 2);
  assert.equal(Buffer.from(await b.decrypt('orders', ct1, { aad: Buffer.from('o-1') })).toString(), 'first');
  assert.equal(Buffer.from(await b.decrypt('orders', ct2)).toString(), 'second');
  // And the other way round: the receiver's new ciphertexts are the same key's.
  const back = await b.encrypt('orders', Buffer.from('third'));
  assert.equal(Buffer.from(await a.decrypt('orders', back)).toString(), 'third');
  const bs = sent.find((e) => e.event === 'key.backed-up');
  assert.deepEqual([bs?.key, bs?.versions, bs?.signingKey, bs?.by], ['orders', 2, 'backup-signer:1', 'local/admin']);
  const rs = received.find((e) => e.event === 'key.restored');
  assert.deepEqual([rs?.key, rs?.versions, rs?.transferKey, rs?.signer, rs?.replaced], ['orders', 2, 'transfer:1', 'backup-signer:1', false]);
});

test('a backed-up signing key verifies old signatures on the receiver with the same public keys', async () => {
  await a.keys.create('releases', { type: 'ecdsa-p256', allowBackup: true });
  const sig1 = await a.sign('releases', Buffer.from('v1.0'));
  await a.keys.rotate('releases');
  const sig2 = await a.sign('releases', Buffer.from('v2.0'));
  const { backup } = await a.keys.backup('releases', { recipient, signingKey: 'backup-signer' });
  await b.keys.restore(backup, { trust });
  assert.equal(await b.verify('releases', Buffer.from('v1.0'), sig1), true);
  assert.equal(await b.verify('releases', Buffer.from('v2.0'), sig2), true);
  assert.equal(await b.verify('releases', Buffer.from('v2.1'), sig2), false);
  for (const version of [1, 2]) {
    assert.deepEqual(Buffer.from((await b.keys.publicKey('releases', { version })).spki), Buffer.from((await a.keys.publicKey('releases', { version })).spki));
  }
});

test('a flipped bit anywhere in the backup is refused, and the receiver keeps its key', async () => {
  await a.keys.create('flip', { type: 'hmac-sha256', allowBackup: true });
  const mac = await a.mac('flip', Buffer.from('m'));
  const { backup } = await a.keys.backup('flip', { recipient, signingKey: 'backup-signer' });
  await b.keys.restore(backup, { trust });
  for (let i = 0; i < backup.length; i++) {
    const bad = Buffer.from(backup);
    bad[i]! ^= 1 << (i % 8);
    // --force: the refusal must come from the tampering, not from the name being taken.
    await assert.rejects(b.keys.restore(bad, { trust, force: true }), BackupInvalidError, `byte ${i} flipped was accepted`);
  }
  await assert.rejects(b.keys.restore(backup.subarray(0, backup.length - 1), { trust, force: true }), BackupInvalidError);
  await assert.rejects(b.keys.restore(Buffer.concat([backup, Buffer.from([0])]), { trust, force: true }), BackupInvalidError);
  assert.equal(await b.verifyMac('flip', Buffer.from('m'), mac), true);
  assert.equal(await b.ping('alive'), 'alive');
});

test('a key without allowBackup is refused; allowing it is for daemon administrators only, and audited', async () => {
  await a.keys.create('private', { type: 'aes256-gcm', clients: { 'token:ops': ['admin'] } });
  await assert.rejects(
    a.keys.backup('private', { recipient, signingKey: 'backup-signer' }),
    (e: unknown) => e instanceof NotExtractableError && e.detail?.field === 'allowBackup' && /allowBackup/.test(e.message),
  );
  const ops = await sender.token('ops');
  await assert.rejects(ops.keys.setPolicy('private', { allowBackup: true }), (e: unknown) => e instanceof ForbiddenError && e.detail?.field === 'allowBackup');
  await assert.rejects(ops.keys.backup('private', { recipient, signingKey: 'backup-signer' }), ForbiddenError);
  sent.length = 0;
  await a.keys.setPolicy('private', { allowBackup: true });
  assert.deepEqual(sent.filter((e) => e.event === 'key.backup-allowed').map((e) => [e.key, e.by]), [['private', 'local/admin']]);
  // Taking it back is anyone's with admin on the key: it only stops future backups.
  await ops.keys.setPolicy('private', { allowBackup: false });
  await assert.rejects(a.keys.backup('private', { recipient, signingKey: 'backup-signer' }), NotExtractableError);
});

test('no key bytes in the backup file, in any encoding', async () => {
  await a.keys.create('secretive', { type: 'aes256-gcm', allowBackup: true });
  await a.keys.rotate('secretive');
  await a.keys.create('secretive-ed', { type: 'ed25519', allowBackup: true });
  for (const name of ['secretive', 'secretive-ed']) {
    const { backup } = await a.keys.backup(name, { recipient, signingKey: 'backup-signer' });
    const file = Buffer.from(backup);
    const text = file.toString('latin1');
    const k = await sender.keys.manager.readForBackup(name);
    try {
      for (const v of k.versions) {
        const m = v.material!;
        // Any 8 bytes of the material in a row (the last 32 bytes of a PKCS#8 Ed25519 key are the seed).
        for (let i = 0; i + 8 <= m.length; i++) assert.equal(file.indexOf(m.subarray(i, i + 8)), -1, `${name} v${v.version}: raw bytes at ${i}`);
        for (const enc of ['hex', 'HEX', 'base64', 'base64url'] as const) {
          const s = enc === 'HEX' ? m.toString('hex').toUpperCase() : m.toString(enc);
          for (let i = 0; i + 16 <= s.length; i += 4) assert.ok(!text.includes(s.slice(i, i + 16)), `${name} v${v.version}: ${enc} at ${i}`);
        }
      }
    } finally {
      zeroTransfer(k);
    }
  }
});

test('restore without force onto an existing name is refused; with force the key becomes the backup', async () => {
  await a.keys.create('shared', { type: 'aes256-gcm', allowBackup: true });
  const ct = await a.encrypt('shared', Buffer.from('from a'));
  await b.keys.create('shared', { type: 'aes256-gcm' });
  const own = await b.encrypt('shared', Buffer.from('from b'));
  const { backup } = await a.keys.backup('shared', { recipient, signingKey: 'backup-signer' });
  await assert.rejects(b.keys.restore(backup, { trust }), (e: unknown) => e instanceof InvalidArgumentError && /--force/.test(e.message));
  assert.equal(Buffer.from(await b.decrypt('shared', own)).toString(), 'from b', 'the refused restore changed nothing');
  const r = await b.keys.restore(backup, { trust, force: true });
  assert.equal(r.replaced, true);
  assert.equal(Buffer.from(await b.decrypt('shared', ct)).toString(), 'from a');
  // The receiver's own version 1 is gone: its ciphertext meets the backup's key.
  await assert.rejects(b.decrypt('shared', own), DecryptError);
});

test('a backup from an untrusted signer, or for another daemon, is refused', async () => {
  await a.keys.create('elsewhere', { type: 'aes256-gcm', allowBackup: true });
  await a.keys.create('rogue-signer', { type: 'ed25519' });
  const rogue = await a.keys.backup('elsewhere', { recipient, signingKey: 'rogue-signer' });
  await assert.rejects(b.keys.restore(rogue.backup, { trust }), (e: unknown) => e instanceof BackupInvalidError && /rogue-signer/.test(e.message));
  // Encrypted to the sender's own transfer key: the receiver holds no key for it.
  await a.keys.create('a-transfer', { type: 'x25519' });
  const other = await a.keys.backup('elsewhere', { recipient: (await a.keys.publicKey('a-transfer')).spki, signingKey: 'backup-signer' });
  await assert.rejects(b.keys.restore(other.backup, { trust }), (e: unknown) => e instanceof BackupInvalidError && /does not hold/.test(e.message));
  // A recipient or trust key of the wrong type is named as such.
  await assert.rejects(a.keys.backup('elsewhere', { recipient: trust, signingKey: 'backup-signer' }), (e: unknown) => /x25519/.test((e as Error).message));
  await assert.rejects(b.keys.restore(rogue.backup, { trust: recipient }), (e: unknown) => /ed25519/.test((e as Error).message));
  await assert.rejects(a.keys.backup('elsewhere', { recipient, signingKey: 'orders' }), (e: unknown) => /ed25519/.test((e as Error).message));
});

test('only administrators restore', async () => {
  const { backup } = await a.keys.backup('orders', { recipient, signingKey: 'backup-signer' });
  const t = await receiver.token('someone');
  await assert.rejects(t.keys.restore(backup, { trust, force: true }), ForbiddenError);
});

test('a derived epoch key moves with its master secret and schedule', async () => {
  await a.keys.create('epochs', { type: 'hmac-sha256', derived: { epochStart: '2026-01-01T00:00:00Z' }, rotationPeriod: '1d', gracePeriod: '1h', allowBackup: true });
  const tag = await a.mac('epochs', Buffer.from('today'));
  const { backup } = await a.keys.backup('epochs', { recipient, signingKey: 'backup-signer' });
  const r = await b.keys.restore(backup, { trust });
  assert.deepEqual(r.key.derived, (await a.keys.describe('epochs')).derived);
  assert.equal(await b.verifyMac('epochs', Buffer.from('today'), tag), true);
  assert.deepEqual(Buffer.from(await b.mac('epochs', Buffer.from('today'))), Buffer.from(tag));
});
