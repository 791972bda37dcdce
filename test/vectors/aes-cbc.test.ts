/**
 * Wycheproof AES-CBC with PKCS #5/#7 padding (aes_cbc_pkcs5_test.json)
 * through the daemon. Valid cases: ENCRYPT with `{ name: 'AES-CBC', iv }`
 * gives `ct` and DECRYPT gives `msg` back. Invalid cases (wrong padding, or
 * no padding at all): DECRYPT is refused with CRYPTOD_ERR_DECRYPT_FAILED, one
 * message for every kind of failure.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Client } from '../../src/client/client.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { hexOf, inBatches, loadVectors, outcome, Tally, unhex, type WycheproofTest } from './wycheproof.js';

interface CbcTest extends WycheproofTest {
  key: string;
  iv: string;
  msg: string;
  ct: string;
}

let t: TestDaemon;
let c: Client;
before(async () => {
  t = await startTestDaemon();
  c = await t.connect('wycheproof-aes-cbc');
});
after(async () => {
  await c.close();
  await t.stop();
});

test('Wycheproof aes_cbc_pkcs5: 216 cases through client.subtle', async () => {
  const file = loadVectors<CbcTest, { keySize: number; ivSize: number }>('aes_cbc_pkcs5');
  const tally = new Tally('aes_cbc_pkcs5', file.numberOfTests);
  const sizes = new Set<number>();
  for (const group of file.testGroups) {
    assert.equal(group.ivSize, 128);
    sizes.add(group.keySize);
    await inBatches(group.tests, 64, async (tc) => {
      const what = `tcId ${tc.tcId} (${tc.comment})`;
      const key = await c.subtle.importKey('raw', unhex(tc.key), 'AES-CBC', false, ['encrypt', 'decrypt']);
      const params = { name: 'AES-CBC', iv: unhex(tc.iv) };
      const d = await outcome(c.subtle.decrypt(params, key, unhex(tc.ct)), what);
      if (tc.result === 'valid') {
        assert.ok(d.ok, `${what}: refused: ${d.ok ? '' : d.error.message}`);
        assert.equal(hexOf(d.value), tc.msg, `${what}: wrong plaintext`);
        assert.equal(hexOf(await c.subtle.encrypt(params, key, unhex(tc.msg))), tc.ct, `${what}: wrong ciphertext`);
      } else {
        assert.ok(!d.ok, `${what}: a badly padded ciphertext was decrypted`);
        assert.equal(d.error.code, 'CRYPTOD_ERR_DECRYPT_FAILED', `${what}: ${d.error.message}`);
      }
      await key.release();
      tally.ran1(tc);
    });
  }
  tally.assertComplete({ ran: 216 });
  assert.deepEqual(tally.ran, { valid: 72, invalid: 144, acceptable: 0 });
  assert.deepEqual([...sizes].sort(), [128, 192, 256]);
});

test('AES-CBC: iv must be 16 bytes; JWK alg A256CBC; wrapKey/unwrapKey', async () => {
  const key = await c.subtle.generateKey({ name: 'AES-CBC', length: 256 }, true, ['encrypt', 'decrypt', 'wrapKey', 'unwrapKey']);
  assert.equal((await c.subtle.exportKey('jwk', key) as { alg?: string }).alg, 'A256CBC');
  const bad = await outcome(c.subtle.encrypt({ name: 'AES-CBC', iv: new Uint8Array(12) }, key, new Uint8Array(1)), 'short iv');
  assert.ok(!bad.ok && bad.error.code === 'CRYPTOD_ERR_INVALID_ARGUMENT' && /16 bytes/.test(bad.error.message));
  const hmac = await c.subtle.generateKey({ name: 'HMAC', hash: 'SHA-256' }, true, ['sign']);
  const iv = new Uint8Array(16).fill(9);
  const wrapped = await c.subtle.wrapKey('jwk', hmac, key, { name: 'AES-CBC', iv });
  const back = await c.subtle.unwrapKey('jwk', wrapped, key, { name: 'AES-CBC', iv }, { name: 'HMAC', hash: 'SHA-256' }, true, ['sign']);
  assert.equal(hexOf(await c.subtle.exportKey('raw', back) as ArrayBuffer), hexOf(await c.subtle.exportKey('raw', hmac) as ArrayBuffer));
});
