import assert from 'node:assert/strict';
import { createHmac, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { Client } from '../src/client/client.js';
import type { CryptoKey, CryptoKeyPair } from '../src/client/subtle.js';
import { InvalidArgumentError, InvalidKeyError, NotFoundError, OperationError, UnsupportedError, type CryptodError } from '../src/protocol/errors.js';
import { Op } from '../src/protocol/ops.js';
import { startTestDaemon, type TestDaemon, rejectsTyped } from './helpers/daemon.js';

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

const hex = (b: ArrayBuffer | Uint8Array) => Buffer.from(b instanceof ArrayBuffer ? new Uint8Array(b) : b).toString('hex');

describe('HKDF', () => {
  test('RFC 5869 test case 1 through the daemon', async () => {
    const ikm = Buffer.from('0b'.repeat(22), 'hex');
    const salt = Buffer.from('000102030405060708090a0b0c', 'hex');
    const info = Buffer.from('f0f1f2f3f4f5f6f7f8f9', 'hex');
    const key = await c.subtle.importKey('raw', ikm, 'HKDF', false, ['deriveBits']);
    const okm = await c.subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt, info }, key, 42 * 8);
    assert.equal(hex(okm), '3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865');
  });

  test('deriveKey to AES-GCM, HMAC (block-size default) and ChaCha20-Poly1305', async () => {
    const ikm = randomBytes(32);
    const salt = randomBytes(16);
    const info = Buffer.from('ctx');
    const base = await c.subtle.importKey('raw', ikm, 'HKDF', false, ['deriveKey']);
    const params = { name: 'HKDF', hash: 'SHA-256', salt, info };
    const aes = await c.subtle.deriveKey(params, base, { name: 'AES-GCM', length: 256 }, true, ['encrypt']);
    assert.equal(hex(await c.subtle.exportKey('raw', aes)), hex(Buffer.from(hkdfSync('sha256', ikm, salt, info, 32))));
    const mac = await c.subtle.deriveKey(params, base, { name: 'HMAC', hash: 'SHA-384' }, true, ['sign']);
    assert.equal(mac.algorithm.length, 1024);
    const macBytes = Buffer.from(await c.subtle.exportKey('raw', mac));
    assert.equal(hex(macBytes), hex(Buffer.from(hkdfSync('sha256', ikm, salt, info, 128))));
    const tag = await c.subtle.sign('HMAC', mac, info);
    assert.equal(hex(tag), createHmac('sha384', macBytes).update(info).digest('hex'));
    const chacha = await c.subtle.deriveKey(params, base, 'ChaCha20-Poly1305', false, ['encrypt']);
    assert.equal(chacha.algorithm.length, 256);
    // an HKDF key can be derived but not with HKDF's own null length
    await rejects(c.subtle.deriveKey(params, base, 'HKDF', false, ['deriveBits']), OperationError, /length/);
  });

  test('bad parameters and lengths', async () => {
    const key = await c.subtle.importKey('raw', randomBytes(32), 'HKDF', false, ['deriveBits']);
    const ok = { name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info: new Uint8Array(0) };
    await rejects(c.subtle.deriveBits(ok, key, 255 * 32 * 8 + 8), OperationError, /at most 65280 bits/);
    await rejects(c.subtle.deriveBits(ok, key, 12), OperationError, /multiple of 8/);
    await rejects(c.subtle.deriveBits(ok, key, null), OperationError, /needs a length/);
    await rejects(c.subtle.deriveBits({ ...ok, hash: undefined }, key, 256), InvalidArgumentError, /hash/);
    await rejects(c.subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', info: new Uint8Array(0) }, key, 256), InvalidArgumentError, /'salt'/);
    await rejects(c.subtle.deriveBits({ ...ok, info: new Uint8Array(1025) }, key, 256), UnsupportedError, /1024/);
    await rejects(c.subtle.deriveKey(ok, key, { name: 'AES-GCM', length: 128 }, false, ['encrypt']), InvalidKeyError, /deriveKey/);
    await rejects(c.request(Op.DERIVE_BITS, { algorithm: ok, baseKey: key.handle, length: 'all' }), InvalidArgumentError, /'length'/);
    assert.equal((await c.subtle.deriveBits(ok, key, 255 * 32 * 8)).byteLength, 8160);
    // WebCrypto (and Node): length 0 is no bits, not an error.
    assert.equal((await c.subtle.deriveBits(ok, key, 0)).byteLength, 0);
  });
});

