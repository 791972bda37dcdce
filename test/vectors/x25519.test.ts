/**
 * Wycheproof X25519 (x25519_test.json) through the daemon.
 *
 * WebCrypto has no 'raw' format for private keys, so each 32-byte private
 * scalar is wrapped in the fixed PKCS #8 prefix of RFC 8410 §7
 * (30 2e 02 01 00 30 05 06 03 2b 65 6e 04 22 04 20 ‖ scalar) and imported as
 * 'pkcs8'; the peer's public u-coordinate is imported as 'raw'. deriveBits
 * with length null must give `shared` for every valid case. The file has no
 * invalid cases; its 254 acceptable ones (twist points, non-canonical u,
 * low-order points that give the all-zero secret) may either give `shared`
 * or a typed error — the daemon refuses the all-zero secret with an
 * OperationError, as the Secure Curves draft requires — never anything else.
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

const PKCS8_X25519_PREFIX = unhex('302e020100300506032b656e04220420');

let t: TestDaemon;
let c: Client;
before(async () => {
  t = await startTestDaemon();
  c = await t.connect('wycheproof-x25519');
});
after(async () => {
  await c.close();
  await t.stop();
});

test('Wycheproof x25519: 518 cases through client.subtle', async () => {
  const file = loadVectors<XdhTest, { curve: string }>('x25519');
  const tally = new Tally('x25519', file.numberOfTests);
  let zeroRefused = 0;
  for (const group of file.testGroups) {
    assert.equal(group.curve, 'curve25519');
    await inBatches(group.tests, 100, async (tc) => {
      const what = `tcId ${tc.tcId} (${tc.comment})`;
      const priv = await c.subtle.importKey('pkcs8', Buffer.concat([PKCS8_X25519_PREFIX, unhex(tc.private)]), 'X25519', false, ['deriveBits']);
      // RFC 7748 §5: every 32-byte string is a u-coordinate (the top bit is masked), so every import succeeds.
      const pub = await c.subtle.importKey('raw', unhex(tc.public), 'X25519', false, []);
      const r = await outcome(c.subtle.deriveBits({ name: 'X25519', public: pub }, priv, null), what);
      if (r.ok) assert.equal(hexOf(r.value), tc.shared, `${what}: wrong shared secret`);
      else {
        assert.notEqual(tc.result, 'valid', `${what}: a valid case was refused: ${r.error.message}`);
        assert.equal(tc.shared, '00'.repeat(32), `${what}: refused, but the secret is not the all-zero one: ${r.error.message}`);
        assert.equal(r.error.code, 'CRYPTOD_ERR_OPERATION');
        zeroRefused++;
      }
      await pub.release();
      await priv.release();
      tally.ran1(tc);
    });
  }
  tally.assertComplete({ ran: 518 });
  assert.deepEqual(tally.ran, { valid: 264, invalid: 0, acceptable: 254 });
  // Each of the 31 all-zero-secret cases is refused: none is let through as a key.
  assert.equal(zeroRefused, 31);
});
