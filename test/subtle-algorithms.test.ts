/**
 * Every algorithm Node 20's WebCrypto has works through the daemon, and gives
 * what Node gives: a key made by Node's crypto.subtle is exported, imported
 * into the daemon, and the same operation runs on both sides (deterministic
 * outputs compared byte for byte; randomized ones checked across: ours
 * verified or decrypted by Node). None of them may answer
 * CRYPTOD_ERR_UNSUPPORTED.
 */
import assert from 'node:assert/strict';
import { randomBytes, webcrypto } from 'node:crypto';
import { after, before, test } from 'node:test';
import type { Client } from '../src/client/client.js';
import type { CryptoKey } from '../src/client/subtle.js';
import { startTestDaemon, type TestDaemon } from './helpers/daemon.js';

type NodeKey = webcrypto.CryptoKey;
type NodePair = webcrypto.CryptoKeyPair;
type KeyUsage = webcrypto.KeyUsage;
const subtle = globalThis.crypto.subtle;
const hex = (b: ArrayBuffer | Uint8Array): string => Buffer.from(b instanceof ArrayBuffer ? new Uint8Array(b) : b).toString('hex');
const RSA = { modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' };

let t: TestDaemon;
let c: Client;
before(async () => {
  t = await startTestDaemon();
  c = await t.connect('subtle-algorithms');
});
after(async () => {
  await c.close();
  await t.stop();
});

/** Move a Node key into the daemon through its JWK (or pkcs8/spki where JWK does not apply). */
async function transfer(key: NodeKey, algorithm: object): Promise<CryptoKey> {
  const format = key.algorithm.name === 'PBKDF2' || key.algorithm.name === 'HKDF' ? 'raw' : 'jwk';
  const data = format === 'raw' ? new Uint8Array(await subtle.exportKey('raw', key)) : await subtle.exportKey('jwk', key);
  return await c.subtle.importKey(format, data as never, algorithm as never, false, key.usages as never);
}

async function nodeSecret(algorithm: object, usages: KeyUsage[], raw?: Uint8Array): Promise<NodeKey> {
  // KDF keys (the only ones imported here) are never extractable.
  if (raw !== undefined) return await subtle.importKey('raw', raw, algorithm as never, false, usages);
  return (await subtle.generateKey(algorithm as never, true, usages)) as unknown as NodeKey;
}

test('symmetric ciphers: AES-CBC, AES-CTR, AES-GCM give the same bytes as Node', async () => {
  const data = randomBytes(77);
  for (const [gen, params] of [
    [{ name: 'AES-CBC', length: 128 }, { name: 'AES-CBC', iv: randomBytes(16) }],
    [{ name: 'AES-CTR', length: 192 }, { name: 'AES-CTR', counter: randomBytes(16), length: 32 }],
    [{ name: 'AES-GCM', length: 256 }, { name: 'AES-GCM', iv: randomBytes(12), additionalData: randomBytes(5) }],
  ] as const) {
    const n = await nodeSecret(gen, ['encrypt', 'decrypt']);
    const k = await transfer(n, { name: gen.name });
    const ours = await c.subtle.encrypt(params, k, data);
    assert.equal(hex(ours), hex(await subtle.encrypt(params, n, data)), gen.name);
    assert.equal(hex(await c.subtle.decrypt(params, k, ours)), hex(data), gen.name);
  }
});

test('HMAC, RSASSA-PKCS1-v1_5 and Ed448 sign as Node does; ECDSA P-521 and RSA-PSS verify across', async () => {
  const data = randomBytes(40);
  const hmac = await nodeSecret({ name: 'HMAC', hash: 'SHA-512' }, ['sign', 'verify']);
  assert.equal(hex(await c.subtle.sign('HMAC', await transfer(hmac, { name: 'HMAC', hash: 'SHA-512' }), data)), hex(await subtle.sign('HMAC', hmac, data)));
  for (const [gen, params] of [
    [{ name: 'RSASSA-PKCS1-v1_5', ...RSA }, { name: 'RSASSA-PKCS1-v1_5' }],
    [{ name: 'Ed448' }, { name: 'Ed448' }],
    [{ name: 'Ed25519' }, { name: 'Ed25519' }],
    [{ name: 'ECDSA', namedCurve: 'P-521' }, { name: 'ECDSA', hash: 'SHA-512' }],
    [{ name: 'RSA-PSS', ...RSA }, { name: 'RSA-PSS', saltLength: 32 }],
  ] as const) {
    const pair = (await subtle.generateKey(gen as never, true, ['sign', 'verify'])) as NodePair;
    const importAlg = { ...gen, modulusLength: undefined, publicExponent: undefined };
    const priv = await transfer(pair.privateKey, importAlg);
    const pub = await transfer(pair.publicKey, importAlg);
    const ours = await c.subtle.sign(params, priv, data);
    if (gen.name === 'RSASSA-PKCS1-v1_5' || gen.name === 'Ed448' || gen.name === 'Ed25519') {
      assert.equal(hex(ours), hex(await subtle.sign(params, pair.privateKey, data)), `${gen.name}: deterministic signatures differ`);
    }
    assert.equal(await subtle.verify(params, pair.publicKey, ours, data), true, `${gen.name}: Node refuses our signature`);
    assert.equal(await c.subtle.verify(params, pub, await subtle.sign(params, pair.privateKey, data), data), true, `${gen.name}: we refuse Node's`);
  }
});

test('RSA-OAEP: Node decrypts ours and we decrypt Node\'s; AES-GCM and RSA-OAEP wrap keys Node unwraps', async () => {
  const pair = (await subtle.generateKey({ name: 'RSA-OAEP', ...RSA }, true, ['encrypt', 'decrypt', 'wrapKey', 'unwrapKey'])) as NodePair;
  const pub = await transfer(pair.publicKey, { name: 'RSA-OAEP', hash: 'SHA-256' });
  const priv = await transfer(pair.privateKey, { name: 'RSA-OAEP', hash: 'SHA-256' });
  const msg = randomBytes(32);
  const label = randomBytes(4);
  assert.equal(hex(await subtle.decrypt({ name: 'RSA-OAEP', label }, pair.privateKey, await c.subtle.encrypt({ name: 'RSA-OAEP', label }, pub, msg))), hex(msg));
  assert.equal(hex(await c.subtle.decrypt({ name: 'RSA-OAEP', label }, priv, await subtle.encrypt({ name: 'RSA-OAEP', label }, pair.publicKey, msg))), hex(msg));

  const payload = await c.subtle.generateKey({ name: 'HMAC', hash: 'SHA-256' }, true, ['sign']);
  const payloadRaw = hex(await c.subtle.exportKey('raw', payload) as ArrayBuffer);
  const gcm = await nodeSecret({ name: 'AES-GCM', length: 128 }, ['wrapKey', 'unwrapKey']);
  const ourGcm = await transfer(gcm, 'AES-GCM' as never);
  const iv = randomBytes(12);
  for (const [ours, theirs, params] of [
    [ourGcm, gcm, { name: 'AES-GCM', iv }],
    [pub, pair.privateKey, { name: 'RSA-OAEP' }],
  ] as const) {
    for (const format of ['raw', 'jwk'] as const) {
      const wrapped = await c.subtle.wrapKey(format, payload, ours, params);
      const back = await subtle.unwrapKey(format, wrapped, theirs, params, { name: 'HMAC', hash: 'SHA-256' }, true, ['sign']);
      assert.equal(hex(await subtle.exportKey('raw', back)), payloadRaw, `${params.name} ${format}`);
    }
  }
  const wrappedByNode = await subtle.wrapKey('raw', await subtle.importKey('raw', Buffer.from(payloadRaw, 'hex'), { name: 'HMAC', hash: 'SHA-256' }, true, ['sign']), gcm, { name: 'AES-GCM', iv });
  const unwrapped = await c.subtle.unwrapKey('raw', wrappedByNode, ourGcm, { name: 'AES-GCM', iv }, { name: 'HMAC', hash: 'SHA-256' }, true, ['sign']);
  assert.equal(hex(await c.subtle.exportKey('raw', unwrapped) as ArrayBuffer), payloadRaw);
});

test('PBKDF2, HKDF (also of length 0), X448, X25519 and ECDH P-521 derive what Node derives', async () => {
  const password = randomBytes(12);
  for (const [name, params] of [
    ['PBKDF2', { name: 'PBKDF2', hash: 'SHA-384', salt: randomBytes(8), iterations: 1000 }],
    ['HKDF', { name: 'HKDF', hash: 'SHA-256', salt: randomBytes(8), info: randomBytes(3) }],
  ] as const) {
    const n = await nodeSecret({ name }, ['deriveBits'], password);
    const k = await c.subtle.importKey('raw', password, name, false, ['deriveBits']);
    for (const length of [0, 8, 256]) {
      assert.equal(hex(await c.subtle.deriveBits(params, k, length)), hex(await subtle.deriveBits(params, n, length)), `${name} ${length}`);
    }
  }
  for (const gen of [{ name: 'X448' }, { name: 'X25519' }, { name: 'ECDH', namedCurve: 'P-521' }]) {
    const a = (await subtle.generateKey(gen as never, true, ['deriveBits'])) as NodePair;
    const b = (await subtle.generateKey(gen as never, true, ['deriveBits'])) as NodePair;
    const ourA = await transfer(a.privateKey, gen);
    const ourB = await transfer(b.publicKey, gen);
    const ours = await c.subtle.deriveBits({ name: gen.name, public: ourB }, ourA, null);
    assert.equal(hex(ours), hex(await subtle.deriveBits({ name: gen.name, public: b.publicKey } as never, a.privateKey, null as never)), gen.name);
  }
});
