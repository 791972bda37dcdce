/**
 * The client's coalescing (src/client/coalesce.ts): small digest, sign,
 * verify, encrypt and decrypt calls made in one tick under one algorithm and
 * key go to the daemon as batch frames, and each caller still gets exactly
 * what a request of its own would have given — result, `false`, or typed
 * error — over a real daemon on a real socket. The comparison is with a
 * second connection that sends one frame per call (`coalesce: false`), and
 * with node:crypto.
 */
import assert from 'node:assert/strict';
import { constants, createCipheriv, createHash, createHmac, randomBytes, verify as nodeVerify } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import type { Client } from '../src/client/client.js';
import { GROUP_BYTES, GROUP_ITEMS, ITEM_BYTES } from '../src/client/coalesce.js';
import type { AlgorithmIdentifier, CryptoKey, CryptoKeyPair, JsonWebKey } from '../src/client/subtle.js';
import { FrameKind } from '../src/protocol/frame.js';
import { Op } from '../src/protocol/ops.js';
import { startTestDaemon, type TestDaemon } from './helpers/daemon.js';
import { framesIn, payloadsIn, replyWrites, requestWrites, spyWrites } from './helpers/frame-writes.js';
import { TestOp, withTestOps } from './helpers/test-ops.js';

let t: TestDaemon;

before(async () => {
  t = await startTestDaemon({ operations: withTestOps() });
});
after(async () => {
  await t.stop();
});

/** The keys of one connection, made from the same bytes on each (the asymmetric ones are imported from one export). */
interface Keys {
  hmac: CryptoKey;
  hmac512: CryptoKey;
  ed: CryptoKeyPair;
  ec: CryptoKeyPair;
  rsa: CryptoKeyPair;
  aes: CryptoKey;
  chacha: CryptoKey;
}

const HMAC_BYTES = randomBytes(32);
const HMAC512_BYTES = randomBytes(64);
const AES_BYTES = randomBytes(32);
const CHACHA_BYTES = randomBytes(32);

