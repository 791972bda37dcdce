/**
 * ENCRYPT / DECRYPT: AES-GCM and ChaCha20-Poly1305 on client-owned keys.
 * Handler-level tests (a Data Manager and a request context, no socket) check
 * outputs against node:crypto and every bad input; the integration tests run
 * the same through a real daemon with `client.subtle`. The Wycheproof files
 * are in test/vectors/.
 */
import assert from 'node:assert/strict';
import { createCipheriv, randomBytes, type CipherGCMTypes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { RequestContext } from '../src/ops/operation.js';
import { DEFAULT_LIMITS } from '../src/config/limits.js';
import type { CborValue } from '../src/protocol/cbor.js';
import { CryptodError, DecryptError } from '../src/protocol/errors.js';
import { Op } from '../src/protocol/ops.js';
import { cipherOperations } from '../src/ops/cipher.js';
import { contextOperations } from '../src/ops/contexts.js';
import { KeyNode, addKey, type KeyAlgorithm, type KeyUsage } from '../src/ops/key.js';
import { DataManager, type DataNodeId } from '../src/state/data-manager.js';
import { clientId } from '../src/state/ids.js';
import { startTestDaemon, type TestDaemon } from './helpers/daemon.js';

function context(): RequestContext {
  const owned = new Set<DataNodeId>();
  return {
    clientId: clientId('local/cipher-test'),
    clientName: 'cipher-test',
    dm: new DataManager(),
    owner: { own: (id) => void owned.add(id), disown: (id) => void owned.delete(id) },
    limits: DEFAULT_LIMITS,
    daemon: { startedAt: 0, version: 'test', status: () => null },
  };
}

function key(ctx: RequestContext, algorithm: KeyAlgorithm, secret: Buffer, usages: KeyUsage[] = ['encrypt', 'decrypt']): string {
  const desc = addKey(ctx, new KeyNode({ algorithm, type: 'secret', extractable: false, usages, secret: Buffer.from(secret) })) as { handle: string };
  return desc.handle;
}

function call(ctx: RequestContext, op: number, args: CborValue): Buffer {
  const operation = [...cipherOperations, ...contextOperations].find((o) => o.op === op);
  assert.ok(operation);
  const r = operation.handle(ctx, args);
  assert.ok(Buffer.isBuffer(r), 'a synchronous byte-string reply');
  return r;
}

/** Assert a typed error with `code` whose message mentions `mentions`. */
function rejects(fn: () => unknown, code: string, mentions?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof CryptodError, `expected a CryptodError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (mentions) assert.match(err.message, mentions);
    return true;
  });
}

function nodeSeal(cipher: string, k: Buffer, iv: Buffer, pt: Buffer, aad: Buffer | undefined, tagBytes = 16): Buffer {
  const c = createCipheriv(cipher as CipherGCMTypes, k, iv, { authTagLength: tagBytes });
  if (aad) c.setAAD(aad);
  return Buffer.concat([c.update(pt), c.final(), c.getAuthTag()]);
}

describe('ENCRYPT / DECRYPT handlers', () => {
  test('AES-GCM of every key size and tag length matches node:crypto and round-trips', () => {
    const ctx = context();
    for (const bits of [128, 192, 256]) {
      const k = randomBytes(bits / 8);
      const handle = key(ctx, { name: 'AES-GCM', length: bits }, k);
      for (const tagLength of [32, 64, 96, 104, 112, 120, 128]) {
        for (const ivLength of [1, 12, 16, 60, 128]) {
          const iv = randomBytes(ivLength);
          const aad = randomBytes(ivLength % 3 === 0 ? 0 : 20);
          const pt = randomBytes(ivLength + 17);
          const algorithm = { name: 'AES-GCM', iv, additionalData: aad, tagLength };
          const ct = call(ctx, Op.ENCRYPT, { algorithm, key: handle, data: pt });
          assert.deepEqual(ct, nodeSeal(`aes-${bits}-gcm`, k, iv, pt, aad, tagLength / 8));
          assert.deepEqual(call(ctx, Op.DECRYPT, { algorithm, key: handle, data: ct }), pt);
        }
      }
    }
  });

  test('AES-GCM defaults to a 128-bit tag and no additional data; algorithm names are case-insensitive', () => {
    const ctx = context();
    const k = randomBytes(16);
    const handle = key(ctx, { name: 'AES-GCM', length: 128 }, k);
    const iv = randomBytes(12);
    const ct = call(ctx, Op.ENCRYPT, { algorithm: { name: 'aes-gcm', iv }, key: handle, data: Buffer.from('hello') });
    assert.deepEqual(ct, nodeSeal('aes-128-gcm', k, iv, Buffer.from('hello'), undefined));
    assert.equal(ct.length, 5 + 16);
  });

  test('AES-GCM with an IV longer than OpenSSL accepts (129 and 300 bytes) round-trips and is not the IV truncated', () => {
    const ctx = context();
    const handle = key(ctx, { name: 'AES-GCM', length: 256 }, randomBytes(32));
    for (const n of [129, 300]) {
      const iv = randomBytes(n);
      const pt = randomBytes(100);
      const ct = call(ctx, Op.ENCRYPT, { algorithm: { name: 'AES-GCM', iv }, key: handle, data: pt });
      assert.deepEqual(call(ctx, Op.DECRYPT, { algorithm: { name: 'AES-GCM', iv }, key: handle, data: ct }), pt);
      const truncated = call(ctx, Op.ENCRYPT, { algorithm: { name: 'AES-GCM', iv: iv.subarray(0, 128) }, key: handle, data: pt });
      assert.notDeepEqual(ct, truncated);
    }
  });

  test('ChaCha20-Poly1305: RFC 8439 §2.8.2 test vector', () => {
    const ctx = context();
    const k = Buffer.from('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f', 'hex');
    const handle = key(ctx, { name: 'ChaCha20-Poly1305', length: 256 }, k);
    const pt = Buffer.from(
      "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.",
    );
    const algorithm = { name: 'ChaCha20-Poly1305', iv: Buffer.from('070000004041424344454647', 'hex'), additionalData: Buffer.from('50515253c0c1c2c3c4c5c6c7', 'hex') };
    const ct = call(ctx, Op.ENCRYPT, { algorithm, key: handle, data: pt });
    assert.equal(ct.subarray(-16).toString('hex'), '1ae10b594f09e26a7e902ecbd0600691');
    assert.equal(ct.subarray(0, 16).toString('hex'), 'd31a8d34648e60db7b86afbc53ef7ec2');
    assert.deepEqual(call(ctx, Op.DECRYPT, { algorithm, key: handle, data: ct }), pt);
  });

  test('empty plaintext gives just the tag, and decrypts to empty', () => {
    const ctx = context();
    const aes = key(ctx, { name: 'AES-GCM', length: 128 }, randomBytes(16));
    const cc = key(ctx, { name: 'ChaCha20-Poly1305', length: 256 }, randomBytes(32));
    for (const [handle, name] of [[aes, 'AES-GCM'], [cc, 'ChaCha20-Poly1305']] as const) {
      const algorithm = { name, iv: randomBytes(12) };
      const ct = call(ctx, Op.ENCRYPT, { algorithm, key: handle, data: Buffer.alloc(0) });
      assert.equal(ct.length, 16);
      assert.equal(call(ctx, Op.DECRYPT, { algorithm, key: handle, data: ct }).length, 0);
    }
  });

  test('a modified ciphertext, tag, iv or additional data fails with DecryptError', () => {
    const ctx = context();
    for (const [alg, k] of [[{ name: 'AES-GCM' as const, length: 256 }, randomBytes(32)], [{ name: 'ChaCha20-Poly1305' as const, length: 256 }, randomBytes(32)]] as const) {
      const handle = key(ctx, alg, k);
      const iv = randomBytes(12);
      const aad = Buffer.from('header');
      const ct = call(ctx, Op.ENCRYPT, { algorithm: { name: alg.name, iv, additionalData: aad }, key: handle, data: randomBytes(64) });
      const cases: Array<[string, CborValue]> = [];
      for (const i of [0, 63, 64, 79]) {
        const bad = Buffer.from(ct);
        bad[i]! ^= 1;
        cases.push([`byte ${i}`, { algorithm: { name: alg.name, iv, additionalData: aad }, key: handle, data: bad }]);
      }
      const iv2 = Buffer.from(iv);
      iv2[0]! ^= 1;
      cases.push(['iv', { algorithm: { name: alg.name, iv: iv2, additionalData: aad }, key: handle, data: ct }]);
      cases.push(['aad', { algorithm: { name: alg.name, iv, additionalData: Buffer.from('Header') }, key: handle, data: ct }]);
      cases.push(['no aad', { algorithm: { name: alg.name, iv }, key: handle, data: ct }]);
      for (const [what, args] of cases) {
        assert.throws(() => call(ctx, Op.DECRYPT, args), (e: unknown) => e instanceof DecryptError && e.code === 'CRYPTOD_ERR_DECRYPT_FAILED', what);
      }
    }
  });

  test('bad arguments are typed errors that say what was expected', () => {
    const ctx = context();
    const aes = key(ctx, { name: 'AES-GCM', length: 128 }, randomBytes(16));
    const cc = key(ctx, { name: 'ChaCha20-Poly1305', length: 256 }, randomBytes(32));
    const data = Buffer.from('x');
    const iv = randomBytes(12);
    const E = Op.ENCRYPT;
    rejects(() => call(ctx, E, { algorithm: { name: 'AES-GCM' }, key: aes, data }), 'CRYPTOD_ERR_INVALID_ARGUMENT', /algorithm\.iv.*non-empty/);
    rejects(() => call(ctx, E, { algorithm: { name: 'AES-GCM', iv: Buffer.alloc(0) }, key: aes, data }), 'CRYPTOD_ERR_INVALID_ARGUMENT', /non-empty.*0-byte/);
    rejects(() => call(ctx, E, { algorithm: { name: 'AES-GCM', iv: 'abc' }, key: aes, data }), 'CRYPTOD_ERR_INVALID_ARGUMENT', /algorithm\.iv.*byte string.*text/);
    for (const tagLength of [0, 8, 100, 136, 256]) {
      rejects(() => call(ctx, E, { algorithm: { name: 'AES-GCM', iv, tagLength }, key: aes, data }), 'CRYPTOD_ERR_INVALID_ARGUMENT', new RegExp(`tagLength.*32, 64, 96, 104, 112, 120, 128.*got ${tagLength}`));
    }
    rejects(() => call(ctx, E, { algorithm: { name: 'AES-GCM', iv, tagLength: '128' }, key: aes, data }), 'CRYPTOD_ERR_INVALID_ARGUMENT', /tagLength/);
    rejects(() => call(ctx, E, { algorithm: { name: 'AES-GCM', iv, additionalData: 7 }, key: aes, data }), 'CRYPTOD_ERR_INVALID_ARGUMENT', /additionalData.*byte string/);
    for (const n of [0, 8, 11, 13, 24]) {
      rejects(() => call(ctx, E, { algorithm: { name: 'ChaCha20-Poly1305', iv: Buffer.alloc(n) }, key: cc, data }), 'CRYPTOD_ERR_INVALID_ARGUMENT', new RegExp(`12 bytes.*got a ${n}-byte`));
    }
    rejects(() => call(ctx, E, { algorithm: { name: 'ChaCha20-Poly1305', iv, tagLength: 96 }, key: cc, data }), 'CRYPTOD_ERR_INVALID_ARGUMENT', /tagLength.*128/);
    rejects(() => call(ctx, Op.DECRYPT, { algorithm: { name: 'AES-GCM', iv, tagLength: 96 }, key: aes, data: Buffer.alloc(11) }), 'CRYPTOD_ERR_INVALID_ARGUMENT', /12-byte tag, got 11 bytes/);
    rejects(() => call(ctx, Op.DECRYPT, { algorithm: { name: 'ChaCha20-Poly1305', iv }, key: cc, data: Buffer.alloc(15) }), 'CRYPTOD_ERR_INVALID_ARGUMENT', /16-byte tag, got 15 bytes/);
    rejects(() => call(ctx, E, { algorithm: { name: 'AES-GCM', iv }, key: aes, data: 'text' }), 'CRYPTOD_ERR_INVALID_ARGUMENT', /'data'.*byte string/);
    rejects(() => call(ctx, E, { algorithm: { name: 'AES-GCM', iv }, key: 'nope', data }), 'CRYPTOD_ERR_INVALID_ARGUMENT', /'key'.*handle/);
    rejects(() => call(ctx, E, { algorithm: { name: 'HMAC' }, key: aes, data }), 'CRYPTOD_ERR_UNSUPPORTED', /AES-GCM, ChaCha20-Poly1305, AES-CBC, AES-CTR, RSA-OAEP; got HMAC/);
    rejects(() => call(ctx, E, { algorithm: { name: 'AES-CBC' }, key: aes, data }), 'CRYPTOD_ERR_INVALID_ARGUMENT', /'algorithm\.iv'.*16 bytes/);
    rejects(() => call(ctx, E, 'AES-GCM'), 'CRYPTOD_ERR_INVALID_ARGUMENT', /map/);
    rejects(() => call(ctx, E, { algorithm: { name: 'AES-GCM', iv }, key: 'AAAAAAAAAAAAAAAAAAAAAA', data }), 'CRYPTOD_ERR_NOT_FOUND');
  });

  test('the key must fit the algorithm and allow the usage', () => {
    const ctx = context();
    const iv = randomBytes(12);
    const data = Buffer.from('x');
    const aes = key(ctx, { name: 'AES-GCM', length: 256 }, randomBytes(32));
    const cc = key(ctx, { name: 'ChaCha20-Poly1305', length: 256 }, randomBytes(32));
    const encOnly = key(ctx, { name: 'AES-GCM', length: 128 }, randomBytes(16), ['encrypt']);
    const hmac = key(ctx, { name: 'HMAC', hash: { name: 'SHA-256' }, length: 256 }, randomBytes(32), ['sign']);
    rejects(() => call(ctx, Op.ENCRYPT, { algorithm: { name: 'ChaCha20-Poly1305', iv }, key: aes, data }), 'CRYPTOD_ERR_INVALID_KEY', /AES-GCM key.*ChaCha20-Poly1305/);
    rejects(() => call(ctx, Op.ENCRYPT, { algorithm: { name: 'AES-GCM', iv }, key: cc, data }), 'CRYPTOD_ERR_INVALID_KEY');
    rejects(() => call(ctx, Op.ENCRYPT, { algorithm: { name: 'AES-GCM', iv }, key: hmac, data }), 'CRYPTOD_ERR_INVALID_KEY', /HMAC key/);
    const ct = call(ctx, Op.ENCRYPT, { algorithm: { name: 'AES-GCM', iv }, key: encOnly, data });
    rejects(() => call(ctx, Op.DECRYPT, { algorithm: { name: 'AES-GCM', iv }, key: encOnly, data: ct }), 'CRYPTOD_ERR_INVALID_KEY', /'decrypt'/);
    // A context handle is not a key.
    const h = contextOperations.find((o) => o.op === Op.HASH_CREATE)!.handle(ctx, { algorithm: 'SHA-256' }) as { handle: string };
    rejects(() => call(ctx, Op.ENCRYPT, { algorithm: { name: 'AES-GCM', iv }, key: h.handle, data }), 'CRYPTOD_ERR_INVALID_ARGUMENT', /hash context, expected a key/);
  });

  test('a failed decryption releases the key accessor (the key stays usable)', () => {
    const ctx = context();
    const handle = key(ctx, { name: 'AES-GCM', length: 128 }, randomBytes(16));
    const iv = randomBytes(12);
    assert.throws(() => call(ctx, Op.DECRYPT, { algorithm: { name: 'AES-GCM', iv }, key: handle, data: randomBytes(32) }), DecryptError);
    const ct = call(ctx, Op.ENCRYPT, { algorithm: { name: 'AES-GCM', iv }, key: handle, data: Buffer.from('ok') });
    assert.equal(call(ctx, Op.DECRYPT, { algorithm: { name: 'AES-GCM', iv }, key: handle, data: ct }).toString(), 'ok');
    assert.equal(ctx.dm.stats()[0]?.busy, 0);
  });
});

describe('ENCRYPT / DECRYPT through the daemon', () => {
  let t: TestDaemon;
  before(async () => {
    t = await startTestDaemon();
  });
  after(async () => {
    await t.stop();
  });

  test('client.subtle.encrypt/decrypt with imported keys, and typed errors over the wire', async () => {
    await using c = await t.connect();
    const raw = randomBytes(32);
    const aes = await c.subtle.importKey('raw', raw, { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
    const cc = await c.subtle.importKey('raw', raw, { name: 'ChaCha20-Poly1305' }, false, ['encrypt', 'decrypt']);
    const iv = randomBytes(12);
    const pt = randomBytes(1000);
    const additionalData = Buffer.from('aad');
    const a = await c.subtle.encrypt({ name: 'AES-GCM', iv, additionalData, tagLength: 96 }, aes, pt);
    assert.deepEqual(Buffer.from(a), nodeSeal('aes-256-gcm', raw, iv, pt, additionalData, 12));
    assert.deepEqual(Buffer.from(await c.subtle.decrypt({ name: 'AES-GCM', iv, additionalData, tagLength: 96 }, aes, a)), pt);
    const b = await c.subtle.encrypt({ name: 'ChaCha20-Poly1305', iv }, cc, pt);
    assert.deepEqual(Buffer.from(b), nodeSeal('chacha20-poly1305', raw, iv, pt, undefined));
    const tampered = new Uint8Array(b.slice(0));
    tampered[3]! ^= 0x80;
    await assert.rejects(c.subtle.decrypt({ name: 'ChaCha20-Poly1305', iv }, cc, tampered), DecryptError);
    await assert.rejects(c.subtle.encrypt({ name: 'ChaCha20-Poly1305', iv: iv.subarray(0, 8) }, cc, pt), { code: 'CRYPTOD_ERR_INVALID_ARGUMENT' });
    await aes.release();
    await assert.rejects(c.subtle.encrypt({ name: 'AES-GCM', iv }, aes, pt), { code: 'CRYPTOD_ERR_NOT_FOUND' });
    // The connection is still fine after every error.
    assert.deepEqual(Buffer.from(await c.subtle.decrypt({ name: 'ChaCha20-Poly1305', iv }, cc, b)), pt);
  });
});
