/**
 * Managed-key data operations through a real daemon: round trips for every
 * type, AAD binding, the self-describing format, rotation and rewrap,
 * version refusals (minimum decryption version, trim, destroy), batches.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Client } from '../src/client/client.js';
import {
  CryptodError, DataError, DecryptError, ForbiddenError, InvalidArgumentError, InvalidKeyError, KeyVersionError, NotExtractableError, NotFoundError,
} from '../src/protocol/errors.js';
import { parseHeader } from '../src/protocol/managed-format.js';
import { splitManagedSignature } from '../src/client/managed.js';
import { constants, createPublicKey, verify, webcrypto, type JsonWebKey, type KeyObject } from 'node:crypto';
import { startManagedDaemon, type ManagedEnv } from './managed-env.js';

let env: ManagedEnv;
let c: Client;
const te = new TextEncoder();

before(async () => {
  env = await startManagedDaemon();
  c = await env.admin();
});
after(async () => env.stop());

function isVersionError(version: number, reason: string): (e: unknown) => boolean {
  return (e) => e instanceof KeyVersionError && e.detail?.version === version && e.detail?.reason === reason && e.message.includes(`version ${version}`);
}

test('encrypt/decrypt round trip for AES-256-GCM, ChaCha20-Poly1305 and AES-KWP keys, with and without AAD', async () => {
  for (const type of ['aes256-gcm', 'chacha20-poly1305'] as const) {
    const name = `enc-${type}`;
    await c.keys.create(name, { type });
    const pt = te.encode(`hello ${type}`);
    const ct = await c.encrypt(name, pt);
    assert.deepEqual(Buffer.from(await c.decrypt(name, ct)), Buffer.from(pt));
    const aad = te.encode('order-17');
    const ct2 = await c.encrypt(name, pt, { aad });
    assert.deepEqual(Buffer.from(await c.decrypt(name, ct2, { aad })), Buffer.from(pt));
    await assert.rejects(c.decrypt(name, ct2, { aad: te.encode('order-18') }), DecryptError);
    await assert.rejects(c.decrypt(name, ct2), DecryptError);
    await assert.rejects(c.decrypt(name, ct, { aad }), DecryptError);
    // The header is authenticated: flipping a body byte or the header's version both fail.
    const bad = Buffer.from(ct);
    bad[bad.length - 1]! ^= 1;
    await assert.rejects(c.decrypt(name, bad), DecryptError);
    const empty = await c.encrypt(name, new Uint8Array(0));
    assert.equal((await c.decrypt(name, empty)).length, 0);
  }
  await c.keys.create('kwp', { type: 'aes256-kwp' });
  const dek = Buffer.alloc(32, 7);
  const wrapped = await c.encrypt('kwp', dek);
  assert.deepEqual(Buffer.from(await c.decrypt('kwp', wrapped)), dek);
  await assert.rejects(c.encrypt('kwp', dek, { aad: te.encode('x') }), InvalidArgumentError);
});

test('the ciphertext header names format, key, version and algorithm (docs/formats.md)', async () => {
  await c.keys.create('fmt', { type: 'aes256-gcm' });
  const ct = Buffer.from(await c.encrypt('fmt', te.encode('abc')));
  assert.deepEqual([...ct.subarray(0, 5)], [0x63, 0x6d, 1, 1, 1]);
  assert.equal(ct.readUInt16BE(5), 3);
  assert.equal(ct.toString('utf8', 7, 10), 'fmt');
  assert.equal(ct.readUInt32BE(10), 1);
  assert.equal(ct.length, 14 + 12 + 3 + 16);
  const { header } = parseHeader(ct, 'ciphertext');
  assert.deepEqual([header.key, header.version, header.type], ['fmt', 1, 'aes256-gcm']);
  // Rewriting the version in the header (to one that exists) breaks authentication.
  await c.keys.rotate('fmt');
  const forged = Buffer.from(ct);
  forged.writeUInt32BE(2, 10);
  await assert.rejects(c.decrypt('fmt', forged), DecryptError);
  await assert.rejects(c.decrypt('fmt', ct.subarray(0, 9)), DecryptError);
  await assert.rejects(c.decrypt('enc-aes256-gcm', ct), (e: unknown) => e instanceof InvalidArgumentError && /made by key 'fmt'/.test((e as Error).message));
});

test('sign/verify for ed25519, ecdsa-p256, ecdsa-p384, ecdsa-p521, rsa-pss-3072 and rsa-pkcs1-3072; mac/verifyMac for hmac-sha256/512', async () => {
  const msg = te.encode('the message');
  for (const type of ['ed25519', 'ecdsa-p256', 'ecdsa-p384', 'ecdsa-p521', 'rsa-pss-3072', 'rsa-pkcs1-3072'] as const) {
    const name = `sig-${type}`;
    await c.keys.create(name, { type });
    const sig = await c.sign(name, msg);
    assert.equal(await c.verify(name, msg, sig), true, type);
    assert.equal(await c.verify(name, te.encode('another message'), sig), false, type);
    const bad = Buffer.from(sig);
    bad[bad.length - 1]! ^= 1;
    assert.equal(await c.verify(name, msg, bad), false, type);
    await assert.rejects(c.verify(name, msg, new Uint8Array(3)), DataError);
    await assert.rejects(c.encrypt(name, msg), InvalidKeyError);
  }
  for (const type of ['hmac-sha256', 'hmac-sha512'] as const) {
    const name = `mac-${type}`;
    await c.keys.create(name, { type });
    const tag = await c.mac(name, msg);
    assert.equal(await c.verifyMac(name, msg, tag), true);
    assert.equal(await c.verifyMac(name, te.encode('x'), tag), false);
    assert.equal(await c.verifyMac(name, msg, Buffer.from(tag).subarray(0, tag.length - 1)), false);
    await assert.rejects(c.sign(name, msg), InvalidKeyError);
  }
});

test('publicKey gives the public key of each version: a managed signature minus its header verifies with node:crypto', async () => {
  const msg = te.encode('verified elsewhere');
  const opts: Record<string, (k: KeyObject) => Parameters<typeof verify>[2]> = {
    ed25519: (key) => key,
    'ecdsa-p256': (key) => ({ key, dsaEncoding: 'ieee-p1363' }),
    'ecdsa-p384': (key) => ({ key, dsaEncoding: 'ieee-p1363' }),
    'rsa-pss-3072': (key) => ({ key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }),
    'ecdsa-p521': (key) => ({ key, dsaEncoding: 'ieee-p1363' }),
    'rsa-pkcs1-3072': (key) => ({ key, padding: constants.RSA_PKCS1_PADDING }),
  };
  const webParams: Record<string, { import: Parameters<typeof webcrypto.subtle.importKey>[2]; verify: Parameters<typeof webcrypto.subtle.verify>[0] }> = {
    ed25519: { import: { name: 'Ed25519' }, verify: { name: 'Ed25519' } },
    'ecdsa-p256': { import: { name: 'ECDSA', namedCurve: 'P-256' }, verify: { name: 'ECDSA', hash: 'SHA-256' } },
    'ecdsa-p384': { import: { name: 'ECDSA', namedCurve: 'P-384' }, verify: { name: 'ECDSA', hash: 'SHA-384' } },
    'rsa-pss-3072': { import: { name: 'RSA-PSS', hash: 'SHA-256' }, verify: { name: 'RSA-PSS', saltLength: 32 } },
    'ecdsa-p521': { import: { name: 'ECDSA', namedCurve: 'P-521' }, verify: { name: 'ECDSA', hash: 'SHA-512' } },
    'rsa-pkcs1-3072': { import: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, verify: { name: 'RSASSA-PKCS1-v1_5' } },
  };
  const hashOf: Record<string, string | null> = { ed25519: null, 'ecdsa-p256': 'sha256', 'ecdsa-p384': 'sha384', 'rsa-pss-3072': 'sha256', 'ecdsa-p521': 'sha512', 'rsa-pkcs1-3072': 'sha256' };
  for (const type of ['ed25519', 'ecdsa-p256', 'ecdsa-p384', 'ecdsa-p521', 'rsa-pss-3072', 'rsa-pkcs1-3072'] as const) {
    const name = `pub-${type}`;
    await c.keys.create(name, { type });
    const sig1 = splitManagedSignature(await c.sign(name, msg));
    await c.keys.rotate(name);
    const sig2 = splitManagedSignature(await c.sign(name, msg));
    assert.deepEqual([sig1.key, sig1.type, sig1.version, sig2.version], [name, type, 1, 2]);
    const pub1 = await c.keys.publicKey(name, { version: 1 });
    const pub2 = await c.keys.publicKey(name);
    assert.deepEqual([pub1.version, pub2.version, pub2.type], [1, 2, type]);
    assert.notDeepEqual(Buffer.from(pub1.spki), Buffer.from(pub2.spki));
    const k1 = createPublicKey({ key: Buffer.from(pub1.spki), format: 'der', type: 'spki' });
    const k2 = createPublicKey({ key: pub2.jwk as JsonWebKey, format: 'jwk' });
    assert.equal(verify(hashOf[type]!, msg, opts[type]!(k1), sig1.signature), true, type);
    assert.equal(verify(hashOf[type]!, msg, opts[type]!(k2), sig2.signature), true, type);
    assert.equal(verify(hashOf[type]!, msg, opts[type]!(k2), sig1.signature), false, type);
    assert.ok(!('d' in (pub2.jwk as object)), 'the JWK has no private member');
    // WebCrypto takes the SPKI as it is (RSA-PSS under the rsaEncryption OID).
    const web = webParams[type]!;
    const wk = await webcrypto.subtle.importKey('spki', pub2.spki, web.import, false, ['verify']);
    assert.equal(await webcrypto.subtle.verify(web.verify, wk, sig2.signature, msg), true, `WebCrypto ${type}`);
  }
  await assert.rejects(c.keys.publicKey('pub-ed25519', { version: 9 }), (e: unknown) => e instanceof NotFoundError && e.detail?.version === 9);
  await assert.rejects(c.keys.publicKey('enc-aes256-gcm'), (e: unknown) => e instanceof InvalidKeyError && /has no public key/.test((e as Error).message));
  await assert.rejects(c.keys.publicKey('no-such-key'), NotFoundError);
  // Any right on the key gives its public key; none hides the key.
  await c.keys.create('pub-narrow', { type: 'ed25519', clients: { 'token:pub-friend': ['verify'] } });
  const friend = await env.token('pub-friend');
  const stranger = await env.token('pub-stranger');
  assert.equal((await friend.keys.publicKey('pub-narrow')).version, 1);
  await assert.rejects(stranger.keys.publicKey('pub-narrow'), NotFoundError);
  assert.throws(() => splitManagedSignature(new Uint8Array(40)), DataError);
});

test('rotation keeps old ciphertexts and signatures usable; rewrap moves a ciphertext to the current version', async () => {
  await c.keys.create('rot', { type: 'chacha20-poly1305' });
  await c.keys.create('rot-sig', { type: 'ed25519' });
  const aad = te.encode('ctx');
  const v1 = await c.encrypt('rot', te.encode('one'), { aad });
  const s1 = await c.sign('rot-sig', te.encode('one'));
  assert.equal(await c.keys.rotate('rot'), 2);
  await c.keys.rotate('rot-sig');
  const v2 = await c.encrypt('rot', te.encode('two'), { aad });
  assert.equal(parseHeader(v2, 'ciphertext').header.version, 2);
  assert.equal(Buffer.from(await c.decrypt('rot', v1, { aad })).toString(), 'one');
  assert.equal(await c.verify('rot-sig', te.encode('one'), s1), true);
  const moved = await c.rewrap('rot', v1, { aad });
  assert.equal(parseHeader(moved, 'ciphertext').header.version, 2);
  assert.equal(Buffer.from(await c.decrypt('rot', moved, { aad })).toString(), 'one');
  await assert.rejects(c.rewrap('rot', v1), DecryptError); // the AAD is checked on the way through
});

test('min decryption version, trim and destroy refuse old data with the version and reason named', async () => {
  await c.keys.create('old', { type: 'aes256-gcm' });
  const c1 = await c.encrypt('old', te.encode('v1'));
  await c.keys.rotate('old');
  const c2 = await c.encrypt('old', te.encode('v2'));
  await c.keys.rotate('old');
  const c3 = await c.encrypt('old', te.encode('v3'));

  await c.keys.setPolicy('old', { minDecryptionVersion: 2 });
  await assert.rejects(c.decrypt('old', c1), isVersionError(1, 'below-minimum'));
  assert.equal(Buffer.from(await c.decrypt('old', c2)).toString(), 'v2');
  await c.keys.setPolicy('old', { minDecryptionVersion: null });
  assert.equal(Buffer.from(await c.decrypt('old', c1)).toString(), 'v1');

  await assert.rejects(c.keys.trim('old', 4), InvalidArgumentError); // the current version stays
  assert.deepEqual(await c.keys.trim('old', 3), [1, 2]);
  await assert.rejects(c.decrypt('old', c1), isVersionError(1, 'destroyed'));
  await assert.rejects(c.decrypt('old', c2), isVersionError(2, 'destroyed'));
  assert.equal(Buffer.from(await c.decrypt('old', c3)).toString(), 'v3');
  const d = await c.keys.describe('old');
  assert.deepEqual(d.versions.map((v) => v.state), ['destroyed', 'destroyed', 'active']);

  await c.keys.setPolicy('old', { deletionProtection: true });
  await assert.rejects(c.keys.destroy('old'), (e: unknown) => e instanceof ForbiddenError && /deletion protection/.test((e as Error).message));
  await c.keys.setPolicy('old', { deletionProtection: false });
  assert.deepEqual(await c.keys.destroy('old'), [3]);
  await assert.rejects(c.decrypt('old', c3), (e: unknown) => e instanceof CryptodError && ['CRYPTOD_ERR_KEY_DISABLED', 'CRYPTOD_ERR_KEY_VERSION'].includes(e.code));
  await assert.rejects(c.encrypt('old', te.encode('x')), CryptodError);
});

test('batches: one result per item, a failed item is an error in its place, the request succeeds', async () => {
  await c.keys.create('batch', { type: 'aes256-gcm' });
  const aad = te.encode('a');
  const enc = await c.encryptBatch('batch', [{ data: te.encode('x') }, { data: te.encode('y'), aad }, { data: te.encode('z') }]);
  assert.equal(enc.length, 3);
  const [a, b, z] = enc as Uint8Array[];
  const dec = await c.decryptBatch('batch', [{ data: a! }, { data: b! }, { data: new Uint8Array(5) }, { data: b!, aad }, { data: z! }]);
  assert.equal(Buffer.from(dec[0] as Uint8Array).toString(), 'x');
  assert.ok(dec[1] instanceof DecryptError, 'missing AAD fails that item only');
  assert.ok(dec[2] instanceof DecryptError);
  assert.equal(Buffer.from(dec[3] as Uint8Array).toString(), 'y');
  assert.equal(Buffer.from(dec[4] as Uint8Array).toString(), 'z');

  await c.keys.create('batch-mac', { type: 'hmac-sha512' });
  const tags = (await c.macBatch('batch-mac', [te.encode('1'), te.encode('2')])) as Uint8Array[];
  const ok = await c.verifyMacBatch('batch-mac', [
    { message: te.encode('1'), tag: tags[0]! },
    { message: te.encode('1'), tag: tags[1]! },
    { message: te.encode('2'), tag: new Uint8Array(2) },
  ]);
  assert.deepEqual(ok.slice(0, 2), [true, false]);
  assert.ok(ok[2] instanceof DataError);

  await c.keys.create('batch-sig', { type: 'ecdsa-p256' });
  const sigs = (await c.signBatch('batch-sig', [te.encode('m')])) as Uint8Array[];
  assert.deepEqual(await c.verifyBatch('batch-sig', [{ message: te.encode('m'), tag: sigs[0]! }]), [true]);
  // A whole-request failure still rejects.
  await assert.rejects(c.encryptBatch('no-such-key', [{ data: te.encode('x') }]), (e: unknown) => e instanceof CryptodError && e.code === 'CRYPTOD_ERR_NOT_FOUND');
  await assert.rejects(c.request(0x0100, { key: 'batch', items: 'nope' }), InvalidArgumentError);
});

test('export only when exportable: raw secrets and PKCS#8; import brings the same key back', async () => {
  await c.keys.create('noexp', { type: 'hmac-sha256' });
  await assert.rejects(c.keys.export('noexp'), NotExtractableError);
  await c.keys.create('exp', { type: 'hmac-sha256', exportable: true });
  const tag = await c.mac('exp', te.encode('m'));
  const x = await c.keys.export('exp');
  assert.deepEqual([x.format, x.type, x.version, x.material.length], ['raw', 'hmac-sha256', 1, 32]);
  await c.keys.import('exp-copy', { type: 'hmac-sha256', material: x.material });
  const copyTag = await c.mac('exp-copy', te.encode('m'));
  assert.deepEqual(Buffer.from(copyTag).subarray(-32), Buffer.from(tag).subarray(-32));
  await assert.rejects(c.keys.setPolicy('exp', { exportable: false }), InvalidArgumentError);

  await c.keys.create('exp-ed', { type: 'ed25519', exportable: true });
  const e = await c.keys.export('exp-ed');
  assert.equal(e.format, 'pkcs8');
  const sig = await c.sign('exp-ed', te.encode('m'));
  await c.keys.import('exp-ed-copy', { type: 'ed25519', material: e.material });
  // Same private key: the copy verifies a signature made with the original (raw signature after the header).
  const copySig = Buffer.from(await c.sign('exp-ed-copy', te.encode('m')));
  assert.deepEqual(copySig.subarray(-64), Buffer.from(sig).subarray(-64)); // Ed25519 is deterministic (RFC 8032)
});

test('persist turns a client-owned key into a managed key', async () => {
  const k = await c.subtle.generateKey({ name: 'AES-GCM', length: 256 }, true, ['encrypt', 'decrypt']);
  const raw = new Uint8Array((await c.subtle.exportKey('raw', k)) as ArrayBuffer);
  const d = await c.keys.persist(k, 'persisted', { rotationPeriod: '30d' });
  assert.deepEqual([d.name, d.type, d.currentVersion], ['persisted', 'aes256-gcm', 1]);
  const ct = await c.encrypt('persisted', te.encode('kept'));
  // The managed key is the same key: decrypt the body with WebCrypto and the original key (AAD = header).
  const { header, body } = parseHeader(ct, 'ciphertext');
  const imported = await c.subtle.importKey('raw', raw, 'AES-GCM', false, ['decrypt']);
  const pt = await c.subtle.decrypt({ name: 'AES-GCM', iv: body.subarray(0, 12), additionalData: header.bytes }, imported, body.subarray(12));
  assert.equal(Buffer.from(pt).toString(), 'kept');

  const nx = await c.subtle.generateKey({ name: 'HMAC', hash: 'SHA-256', length: 256 }, false, ['sign']);
  await assert.rejects(c.keys.persist(nx, 'nx', { exportable: true }), NotExtractableError);
  await c.keys.persist(nx, 'nx');
  assert.equal((await c.keys.describe('nx')).type, 'hmac-sha256');
  const rsa = await c.subtle.generateKey({ name: 'RSA-PSS', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }, true, ['sign', 'verify']);
  await assert.rejects(c.keys.persist(rsa.privateKey, 'rsa2048'), (e: unknown) => e instanceof CryptodError && e.code === 'CRYPTOD_ERR_UNSUPPORTED');
  // The new WebCrypto algorithms persist as their managed types, and the managed key signs as the original would.
  const p521 = await c.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-521' }, true, ['sign', 'verify']);
  assert.equal((await c.keys.persist(p521.privateKey, 'persisted-p521')).type, 'ecdsa-p521');
  const s521 = splitManagedSignature(await c.sign('persisted-p521', te.encode('m')));
  assert.equal(await c.subtle.verify({ name: 'ECDSA', hash: 'SHA-512' }, p521.publicKey, s521.signature, te.encode('m')), true);
  const rs = await c.subtle.generateKey({ name: 'RSASSA-PKCS1-v1_5', modulusLength: 3072, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }, true, ['sign', 'verify']);
  assert.equal((await c.keys.persist(rs.privateKey, 'persisted-rs256')).type, 'rsa-pkcs1-3072');
  const managed = splitManagedSignature(await c.sign('persisted-rs256', te.encode('m')));
  // PKCS #1 v1.5 is deterministic: the managed signature is the one WebCrypto makes.
  assert.deepEqual(Buffer.from(managed.signature), Buffer.from(await c.subtle.sign('RSASSA-PKCS1-v1_5', rs.privateKey, te.encode('m'))));
});

test('bad input gets typed errors and the connection stays up', async () => {
  await assert.rejects(c.request(0x0100, { key: 'batch' }), InvalidArgumentError);
  await assert.rejects(c.request(0x0100, { plaintext: new Uint8Array(1) }), InvalidArgumentError);
  await assert.rejects(c.keys.create('bad', { type: 'aes128-gcm' }), InvalidArgumentError);
  await assert.rejects(c.keys.create('batch', { type: 'aes256-gcm' }), InvalidArgumentError);
  await assert.rejects(c.keys.trim('batch', 0), InvalidArgumentError);
  await assert.rejects(c.reload(), (e: unknown) => e instanceof CryptodError && e.code === 'CRYPTOD_ERR_UNSUPPORTED');
  assert.equal(await c.ping('still up'), 'still up');
});