async function keysOn(c: Client, material: { ed: JsonWebKey; ec: JsonWebKey; rsa: JsonWebKey }): Promise<Keys> {
  const pair = async (jwk: JsonWebKey, alg: AlgorithmIdentifier, uses: readonly ['sign', 'verify']): Promise<CryptoKeyPair> => {
    const { d: _d, key_ops: _ops, ...pub } = jwk as JsonWebKey & { d?: string; key_ops?: unknown };
    return {
      privateKey: await c.subtle.importKey('jwk', { ...jwk, key_ops: undefined }, alg, false, [uses[0]]),
      publicKey: await c.subtle.importKey('jwk', pub as JsonWebKey, alg, true, [uses[1]]),
    } as CryptoKeyPair;
  };
  return {
    hmac: await c.subtle.importKey('raw', HMAC_BYTES, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']),
    hmac512: await c.subtle.importKey('raw', HMAC512_BYTES, { name: 'HMAC', hash: 'SHA-512' }, false, ['sign', 'verify']),
    ed: await pair(material.ed, { name: 'Ed25519' }, ['sign', 'verify']),
    ec: await pair(material.ec, { name: 'ECDSA', namedCurve: 'P-256' }, ['sign', 'verify']),
    rsa: await pair(material.rsa, { name: 'RSA-PSS', hash: 'SHA-256' }, ['sign', 'verify']),
    aes: await c.subtle.importKey('raw', AES_BYTES, 'AES-GCM', false, ['encrypt', 'decrypt']),
    chacha: await c.subtle.importKey('raw', CHACHA_BYTES, 'ChaCha20-Poly1305', false, ['encrypt', 'decrypt']),
  };
}

/** A call's outcome, comparable across connections: bytes as hex, a verdict, or the error's name and message. */
type Outcome = string | boolean | { error: string; message: string };
async function outcome(p: Promise<ArrayBuffer | boolean>): Promise<Outcome> {
  try {
    const v = await p;
    return typeof v === 'boolean' ? v : Buffer.from(v).toString('hex');
  } catch (err) {
    return { error: (err as Error).name, message: (err as Error).message };
  }
}

describe('coalesced and one-frame-per-call clients give identical results', () => {
  let batched: Client;
  let single: Client;
  let kb: Keys;
  let ks: Keys;

  before(async () => {
    batched = await t.connect('coalescing');
    single = await t.connect('one-by-one', { coalesce: false });
    // Asymmetric keys made once, exported, and imported on both connections: the same key on each.
    const gen = await t.connect('keygen');
    const material = {
      ed: await exportPair(gen, await gen.subtle.generateKey('Ed25519', true, ['sign', 'verify'])),
      ec: await exportPair(gen, await gen.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])),
      rsa: await exportPair(gen, await gen.subtle.generateKey({ name: 'RSA-PSS', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }, true, ['sign', 'verify'])),
    };
    kb = await keysOn(batched, material);
    ks = await keysOn(single, material);
  });

  /**
   * One call, described independently of the connection: what it does, on
   * which key, with which bytes. `spoil` damages the signature or ciphertext
   * it checks, so that verdicts of false and failed decryptions appear
   * among the items.
   */
  const call = fc.record({
    kind: fc.constantFrom('digest', 'sign', 'verify', 'encrypt', 'decrypt'),
    signer: fc.constantFrom('hmac', 'hmac512', 'ed', 'ec', 'rsa'),
    hash: fc.constantFrom('SHA-256', 'SHA-384'),
    cipher: fc.constantFrom('aes', 'chacha'),
    // Around ITEM_BYTES: calls above it go alone, the rest join a group.
    size: fc.oneof(fc.integer({ min: 0, max: 100 }), fc.integer({ min: ITEM_BYTES - 40, max: ITEM_BYTES + 40 })),
    spoil: fc.constantFrom('keep', 'keep', 'flip', 'truncate'),
    ivLength: fc.constantFrom(12, 12, 12, 16),
    aad: fc.boolean(),
    seed: fc.integer({ min: 0, max: 255 }),
  });
  type Call = typeof call extends fc.Arbitrary<infer C> ? C : never;

  /** The inputs of a call, the same on both connections; a check's signature or ciphertext made on `k`'s connection. */
  async function inputs(c: Client, k: Keys, x: Call): Promise<{ data: Buffer; check?: Uint8Array; iv: Buffer; aad?: Buffer }> {
    const data = Buffer.alloc(x.size, x.seed);
    const iv = Buffer.alloc(x.cipher === 'chacha' ? 12 : x.ivLength, x.seed ^ 0x5a);
    const aad = x.aad ? Buffer.from(`aad ${x.seed}`) : undefined;
    let check: Uint8Array | undefined;
    if (x.kind === 'verify') check = new Uint8Array(await c.subtle.sign(signAlg(x), signKey(k, x).privateKey, data));
    if (x.kind === 'decrypt') check = new Uint8Array(await c.subtle.encrypt(cipherAlg(x, iv, aad), cipherKey(k, x), data));
    if (check !== undefined) check = spoiled(check, x.spoil);
    return { data, check, iv, aad };
  }

  function run(c: Client, k: Keys, x: Call, input: Awaited<ReturnType<typeof inputs>>): Promise<ArrayBuffer | boolean> {
    switch (x.kind) {
      case 'digest':
        return c.subtle.digest(x.hash, input.data);
      case 'sign':
        return c.subtle.sign(signAlg(x), signKey(k, x).privateKey, input.data);
      case 'verify':
        return c.subtle.verify(signAlg(x), signKey(k, x).publicKey, input.check!, input.data);
      case 'encrypt':
        return c.subtle.encrypt(cipherAlg(x, input.iv, input.aad), cipherKey(k, x), input.data);
      default:
        return c.subtle.decrypt(cipherAlg(x, input.iv, input.aad), cipherKey(k, x), input.check!);
    }
  }

  test('any mix of calls in one tick: the same results, verdicts and errors, call by call (fast-check)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(call, { minLength: 1, maxLength: 90 }), async (calls) => {
        const inB = await Promise.all(calls.map((x) => inputs(batched, kb, x)));
        const inS = await Promise.all(calls.map((x) => inputs(single, ks, x)));
        // Every call of each connection made in one tick, so the coalescing client groups them.
        const [outB, outS] = await Promise.all([
          Promise.all(calls.map((x, i) => outcome(run(batched, kb, x, inB[i]!)))),
          Promise.all(calls.map((x, i) => outcome(run(single, ks, x, inS[i]!)))),
        ]);
        for (let i = 0; i < calls.length; i++) {
          const x = calls[i]!;
          if (x.kind === 'sign' && (x.signer === 'ec' || x.signer === 'rsa')) {
            // Randomized signatures: both must verify under the public key (node:crypto).
            for (const o of [outB[i]!, outS[i]!]) assert.ok(typeof o === 'string' && verifiesInNode(x, inB[i]!.data, Buffer.from(o, 'hex')), `call ${i}: ${JSON.stringify(x)}`);
          } else {
            assert.deepEqual(outB[i], outS[i], `call ${i}: ${JSON.stringify(x)}`);
          }
          if (x.kind === 'digest') assert.equal(outB[i], createHash(x.hash.replace('-', '').toLowerCase()).update(inB[i]!.data).digest('hex'));
          if (x.kind === 'sign' && x.signer === 'hmac') assert.equal(outB[i], createHmac('sha256', HMAC_BYTES).update(inB[i]!.data).digest('hex'));
          if (x.kind === 'verify' && x.signer !== 'ec' && x.signer !== 'rsa') assert.equal(outB[i], x.spoil === 'keep');
        }
      }),
      { numRuns: 25 },
    );
  });

  /** node:crypto's check of a randomized signature, under the public key exported when the pair was made. */
  function verifiesInNode(x: Call, data: Buffer, sig: Buffer): boolean {
    if (x.signer === 'ec') return nodeVerify('sha256', data, { key: exported.ec, format: 'jwk', dsaEncoding: 'ieee-p1363' }, sig);
    return nodeVerify('sha256', data, { key: exported.rsa, format: 'jwk', padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, sig);
  }

  test('a key released before the tick is sent fails every call of the group, as it fails a call of its own', async () => {
    const on = async (c: Client): Promise<Outcome[]> => {
      const key = await c.subtle.importKey('raw', HMAC_BYTES, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
      await key.release();
      return Promise.all(Array.from({ length: 5 }, (_, i) => outcome(c.subtle.sign('HMAC', key, Buffer.from([i])))));
    };
    const [b, s] = await Promise.all([on(batched), on(single)]);
    assert.deepEqual(b, s);
    assert.ok(b.every((o) => typeof o === 'object' && o.error !== ''), JSON.stringify(b));
    assert.equal(await batched.ping('alive'), 'alive');
  });
});

