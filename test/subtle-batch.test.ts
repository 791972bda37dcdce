/**
 * Batch forms of DIGEST, SIGN, VERIFY, ENCRYPT, DECRYPT on client-owned keys
 * (docs/protocol.md §6.15), over a real daemon on a real socket: a batch
 * gives what the single requests give, item by item (fast-check), item
 * failures stay in their place, and bad batches are typed errors that leave
 * the connection working.
 */
import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import type { Client } from '../src/client/client.js';
import type { CryptoKey, CryptoKeyPair } from '../src/client/subtle.js';
import { CryptodError, DecryptError, InvalidArgumentError, InvalidKeyError, NotFoundError, UnsupportedError } from '../src/protocol/errors.js';
import { Op } from '../src/protocol/ops.js';
import { rejectsTyped, startTestDaemon, type TestDaemon } from './helpers/daemon.js';

/** Small enough that the property's batches span several frames. */
const MAX_ITEMS = 7;
/** The smallest frame a daemon takes: batches of larger items are split by bytes too. */
const MAX_FRAME = 4096;

let t: TestDaemon;
let c: Client;
let hmacBytes: Buffer;
let hmac: CryptoKey;
let ed: CryptoKeyPair;
let aes: CryptoKey;

before(async () => {
  t = await startTestDaemon({ limits: { maxBatchItems: MAX_ITEMS, maxFrame: MAX_FRAME } });
  // Single calls go as single frames here (coalesce: false), so the batch form is compared with them (test/coalesce.test.ts has the client's own batching).
  c = await t.connect('batch', { coalesce: false });
  hmacBytes = randomBytes(32);
  hmac = await c.subtle.importKey('raw', hmacBytes, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
  ed = (await c.subtle.generateKey('Ed25519', false, ['sign', 'verify'])) as CryptoKeyPair;
  aes = await c.subtle.importKey('raw', randomBytes(32), 'AES-GCM', false, ['encrypt', 'decrypt']);
});
after(async () => {
  await c.close();
  await t.stop();
});

/** A single call's outcome beside a batch item's: the bytes or boolean, or "failed". */
async function settle<T>(p: Promise<T>): Promise<T | 'failed'> {
  try {
    return await p;
  } catch {
    return 'failed';
  }
}
const asItem = <T>(r: T | CryptodError): T | 'failed' => (r instanceof CryptodError ? 'failed' : r);
const hex = (v: unknown): unknown => (v instanceof Uint8Array || v instanceof ArrayBuffer ? Buffer.from(v as Uint8Array).toString('hex') : v);

const messages = fc.array(fc.uint8Array({ maxLength: 80 }), { minLength: 1, maxLength: 3 * MAX_ITEMS });
/** How an item's tag is spoiled: kept, one bit flipped, truncated, or empty. */
const spoil = fc.constantFrom('keep', 'flip', 'truncate', 'empty');
function spoiled(tag: Uint8Array, how: string): Uint8Array {
  const out = Buffer.from(tag);
  if (how === 'flip' && out.length > 0) out[out.length - 1]! ^= 1;
  if (how === 'truncate') return out.subarray(0, out.length >> 1);
  if (how === 'empty') return new Uint8Array(0);
  return out;
}

describe('batched and unbatched forms give identical results', () => {
  test('sign and verify: HMAC-SHA256 and Ed25519, wrong and truncated tags among the items', async () => {
    const cases = [
      { alg: 'HMAC', sign: () => hmac, verify: () => hmac },
      { alg: 'Ed25519', sign: () => ed.privateKey, verify: () => ed.publicKey },
    ];
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...cases), messages, fc.array(spoil, { minLength: 3 * MAX_ITEMS, maxLength: 3 * MAX_ITEMS }), async (k, msgs, how) => {
        const batch = await c.subtle.signBatch(k.alg, k.sign(), msgs);
        const single = await Promise.all(msgs.map((m) => c.subtle.sign(k.alg, k.sign(), m)));
        assert.deepEqual(batch.map(hex), single.map(hex));
        if (k.alg === 'HMAC') assert.deepEqual(batch.map(hex), msgs.map((m) => createHmac('sha256', hmacBytes).update(m).digest('hex')));
        const items = msgs.map((data, i) => ({ data, signature: spoiled(batch[i] as Uint8Array, how[i]!) }));
        const verified = await c.subtle.verifyBatch(k.alg, k.verify(), items);
        const one = await Promise.all(items.map((it) => c.subtle.verify(k.alg, k.verify(), it.signature, it.data)));
        assert.deepEqual(verified, one);
        assert.deepEqual(verified, items.map((_, i) => how[i] === 'keep'));
      }),
      { numRuns: 30 },
    );
  });

  test('verify: ECDSA P-256 and RSA-PSS (randomized signatures: the verdicts are compared)', async () => {
    const ec = (await c.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify'])) as CryptoKeyPair;
    const rsa = (await c.subtle.generateKey({ name: 'RSA-PSS', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }, false, ['sign', 'verify'])) as CryptoKeyPair;
    const msgs = Array.from({ length: 6 }, (_, i) => randomBytes(10 + i));
    const how = ['keep', 'flip', 'keep', 'truncate', 'empty', 'keep'];
    const ecAlg = { name: 'ECDSA', hash: 'SHA-256' };
    const rsaAlg = { name: 'RSA-PSS', saltLength: 32 };
    const ecSigs = (await c.subtle.signBatch(ecAlg, ec.privateKey, msgs)) as Uint8Array[];
    const rsaSigs = await Promise.all(msgs.map((m) => c.subtle.sign(rsaAlg, rsa.privateKey, m)));
    for (const [alg, key, sigs] of [[ecAlg, ec.publicKey, ecSigs], [rsaAlg, rsa.publicKey, rsaSigs.map((x) => new Uint8Array(x))]] as const) {
      const items = msgs.map((data, i) => ({ data, signature: spoiled(sigs[i]!, how[i]!) }));
      const batch = await c.subtle.verifyBatch(alg, key, items);
      const single = await Promise.all(items.map((it) => c.subtle.verify(alg, key, it.signature, it.data)));
      assert.deepEqual(batch, single);
      assert.deepEqual(batch, how.map((h) => h === 'keep'));
    }
  });

  test('digest: SHA-256 and SHA-512', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('SHA-256', 'SHA-512'), messages, async (alg, msgs) => {
        const batch = await c.subtle.digestBatch(alg, msgs);
        const single = await Promise.all(msgs.map((m) => c.subtle.digest(alg, m)));
        assert.deepEqual(batch.map(hex), single.map(hex));
        assert.deepEqual(batch.map(hex), msgs.map((m) => createHash(alg === 'SHA-256' ? 'sha256' : 'sha512').update(m).digest('hex')));
      }),
      { numRuns: 20 },
    );
  });

  test('AES-GCM: each form decrypts the other\'s output; decrypting the same ciphertexts, spoiled ones included, gives the same answers', async () => {
    await fc.assert(
      fc.asyncProperty(
        messages,
        fc.option(fc.uint8Array({ minLength: 1, maxLength: 20 }), { nil: undefined }),
        fc.array(fc.constantFrom('keep', 'flip', 'truncate', 'empty', 'keep', 'keep'), { minLength: 3 * MAX_ITEMS, maxLength: 3 * MAX_ITEMS }),
        async (msgs, aad, how) => {
          const batchItems = msgs.map((data) => ({ data, iv: randomBytes(12), additionalData: aad }));
          const singleIvs = msgs.map(() => randomBytes(12));
          const fromBatch = (await c.subtle.encryptBatch('AES-GCM', aes, batchItems)) as Uint8Array[];
          const fromSingle = await Promise.all(msgs.map((m, i) => c.subtle.encrypt({ name: 'AES-GCM', iv: singleIvs[i]!, additionalData: aad }, aes, m)));
          // The batch's ciphertexts open one by one, the single ones in a batch.
          const opened = await Promise.all(fromBatch.map((ct, i) => c.subtle.decrypt({ name: 'AES-GCM', iv: batchItems[i]!.iv, additionalData: aad }, aes, ct)));
          assert.deepEqual(opened.map(hex), msgs.map(hex));
          const openedBatch = await c.subtle.decryptBatch('AES-GCM', aes, fromSingle.map((ct, i) => ({ data: new Uint8Array(ct), iv: singleIvs[i]!, additionalData: aad })));
          assert.deepEqual(openedBatch.map(hex), msgs.map(hex));
          // The same (partly spoiled) ciphertexts, both ways: identical answers, failures in the same places.
          const items = fromBatch.map((ct, i) => ({ data: spoiled(ct, how[i]!), iv: batchItems[i]!.iv, additionalData: aad }));
          const batch = await c.subtle.decryptBatch({ name: 'AES-GCM', additionalData: aad }, aes, items);
          const single = await Promise.all(items.map((it) => settle(c.subtle.decrypt({ name: 'AES-GCM', iv: it.iv, additionalData: aad }, aes, it.data))));
          assert.deepEqual(batch.map(asItem).map(hex), single.map(hex));
          for (const [i, r] of batch.entries()) {
            if (how[i] === 'keep') assert.equal(hex(r), hex(msgs[i]));
            else assert.ok(r instanceof DecryptError || r instanceof InvalidArgumentError, `item ${i} (${how[i]}): ${String(r)}`);
          }
        },
      ),
      { numRuns: 25 },
    );
  });
});

