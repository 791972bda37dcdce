/**
 * The client's side of "key bytes are zeroed when released": a reply that
 * carries key material (an exported managed key, a data key's plaintext, a
 * RANDOM) is copied out of the socket's read buffer and the frame zeroed,
 * and a request that carries it (KEY_IMPORT's material) is zeroed once
 * written. Otherwise the bytes stay in Node's read chunks (or the written
 * frame) until the garbage collector reuses the memory.
 *
 * The real socket cannot show what stays in this process's memory, so the
 * test keeps a reference to every chunk read from a socket (`data` events)
 * and every buffer written to one, in this process (the daemon runs here
 * too): none may still hold the secret once the call has returned.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import type { Client } from '../src/client/client.js';
import { eventually } from './helpers/daemon.js';
import { watchSockets } from './helpers/socket-watch.js';
import { startManagedDaemon, type ManagedEnv } from './managed-env.js';

let env: ManagedEnv;
let admin: Client;

before(async () => {
  env = await startManagedDaemon();
  admin = await env.admin();
});
after(async () => env.stop());

/** Every buffer read from or written to a socket in this process while `fn` runs, kept by reference. */
function watch<T>(fn: () => Promise<T>): Promise<{ result: T; seen: Buffer[] }> {
  return watchSockets(fn, { reads: true });
}

async function assertGone(seen: Buffer[], secret: Uint8Array, what: string): Promise<void> {
  assert.ok(secret.length >= 16 && secret.some((b) => b !== 0), 'a secret worth looking for');
  const needle = Buffer.from(secret);
  await eventually(() => seen.every((b) => !b.includes(needle)), 5000, `${what}: no socket buffer still holds the secret`);
}

test('an exported managed key: the reply frame is zeroed on both sides; the caller gets its own copy', async () => {
  await admin.keys.create('export-me', { type: 'aes256-gcm' });
  await admin.keys.setPolicy('export-me', { exportable: true });
  const { result, seen } = await watch(() => admin.keys.export('export-me'));
  const copy = Buffer.from(result.material);
  assert.equal(copy.length, 32);
  await assertGone(seen, copy, 'KEY_EXPORT');
  assert.ok(Buffer.from(result.material).equals(copy), "the caller's copy is intact");
});

test('KEY_IMPORT: the request frame carrying the material is zeroed once written, on both sides', async () => {
  const material = randomBytes(32);
  const { seen } = await watch(() => admin.keys.import('imported', { type: 'aes256-gcm', material }));
  await assertGone(seen, material, 'KEY_IMPORT');
});

test("a data key's plaintext (generate with plaintext, unwrap): zeroed in the socket buffers", async () => {
  await admin.keys.create('dk-kek', { type: 'aes256-kwp', clients: { 'local/admin': ['datakey', 'datakey-plaintext'] } });
  const g = await watch(() => admin.dataKeys.generate({ kek: 'dk-kek', plaintext: true }));
  const key = Buffer.from(g.result.plaintext!);
  await assertGone(g.seen, key, 'DATAKEY_GENERATE');
  const u = await watch(() => admin.dataKeys.unwrap(g.result.wrappedKey));
  assert.ok(Buffer.from(u.result).equals(key));
  await assertGone(u.seen, key, 'DATAKEY_UNWRAP');
});

test('RANDOM: the bytes are only in the caller\'s array', async () => {
  const array = new Uint8Array(64);
  const { seen } = await watch(() => admin.getRandomValues(array));
  await assertGone(seen, array, 'RANDOM');
});

test('MANAGED_DECRYPT on a KWP key (an unwrapped key), single and batch: zeroed in the socket buffers', async () => {
  await admin.keys.create('kwp', { type: 'aes256-kwp' });
  const dek = randomBytes(32);
  const wrapped = await admin.encrypt('kwp', dek);
  const one = await watch(() => admin.decrypt('kwp', wrapped));
  assert.ok(Buffer.from(one.result).equals(dek));
  await assertGone(one.seen, dek, 'MANAGED_DECRYPT');
  const many = await watch(() => admin.decryptBatch('kwp', [{ data: wrapped }]));
  assert.ok(Buffer.from(many.result[0] as Uint8Array).equals(dek));
  await assertGone(many.seen, dek, 'MANAGED_DECRYPT batch');
});
