import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, test } from 'node:test';
import { startTestDaemon, type TestDaemon } from './helpers/daemon.js';

let t: TestDaemon;
before(async () => {
  t = await startTestDaemon();
});
after(async () => {
  await t.stop();
});

test('digest through the daemon matches node:crypto', async () => {
  const c = await t.connect();
  const data = Buffer.from('hello cryptod');
  for (const [alg, node] of [['SHA-256', 'sha256'], ['sha-384', 'sha384'], ['SHA-512', 'sha512'], ['SHA-1', 'sha1']] as const) {
    const d = await c.subtle.digest(alg, data);
    assert.equal(Buffer.from(d).toString('hex'), createHash(node).update(data).digest('hex'));
  }
  await c.close();
});

test('pipelined requests all complete', async () => {
  const c = await t.connect();
  const results = await Promise.all(Array.from({ length: 1000 }, (_, i) => c.subtle.digest('SHA-256', Buffer.from(String(i)))));
  results.forEach((d, i) => assert.equal(Buffer.from(d).toString('hex'), createHash('sha256').update(String(i)).digest('hex')));
  await c.close();
});
