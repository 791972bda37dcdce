/**
 * Wycheproof RSASSA-PSS 2048 / SHA-256 / MGF1-SHA-256 / salt 32
 * (rsa_pss_2048_sha256_mgf1_32_test.json) through the daemon. The public key
 * is imported twice — from the JWK (alg PS256, checked against the hash) and
 * from the SPKI DER — and every signature is verified with both; the two must
 * agree, true for valid cases, false (or a typed error) for invalid ones
 * (modified padding, PKCS #1 v1.5 signatures, wrong lengths).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Client } from '../../src/client/client.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { inBatches, loadVectors, outcome, Tally, unhex, type WycheproofTest } from './wycheproof.js';

interface PssTest extends WycheproofTest {
  msg: string;
  sig: string;
}
interface PssGroup {
  sha: string;
  mgfSha: string;
  sLen: number;
  keySize: number;
  publicKeyDer: string;
  publicKeyJwk: Record<string, string>;
}

let t: TestDaemon;
let c: Client;
before(async () => {
  t = await startTestDaemon();
  c = await t.connect('wycheproof-rsa-pss');
});
after(async () => {
  await c.close();
  await t.stop();
});

test('Wycheproof rsa_pss_2048_sha256_mgf1_32: 108 cases through client.subtle', async () => {
  const file = loadVectors<PssTest, PssGroup>('rsa_pss_2048_sha256_mgf1_32');
  const tally = new Tally('rsa_pss_2048_sha256_mgf1_32', file.numberOfTests);
  for (const group of file.testGroups) {
    // WebCrypto's MGF1 always uses the signing hash: the file's parameters must say so.
    assert.equal(group.sha, 'SHA-256');
    assert.equal(group.mgfSha, 'SHA-256');
    const alg = { name: 'RSA-PSS', hash: 'SHA-256' };
    const fromJwk = await c.subtle.importKey('jwk', group.publicKeyJwk, alg, false, ['verify']);
    const fromSpki = await c.subtle.importKey('spki', unhex(group.publicKeyDer), alg, false, ['verify']);
    assert.equal(fromJwk.algorithm.modulusLength, group.keySize);
    await inBatches(group.tests, 64, async (tc) => {
      const what = `tcId ${tc.tcId} (${tc.comment})`;
      const params = { name: 'RSA-PSS', saltLength: group.sLen };
      const [a, b] = await Promise.all([
        outcome(c.subtle.verify(params, fromJwk, unhex(tc.sig), unhex(tc.msg)), `${what} jwk`),
        outcome(c.subtle.verify(params, fromSpki, unhex(tc.sig), unhex(tc.msg)), `${what} spki`),
      ]);
      const accepted = a.ok && a.value;
      assert.equal(accepted, b.ok && b.value, `${what}: the jwk and spki keys disagree`);
      if (tc.result === 'valid') assert.equal(accepted, true, `${what}: a valid signature was refused`);
      if (tc.result === 'invalid') assert.equal(accepted, false, `${what}: an invalid signature was accepted`);
      tally.ran1(tc);
    });
  }
  tally.assertComplete({ ran: 108 });
  assert.deepEqual(tally.ran, { valid: 63, invalid: 45, acceptable: 0 });
});
