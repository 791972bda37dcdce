/**
 * Wycheproof ECDH P-256 with keys as WebCrypto JWKs
 * (ecdh_secp256r1_webcrypto_test.json) through the daemon. The private key is
 * imported as a JWK, the peer's public key as a JWK; DERIVE_BITS with
 * `{ name: 'ECDH', public }` must give `shared` for valid cases. Invalid cases
 * (points off the curve, on another curve, modified) must be refused with a
 * typed error, at import or at derivation; no invalid case may yield bits.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Client } from '../../src/client/client.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { hexOf, inBatches, loadVectors, outcome, Tally, type WycheproofTest } from './wycheproof.js';

interface EcdhTest extends WycheproofTest {
  public: Record<string, string>;
  private: Record<string, string>;
  shared: string;
}

let t: TestDaemon;
let c: Client;
before(async () => {
  t = await startTestDaemon();
  c = await t.connect('wycheproof-ecdh-webcrypto');
});
after(async () => {
  await c.close();
  await t.stop();
});

test('Wycheproof ecdh_secp256r1_webcrypto: 353 cases through client.subtle', async () => {
  const file = loadVectors<EcdhTest, { curve: string }>('ecdh_secp256r1_webcrypto');
  const tally = new Tally('ecdh_secp256r1_webcrypto', file.numberOfTests);
  const alg = { name: 'ECDH', namedCurve: 'P-256' };
  const refusedAt = { import: 0, derive: 0 };
  for (const group of file.testGroups) {
    assert.equal(group.curve, 'P-256');
    await inBatches(group.tests, 64, async (tc) => {
      const what = `tcId ${tc.tcId} (${tc.comment})`;
      const priv = await c.subtle.importKey('jwk', tc.private, alg, false, ['deriveBits']);
      const pub = await outcome(c.subtle.importKey('jwk', tc.public, alg, false, []), `${what} public import`);
      if (!pub.ok) {
        assert.equal(tc.result, 'invalid', `${what}: a valid public key was refused: ${pub.error.message}`);
        refusedAt.import++;
      } else {
        const r = await outcome(c.subtle.deriveBits({ name: 'ECDH', public: pub.value }, priv, null), what);
        if (tc.result === 'valid') {
          assert.ok(r.ok, `${what}: refused: ${r.ok ? '' : r.error.message}`);
          assert.equal(hexOf(r.value), tc.shared, `${what}: wrong shared secret`);
        } else {
          assert.ok(!r.ok, `${what}: an invalid public key gave a shared secret`);
          refusedAt.derive++;
        }
        await pub.value.release();
      }
      await priv.release();
      tally.ran1(tc);
    });
  }
  tally.assertComplete({ ran: 353 });
  assert.deepEqual(tally.ran, { valid: 330, invalid: 23, acceptable: 0 });
  assert.equal(refusedAt.import + refusedAt.derive, 23);
});