describe('item errors stay in their place', () => {
  test('an item with an empty iv fails alone; the others are encrypted', async () => {
    const out = await c.subtle.encryptBatch('AES-GCM', aes, [
      { data: Buffer.from('a'), iv: randomBytes(12) },
      { data: Buffer.from('b'), iv: new Uint8Array(0) },
      { data: Buffer.from('c'), iv: randomBytes(12) },
    ]);
    assert.ok(out[0] instanceof Uint8Array && out[2] instanceof Uint8Array);
    assert.ok(out[1] instanceof InvalidArgumentError);
    assert.equal(out[1].detail?.field, 'items[1].iv');
  });

  test('a decrypt whose tag does not match is DECRYPT_FAILED in its place', async () => {
    const iv = randomBytes(12);
    const [ct] = (await c.subtle.encryptBatch('AES-GCM', aes, [{ data: Buffer.from('secret'), iv }])) as Uint8Array[];
    const out = await c.subtle.decryptBatch('AES-GCM', aes, [{ data: ct!, iv }, { data: ct!, iv: randomBytes(12) }]);
    assert.equal(Buffer.from(out[0] as Uint8Array).toString(), 'secret');
    assert.ok(out[1] instanceof DecryptError);
    assert.equal(out[1].code, 'CRYPTOD_ERR_DECRYPT_FAILED');
  });
});

