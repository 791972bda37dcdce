/**
 * Replies that carry key material take the sensitive path: a MANAGED_DECRYPT
 * on an aes256-kwp key returns unwrapped key bytes, so its reply frame must
 * be outside the shared Buffer pool and zeroed once the socket wrote it.
 *
 * The real socket cannot show what stays in the daemon's memory, so this
 * test watches the daemon's writes (net.Socket.prototype.write, in this
 * process): the frame buffer handed to the socket must be zero afterwards.
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

/** Buffers written to any socket while `fn` runs; each one kept by reference. */
async function watchWrites<T>(fn: () => Promise<T>): Promise<{ result: T; written: Buffer[] }> {
  const { result, seen } = await watchSockets(fn);
  return { result, written: seen };
}

test('the reply of MANAGED_DECRYPT on a KWP key (unwrapped key bytes) is unpooled and zeroed after the write', async () => {
  await admin.keys.create('kek', { type: 'aes256-kwp' });
  const dek = randomBytes(32);
  const wrapped = await admin.encrypt('kek', dek);
  const { result, written } = await watchWrites(() => admin.decrypt('kek', wrapped));
  assert.deepEqual(Buffer.from(result), dek);
  // The daemon's reply frame is the one whose bytes were the DEK when written;
  // by then it may already be zeroed, so find it by elimination: the client
  // wrote the request (it holds the ciphertext, not the DEK), the daemon the rest.
  const replies = written.filter((b) => !b.includes(Buffer.from(wrapped)));
  assert.ok(replies.length > 0, 'the daemon wrote a reply');
  for (const r of replies) {
    assert.ok(r.buffer.byteLength === r.length || r.byteOffset === 0, 'the reply frame is not a slice of the shared pool');
  }
  await eventually(() => replies.every((r) => !r.includes(dek)), 5000, 'the reply frame zeroed after the write');
  for (const r of replies) assert.ok(!r.some((x) => x !== 0), 'the whole reply frame is zeroed');

  // Batch form: every unwrapped key in the reply goes the same way.
  const more = [randomBytes(32), randomBytes(48)];
  const cts = await Promise.all(more.map((k) => admin.encrypt('kek', k)));
  const batch = await watchWrites(() => admin.decryptBatch('kek', cts.map((c) => ({ data: c }))));
  const batchReplies = batch.written.filter((b) => !cts.some((c) => b.includes(Buffer.from(c))));
  assert.ok(batchReplies.length > 0);
  await eventually(() => batchReplies.every((r) => !r.some((x) => x !== 0)), 5000, 'the batch reply frame zeroed after the write');
});
