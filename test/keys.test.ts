import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { Client } from '../src/client/client.js';
import type { CryptoKey, CryptoKeyPair } from '../src/client/subtle.js';
import { Op } from '../src/protocol/ops.js';
import {
  DataError,
  InvalidArgumentError,
  InvalidKeyError,
  NotExtractableError,
  NotFoundError,
  UnsupportedError,
  type CryptodError,
} from '../src/protocol/errors.js';
import { eventually, startTestDaemon, type TestDaemon, rejectsTyped } from './helpers/daemon.js';

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

describe('secret keys', () => {
  test('generate AES-GCM 128/192/256, ChaCha20-Poly1305, AES-KW, AES-KWP: length and export', async () => {
    for (const [alg, bits] of [
      [{ name: 'AES-GCM', length: 128 }, 128],
      [{ name: 'aes-gcm', length: 192 }, 192],
      [{ name: 'AES-GCM', length: 256 }, 256],
      [{ name: 'ChaCha20-Poly1305' }, 256],
      [{ name: 'AES-KW', length: 256 }, 256],
      [{ name: 'AES-KWP', length: 128 }, 128],
    ] as const) {
      const usages = alg.name.includes('KW') ? (['wrapKey', 'unwrapKey'] as const) : (['encrypt', 'decrypt'] as const);
      const key = (await c.subtle.generateKey(alg, true, usages)) as CryptoKey;
      assert.equal(key.type, 'secret');
      assert.equal(key.algorithm.length, bits);
      assert.deepEqual(key.usages, usages);
      const raw = await c.subtle.exportKey('raw', key);
      assert.equal(raw.byteLength, bits / 8);
      await key.release();
    }
  });

  test('import raw → export raw and jwk round trip, with the JWK alg of each algorithm', async () => {
    const cases = [
      ['AES-GCM', 16, 'A128GCM', ['encrypt']],
      ['AES-GCM', 24, 'A192GCM', ['decrypt']],
      ['AES-GCM', 32, 'A256GCM', ['encrypt', 'decrypt']],
      ['AES-KW', 16, 'A128KW', ['wrapKey']],
      ['AES-KWP', 32, 'A256KWP', ['unwrapKey']],
      ['ChaCha20-Poly1305', 32, 'C20P', ['encrypt']],
    ] as const;
    for (const [name, n, alg, usages] of cases) {
      const bytes = randomBytes(n);
      const key = await c.subtle.importKey('raw', new Uint8Array(bytes), name, true, usages);
      assert.equal(hex(await c.subtle.exportKey('raw', key)), bytes.toString('hex'));
      const jwk = await c.subtle.exportKey('jwk', key);
      assert.deepEqual(jwk, { kty: 'oct', k: bytes.toString('base64url'), alg, key_ops: [...usages], ext: true });
      const again = await c.subtle.importKey('jwk', jwk, name, true, usages);
      assert.equal(hex(await c.subtle.exportKey('raw', again)), bytes.toString('hex'));
    }
  });

  test('HMAC: generate defaults to the hash block size; import any length ≥ 1 byte', async () => {
    for (const [hash, bits] of [['SHA-1', 512], ['SHA-256', 512], ['SHA-384', 1024], ['SHA-512', 1024]] as const) {
      const key = (await c.subtle.generateKey({ name: 'HMAC', hash }, true, ['sign'])) as CryptoKey;
      assert.equal(key.algorithm.length, bits);
      assert.deepEqual({ ...(key.algorithm.hash as object) }, { name: hash });
      assert.equal((await c.subtle.exportKey('raw', key)).byteLength, bits / 8);
    }
    const k2 = (await c.subtle.generateKey({ name: 'HMAC', hash: 'SHA-256', length: 128 }, true, ['verify'])) as CryptoKey;
    assert.equal(k2.algorithm.length, 128);
    const one = await c.subtle.importKey('raw', new Uint8Array([7]), { name: 'HMAC', hash: 'SHA-512' }, true, ['sign']);
    assert.deepEqual(await c.subtle.exportKey('jwk', one), { kty: 'oct', k: 'Bw', alg: 'HS512', key_ops: ['sign'], ext: true });
    await rejects(c.subtle.importKey('raw', new Uint8Array(0), { name: 'HMAC', hash: 'SHA-256' }, true, ['sign']), DataError, /at least 1 byte, got 0/);
    await rejects(c.subtle.importKey('raw', randomBytes(32), { name: 'HMAC', hash: 'SHA-256', length: 128 }, true, ['sign']), DataError);
    await rejects(c.subtle.importKey('raw', randomBytes(32), { name: 'HMAC' }, true, ['sign']), InvalidArgumentError, /hash/);
    await rejects(c.subtle.importKey('raw', randomBytes(32), { name: 'HMAC', hash: 'MD5' }, true, ['sign']), UnsupportedError);
  });

  test('HKDF: raw import only, never extractable, never generated', async () => {
    const key = await c.subtle.importKey('raw', randomBytes(32), 'HKDF', false, ['deriveBits']);
    assert.equal(key.extractable, false);
    await rejects(c.subtle.exportKey('raw', key), NotExtractableError);
    await rejects(c.subtle.importKey('raw', randomBytes(32), 'HKDF', true, ['deriveBits']), InvalidArgumentError, /extractable/);
    await rejects(c.subtle.importKey('jwk', { kty: 'oct', k: 'AAAA' }, 'HKDF', false, ['deriveBits']), UnsupportedError);
    await rejects(c.subtle.generateKey('HKDF', false, ['deriveBits']), UnsupportedError);
  });

  test('wrong key lengths are typed errors that say what was expected', async () => {
    await rejects(c.subtle.importKey('raw', randomBytes(20), 'AES-GCM', true, ['encrypt']), DataError, /expected a 16-, 24- or 32-byte AES key, got 20/);
    await rejects(c.subtle.importKey('raw', randomBytes(16), 'ChaCha20-Poly1305', true, ['encrypt']), DataError, /32-byte/);
    await rejects(c.subtle.generateKey({ name: 'AES-GCM', length: 100 }, true, ['encrypt']), InvalidArgumentError, /128, 192 or 256, got 100/);
    await rejects(c.subtle.generateKey({ name: 'AES-GCM' }, true, ['encrypt']), InvalidArgumentError);
    // ChaCha20-Poly1305's generateKey takes a plain Algorithm: WebIDL drops the undeclared length, and the key is 256 bits.
    const chacha = (await c.subtle.generateKey({ name: 'ChaCha20-Poly1305', length: 128 } as never, true, ['encrypt'])) as unknown as CryptoKey;
    assert.equal(chacha.algorithm.length, 256);
    await chacha.release();
    // The daemon, asked directly, refuses the length by name.
    await rejects(c.request(Op.GENERATE_KEY, { algorithm: { name: 'ChaCha20-Poly1305', length: 128 }, extractable: true, usages: ['encrypt'] }), InvalidArgumentError);
    await rejects(c.subtle.generateKey({ name: 'HMAC', hash: 'SHA-256', length: 12 }, true, ['sign']), InvalidArgumentError);
  });

  test('usages: not allowed for the algorithm, empty, unknown', async () => {
    await rejects(c.subtle.importKey('raw', randomBytes(16), 'AES-GCM', true, ['sign']), InvalidArgumentError, /'sign' is not a usage of a AES-GCM secret key/);
    await rejects(c.subtle.importKey('raw', randomBytes(16), 'AES-KW', true, ['encrypt']), InvalidArgumentError);
    await rejects(c.subtle.importKey('raw', randomBytes(16), 'AES-GCM', true, []), InvalidArgumentError, /at least one usage/);
    await rejects(c.subtle.generateKey({ name: 'HMAC', hash: 'SHA-256' }, true, ['encrypt']), InvalidArgumentError);
    await rejects(c.request(Op.GENERATE_KEY, { algorithm: { name: 'AES-GCM', length: 128 }, extractable: true, usages: ['fly'] }), InvalidArgumentError, /'fly'/);
    await rejects(c.request(Op.GENERATE_KEY, { algorithm: { name: 'AES-GCM', length: 128 }, extractable: 'yes', usages: ['encrypt'] }), InvalidArgumentError, /extractable/);
    await rejects(c.subtle.generateKey('SHA-256', true, ['sign']), UnsupportedError, /digest/);
    await rejects(c.subtle.generateKey('RC4', true, ['encrypt']), UnsupportedError);
  });

  test('duplicate usages are folded; usages come back in canonical order', async () => {
    const key = (await c.subtle.generateKey({ name: 'AES-GCM', length: 128 }, false, ['decrypt', 'encrypt', 'decrypt'])) as CryptoKey;
    assert.deepEqual(key.usages, ['encrypt', 'decrypt']);
  });

  test('JWK checks: kty, alg, use, key_ops, ext, base64url', async () => {
    const k = randomBytes(16).toString('base64url');
    const jwk = (extra: Record<string, unknown>) => ({ kty: 'oct', k, ...extra });
    await rejects(c.subtle.importKey('jwk', jwk({ kty: 'EC' }), 'AES-GCM', true, ['encrypt']), DataError, /'kty'/);
    await rejects(c.subtle.importKey('jwk', jwk({ alg: 'A256GCM' }), 'AES-GCM', true, ['encrypt']), DataError, /A128GCM/);
    await rejects(c.subtle.importKey('jwk', jwk({ use: 'sig' }), 'AES-GCM', true, ['encrypt']), DataError, /'use'/);
    await rejects(c.subtle.importKey('jwk', jwk({ key_ops: ['decrypt'] }), 'AES-GCM', true, ['encrypt']), DataError, /key_ops/);
    await rejects(c.subtle.importKey('jwk', jwk({ key_ops: ['encrypt', 'encrypt'] }), 'AES-GCM', true, ['encrypt']), DataError, /twice/);
    await rejects(c.subtle.importKey('jwk', jwk({ ext: false }), 'AES-GCM', true, ['encrypt']), DataError, /ext/);
    await rejects(c.subtle.importKey('jwk', jwk({ k: `${k}*` }), 'AES-GCM', true, ['encrypt']), DataError, /base64url/);
    await rejects(c.subtle.importKey('jwk', { kty: 'oct' }, 'AES-GCM', true, ['encrypt']), DataError, /'k'/);
    await rejects(c.subtle.importKey('jwk', jwk({ alg: 'HS384' }), { name: 'HMAC', hash: 'SHA-256' }, true, ['sign']), DataError, /HS256/);
    // ext:false imports fine as non-extractable; matching alg/use/key_ops import fine.
    const ok = await c.subtle.importKey('jwk', jwk({ ext: false, alg: 'A128GCM', use: 'enc', key_ops: ['encrypt', 'decrypt'] }), 'AES-GCM', false, ['encrypt']);
    assert.equal(ok.extractable, false);
    await rejects(c.request(Op.IMPORT_KEY, { format: 'jwk', keyData: new Uint8Array(4), algorithm: 'AES-GCM', extractable: true, usages: ['encrypt'] }), InvalidArgumentError);
  });

  test('formats a secret key does not have', async () => {
    await rejects(c.subtle.importKey('spki', randomBytes(16), 'AES-GCM', true, ['encrypt']), UnsupportedError);
    const key = (await c.subtle.generateKey({ name: 'AES-GCM', length: 128 }, true, ['encrypt'])) as CryptoKey;
    await rejects(c.subtle.exportKey('pkcs8', key), UnsupportedError);
    await rejects(c.request(Op.EXPORT_KEY, { format: 'pem', key: key.handle }), InvalidArgumentError, /'format'/);
  });

  test('export of a non-extractable key, and unknown handles', async () => {
    const key = (await c.subtle.generateKey({ name: 'AES-GCM', length: 256 }, false, ['encrypt'])) as CryptoKey;
    await rejects(c.subtle.exportKey('raw', key), NotExtractableError);
    await rejects(c.subtle.exportKey('jwk', key), NotExtractableError);
    await key.release();
    await rejects(c.subtle.exportKey('raw', key), NotFoundError);
    await rejects(c.request(Op.EXPORT_KEY, { format: 'raw', key: 'not-a-handle' }), InvalidArgumentError);
  });

  test('import leaves the caller\'s own buffer untouched', async () => {
    // The daemon zeroes *its* copy of the frame; the caller's buffer is untouched.
    const bytes = randomBytes(16);
    const copy = Buffer.from(bytes);
    await c.subtle.importKey('raw', bytes, 'AES-GCM', false, ['encrypt']);
    assert.deepEqual(bytes, copy);
  });
});

