/**
 * Wycheproof ChaCha20-Poly1305 (chacha20_poly1305_test.json) through the
 * daemon: every case is `client.subtle.importKey('raw', …)` then `encrypt` /
 * `decrypt`.
 * - valid: encrypt gives exactly ct ‖ tag and decrypt gives back msg;
 * - invalid: decrypt is rejected with a typed error — DecryptError for a
 *   modified tag; InvalidArgumentError for a nonce that is not 12 bytes
 *   (RFC 8439 §2.8), on encrypt as well.
 * Requests are pipelined in batches of 64 on one connection.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Client } from '../../src/client/client.js';
import type { CryptoKey } from '../../src/client/subtle.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { hexOf, inBatches, loadVectors, outcome, Tally, unhex, type WycheproofTest } from './wycheproof.js';

interface AeadTest extends WycheproofTest {
  key: string;
  iv: string;
  aad: string;
  msg: string;
  ct: string;
  tag: string;
}

let t: TestDaemon;
let c: Client;
before(async () => {
  t = await startTestDaemon();
  c = await t.connect('wycheproof-chacha20-poly1305');
});
after(async () => {
  await c.close();
  await t.stop();
});

test('Wycheproof chacha20_poly1305: 325 cases through client.subtle', async () => {
  const file = loadVectors<AeadTest, { keySize: number; ivSize: number; tagSize: number }>('chacha20_poly1305');
  const tally = new Tally('chacha20_poly1305', file.numberOfTests);
  const keys = new Map<string, Promise<CryptoKey>>();
  const keyFor = (hex: string): Promise<CryptoKey> => {
    let k = keys.get(hex);
    if (k === undefined) {
      k = c.subtle.importKey('raw', unhex(hex), { name: 'ChaCha20-Poly1305' }, false, ['encrypt', 'decrypt']);
      keys.set(hex, k);
    }
    return k;
  };

  const cases = file.testGroups.flatMap((g) => g.tests.map((tc) => ({ tc, tagSize: g.tagSize })));
  await inBatches(cases, 64, async ({ tc, tagSize }) => {
    const what = `tcId ${tc.tcId} (${tc.flags.join(',')}${tc.comment ? `: ${tc.comment}` : ''})`;
    assert.equal(tagSize, 128, `${what}: ChaCha20-Poly1305 tags are 128 bits`);
    const key = await keyFor(tc.key);
    const algorithm = { name: 'ChaCha20-Poly1305', iv: unhex(tc.iv), additionalData: unhex(tc.aad) };
    const sealed = unhex(tc.ct + tc.tag);
    const decrypted = await outcome(c.subtle.decrypt(algorithm, key, sealed), `${what} decrypt`);
    if (tc.result === 'valid') {
      const encrypted = await outcome(c.subtle.encrypt(algorithm, key, unhex(tc.msg)), `${what} encrypt`);
      assert.ok(encrypted.ok, `${what}: encrypt refused: ${encrypted.ok ? '' : encrypted.error.message}`);
      assert.equal(hexOf(encrypted.value), tc.ct + tc.tag, `${what}: ciphertext ‖ tag`);
      assert.ok(decrypted.ok, `${what}: decrypt refused: ${decrypted.ok ? '' : decrypted.error.message}`);
      assert.equal(hexOf(decrypted.value), tc.msg, `${what}: plaintext`);
    } else {
      assert.equal(tc.result, 'invalid', `${what}: this file has no acceptable cases`);
      assert.ok(!decrypted.ok, `${what}: an invalid case was decrypted`);
      if (tc.flags.includes('ModifiedTag')) {
        assert.equal(decrypted.error.code, 'CRYPTOD_ERR_DECRYPT_FAILED', `${what}: ${decrypted.error.message}`);
      } else {
        assert.deepEqual(tc.flags, ['InvalidNonceSize'], `${what}: an invalid class this test does not know`);
        assert.equal(decrypted.error.code, 'CRYPTOD_ERR_INVALID_ARGUMENT', `${what}: ${decrypted.error.message}`);
        const encrypted = await outcome(c.subtle.encrypt(algorithm, key, unhex(tc.msg)), `${what} encrypt`);
        assert.ok(!encrypted.ok && encrypted.error.code === 'CRYPTOD_ERR_INVALID_ARGUMENT', `${what}: encrypt with a ${tc.iv.length / 2}-byte nonce was not refused`);
      }
    }
    tally.ran1(tc);
  });

  tally.assertComplete({ ran: 325 });
  assert.deepEqual(tally.ran, { valid: 256, invalid: 69, acceptable: 0 });
});
