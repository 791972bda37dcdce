/**
 * Wycheproof RSASSA-PKCS1-v1_5 2048 / SHA-256
 * (rsa_signature_2048_sha256_test.json) through the daemon. Each group's
 * public key is imported as spki and as jwk where the file gives one; VERIFY
 * with 'RSASSA-PKCS1-v1_5' must be true for valid cases and false for
 * invalid ones (the one acceptable case, a DigestInfo without its NULL, may
 * go either way). Then a key made by the daemon signs a JWT-style RS256
 * signature that node:crypto verifies.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Client } from '../../src/client/client.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { inBatches, loadVectors, outcome, Tally, unhex, type WycheproofTest } from './wycheproof.js';

interface SigTest extends WycheproofTest {
  msg: string;
  sig: string;
}
interface SigGroup {
  sha: string;
  publicKeyDer: string;
  keyJwk?: Record<string, string>;
}

let t: TestDaemon;
let c: Client;
before(async () => {
  t = await startTestDaemon();
  c = await t.connect('wycheproof-rsa-pkcs1');
});
after(async () => {
  await c.close();
  await t.stop();
});

test('Wycheproof rsa_signature_2048_sha256: 259 cases through client.subtle', async () => {
  const file = loadVectors<SigTest, SigGroup>('rsa_signature_2048_sha256');
  const tally = new Tally('rsa_signature_2048_sha256', file.numberOfTests);
  const alg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  for (const group of file.testGroups) {
    assert.equal(group.sha, 'SHA-256');
    const keys = [await c.subtle.importKey('spki', unhex(group.publicKeyDer), alg, false, ['verify'])];
    if (group.keyJwk !== undefined) keys.push(await c.subtle.importKey('jwk', group.keyJwk, alg, false, ['verify']));
    await inBatches(group.tests, 64, async (tc) => {
      const what = `tcId ${tc.tcId} (${tc.comment})`;
      for (const key of keys) {
        const r = await outcome(c.subtle.verify('RSASSA-PKCS1-v1_5', key, unhex(tc.sig), unhex(tc.msg)), what);
        assert.ok(r.ok, `${what}: verify must answer true or false, not ${r.ok ? '' : r.error.code}`);
        if (tc.result === 'valid') assert.equal(r.value, true, `${what}: a valid signature was refused`);
        if (tc.result === 'invalid') assert.equal(r.value, false, `${what}: an invalid signature was accepted`);
      }
      tally.ran1(tc);
    });
    await Promise.all(keys.map((k) => k.release()));
  }
  tally.assertComplete({ ran: 259 });
  assert.deepEqual(tally.ran, { valid: 9, invalid: 249, acceptable: 1 });
});

test('RSASSA-PKCS1-v1_5: generate, sign RS256, node verifies; JWK alg; deterministic signatures', async () => {
  const { createPublicKey, verify } = await import('node:crypto');
  const pair = await c.subtle.generateKey({ name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }, false, ['sign', 'verify']);
  const data = Buffer.from('eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0');
  const sig = Buffer.from(await c.subtle.sign('RSASSA-PKCS1-v1_5', pair.privateKey, data));
  assert.equal(sig.length, 256);
  // PKCS #1 v1.5 signatures have no randomness: the same input signs the same.
  assert.ok(sig.equals(Buffer.from(await c.subtle.sign('RSASSA-PKCS1-v1_5', pair.privateKey, data))));
  const jwk = await c.subtle.exportKey('jwk', pair.publicKey);
  assert.equal((jwk as { alg?: string }).alg, 'RS256');
  assert.ok(verify('sha256', data, createPublicKey({ key: jwk as never, format: 'jwk' }), sig));
  assert.equal(await c.subtle.verify('RSASSA-PKCS1-v1_5', pair.publicKey, sig, data), true);
  assert.equal(await c.subtle.verify('RSASSA-PKCS1-v1_5', pair.publicKey, sig.subarray(1), data), false);
  const wrongAlg = await outcome(c.subtle.importKey('jwk', { ...jwk, alg: 'PS256' }, { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, true, ['verify']), 'PS256 JWK');
  assert.ok(!wrongAlg.ok && wrongAlg.error.code === 'CRYPTOD_ERR_DATA');
});