describe('X25519 and ECDH', () => {
  test('X25519: both sides agree; matches node:crypto; length truncates (partial bytes masked)', async () => {
    const a = (await c.subtle.generateKey('X25519', true, ['deriveBits', 'deriveKey'])) as CryptoKeyPair;
    const b = (await c.subtle.generateKey('X25519', true, ['deriveBits'])) as CryptoKeyPair;
    const ab = await c.subtle.deriveBits({ name: 'X25519', public: b.publicKey }, a.privateKey, null);
    const ba = await c.subtle.deriveBits({ name: 'X25519', public: a.publicKey }, b.privateKey, 256);
    assert.equal(ab.byteLength, 32);
    assert.equal(hex(ab), hex(ba));
    const privA = createPrivateKey({ key: Buffer.from(await c.subtle.exportKey('pkcs8', a.privateKey)), format: 'der', type: 'pkcs8' });
    const pubB = createPublicKey({ key: Buffer.from(await c.subtle.exportKey('spki', b.publicKey)), format: 'der', type: 'spki' });
    assert.equal(hex(ab), diffieHellman({ privateKey: privA, publicKey: pubB }).toString('hex'));
    const short = Buffer.from(await c.subtle.deriveBits({ name: 'X25519', public: b.publicKey }, a.privateKey, 12));
    const full = Buffer.from(ab);
    assert.equal(short.length, 2);
    assert.equal(short[0], full[0]);
    assert.equal(short[1], full[1]! & 0xf0);
    await rejects(c.subtle.deriveBits({ name: 'X25519', public: b.publicKey }, a.privateKey, 264), OperationError, /256 bits/);
    const aes = await c.subtle.deriveKey({ name: 'X25519', public: b.publicKey }, a.privateKey, { name: 'AES-KW', length: 128 }, true, ['wrapKey']);
    assert.equal(hex(await c.subtle.exportKey('raw', aes)), hex(full.subarray(0, 16)));
  });

  test('X25519 with a low-order peer point (all-zero secret) is an OperationError', async () => {
    const a = (await c.subtle.generateKey('X25519', false, ['deriveBits'])) as CryptoKeyPair;
    const zero = await c.subtle.importKey('raw', new Uint8Array(32), 'X25519', false, []);
    await rejects(c.subtle.deriveBits({ name: 'X25519', public: zero }, a.privateKey, null), OperationError);
  });

  test('ECDH P-256 and P-384 agree with node:crypto', async () => {
    for (const curve of ['P-256', 'P-384'] as const) {
      const a = (await c.subtle.generateKey({ name: 'ECDH', namedCurve: curve }, false, ['deriveBits'])) as CryptoKeyPair;
      const local = generateKeyPairSync('ec', { namedCurve: curve });
      const peer = await c.subtle.importKey('spki', local.publicKey.export({ type: 'spki', format: 'der' }), { name: 'ECDH', namedCurve: curve }, true, []);
      const bits = await c.subtle.deriveBits({ name: 'ECDH', public: peer }, a.privateKey, null);
      const mine = createPublicKey({ key: Buffer.from(await c.subtle.exportKey('spki', a.publicKey)), format: 'der', type: 'spki' });
      assert.equal(hex(bits), diffieHellman({ privateKey: local.privateKey, publicKey: mine }).toString('hex'));
    }
  });

  test('wrong peer keys: private, other algorithm, other curve, released, missing', async () => {
    const a = (await c.subtle.generateKey('X25519', false, ['deriveBits'])) as CryptoKeyPair;
    const b = (await c.subtle.generateKey('X25519', false, ['deriveBits'])) as CryptoKeyPair;
    const e256 = (await c.subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, false, ['deriveBits'])) as CryptoKeyPair;
    const e384 = (await c.subtle.generateKey({ name: 'ECDH', namedCurve: 'P-384' }, false, ['deriveBits'])) as CryptoKeyPair;
    await rejects(c.subtle.deriveBits({ name: 'X25519', public: b.privateKey }, a.privateKey, null), InvalidKeyError, /public key/);
    await rejects(c.subtle.deriveBits({ name: 'X25519', public: e256.publicKey }, a.privateKey, null), InvalidKeyError);
    await rejects(c.subtle.deriveBits({ name: 'ECDH', public: e384.publicKey }, e256.privateKey, null), InvalidKeyError, /P-384/);
    await rejects(c.subtle.deriveBits({ name: 'ECDH', public: e256.publicKey }, a.privateKey, null), InvalidKeyError);
    await rejects(c.subtle.deriveBits({ name: 'X25519' }, a.privateKey, null), InvalidArgumentError, /'public'/);
    await rejects(c.subtle.deriveKey({ name: 'X25519', public: b.publicKey }, a.privateKey, { name: 'AES-GCM', length: 128 }, false, ['encrypt']), InvalidKeyError, /deriveKey/);
    await rejects(c.subtle.deriveKey({ name: 'X25519', public: b.publicKey }, a.privateKey, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']), UnsupportedError);
    await b.publicKey.release();
    await rejects(c.subtle.deriveBits({ name: 'X25519', public: b.publicKey }, a.privateKey, null), NotFoundError);
  });

  test('deriveKey checks the derived key usages before keeping anything', async () => {
    const a = (await c.subtle.generateKey('X25519', false, ['deriveKey'])) as CryptoKeyPair;
    const b = (await c.subtle.generateKey('X25519', false, ['deriveKey'])) as CryptoKeyPair;
    const before = t.daemon.dm.liveNodes();
    await rejects(c.subtle.deriveKey({ name: 'X25519', public: b.publicKey }, a.privateKey, { name: 'AES-GCM', length: 128 }, false, ['sign']), InvalidArgumentError);
    assert.equal(t.daemon.dm.liveNodes(), before);
    const k: CryptoKey = await c.subtle.deriveKey({ name: 'X25519', public: b.publicKey }, a.privateKey, { name: 'HMAC', hash: 'SHA-256', length: 256 }, false, ['sign']);
    assert.equal(k.algorithm.length, 256);
  });
});

describe('PBKDF2 work bound', () => {
  test('iterations × output blocks over the iterations limit is an OperationError before any work; the daemon stays usable', async () => {
    const base = (await c.subtle.importKey('raw', Buffer.from('pw'), 'PBKDF2', false, ['deriveBits'])) as CryptoKey;
    const alg = (iterations: number) => ({ name: 'PBKDF2', hash: 'SHA-256', salt: new Uint8Array(8), iterations });
    // 2^32 − 8 bits (what -8 converts to) would be 16.7 million SHA-256 blocks, each of 1000 iterations.
    await rejects(c.subtle.deriveBits(alg(1000), base, -8), OperationError, /at most 2560000 bits/);
    // 10,000,000 iterations: one 32-byte block is allowed (not run here), two are not.
    await rejects(c.subtle.deriveBits(alg(10_000_000), base, 264), OperationError, /at most 256 bits/);
    // 1000 iterations × 10,001 blocks: one block over the bound.
    await rejects(c.subtle.deriveBits(alg(1000), base, 10_001 * 256), OperationError);
    const ok = await c.subtle.deriveBits(alg(2), base, 512);
    assert.equal(ok.byteLength, 64);
  });
});
