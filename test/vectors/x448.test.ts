/**
 * Wycheproof X448 (x448_test.json) through the daemon.
 *
 * Each 56-byte private scalar is wrapped in the fixed PKCS #8 prefix of
 * RFC 8410 §7 for X448 (30 46 02 01 00 30 05 06 03 2b 65 6f 04 3a 04 38 ‖
 * scalar) and imported as 'pkcs8'; the peer's public u-coordinate as 'raw'.
 * Valid cases must give `shared`; the 12 invalid ones (public keys of the
 * wrong length) must be refused at import with CRYPTOD_ERR_DATA; acceptable
 * ones (twist points, non-canonical u, low-order points) may give `shared`
 * or, for the all-zero secret only, CRYPTOD_ERR_OPERATION.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Client } from '../../src/client/client.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { hexOf, inBatches, loadVectors, outcome, Tally, unhex, type WycheproofTest } from './wycheproof.js';

interface XdhTest extends WycheproofTest {
  public: string;
  private: string;
  shared: string;
}

const PKCS8_X448_PREFIX = unhex('3046020100300506032b656f043a0438');

let t: TestDaemon;
let c: Client;
before(async () => {
  t = await startTestDaemon();
  c = await t.connect('wycheproof-x448');
});
after(async () => {
  await c.close();
  await t.stop();
});

test('Wycheproof x448: 510 cases through client.subtle', async () => {
  const file = loadVectors<XdhTest, { curve: string }>('x448');
  const tally = new Tally('x448', file.numberOfTests);
  let zeroRefused = 0;
  let badLength = 0;
  for (const group of file.testGroups) {
    assert.equal(group.curve, 'curve448');
    await inBatches(group.tests, 100, async (tc) => {
      const what = `tcId ${tc.tcId} (${tc.comment})`;
      const priv = await c.subtle.importKey('pkcs8', Buffer.concat([PKCS8_X448_PREFIX, unhex(tc.private)]), 'X448', false, ['deriveBits']);
      const imported = await outcome(c.subtle.importKey('raw', unhex(tc.public), 'X448', false, []), `${what} public import`);
      if (!imported.ok) {
        assert.equal(tc.result, 'invalid', `${what}: public key refused: ${imported.error.message}`);
        assert.equal(imported.error.code, 'CRYPTOD_ERR_DATA');
        assert.notEqual(unhex(tc.public).length, 56);
        badLength++;
      } else {
        const pub = imported.value;
        const r = await outcome(c.subtle.deriveBits({ name: 'X448', public: pub }, priv, null), what);
        if (r.ok) assert.equal(hexOf(r.value), tc.shared, `${what}: wrong shared secret`);
        else {
          assert.notEqual(tc.result, 'valid', `${what}: a valid case was refused: ${r.error.message}`);
          assert.equal(tc.shared, '00'.repeat(56), `${what}: refused, but the secret is not the all-zero one: ${r.error.message}`);
          assert.equal(r.error.code, 'CRYPTOD_ERR_OPERATION');
          zeroRefused++;
        }
        await pub.release();
      }
      await priv.release();
      tally.ran1(tc);
    });
  }
  tally.assertComplete({ ran: 510 });
  assert.deepEqual(tally.ran, { valid: 253, invalid: 12, acceptable: 245 });
  assert.equal(badLength, 12);
  assert.ok(zeroRefused > 0, 'the all-zero shared secrets are refused');
});
