import assert from 'node:assert/strict';
import { constants, createHmac, createPublicKey, generateKeyPairSync, randomBytes, sign as nodeSign, verify as nodeVerify } from 'node:crypto';
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

const data = Buffer.from('the quick brown fox jumps over the lazy dog');

describe('HMAC', () => {
  test('sign matches node:crypto for every hash; verify accepts it and rejects any change', async () => {
    for (const [hash, node] of [['SHA-1', 'sha1'], ['SHA-256', 'sha256'], ['SHA-384', 'sha384'], ['SHA-512', 'sha512']] as const) {
      const bytes = randomBytes(33);
      const key = await c.subtle.importKey('raw', bytes, { name: 'HMAC', hash }, false, ['sign', 'verify']);
      const tag = Buffer.from(await c.subtle.sign('HMAC', key, data));
      assert.equal(tag.toString('hex'), createHmac(node, bytes).update(data).digest('hex'));
      assert.equal(await c.subtle.verify({ name: 'HMAC' }, key, tag, data), true);
      const bad = Buffer.from(tag);
      bad[bad.length - 1]! ^= 1;
      assert.equal(await c.subtle.verify('HMAC', key, bad, data), false);
      assert.equal(await c.subtle.verify('HMAC', key, tag.subarray(0, 16), data), false, 'a truncated tag is not accepted');
      assert.equal(await c.subtle.verify('HMAC', key, new Uint8Array(0), data), false);
    }
  });

  test('pipelined HMAC signs all complete and are right', async () => {
    const bytes = randomBytes(32);
    const key = await c.subtle.importKey('raw', bytes, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    const msgs = Array.from({ length: 2000 }, (_, i) => Buffer.from(`message ${i}`));
    const tags = await Promise.all(msgs.map((m) => c.subtle.sign('HMAC', key, m)));
    tags.forEach((tag, i) => assert.equal(Buffer.from(tag).toString('hex'), createHmac('sha256', bytes).update(msgs[i]!).digest('hex')));
  });
});

describe('Ed25519', () => {
  test('sign/verify, and interop with node:crypto both ways', async () => {
    const pair = (await c.subtle.generateKey('Ed25519', true, ['sign', 'verify'])) as CryptoKeyPair;
    const sig = Buffer.from(await c.subtle.sign('Ed25519', pair.privateKey, data));
    assert.equal(sig.length, 64);
    assert.equal(await c.subtle.verify('Ed25519', pair.publicKey, sig, data), true);
    const spki = Buffer.from(await c.subtle.exportKey('spki', pair.publicKey));
    assert.equal(nodeVerify(null, data, createPublicKey({ key: spki, format: 'der', type: 'spki' }), sig), true);
    const local = generateKeyPairSync('ed25519');
    const pub = await c.subtle.importKey('spki', local.publicKey.export({ type: 'spki', format: 'der' }), 'Ed25519', false, ['verify']);
    assert.equal(await c.subtle.verify('Ed25519', pub, nodeSign(null, data, local.privateKey), data), true);
    assert.equal(await c.subtle.verify('Ed25519', pair.publicKey, sig.subarray(0, 63), data), false);
    assert.equal(await c.subtle.verify('Ed25519', pair.publicKey, Buffer.alloc(64, 0xff), data), false);
  });
});

describe('ECDSA', () => {
  test('P-256 and P-384 with several hashes: P1363 signatures verify in node:crypto', async () => {
    for (const [curve, n] of [['P-256', 32], ['P-384', 48]] as const) {
      const pair = (await c.subtle.generateKey({ name: 'ECDSA', namedCurve: curve }, true, ['sign', 'verify'])) as CryptoKeyPair;
      const spki = Buffer.from(await c.subtle.exportKey('spki', pair.publicKey));
      const pub = createPublicKey({ key: spki, format: 'der', type: 'spki' });
      for (const [hash, node] of [['SHA-256', 'sha256'], ['SHA-384', 'sha384'], ['SHA-1', 'sha1']] as const) {
        const sig = Buffer.from(await c.subtle.sign({ name: 'ECDSA', hash }, pair.privateKey, data));
        assert.equal(sig.length, 2 * n);
        assert.equal(nodeVerify(node, data, { key: pub, dsaEncoding: 'ieee-p1363' }, sig), true);
        assert.equal(await c.subtle.verify({ name: 'ECDSA', hash }, pair.publicKey, sig, data), true);
        assert.equal(await c.subtle.verify({ name: 'ECDSA', hash: 'SHA-512' }, pair.publicKey, sig, data), false);
      }
      // a DER signature is not a P1363 signature
      const der = nodeSign('sha256', data, generateKeyPairSync('ec', { namedCurve: curve }).privateKey);
      assert.equal(await c.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, pair.publicKey, der, data), false);
      await rejects(c.subtle.sign('ECDSA', pair.privateKey, data), InvalidArgumentError, /hash/);
    }
  });
});