const exported: { ec: JsonWebKey; rsa: JsonWebKey } = { ec: {}, rsa: {} };
async function exportPair(c: Client, pair: CryptoKeyPair | CryptoKey): Promise<JsonWebKey> {
  const p = pair as CryptoKeyPair;
  const jwk = await c.subtle.exportKey('jwk', p.privateKey);
  const { d: _d, key_ops: _ops, ...pub } = jwk as JsonWebKey & { d?: string; key_ops?: unknown };
  if (jwk.kty === 'EC') exported.ec = pub as JsonWebKey;
  if (jwk.kty === 'RSA') exported.rsa = pub as JsonWebKey;
  return jwk;
}

function signAlg(x: { signer: string; hash: string }): AlgorithmIdentifier {
  if (x.signer === 'ec') return { name: 'ECDSA', hash: 'SHA-256' };
  if (x.signer === 'rsa') return { name: 'RSA-PSS', saltLength: 32 };
  if (x.signer === 'ed') return 'Ed25519';
  return 'HMAC';
}
function signKey(k: Keys, x: { signer: string }): { privateKey: CryptoKey; publicKey: CryptoKey } {
  if (x.signer === 'hmac') return { privateKey: k.hmac, publicKey: k.hmac };
  if (x.signer === 'hmac512') return { privateKey: k.hmac512, publicKey: k.hmac512 };
  return k[x.signer as 'ed' | 'ec' | 'rsa'];
}
function cipherAlg(x: { cipher: string }, iv: Buffer, aad: Buffer | undefined): AlgorithmIdentifier {
  return { name: x.cipher === 'aes' ? 'AES-GCM' : 'ChaCha20-Poly1305', iv, ...(aad === undefined ? {} : { additionalData: aad }) };
}
function cipherKey(k: Keys, x: { cipher: string }): CryptoKey {
  return x.cipher === 'aes' ? k.aes : k.chacha;
}
function sealGcm(data: Buffer, iv: Buffer, aad: Buffer): string {
  const cipher = createCipheriv('aes-256-gcm', AES_BYTES, iv).setAAD(aad);
  return Buffer.concat([cipher.update(data), cipher.final(), cipher.getAuthTag()]).toString('hex');
}
function spoiled(bytes: Uint8Array, how: string): Uint8Array {
  const out = Buffer.from(bytes);
  if (how === 'flip' && out.length > 0) out[out.length - 1]! ^= 1;
  if (how === 'truncate') return out.subarray(0, out.length >> 1);
  return out;
}

