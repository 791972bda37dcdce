/**
 * Wycheproof RSA-OAEP 2048 / SHA-256 / MGF1-SHA-256
 * (rsa_oaep_2048_sha256_mgf1sha256_test.json) through the daemon. The private
 * key is imported as pkcs8 and as jwk; DECRYPT with `{ name: 'RSA-OAEP',
 * label }` must give `msg` for valid cases and CRYPTOD_ERR_DECRYPT_FAILED —
 * one error for every kind of failure — for invalid ones. Each valid message
 * is also encrypted by the daemon under the public half and decrypted back.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Client } from '../../src/client/client.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { hexOf, inBatches, loadVectors, outcome, Tally, unhex, type WycheproofTest } from './wycheproof.js';

interface OaepTest extends WycheproofTest {
  msg: string;
  ct: string;
  label: string;
}
interface OaepGroup {
  sha: string;
  mgfSha: string;
  privateKeyPkcs8: string;
  privateKeyJwk: Record<string, string>;
}

let t: TestDaemon;
let c: Client;
before(async () => {
  t = await startTestDaemon();
  c = await t.connect('wycheproof-rsa-oaep');
});
after(async () => {
  await c.close();
  await t.stop();
});

test('Wycheproof rsa_oaep_2048_sha256_mgf1sha256: 37 cases through client.subtle, with pkcs8 and jwk keys', async () => {
  const file = loadVectors<OaepTest, OaepGroup>('rsa_oaep_2048_sha256_mgf1sha256');
  const tally = new Tally('rsa_oaep_2048_sha256_mgf1sha256', file.numberOfTests);
  const alg = { name: 'RSA-OAEP', hash: 'SHA-256' };
  for (const group of file.testGroups) {
    assert.equal(group.sha, 'SHA-256');
    assert.equal(group.mgfSha, 'SHA-256');
    const pkcs8 = await c.subtle.importKey('pkcs8', unhex(group.privateKeyPkcs8), alg, false, ['decrypt']);
    const jwk = await c.subtle.importKey('jwk', group.privateKeyJwk, alg, false, ['decrypt']);
    const { n, e } = group.privateKeyJwk;
    const pub = await c.subtle.importKey('jwk', { kty: 'RSA', n, e }, alg, false, ['encrypt']);
    await inBatches(group.tests, 16, async (tc) => {
      const what = `tcId ${tc.tcId} (${tc.comment})`;
      const params = { name: 'RSA-OAEP', label: unhex(tc.label) };
      for (const key of [pkcs8, jwk]) {
        const r = await outcome(c.subtle.decrypt(params, key, unhex(tc.ct)), what);
        if (tc.result === 'valid') {
          assert.ok(r.ok, `${what}: refused: ${r.ok ? '' : r.error.message}`);
          assert.equal(hexOf(r.value), tc.msg, `${what}: wrong plaintext`);
        } else {
          assert.ok(!r.ok, `${what}: an invalid ciphertext was decrypted`);
          assert.equal(r.error.code, 'CRYPTOD_ERR_DECRYPT_FAILED', `${what}: ${r.error.message}`);
          assert.match(r.error.message, /^RSA-OAEP decryption failed/);
        }
      }
      if (tc.result === 'valid') {
        const ct = await c.subtle.encrypt(params, pub, unhex(tc.msg));
        assert.equal(ct.byteLength, 256);
        assert.equal(hexOf(await c.subtle.decrypt(params, pkcs8, ct)), tc.msg, `${what}: round trip`);
      }
      tally.ran1(tc);
    });
    await Promise.all([pkcs8.release(), jwk.release(), pub.release()]);
  }
  tally.assertComplete({ ran: 37 });
  assert.deepEqual(tally.ran, { valid: 18, invalid: 19, acceptable: 0 });
});

test('RSA-OAEP: generate, JWK alg, message size limit, wrapKey/unwrapKey, Node decrypts ours', async () => {
  const pair = await c.subtle.generateKey({ name: 'RSA-OAEP', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }, true, ['encrypt', 'decrypt', 'wrapKey', 'unwrapKey']);
  assert.deepEqual(pair.publicKey.usages, ['encrypt', 'wrapKey']);
  assert.deepEqual(pair.privateKey.usages, ['decrypt', 'unwrapKey']);
  const jwk = await c.subtle.exportKey('jwk', pair.privateKey);
  assert.equal((jwk as { alg?: string }).alg, 'RSA-OAEP-256');
  const nodePriv = await crypto.subtle.importKey('jwk', jwk as import("node:crypto").webcrypto.JsonWebKey, { name: 'RSA-OAEP', hash: 'SHA-256' }, false, ['decrypt']);
  const msg = Buffer.alloc(190, 7); // 256 − 2·32 − 2: the largest message
  const ct = await c.subtle.encrypt({ name: 'RSA-OAEP', label: Buffer.from('L') }, pair.publicKey, msg);
  assert.ok(Buffer.from(await crypto.subtle.decrypt({ name: 'RSA-OAEP', label: Buffer.from('L') }, nodePriv, ct)).equals(msg));
  const tooLong = await outcome(c.subtle.encrypt('RSA-OAEP', pair.publicKey, Buffer.alloc(191)), 'too long');
  assert.ok(!tooLong.ok && tooLong.error.code === 'CRYPTOD_ERR_OPERATION' && /at most 190 bytes/.test(tooLong.error.message));
  const aes = await c.subtle.generateKey({ name: 'AES-GCM', length: 256 }, true, ['encrypt', 'decrypt']);
  const wrapped = await c.subtle.wrapKey('raw', aes, pair.publicKey, 'RSA-OAEP');
  const back = await c.subtle.unwrapKey('raw', wrapped, pair.privateKey, 'RSA-OAEP', 'AES-GCM', true, ['decrypt']);
  assert.equal(hexOf(await c.subtle.exportKey('raw', back) as ArrayBuffer), hexOf(await c.subtle.exportKey('raw', aes) as ArrayBuffer));
  // The public key cannot decrypt, the private key cannot encrypt.
  const wrong = await outcome(c.subtle.decrypt('RSA-OAEP', pair.publicKey, ct), 'decrypt with the public key');
  assert.ok(!wrong.ok && wrong.error.code === 'CRYPTOD_ERR_INVALID_KEY');
  const raw = await outcome(c.subtle.exportKey('raw', pair.publicKey), 'raw export');
  assert.ok(!raw.ok && raw.error.code === 'CRYPTOD_ERR_UNSUPPORTED');
});
