/**
 * Random-nonce AEADs and header binding of managed ciphertexts, against a
 * real daemon: ChaCha20-Poly1305 versions are counted and rotated at the
 * threshold like AES-GCM; derived ChaCha20-Poly1305 epoch keys encrypt under
 * per-message keys (format 2); aes256-kwp ciphertexts bind their header
 * through a per-header key (format 2), so one blob cannot be relabelled to
 * another key holding the same material; format 1 outputs still decrypt.
 */
import assert from 'node:assert/strict';
import { createCipheriv, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import type { Client } from '../src/client/client.js';
import { openManagedKeys } from '../src/daemon/managed-keys.js';
import { deriveEpochKey } from '../src/keys/epoch.js';
import { BusyError, DecryptError } from '../src/protocol/errors.js';
import { encodeHeader, parseHeader } from '../src/protocol/managed-format.js';
import { startTestDaemon } from './helpers/daemon.js';
import { makeTempDir } from './store/tmpdir.js';

const te = new TextEncoder();

async function withDaemon(fn: (c: Client) => Promise<void>, budget?: { block: number; rotateAt: number; limit: number }): Promise<void> {
  const data = makeTempDir('cd-nonce-');
  const keys = await openManagedKeys({ dataDir: data.path, ...(budget === undefined ? {} : { budget }) });
  const td = await startTestDaemon({ keys });
  try {
    await fn(await td.connect('admin'));
  } finally {
    await td.stop();
    await keys.close();
    await data.cleanup();
  }
}

test('ChaCha20-Poly1305 versions carry a reserved encryption budget and rotate at its threshold', async () => {
  await withDaemon(async (c) => {
    await c.keys.create('chacha', { type: 'chacha20-poly1305' });
    assert.equal((await c.keys.describe('chacha')).versions[0]!.encryptionsReserved, 8, 'the first block is reserved with the version');
    const versions = new Set<number>();
    for (let made = 0; made < 30; ) {
      try {
        const ct = await c.encrypt('chacha', te.encode('x'));
        versions.add(parseHeader(ct, 'ciphertext').header.version);
        made++;
      } catch (err) {
        if (!(err instanceof BusyError)) throw err; // a reservation in flight: retry
      }
    }
    assert.ok(versions.has(2), 'the key rotated once version 1 reached rotateAt');
    const v1 = (await c.keys.describe('chacha')).versions.find((v) => v.version === 1)!;
    assert.ok((v1.encryptionsReserved ?? 0) >= 20, `version 1's stored count ${String(v1.encryptionsReserved)} covers what it encrypted`);
  }, { block: 8, rotateAt: 20, limit: 32 });
});

test('derived ChaCha20-Poly1305 epoch keys encrypt under per-message keys; format 1 ciphertexts still decrypt', async () => {
  await withDaemon(async (c) => {
    const master = randomBytes(32);
    await c.keys.import('fleet', { type: 'chacha20-poly1305', rotationPeriod: '1h', gracePeriod: '10m', derived: { epochStart: 0 }, material: master });
    const ct = Buffer.from(await c.encrypt('fleet', te.encode('hello'), { aad: te.encode('a') }));
    const { header } = parseHeader(ct, 'ciphertext');
    assert.equal(header.format, 2, 'a derived ChaCha20-Poly1305 key writes format 2 (salt ‖ nonce ‖ ciphertext ‖ tag)');
    assert.equal(ct.length, header.bytes.length + 16 + 12 + 5 + 16);
    assert.equal(Buffer.from(await c.decrypt('fleet', ct, { aad: te.encode('a') })).toString(), 'hello');
    // Two encryptions of the same plaintext share neither salt nor ciphertext.
    const ct2 = Buffer.from(await c.encrypt('fleet', te.encode('hello'), { aad: te.encode('a') }));
    assert.notDeepEqual(ct2.subarray(header.bytes.length, header.bytes.length + 16), ct.subarray(header.bytes.length, header.bytes.length + 16));
    // A format 1 ciphertext (the epoch key used directly), as written before.
    const epochKey = deriveEpochKey(master, 'fleet', header.version, 32);
    const h1 = encodeHeader('ciphertext', 'chacha20-poly1305', 'fleet', header.version);
    const nonce = randomBytes(12);
    const ci = createCipheriv('chacha20-poly1305', epochKey, nonce, { authTagLength: 16 });
    ci.setAAD(h1, { plaintextLength: 6 });
    const old = Buffer.concat([h1, nonce, ci.update('legacy'), ci.final(), ci.getAuthTag()]);
    assert.equal(Buffer.from(await c.decrypt('fleet', old, {})).toString(), 'legacy');
  });
});

test('aes256-kwp ciphertexts authenticate their header: a blob relabelled to another key with the same material is refused', async () => {
  await withDaemon(async (c) => {
    const kek = randomBytes(32);
    await c.keys.import('wrap-a', { type: 'aes256-kwp', material: kek });
    await c.keys.import('wrap-b', { type: 'aes256-kwp', material: kek });
    const dek = randomBytes(32);
    const blob = Buffer.from(await c.encrypt('wrap-a', dek));
    assert.equal(parseHeader(blob, 'ciphertext').header.format, 2);
    assert.deepEqual(Buffer.from(await c.decrypt('wrap-a', blob)), dek);
    const relabelled = Buffer.from(blob);
    relabelled.write('wrap-b', 7, 'utf8'); // same length: only the name in the header changes
    await assert.rejects(c.decrypt('wrap-b', relabelled), DecryptError);
    // A changed version byte is refused too (the daemon holds no version 2; once it does, the key differs).
    await c.keys.rotate('wrap-a');
    const bumped = Buffer.from(blob);
    bumped.writeUInt32BE(2, 7 + 'wrap-a'.length);
    await assert.rejects(c.decrypt('wrap-a', bumped), DecryptError);
    // Format 1 (RFC 5649 under the version key itself), as written before, still unwraps.
    const h1 = encodeHeader('ciphertext', 'aes256-kwp', 'wrap-a', 1);
    const w = createCipheriv('id-aes256-wrap-pad', kek, Buffer.from('a65959a6', 'hex'));
    const old = Buffer.concat([h1, w.update(dek), w.final()]);
    assert.deepEqual(Buffer.from(await c.decrypt('wrap-a', old)), dek);
  });
});