describe('what goes on the wire', () => {
  let c: Client;
  let key: CryptoKey;
  before(async () => {
    c = await t.connect('wire');
    key = await c.subtle.importKey('raw', HMAC_BYTES, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
  });

  test(`200 signatures in one tick: the first alone, the rest in batch frames of at most ${GROUP_ITEMS} items, all in one write`, async () => {
    await spyWrites(async (writes) => {
      const msgs = Array.from({ length: 200 }, (_, i) => Buffer.from(`message ${i}`));
      const tags = await Promise.all(msgs.map((m) => c.subtle.sign('HMAC', key, m)));
      tags.forEach((tag, i) => assert.equal(Buffer.from(tag).toString('hex'), createHmac('sha256', HMAC_BYTES).update(msgs[i]!).digest('hex')));
      const mine = requestWrites(writes);
      assert.equal(mine.length, 1);
      const payloads = payloadsIn(mine[0]!.bytes) as Array<{ items?: unknown[] }>;
      assert.deepEqual(framesIn(mine[0]!.bytes)!.map((f) => f.op), payloads.map(() => Op.SIGN));
      assert.deepEqual(payloads.map((p) => p.items?.length ?? 'single'), ['single', ...Array<number>(Math.floor(199 / GROUP_ITEMS)).fill(GROUP_ITEMS), 199 % GROUP_ITEMS]);
    });
  });

  test('a lone call, and the first of a tick, go as the single form; calls on other keys or algorithms go in groups of their own', async () => {
    const other = await c.subtle.importKey('raw', HMAC_BYTES, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    await spyWrites(async (writes) => {
      await c.subtle.sign('HMAC', key, Buffer.from('alone'));
      await Promise.all([
        c.subtle.sign('HMAC', key, Buffer.from('first')),
        c.subtle.sign('HMAC', key, Buffer.from('a')),
        c.subtle.sign('HMAC', other, Buffer.from('b')),
        c.subtle.sign('HMAC', key, Buffer.from('c')),
        c.subtle.digest('SHA-256', Buffer.from('d')),
        c.subtle.digest('SHA-512', Buffer.from('e')),
        c.subtle.digest('SHA-256', Buffer.from('f')),
      ]);
      const [alone, tick] = requestWrites(writes).map((w) => payloadsIn(w.bytes) as Array<Record<string, unknown>>);
      assert.equal(alone!.length, 1);
      assert.ok(alone![0]!.items === undefined && alone![0]!.data !== undefined, 'a lone call is the single form');
      const shape = tick!.map((p) => (Array.isArray(p.items) ? `${p.items.length} × ${(p.items[0] as { data: Uint8Array }).data.toString()}…` : `single ${(p.data as Uint8Array).toString()}`));
      // The tick's first call at once; then key's a+c, d+f of SHA-256 grouped; b (another key) and e (SHA-512) alone in their groups.
      assert.deepEqual(shape.sort(), ['2 × a…', '2 × d…', 'single b', 'single e', 'single first'].sort());
    });
  });

  test(`a group closes at ${GROUP_BYTES / 1024} KiB of items; larger inputs go alone`, async () => {
    await spyWrites(async (writes) => {
      const big = Buffer.alloc(ITEM_BYTES + 1, 1);
      const mid = Buffer.alloc(ITEM_BYTES, 2);
      const n = Math.ceil(GROUP_BYTES / ITEM_BYTES) + 2;
      await Promise.all([c.subtle.sign('HMAC', key, mid), c.subtle.sign('HMAC', key, big), ...Array.from({ length: n }, () => c.subtle.sign('HMAC', key, mid))]);
      const frames = requestWrites(writes).flatMap((w) => payloadsIn(w.bytes) as Array<Record<string, unknown>>);
      const singles = frames.filter((p) => p.items === undefined);
      const groups = frames.filter((p) => Array.isArray(p.items)).map((p) => (p.items as unknown[]).length);
      // The tick's first call (mid) and big alone; the n others in groups, and a group of one goes as a single.
      assert.equal(singles.filter((p) => (p.data as Uint8Array).length === ITEM_BYTES + 1).length, 1);
      assert.equal(groups.reduce((a, b) => a + b, 0) + singles.length - 2, n);
      assert.ok(groups.length >= 2, `${n} items of ${ITEM_BYTES} B in groups of ${groups.join(', ')}`);
      for (const g of groups) assert.ok(g * ITEM_BYTES <= GROUP_BYTES, `a group of ${g} items of ${ITEM_BYTES} B`);
    });
  });

  test('inputs changed after the call (before the tick\'s write) do not change what was signed or encrypted', async () => {
    const aes = await c.subtle.importKey('raw', AES_BYTES, 'AES-GCM', false, ['encrypt']);
    const data = Buffer.from('the original message');
    const iv = Buffer.alloc(12, 7);
    const aad = Buffer.from('the original aad');
    const want = { tag: createHmac('sha256', HMAC_BYTES).update(data).digest('hex'), sealed: sealGcm(data, iv, aad) };
    // Each second call joins a group, which is encoded only at the end of the tick.
    const calls = [0, 1].map(() => [c.subtle.sign('HMAC', key, data), c.subtle.encrypt({ name: 'AES-GCM', iv, additionalData: aad }, aes, data)]);
    data.fill(0);
    iv.fill(0);
    aad.fill(0);
    for (const [tag, sealed] of calls) {
      assert.equal(Buffer.from(await tag!).toString('hex'), want.tag);
      assert.equal(Buffer.from(await sealed!).toString('hex'), want.sealed);
    }
  });

  test('coalesce: false, and a daemon whose batches hold one item: one frame per call', async () => {
    const d = await startTestDaemon({ limits: { maxBatchItems: 1 } });
    try {
      for (const cl of [await t.connect('off', { coalesce: false }), await d.connect('one-item')]) {
        const k = await cl.subtle.importKey('raw', HMAC_BYTES, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
        await spyWrites(async (writes) => {
          await Promise.all(Array.from({ length: 10 }, (_, i) => cl.subtle.sign('HMAC', k, Buffer.from([i]))));
          const frames = requestWrites(writes).flatMap((w) => payloadsIn(w.bytes) as Array<Record<string, unknown>>);
          assert.equal(frames.length, 10);
          assert.ok(frames.every((p) => p.items === undefined));
        });
      }
    } finally {
      await d.stop();
    }
  });
});

describe('the daemon writes a long turn\'s replies as it goes', () => {
  test('requests read together whose work takes longer than 0.1 ms each are answered in several writes, not one at the end', async () => {
    const c = await t.connect('turn');
    await spyWrites(async (writes) => {
      // Ten requests in one client write, so the daemon reads them in one turn; each keeps it busy 0.3 ms.
      await Promise.all(Array.from({ length: 10 }, () => c.request(TestOp.SPIN, { us: 300 })));
      const replies = replyWrites(writes).filter((w) => w.ops.has(TestOp.SPIN));
      assert.equal(requestWrites(writes).length, 1);
      assert.ok(replies.length > 1, `the ten replies went out in ${replies.length} write(s)`);
      assert.equal(replies.flatMap((w) => framesIn(w.bytes)!).filter((f) => f.kind === FrameKind.RESPONSE).length, 10);
    });
  });
});