describe('bad batches are typed errors and the connection keeps working', () => {
  const signRaw = (items: unknown, key: string = hmac.handle): Promise<unknown> => c.request(Op.SIGN, { algorithm: 'HMAC', key, items } as never);

  test('no items', async () => {
    await rejectsTyped(c, signRaw([]), InvalidArgumentError, /expected 'items' to hold 1 to 7 items .* got 0; send at least one item/);
    assert.deepEqual(await c.subtle.signBatch('HMAC', hmac, []), [], 'the client sends nothing for no items');
  });

  test('more items than maxBatchItems on the wire; the client splits them', async () => {
    const items = Array.from({ length: MAX_ITEMS + 1 }, (_, i) => ({ data: Buffer.from([i]) }));
    await assert.rejects(signRaw(items), (err: unknown) => err instanceof InvalidArgumentError && err.detail?.max === MAX_ITEMS && /split the batch/.test(err.message));
    assert.equal(await c.ping('alive'), 'alive');
    const msgs = Array.from({ length: 3 * MAX_ITEMS + 2 }, (_, i) => Buffer.from(`m${i}`));
    const tags = await c.subtle.signBatch('HMAC', hmac, msgs);
    assert.deepEqual(tags.map(hex), msgs.map((m) => createHmac('sha256', hmacBytes).update(m).digest('hex')));
  });

  test("the client also splits by the daemon's frame size; an item too large for any frame fails the call", async () => {
    const msgs = Array.from({ length: 9 }, (_, i) => randomBytes(1500 + i));
    const tags = await c.subtle.signBatch('HMAC', hmac, msgs);
    assert.deepEqual(tags.map(hex), msgs.map((m) => createHmac('sha256', hmacBytes).update(m).digest('hex')));
    const digests = await c.subtle.digestBatch('SHA-256', [Buffer.from('a'), randomBytes(MAX_FRAME), Buffer.from('b')]).catch((err: unknown) => err);
    assert.ok(digests instanceof CryptodError && digests.code === 'CRYPTOD_ERR_FRAME_TOO_LARGE', String(digests));
    assert.equal(await c.ping('alive'), 'alive');
  });

  test('wrong item types name the item', async () => {
    await rejectsTyped(c, signRaw([{ data: Buffer.from('x') }, { data: 'text' }]), InvalidArgumentError, /'items\[1\]\.data' to be a byte string, got text/);
    await rejectsTyped(c, signRaw(['x']), InvalidArgumentError, /'items\[0\]' to be a map/);
    await rejectsTyped(c, signRaw('x'), InvalidArgumentError, /'items' to be an array of maps/);
    await rejectsTyped(c, signRaw([{ data: Buffer.from('x'), extra: 1 }]), InvalidArgumentError, /unexpected field 'items\[0\]\.extra'/);
    await rejectsTyped(c, c.request(Op.ENCRYPT, { algorithm: 'AES-GCM', key: aes.handle, items: [{ data: Buffer.from('x') }] }), InvalidArgumentError, /'items\[0\]\.iv'/);
  });

  test("another client's key is NOT_FOUND", async () => {
    const other = await t.connect('someone-else');
    await rejectsTyped(other, other.subtle.signBatch('HMAC', hmac, [Buffer.from('x')]), NotFoundError);
    await rejectsTyped(other, other.request(Op.VERIFY, { algorithm: 'HMAC', key: hmac.handle, items: [{ data: Buffer.from('x'), signature: Buffer.alloc(32) }] }), NotFoundError);
    await other.close();
  });

  test('what concerns the whole batch fails the request: key, algorithm, shared parameters', async () => {
    await rejectsTyped(c, c.subtle.signBatch('HMAC', aes, [Buffer.from('x')]), InvalidKeyError, /needs a HMAC key/);
    await rejectsTyped(c, c.subtle.signBatch({ name: 'HMAC', hash: 'SHA-512' }, hmac, [Buffer.from('x')]), InvalidArgumentError, /algorithm\.hash/);
    await rejectsTyped(c, c.subtle.signBatch({ name: 'RSA-PSS', saltLength: 32 }, hmac, [Buffer.from('x')]), UnsupportedError, /batch form of sign/);
    await rejectsTyped(c, c.subtle.encryptBatch({ name: 'AES-CBC' }, aes, [{ data: Buffer.from('x'), iv: randomBytes(16) }]), UnsupportedError, /batch form of encrypt/);
    await rejectsTyped(c, c.subtle.encryptBatch({ name: 'AES-GCM', iv: randomBytes(12) }, aes, [{ data: Buffer.from('x'), iv: randomBytes(12) }]), InvalidArgumentError, /each item carries its own 'iv'/);
    await rejectsTyped(c, c.subtle.encryptBatch({ name: 'AES-GCM', tagLength: 100 }, aes, [{ data: Buffer.from('x'), iv: randomBytes(12) }]), InvalidArgumentError, /tagLength/);
    await rejectsTyped(c, c.subtle.digestBatch('SHA-3', [Buffer.from('x')]), UnsupportedError);
  });
});
