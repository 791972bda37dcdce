import assert from 'node:assert/strict';
import { createCipheriv, randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { Client } from '../src/client/client.js';
import type { CryptoKey, CryptoKeyPair } from '../src/client/subtle.js';
import {
  DataError,
  DecryptError,
  InvalidArgumentError,
  InvalidKeyError,
  NotExtractableError,
  NotFoundError,
  OperationError,
  UnsupportedError,
  type CryptodError,
} from '../src/protocol/errors.js';
import { startTestDaemon, type TestDaemon, rejectsTyped } from './helpers/daemon.js';
import { Op } from '../src/protocol/ops.js';

let t: TestDaemon;
let c: Client;
before(async () => {
  t = await startTestDaemon();
  c = await t.connect();
});
after(async () => {
  await c.close();
  await t.stop();
});

const rejects = (p: Promise<unknown>, cls: abstract new (...a: never[]) => Error, message?: RegExp): Promise<void> =>
  rejectsTyped(c, p, cls, message);

const hex = (b: ArrayBuffer) => Buffer.from(b).toString('hex');

describe('AES-KW (RFC 3394)', () => {
  test('RFC 3394 §4.6: 256-bit key data with a 256-bit KEK', async () => {
    const kekBytes = Buffer.from('000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F', 'hex');
    const keyData = Buffer.from('00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F', 'hex');
    const kek = await c.subtle.importKey('raw', kekBytes, 'AES-KW', false, ['wrapKey', 'unwrapKey']);
    const key = await c.subtle.importKey('raw', keyData, 'AES-GCM', true, ['encrypt']);
    const wrapped = await c.subtle.wrapKey('raw', key, kek, 'AES-KW');
    assert.equal(hex(wrapped), '28c9f404c4b810f4cbccb35cfb87f8263f5786e2d80ed326cbc7f0e71a99f43bfb988b9b7a02dd21');
    const back = await c.subtle.unwrapKey('raw', wrapped, kek, 'AES-KW', 'AES-GCM', true, ['decrypt']);
    assert.equal(hex(await c.subtle.exportKey('raw', back)), keyData.toString('hex'));
    assert.deepEqual(back.usages, ['decrypt']);
  });

  test('every KEK size, and pkcs8 / jwk formats round trip', async () => {
    for (const bits of [128, 192, 256]) {
      const kek = (await c.subtle.generateKey({ name: 'AES-KW', length: bits }, false, ['wrapKey', 'unwrapKey'])) as CryptoKey;
      const ed = (await c.subtle.generateKey('Ed25519', true, ['sign'])) as CryptoKeyPair;
      const pkcs8 = await c.subtle.exportKey('pkcs8', ed.privateKey); // 48 bytes: a multiple of 8
      const w = await c.subtle.wrapKey('pkcs8', ed.privateKey, kek, { name: 'AES-KW' });
      assert.equal(w.byteLength, pkcs8.byteLength + 8);
      const back = await c.subtle.unwrapKey('pkcs8', w, kek, 'AES-KW', 'Ed25519', true, ['sign']);
      assert.equal(hex(await c.subtle.exportKey('pkcs8', back)), hex(pkcs8));
    }
  });

  test('a JWK whose JSON is not a multiple of 8 bytes needs AES-KWP', async () => {
    const kek = (await c.subtle.generateKey({ name: 'AES-KW', length: 128 }, false, ['wrapKey'])) as CryptoKey;
    // {"kty":"oct","k":"…22 chars…","alg":"A128GCM","key_ops":["encrypt"],"ext":true} — try lengths until one is not a multiple of 8
    const hmac = await c.subtle.importKey('raw', randomBytes(17), { name: 'HMAC', hash: 'SHA-256' }, true, ['sign']);
    const json = JSON.stringify(await c.subtle.exportKey('jwk', hmac));
    if (Buffer.byteLength(json) % 8 !== 0) await rejects(c.subtle.wrapKey('jwk', hmac, kek, 'AES-KW'), OperationError, /AES-KWP/);
    await rejects(c.subtle.wrapKey('raw', hmac, kek, 'AES-KW'), OperationError, /17 bytes/);
  });
});

describe('AES-KWP (RFC 5649)', () => {
  test('RFC 5649 §6 examples: 20 and 7 bytes with a 192-bit KEK', async () => {
    const kek = await c.subtle.importKey('raw', Buffer.from('5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8', 'hex'), 'AES-KWP', false, ['wrapKey', 'unwrapKey']);
    // Arbitrary-length key data is imported as a raw HMAC key (any length ≥ 1 byte) and wrapped in format 'raw'.
    for (const [data, ct] of [
      ['c37b7e6492584340bed12207808941155068f738', '138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a'],
      ['466f7250617369', 'afbeb0f07dfbf5419200f2ccb50bb24f'],
    ]) {
      const key = await c.subtle.importKey('raw', Buffer.from(data!, 'hex'), { name: 'HMAC', hash: 'SHA-256' }, true, ['sign']);
      const w = await c.subtle.wrapKey('raw', key, kek, 'AES-KWP');
      assert.equal(hex(w), ct);
      const back = await c.subtle.unwrapKey('raw', w, kek, 'AES-KWP', { name: 'HMAC', hash: 'SHA-256' }, true, ['sign']);
      assert.equal(hex(await c.subtle.exportKey('raw', back)), data);
    }
  });

  test('jwk format: any JSON length wraps; the unwrapped key keeps its algorithm and usages', async () => {
    const kek = (await c.subtle.generateKey({ name: 'AES-KWP', length: 256 }, false, ['wrapKey', 'unwrapKey'])) as CryptoKey;
    const pair = (await c.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-384' }, true, ['sign', 'verify'])) as CryptoKeyPair;
    const w = await c.subtle.wrapKey('jwk', pair.privateKey, kek, 'AES-KWP');
    const back = await c.subtle.unwrapKey('jwk', w, kek, 'AES-KWP', { name: 'ECDSA', namedCurve: 'P-384' }, false, ['sign']);
    assert.equal(back.extractable, false);
    const sig = await c.subtle.sign({ name: 'ECDSA', hash: 'SHA-384' }, back, Buffer.from('m'));
    assert.equal(await c.subtle.verify({ name: 'ECDSA', hash: 'SHA-384' }, pair.publicKey, sig, Buffer.from('m')), true);
    // asking for 'verify' on a private key fails the usage rules (WebCrypto: SyntaxError, before the JWK's key_ops are read)
    await rejects(c.subtle.unwrapKey('jwk', w, kek, 'AES-KWP', { name: 'ECDSA', namedCurve: 'P-384' }, false, ['verify']), InvalidArgumentError, /'verify' is not a usage/);
  });

  test('unwrapped bytes that are not JSON, and a JWK of the wrong kind', async () => {
    const kekBytes = randomBytes(16);
    const kek = await c.subtle.importKey('raw', kekBytes, 'AES-KWP', false, ['unwrapKey']);
    const wrapLocal = (plain: Buffer) => {
      const ci = createCipheriv('id-aes128-wrap-pad', kekBytes, Buffer.from('a65959a6', 'hex'));
      return Buffer.concat([ci.update(plain), ci.final()]);
    };
    await rejects(c.subtle.unwrapKey('jwk', wrapLocal(Buffer.from('not json')), kek, 'AES-KWP', 'AES-GCM', true, ['encrypt']), DataError, /JSON/);
    await rejects(c.subtle.unwrapKey('jwk', wrapLocal(Buffer.from('[1,2]')), kek, 'AES-KWP', 'AES-GCM', true, ['encrypt']), DataError);
    const rsaJwk = Buffer.from(JSON.stringify({ kty: 'RSA', n: 'AQAB', e: 'AQAB' }));
    await rejects(c.subtle.unwrapKey('jwk', wrapLocal(rsaJwk), kek, 'AES-KWP', 'AES-GCM', true, ['encrypt']), DataError, /kty/);
    await rejects(c.subtle.unwrapKey('raw', wrapLocal(randomBytes(20)), kek, 'AES-KWP', 'AES-GCM', true, ['encrypt']), DataError, /got 20/);
  });
});

describe('bad inputs', () => {
  test('tampered, truncated or foreign ciphertexts are DecryptError', async () => {
    const kek = (await c.subtle.generateKey({ name: 'AES-KW', length: 256 }, false, ['wrapKey', 'unwrapKey'])) as CryptoKey;
    const other = (await c.subtle.generateKey({ name: 'AES-KW', length: 256 }, false, ['unwrapKey'])) as CryptoKey;
    const key = (await c.subtle.generateKey({ name: 'AES-GCM', length: 128 }, true, ['encrypt'])) as CryptoKey;
    const w = Buffer.from(await c.subtle.wrapKey('raw', key, kek, 'AES-KW'));
    const bad = Buffer.from(w);
    bad[5]! ^= 1;
    await rejects(c.subtle.unwrapKey('raw', bad, kek, 'AES-KW', 'AES-GCM', true, ['encrypt']), DecryptError);
    await rejects(c.subtle.unwrapKey('raw', w, other, 'AES-KW', 'AES-GCM', true, ['encrypt']), DecryptError);
    await rejects(c.subtle.unwrapKey('raw', w.subarray(0, 20), kek, 'AES-KW', 'AES-GCM', true, ['encrypt']), DecryptError, /multiple of 8/);
    await rejects(c.subtle.unwrapKey('raw', new Uint8Array(0), kek, 'AES-KW', 'AES-GCM', true, ['encrypt']), DecryptError);
    // AES-KW ciphertext unwrapped as AES-KWP: the AIV does not match
    const kwp = await c.subtle.importKey('raw', Buffer.from(await c.subtle.exportKey('raw', key)), 'AES-KWP', false, ['unwrapKey']);
    await rejects(c.subtle.unwrapKey('raw', w, kwp, 'AES-KWP', 'AES-GCM', true, ['encrypt']), DecryptError);
  });

  test('unsupported wrap algorithms, wrong key kinds, missing usages, non-extractable keys, unknown handles', async () => {
    const kek = (await c.subtle.generateKey({ name: 'AES-KW', length: 128 }, false, ['wrapKey'])) as CryptoKey;
    const gcm = (await c.subtle.generateKey({ name: 'AES-GCM', length: 128 }, true, ['encrypt', 'wrapKey'])) as CryptoKey;
    const key = (await c.subtle.generateKey({ name: 'AES-GCM', length: 128 }, true, ['encrypt'])) as CryptoKey;
    const locked = (await c.subtle.generateKey({ name: 'AES-GCM', length: 128 }, false, ['encrypt'])) as CryptoKey;
    await rejects(c.subtle.wrapKey('raw', key, gcm, 'HMAC'), UnsupportedError, /AES-KW, AES-KWP, AES-GCM/);
    // AES-GCM wraps with its own parameters: without an iv the client refuses it as WebCrypto does (TypeError, by member name).
    await rejects(c.subtle.wrapKey('raw', key, gcm, { name: 'AES-GCM' }), InvalidArgumentError, /'iv' member is required/);
    // Members AesGcmParams does not declare are dropped (WebIDL), as crypto.subtle does: the wrap goes through.
    const extra = await c.subtle.wrapKey('raw', key, gcm, { name: 'AES-GCM', iv: new Uint8Array(12), salt: new Uint8Array(1) });
    assert.equal(extra.byteLength, 16 + 16);
    await rejects(c.subtle.wrapKey('raw', key, gcm, 'AES-KW'), InvalidKeyError, /AES-GCM key/);
    await rejects(c.subtle.wrapKey('raw', key, kek, 'AES-KWP'), InvalidKeyError);
    await rejects(c.subtle.unwrapKey('raw', new Uint8Array(24), kek, 'AES-KW', 'AES-GCM', true, ['encrypt']), InvalidKeyError, /unwrapKey/);
    await rejects(c.subtle.wrapKey('raw', locked, kek, 'AES-KW'), NotExtractableError);
    await rejects(c.subtle.wrapKey('spki', key, kek, 'AES-KW'), UnsupportedError);
    const both = (await c.subtle.generateKey({ name: 'AES-KW', length: 128 }, false, ['wrapKey', 'unwrapKey'])) as CryptoKey;
    const w = await c.subtle.wrapKey('raw', key, both, 'AES-KW');
    await rejects(c.subtle.unwrapKey('raw', w, both, 'AES-KW', 'AES-GCM', true, ['sign']), InvalidArgumentError, /'sign' is not a usage/);
    await rejects(c.subtle.unwrapKey('raw', w, both, 'AES-KW', 'SHA-256', true, ['sign']), UnsupportedError, /digest/);
    await key.release();
    await rejects(c.subtle.wrapKey('raw', key, kek, 'AES-KW'), NotFoundError);
  });
});