describe('asymmetric keys', () => {
  test('Ed25519: generate, export every format, re-import every format', async () => {
    const pair = (await c.subtle.generateKey('Ed25519', true, ['sign', 'verify'])) as CryptoKeyPair;
    assert.equal(pair.publicKey.type, 'public');
    assert.equal(pair.privateKey.type, 'private');
    assert.deepEqual(pair.publicKey.usages, ['verify']);
    assert.deepEqual(pair.privateKey.usages, ['sign']);
    assert.equal(pair.publicKey.extractable, true);
    const raw = await c.subtle.exportKey('raw', pair.publicKey);
    assert.equal(raw.byteLength, 32);
    const spki = await c.subtle.exportKey('spki', pair.publicKey);
    const pkcs8 = await c.subtle.exportKey('pkcs8', pair.privateKey);
    const jwkPriv = await c.subtle.exportKey('jwk', pair.privateKey);
    const jwkPub = await c.subtle.exportKey('jwk', pair.publicKey);
    assert.equal(jwkPriv.kty, 'OKP');
    assert.equal(jwkPriv.crv, 'Ed25519');
    assert.equal(jwkPriv.alg, 'Ed25519');
    assert.deepEqual(jwkPriv.key_ops, ['sign']);
    assert.equal(jwkPub.x, Buffer.from(raw).toString('base64url'));
    for (const [fmt, data] of [['raw', raw], ['spki', spki], ['jwk', jwkPub]] as const) {
      const k = await c.subtle.importKey(fmt, data as never, 'Ed25519', true, ['verify']);
      assert.equal(hex(await c.subtle.exportKey('raw', k)), hex(raw));
    }
    for (const [fmt, data] of [['pkcs8', pkcs8], ['jwk', jwkPriv]] as const) {
      const k = await c.subtle.importKey(fmt, data as never, 'Ed25519', true, ['sign']);
      assert.equal(hex(await c.subtle.exportKey('pkcs8', k)), hex(pkcs8));
    }
    // a public key cannot sign; a private key exports no spki
    await rejects(c.subtle.importKey('raw', raw, 'Ed25519', true, ['sign']), InvalidArgumentError);
    await rejects(c.subtle.exportKey('spki', pair.privateKey), InvalidKeyError);
    await rejects(c.subtle.exportKey('pkcs8', pair.publicKey), InvalidKeyError);
    // the JWK's x must belong to its d
    await rejects(c.subtle.importKey('jwk', { ...jwkPriv, x: Buffer.alloc(32, 9).toString('base64url') }, 'Ed25519', true, ['sign']), DataError, /'x'/);
    await rejects(c.subtle.importKey('jwk', { ...jwkPub, alg: 'ES256' }, 'Ed25519', true, ['verify']), DataError);
    await rejects(c.subtle.importKey('jwk', { ...jwkPub, crv: 'X25519' }, 'Ed25519', true, ['verify']), DataError, /crv/);
    await rejects(c.subtle.importKey('raw', new Uint8Array(31), 'Ed25519', true, ['verify']), DataError, /32-byte/);
    await rejects(c.subtle.generateKey('Ed25519', true, ['encrypt']), InvalidArgumentError);
    await rejects(c.subtle.generateKey('Ed25519', true, ['verify']), InvalidArgumentError, /private key needs at least one usage/);
  });

  test('X25519: the public key has no usages; formats round trip', async () => {
    const pair = (await c.subtle.generateKey('X25519', false, ['deriveBits'])) as CryptoKeyPair;
    assert.deepEqual(pair.publicKey.usages, []);
    assert.deepEqual(pair.privateKey.usages, ['deriveBits']);
    await rejects(c.subtle.exportKey('pkcs8', pair.privateKey), NotExtractableError);
    const raw = await c.subtle.exportKey('raw', pair.publicKey);
    const k = await c.subtle.importKey('raw', raw, 'X25519', true, []);
    assert.equal(hex(await c.subtle.exportKey('spki', k)), hex(await c.subtle.exportKey('spki', pair.publicKey)));
    const jwk = await c.subtle.exportKey('jwk', k);
    assert.equal(jwk.crv, 'X25519');
    assert.equal(jwk.alg, undefined);
    await rejects(c.subtle.importKey('raw', raw, 'X25519', true, ['deriveBits']), InvalidArgumentError);
    // 'use' is only checked when usages are requested (WebCrypto); a private X25519 key is an 'enc' key.
    const priv = (await c.subtle.generateKey('X25519', true, ['deriveKey'])) as CryptoKeyPair;
    const privJwk = await c.subtle.exportKey('jwk', priv.privateKey);
    await rejects(c.subtle.importKey('jwk', { ...privJwk, use: 'sig' }, 'X25519', true, ['deriveKey']), DataError, /'use'/);
    assert.equal((await c.subtle.importKey('jwk', { ...jwk, use: 'sig' }, 'X25519', true, [])).type, 'public');
  });

  test('ECDSA and ECDH, P-256 and P-384: raw (uncompressed and compressed), spki, pkcs8, jwk', async () => {
    for (const [name, curve, usages] of [
      ['ECDSA', 'P-256', ['sign', 'verify']],
      ['ECDSA', 'P-384', ['sign', 'verify']],
      ['ECDH', 'P-256', ['deriveBits']],
      ['ECDH', 'P-384', ['deriveKey']],
    ] as const) {
      const pair = (await c.subtle.generateKey({ name, namedCurve: curve }, true, usages)) as CryptoKeyPair;
      assert.equal(pair.privateKey.algorithm.namedCurve, curve);
      const raw = Buffer.from(await c.subtle.exportKey('raw', pair.publicKey));
      assert.equal(raw.length, curve === 'P-256' ? 65 : 97);
      assert.equal(raw[0], 4);
      const pubUsages = name === 'ECDSA' ? (['verify'] as const) : ([] as const);
      const privUsages = name === 'ECDSA' ? (['sign'] as const) : usages;
      const n = (raw.length - 1) / 2;
      const compressed = Buffer.concat([Buffer.of(2 + (raw[raw.length - 1]! & 1)), raw.subarray(1, 1 + n)]);
      const fromCompressed = await c.subtle.importKey('raw', compressed, { name, namedCurve: curve }, true, pubUsages);
      assert.equal(hex(await c.subtle.exportKey('raw', fromCompressed)), raw.toString('hex'));
      const spki = await c.subtle.exportKey('spki', pair.publicKey);
      const fromSpki = await c.subtle.importKey('spki', spki, { name, namedCurve: curve }, true, pubUsages);
      assert.equal(hex(await c.subtle.exportKey('raw', fromSpki)), raw.toString('hex'));
      const pkcs8 = await c.subtle.exportKey('pkcs8', pair.privateKey);
      const jwk = await c.subtle.exportKey('jwk', pair.privateKey);
      assert.equal(jwk.crv, curve);
      assert.equal(jwk.alg, undefined); // WebCrypto's ECDSA and ECDH JWKs name no alg
      const fromPkcs8 = await c.subtle.importKey('pkcs8', pkcs8, { name, namedCurve: curve }, true, privUsages);
      const fromJwk = await c.subtle.importKey('jwk', jwk, { name, namedCurve: curve }, true, privUsages);
      assert.equal(hex(await c.subtle.exportKey('pkcs8', fromJwk)), hex(await c.subtle.exportKey('pkcs8', fromPkcs8)));
      // wrong curve
      const other = curve === 'P-256' ? 'P-384' : 'P-256';
      await rejects(c.subtle.importKey('spki', spki, { name, namedCurve: other }, true, pubUsages), DataError, /curve/);
      await rejects(c.subtle.importKey('jwk', jwk, { name, namedCurve: other }, true, privUsages), DataError, /'crv'/);
    }
  });

  test('EC private JWK whose x/y do not belong to d is refused', async () => {
    const a = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
    const b = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' });
    await rejects(c.subtle.importKey('jwk', { ...a, x: b.x, y: b.y }, { name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign']), DataError, /does not belong/);
  });

  test('unsupported curves, off-curve points, malformed DER, wrong key types', async () => {
    await rejects(c.subtle.generateKey({ name: 'ECDSA', namedCurve: 'secp256k1' }, true, ['sign']), UnsupportedError, /P-256, P-384, P-521/);
    await rejects(c.subtle.generateKey({ name: 'ECDSA' }, true, ['sign']), InvalidArgumentError, /namedCurve/);
    const p521 = generateKeyPairSync('ec', { namedCurve: 'P-521' }).publicKey.export({ type: 'spki', format: 'der' });
    await rejects(c.subtle.importKey('spki', p521, { name: 'ECDSA', namedCurve: 'P-256' }, true, ['verify']), DataError);
    const offCurve = Buffer.concat([Buffer.of(4), Buffer.alloc(32, 1), Buffer.alloc(32, 2)]);
    await rejects(c.subtle.importKey('raw', offCurve, { name: 'ECDSA', namedCurve: 'P-256' }, true, ['verify']), DataError);
    await rejects(c.subtle.importKey('raw', Buffer.alloc(10), { name: 'ECDSA', namedCurve: 'P-256' }, true, ['verify']), DataError, /65-byte/);
    await rejects(c.subtle.importKey('spki', randomBytes(40), 'Ed25519', true, ['verify']), DataError, /malformed SPKI/);
    await rejects(c.subtle.importKey('pkcs8', randomBytes(40), 'Ed25519', true, ['sign']), DataError, /malformed PKCS #8/);
    const ed = generateKeyPairSync('ed25519');
    await rejects(c.subtle.importKey('spki', ed.publicKey.export({ type: 'spki', format: 'der' }), 'X25519', true, []), DataError, /expected a X25519 key, got an Ed25519 key/);
    await rejects(c.subtle.importKey('pkcs8', ed.privateKey.export({ type: 'pkcs8', format: 'der' }), { name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign']), DataError);
    await rejects(c.subtle.importKey('jwk', { kty: 'OKP', crv: 'Ed25519', x: 5 }, 'Ed25519', true, ['verify']), DataError, /'x'/);
  });

  test('RSA-PSS: generate 2048, export/import spki, pkcs8, jwk; unsupported sizes and exponents', async () => {
    const pair = (await c.subtle.generateKey(
      { name: 'RSA-PSS', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
      true,
      ['sign', 'verify'],
    )) as CryptoKeyPair;
    assert.equal(pair.publicKey.algorithm.modulusLength, 2048);
    assert.deepEqual({ ...(pair.publicKey.algorithm.hash as object) }, { name: 'SHA-256' });
    const spki = await c.subtle.exportKey('spki', pair.publicKey);
    assert.equal(createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' }).asymmetricKeyDetails?.modulusLength, 2048);
    const jwk = await c.subtle.exportKey('jwk', pair.privateKey);
    assert.equal(jwk.alg, 'PS256');
    const pkcs8 = await c.subtle.exportKey('pkcs8', pair.privateKey);
    const k1 = await c.subtle.importKey('jwk', jwk, { name: 'RSA-PSS', hash: 'SHA-256' }, true, ['sign']);
    assert.equal(hex(await c.subtle.exportKey('pkcs8', k1)), hex(pkcs8));
    await rejects(c.subtle.importKey('jwk', jwk, { name: 'RSA-PSS', hash: 'SHA-384' }, true, ['sign']), DataError, /PS384/);
    await rejects(c.subtle.exportKey('raw', pair.publicKey), UnsupportedError);
    await rejects(c.subtle.importKey('raw', new Uint8Array(256), { name: 'RSA-PSS', hash: 'SHA-256' }, true, ['verify']), UnsupportedError);
    await rejects(
      c.subtle.generateKey({ name: 'RSA-PSS', modulusLength: 1024, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }, true, ['sign']),
      UnsupportedError,
      /2048, 3072, 4096/,
    );
    await rejects(c.subtle.generateKey({ name: 'RSA-PSS', modulusLength: 2048, publicExponent: new Uint8Array([3]), hash: 'SHA-256' }, true, ['sign']), UnsupportedError, /65537/);
    const small = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'der' });
    await rejects(c.subtle.importKey('spki', small, { name: 'RSA-PSS', hash: 'SHA-256' }, true, ['verify']), UnsupportedError, /1024/);
    const pss = generateKeyPairSync('rsa-pss', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'der' });
    await rejects(c.subtle.importKey('spki', pss, { name: 'RSA-PSS', hash: 'SHA-256' }, true, ['verify']), DataError, /rsaEncryption/);
  });

  test('a pair is two nodes, and both are released with the connection', async () => {
    const c2 = await t.connect('pair-owner');
    await c2.subtle.generateKey('Ed25519', false, ['sign']);
    const id = c2.info.clientId as never;
    assert.equal(t.daemon.dm.liveNodes(id), 2);
    await c2.close();
    await eventually(() => t.daemon.dm.liveNodes(id) === 0, 5000, 'the pair to be freed');
  });

  test('regression: an RSA pair generated after its connection closed is freed, not leaked', async () => {
    const c2 = await t.connect('closes-early');
    const id = c2.info.clientId as never;
    // 3072-bit generation takes far longer than the 20 ms before the close.
    const p = c2.subtle
      .generateKey({ name: 'RSA-PSS', modulusLength: 3072, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }, true, ['sign'])
      .then(() => 'replied', () => 'closed');
    await new Promise((r) => setTimeout(r, 20));
    c2.connection.destroy();
    assert.equal(await p, 'closed');
    await eventually(() => t.daemon.dm.liveNodes(id) === 0 && t.daemon.status().connections === 1, 20_000, 'the late pair to be freed');
    await new Promise((r) => setTimeout(r, 4000)); // generation may still be running: let it finish, then look again
    assert.equal(t.daemon.dm.liveNodes(id), 0);
  });
});