describe('RSA-PSS', () => {
  let pair: CryptoKeyPair;
  before(async () => {
    pair = (await c.subtle.generateKey(
      { name: 'RSA-PSS', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
      true,
      ['sign', 'verify'],
    )) as CryptoKeyPair;
  });

  test('sign (thread pool) / verify, several salt lengths, interop with node:crypto', async () => {
    const spki = Buffer.from(await c.subtle.exportKey('spki', pair.publicKey));
    const pub = createPublicKey({ key: spki, format: 'der', type: 'spki' });
    for (const saltLength of [0, 20, 32, 222]) {
      const sig = Buffer.from(await c.subtle.sign({ name: 'RSA-PSS', saltLength }, pair.privateKey, data));
      assert.equal(sig.length, 256);
      assert.equal(nodeVerify('sha256', data, { key: pub, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength }, sig), true);
      assert.equal(await c.subtle.verify({ name: 'RSA-PSS', saltLength }, pair.publicKey, sig, data), true);
    }
    const sig = Buffer.from(await c.subtle.sign({ name: 'RSA-PSS', saltLength: 32 }, pair.privateKey, data));
    assert.equal(await c.subtle.verify({ name: 'RSA-PSS', saltLength: 31 }, pair.publicKey, sig, data), false);
    assert.equal(await c.subtle.verify({ name: 'RSA-PSS', saltLength: 300 }, pair.publicKey, sig, data), false);
    assert.equal(await c.subtle.verify({ name: 'RSA-PSS', saltLength: 32 }, pair.publicKey, sig.subarray(1), data), false);
    await rejects(c.subtle.sign({ name: 'RSA-PSS', saltLength: 223 }, pair.privateKey, data), OperationError, /at most 222/);
    await rejects(c.subtle.sign({ name: 'RSA-PSS' }, pair.privateKey, data), InvalidArgumentError, /saltLength/);
  });

  test('RSA signs run concurrently with other requests on the same connection', async () => {
    const hmacKey = await c.subtle.importKey('raw', randomBytes(32), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    const sigs = Array.from({ length: 8 }, () => c.subtle.sign({ name: 'RSA-PSS', saltLength: 32 }, pair.privateKey, data));
    const tag = await c.subtle.sign('HMAC', hmacKey, data); // answered while the RSA jobs run
    assert.equal(tag.byteLength, 32);
    for (const s of await Promise.all(sigs)) assert.equal(await c.subtle.verify({ name: 'RSA-PSS', saltLength: 32 }, pair.publicKey, s, data), true);
  });

  test('releasing the key while an RSA sign is in flight: the sign still finishes', async () => {
    const k = await c.subtle.importKey('pkcs8', await c.subtle.exportKey('pkcs8', pair.privateKey), { name: 'RSA-PSS', hash: 'SHA-256' }, false, ['sign']);
    const p = c.subtle.sign({ name: 'RSA-PSS', saltLength: 32 }, k, data);
    const r = k.release();
    const sig = await p;
    await r;
    assert.equal(await c.subtle.verify({ name: 'RSA-PSS', saltLength: 32 }, pair.publicKey, sig, data), true);
    await rejects(c.subtle.sign({ name: 'RSA-PSS', saltLength: 32 }, k, data), NotFoundError);
  });
});

describe('bad inputs', () => {
  test('algorithm not matching the key, missing usage, wrong key type, unknown handle', async () => {
    const hmacKey = await c.subtle.importKey('raw', randomBytes(32), { name: 'HMAC', hash: 'SHA-256' }, false, ['verify']);
    await rejects(c.subtle.sign('HMAC', hmacKey, data), InvalidKeyError, /do not include 'sign'/);
    const aes = (await c.subtle.generateKey({ name: 'AES-GCM', length: 128 }, false, ['encrypt'])) as CryptoKey;
    await rejects(c.subtle.sign('HMAC', aes, data), InvalidKeyError, /AES-GCM key/);
    const ed = (await c.subtle.generateKey('Ed25519', false, ['sign', 'verify'])) as CryptoKeyPair;
    await rejects(c.subtle.sign('Ed25519', ed.publicKey, data), InvalidKeyError);
    await rejects(c.subtle.verify('Ed25519', ed.privateKey, new Uint8Array(64), data), InvalidKeyError);
    await rejects(c.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, ed.privateKey, data), InvalidKeyError);
    await rejects(c.subtle.sign({ name: 'RSA-PSS', saltLength: 32 }, ed.privateKey, data), InvalidKeyError);
    await rejects(c.subtle.sign('AES-GCM', aes, data), UnsupportedError, /HMAC, Ed25519, Ed448, ECDSA, RSA-PSS, RSASSA-PKCS1-v1_5/);
    await rejects(c.subtle.verify('X25519', aes, data, data), UnsupportedError);
    await ed.privateKey.release();
    await rejects(c.subtle.sign('Ed25519', ed.privateKey, data), NotFoundError);
    await rejects(c.request(Op.SIGN, { algorithm: 'HMAC', key: hmacKey.handle }), InvalidArgumentError, /'data'/);
    await rejects(c.request(Op.VERIFY, { algorithm: 'HMAC', key: hmacKey.handle, data }), InvalidArgumentError, /'signature'/);
    await rejects(c.request(Op.SIGN, { algorithm: 'HMAC', key: 42, data }), InvalidArgumentError, /'key'/);
  });
});
