/**
 * Rotation under load (through the daemon): thousands of
 * concurrent encrypt/decrypt/mac requests over the socket while the keys
 * rotate again and again: zero errors, every ciphertext made during the
 * churn decrypts, and the versions used cover the rotations.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseHeader } from '../src/protocol/managed-format.js';
import { startManagedDaemon } from './managed-env.js';

test('thousands of concurrent operations while rotating repeatedly: zero errors', async () => {
  const env = await startManagedDaemon();
  try {
    const admin = await env.admin();
    await admin.keys.create('hot', { type: 'aes256-gcm' });
    await admin.keys.create('hot-mac', { type: 'hmac-sha256' });
    const workers = await Promise.all([1, 2, 3, 4].map((i) => env.admin(`w${i}`)));
    const PER_WORKER = 1500;
    const WAVE = 250;
    let stop = false;
    let rotations = 0;
    const rotator = (async () => {
      while (!stop) {
        await admin.keys.rotate('hot');
        await admin.keys.rotate('hot-mac');
        rotations++;
        await new Promise((r) => setImmediate(r));
      }
    })();
    const errors: unknown[] = [];
    const versions = new Set<number>();
    let done = 0;
    await Promise.all(
      workers.map(async (c, w) => {
        for (let base = 0; base < PER_WORKER; base += WAVE) {
          await Promise.all(
            Array.from({ length: WAVE }, async (_, i) => {
              const n = base + i;
              const pt = Buffer.from(`w${w} item ${n}`);
              const aad = Buffer.from(`aad ${n}`);
              try {
                const ct = await c.encrypt('hot', pt, { aad });
                versions.add(parseHeader(ct, 'ciphertext').header.version);
                const back = await c.decrypt('hot', ct, { aad });
                assert.deepEqual(Buffer.from(back), pt);
                const tag = await c.mac('hot-mac', pt);
                assert.equal(await c.verifyMac('hot-mac', pt, tag), true);
                done++;
              } catch (err) {
                errors.push(err);
              }
            }),
          );
        }
      }),
    );
    stop = true;
    await rotator;
    assert.deepEqual(errors.slice(0, 3), [], `${errors.length} operations failed`);
    assert.equal(done, 4 * PER_WORKER);
    assert.ok(rotations >= 3, `expected several rotations during the load, got ${rotations}`);
    assert.ok(versions.size >= 3, `expected ciphertexts under several versions, got ${versions.size}`);
    // Everything made under old versions still decrypts after the churn (no grace model: data at rest).
    const ct = await workers[0]!.encrypt('hot', Buffer.from('after'));
    assert.equal(Buffer.from(await workers[0]!.decrypt('hot', ct)).toString(), 'after');
    assert.equal(env.keys.manager.stats().draining, 0, 'every retired snapshot was released');
  } finally {
    await env.stop();
  }
});
