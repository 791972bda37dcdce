/**
 * Wycheproof AES-KWP (aes_kwp_test.json, RFC 5649) through the daemon.
 *
 * The wrapped "msg" has any length from 1 to 384 bytes, which no cipher key
 * has; it is imported as a raw HMAC key (HMAC keys may have any length of at
 * least 1 byte) and wrapped with wrapKey('raw', …, 'AES-KWP'), which must
 * give `ct`. Then unwrapKey('raw', ct, …, 'AES-KWP', HMAC) followed by
 * exportKey('raw') must give `msg` back. Invalid cases (modified padding,
 * including three whose msg is empty) must be refused by unwrapKey with a
 * typed error; they are never wrapped, since their `ct` is not what a correct
 * wrap produces.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Client } from '../../src/client/client.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { hexOf, inBatches, loadVectors, outcome, Tally, unhex, type WycheproofTest } from './wycheproof.js';

interface KwTest extends WycheproofTest {
  key: string;
  msg: string;
  ct: string;
}

const HMAC = { name: 'HMAC', hash: 'SHA-256' };

let t: TestDaemon;
let c: Client;
before(async () => {
  t = await startTestDaemon();
  c = await t.connect('wycheproof-kwp');
});
after(async () => {
  await c.close();
  await t.stop();
});

test('Wycheproof aes_kwp: 254 cases through client.subtle', async () => {
  const file = loadVectors<KwTest, { keySize: number }>('aes_kwp');
  const tally = new Tally('aes_kwp', file.numberOfTests);
  const codes = new Map<string, number>();
  for (const group of file.testGroups) {
    await inBatches(group.tests, 64, async (tc) => {
      const what = `tcId ${tc.tcId} (${tc.comment})`;
      assert.equal(tc.key.length * 4, group.keySize);
      const kek = await c.subtle.importKey('raw', unhex(tc.key), 'AES-KWP', false, ['wrapKey', 'unwrapKey']);
      if (tc.result === 'valid') {
        const msgKey = await c.subtle.importKey('raw', unhex(tc.msg), HMAC, true, ['sign']);
        assert.equal(hexOf(await c.subtle.wrapKey('raw', msgKey, kek, 'AES-KWP')), tc.ct, `${what}: wrong ciphertext`);
        const back = await c.subtle.unwrapKey('raw', unhex(tc.ct), kek, 'AES-KWP', HMAC, true, ['sign']);
        assert.equal(hexOf(await c.subtle.exportKey('raw', back)), tc.msg, `${what}: unwrap gave other bytes`);
        await Promise.all([msgKey.release(), back.release()]);
      } else {
        const r = await outcome(c.subtle.unwrapKey('raw', unhex(tc.ct), kek, 'AES-KWP', HMAC, true, ['sign']), what);
        assert.ok(!r.ok, `${what}: an invalid ciphertext was unwrapped`);
        codes.set(r.error.code, (codes.get(r.error.code) ?? 0) + 1);
      }
      await kek.release();
      tally.ran1(tc);
    });
  }
  tally.assertComplete({ ran: 254 });
  assert.deepEqual(tally.ran, { valid: 77, invalid: 177, acceptable: 0 });
  // Every invalid case fails the integrity/padding check itself, not some later step.
  assert.deepEqual(Object.fromEntries(codes), { CRYPTOD_ERR_DECRYPT_FAILED: 177 });
});
