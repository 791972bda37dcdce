/**
 * Wycheproof ECDSA P-521 / SHA-512 with IEEE P1363 signatures
 * (ecdsa_secp521r1_sha512_p1363_test.json) through the daemon. Each group's
 * public key is imported as raw (uncompressed point), spki or jwk in turn;
 * VERIFY with `{ name: 'ECDSA', hash: 'SHA-512' }` must be true for valid
 * cases and false (or a typed error) for invalid ones. P-521 signatures are
 * 2 × 66 bytes.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Client } from '../../src/client/client.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { runEcdsaP1363 } from './ecdsa-p1363.js';

let t: TestDaemon;
let c: Client;
before(async () => {
  t = await startTestDaemon();
  c = await t.connect('wycheproof-ecdsa-p521');
});
after(async () => {
  await c.close();
  await t.stop();
});

test('Wycheproof ecdsa_secp521r1_sha512_p1363: 318 cases through client.subtle', async () => {
  await runEcdsaP1363(c, { name: 'ecdsa_secp521r1_sha512_p1363', namedCurve: 'P-521', hash: 'SHA-512', expected: { valid: 231, invalid: 87, acceptable: 0 } });
});

test('P-521: generate, sign and verify with node:crypto; ECDH agreement matches node', async () => {
  const { createPublicKey, createPrivateKey, diffieHellman, verify } = await import('node:crypto');
  const pair = await c.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-521' }, true, ['sign', 'verify']);
  const data = Buffer.from('p521');
  const sig = Buffer.from(await c.subtle.sign({ name: 'ECDSA', hash: 'SHA-512' }, pair.privateKey, data));
  assert.equal(sig.length, 132);
  const spki = Buffer.from(await c.subtle.exportKey('spki', pair.publicKey) as ArrayBuffer);
  assert.ok(verify('sha512', data, { key: createPublicKey({ key: spki, format: 'der', type: 'spki' }), dsaEncoding: 'ieee-p1363' }, sig));
  const jwk = await c.subtle.exportKey('jwk', pair.privateKey);
  // WebCrypto's ECDSA export (and Node 20's) writes crv, not alg: the hash is the sign call's, not the key's.
  assert.equal((jwk as { crv?: string }).crv, 'P-521');
  assert.equal((jwk as { alg?: string }).alg, undefined);
  const a = await c.subtle.generateKey({ name: 'ECDH', namedCurve: 'P-521' }, true, ['deriveBits']);
  const b = await c.subtle.generateKey({ name: 'ECDH', namedCurve: 'P-521' }, true, ['deriveBits']);
  const ours = Buffer.from(await c.subtle.deriveBits({ name: 'ECDH', public: b.publicKey }, a.privateKey, null));
  const theirs = diffieHellman({
    privateKey: createPrivateKey({ key: Buffer.from(await c.subtle.exportKey('pkcs8', b.privateKey) as ArrayBuffer), format: 'der', type: 'pkcs8' }),
    publicKey: createPublicKey({ key: Buffer.from(await c.subtle.exportKey('spki', a.publicKey) as ArrayBuffer), format: 'der', type: 'spki' }),
  });
  assert.equal(ours.length, 66);
  assert.ok(ours.equals(theirs));
  assert.equal((await c.subtle.deriveBits({ name: 'ECDH', public: b.publicKey }, a.privateKey, 0)).byteLength, 0);
});
