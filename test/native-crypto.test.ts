/**
 * The daemon's HMACs and stream sealing through native/fastcrypto.c
 * (src/ops/native-crypto.ts). HMAC: the published vectors of RFC 4231
 * (SHA-256/384/512) and RFC 2202 (SHA-1), agreement with node:crypto for any
 * key and input (fast-check: keys longer than a block, empty inputs,
 * batches), refusals of bad arguments, and the node:crypto path
 * (CRYPTOD_NO_NATIVE_CRYPTO=1) giving the same MACs. Sealing: the same bytes as
 * createCipheriv for every stream cipher, refusals (no room, overlap), and
 * streams sealed in part into a window opening with the JS opener.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createCipheriv, createHmac, randomBytes, type CipherGCM } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { hmacOf, hmacsOf, nativeHmac } from '../src/ops/native-crypto.js';
import { StreamOpener, StreamSealer } from '../src/ops/stream-format.js';
import { packageRoot } from '../src/protocol/window-addon.js';

const addonFile = join(packageRoot()!, 'build', 'Release', 'fastcrypto.node');
const hex = (s: string): Buffer => Buffer.from(s, 'hex');

test('the addon is built and used (npm install builds it)', () => {
  assert.ok(existsSync(addonFile), `${addonFile} is missing: run npm install (node-gyp)`);
  assert.equal(nativeHmac(), true);
});

test('RFC 4231 test cases 1, 2, 6 and 7 (keys shorter and longer than a block) and RFC 2202 SHA-1 case 1', () => {
  const cases: Array<{ key: Buffer; data: Buffer; sha256: string; sha384: string; sha512: string }> = [
    {
      key: Buffer.alloc(20, 0x0b),
      data: Buffer.from('Hi There'),
      sha256: 'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7',
      sha384: 'afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6',
      sha512: '87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854',
    },
    {
      key: Buffer.from('Jefe'),
      data: Buffer.from('what do ya want for nothing?'),
      sha256: '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
      sha384: 'af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649',
      sha512: '164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737',
    },
    {
      key: Buffer.alloc(131, 0xaa),
      data: Buffer.from('Test Using Larger Than Block-Size Key - Hash Key First'),
      sha256: '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54',
      sha384: '4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c60c2ef6ab4030fe8296248df163f44952',
      sha512: '80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f3526b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598',
    },
    {
      key: Buffer.alloc(131, 0xaa),
      data: Buffer.from('This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.'),
      sha256: '9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2',
      sha384: '6617178e941f020d351e2f254e8fd32c602420feb0b8fb9adccebb82461e99c5a678cc31e799176d3860e6110c46523e',
      sha512: 'e37b6a775dc87dbaa4dfa9f96e5e3ffddebd71f8867289865df5a32d20cdc944b6022cac3c4982b10d5eeb55c3e4de15134676fb6de0446065c97440fa8c6a58',
    },
  ];
  for (const c of cases) {
    for (const h of ['sha256', 'sha384', 'sha512'] as const) {
      assert.equal(hmacOf(h, c.key, c.data).toString('hex'), c[h]);
      assert.deepEqual(hmacsOf(h, c.key, [c.data, c.data]).map((m) => Buffer.from(m).toString('hex')), [c[h], c[h]]);
    }
  }
  assert.equal(hmacOf('sha1', Buffer.alloc(20, 0x0b), Buffer.from('Hi There')).toString('hex'), 'b617318655057264e28bc0b6fb378c8ef146be00');
});

test('agrees with node:crypto for any key, input and batch (fast-check)', () => {
  fc.assert(
    fc.property(
      fc.constantFrom('sha1', 'sha256', 'sha384', 'sha512'),
      fc.uint8Array({ minLength: 0, maxLength: 200 }),
      fc.array(fc.uint8Array({ maxLength: 300 }), { minLength: 1, maxLength: 40 }),
      (hash, key, inputs) => {
        const want = inputs.map((d) => createHmac(hash, key).update(d).digest('hex'));
        assert.equal(hmacOf(hash, key, inputs[0]!).toString('hex'), want[0]);
        assert.deepEqual(hmacsOf(hash, key, inputs).map((m) => Buffer.from(m).toString('hex')), want);
      },
    ),
    { numRuns: 300 },
  );
});

test('bad arguments are refused with a TypeError, and nothing is written past the output', () => {
  const { hmacInto } = createRequire(import.meta.url)(addonFile) as { hmacInto: (...a: unknown[]) => void };
  const key = Buffer.alloc(32, 1);
  assert.throws(() => hmacInto(224, key, Buffer.alloc(1), Buffer.alloc(28)), TypeError);
  assert.throws(() => hmacInto(256, 'key', Buffer.alloc(1), Buffer.alloc(32)), TypeError);
  assert.throws(() => hmacInto(256, key, Buffer.alloc(1), Buffer.alloc(31)), TypeError);
  assert.throws(() => hmacInto(256, key, [Buffer.alloc(1), 'x'], Buffer.alloc(64)), TypeError);
  assert.throws(() => hmacInto(256, key, [Buffer.alloc(1)], new Uint16Array(16)), TypeError);
  assert.throws(() => hmacInto(256, key, Buffer.alloc(1)), TypeError);
  const out = Buffer.alloc(64, 0xee);
  hmacInto(256, key, Buffer.alloc(1), out.subarray(0, 32));
  assert.ok(out.subarray(32).every((b) => b === 0xee));
  // A batch that fails part way leaves no MAC behind.
  const part = Buffer.alloc(64, 0xee);
  assert.throws(() => hmacInto(256, key, [Buffer.alloc(1), 7], part), TypeError);
  assert.ok(part.every((b) => b === 0), 'a failed batch zeroes its output');
});

test('sealInto: the same ciphertext and tag as createCipheriv, for every stream cipher, key, nonce, aad and input (fast-check)', () => {
  const { sealInto } = createRequire(import.meta.url)(addonFile) as { sealInto: (...a: unknown[]) => void };
  const ciphers = [
    { id: 1, name: 'aes-128-gcm', keyLength: 16 },
    { id: 2, name: 'aes-192-gcm', keyLength: 24 },
    { id: 3, name: 'aes-256-gcm', keyLength: 32 },
    { id: 4, name: 'chacha20-poly1305', keyLength: 32 },
  ] as const;
  fc.assert(
    fc.property(fc.constantFrom(...ciphers), fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ minLength: 12, maxLength: 12 }), fc.uint8Array({ maxLength: 80 }), fc.uint8Array({ maxLength: 3000 }), fc.nat(40), (c, keyBytes, nonce, aad, input, at) => {
      const key = keyBytes.subarray(0, c.keyLength);
      const cipher = createCipheriv(c.name, key, nonce, { authTagLength: 16 } as never) as unknown as CipherGCM;
      cipher.setAAD(aad);
      const want = Buffer.concat([cipher.update(input), cipher.final(), cipher.getAuthTag()]);
      const out = Buffer.alloc(at + input.length + 16 + 5, 0xee);
      sealInto(c.id, key, nonce, aad, input, out, at);
      assert.ok(out.subarray(at, at + want.length).equals(want));
      assert.ok(out.subarray(0, at).every((b) => b === 0xee) && out.subarray(at + want.length).every((b) => b === 0xee), 'wrote outside its place');
    }),
    { numRuns: 300 },
  );
});

test('sealInto refuses what does not fit, does not match or overlaps its input, writing nothing', () => {
  const { sealInto } = createRequire(import.meta.url)(addonFile) as { sealInto: (...a: unknown[]) => void };
  const key = Buffer.alloc(32, 1);
  const nonce = Buffer.alloc(12, 2);
  const out = Buffer.alloc(64, 0xee);
  const none = Buffer.alloc(0);
  assert.throws(() => sealInto(3, key, nonce, none, Buffer.alloc(49), out, 0), /no room/); // 49 + 16 > 64
  assert.throws(() => sealInto(3, key, nonce, none, Buffer.alloc(1), out, 48), /no room/);
  assert.throws(() => sealInto(3, key, nonce, none, Buffer.alloc(1), out, -1), TypeError);
  assert.throws(() => sealInto(3, key.subarray(0, 16), nonce, none, Buffer.alloc(1), out, 0), /wrong length/);
  assert.throws(() => sealInto(9, key, nonce, none, Buffer.alloc(1), out, 0), /unknown cipher/);
  assert.throws(() => sealInto(3, key, nonce.subarray(0, 8), none, Buffer.alloc(1), out, 0), /12 bytes/);
  assert.throws(() => sealInto(3, key, nonce, none, out.subarray(10, 20), out, 0), /overlaps/);
  assert.throws(() => sealInto(3, key, nonce, none, out.subarray(0, 10), out, 9), /overlaps/);
  assert.ok(out.every((b) => b === 0xee));
  sealInto(3, key, nonce, none, out.subarray(0, 10), out, 10); // right after its input: apart
});

test('a stream sealed into a window by updateInto, in any chunking mixed with update, opens to its plaintext', () => {
  fc.assert(
    fc.property(fc.constantFrom(3, 4) as fc.Arbitrary<3 | 4>, fc.integer({ min: 1024, max: 4096 }), fc.array(fc.tuple(fc.integer({ min: 0, max: 9000 }), fc.boolean()), { maxLength: 8 }), (id, segment, pieces) => {
      const key = randomBytes(32);
      const sealer = new StreamSealer(id, key, segment, Buffer.from('aad'));
      const sealed: Buffer[] = [sealer.header];
      const plain: Buffer[] = [];
      for (const [n, native] of pieces) {
        const piece = randomBytes(n);
        plain.push(piece);
        if (native) {
          const window = Buffer.alloc(n + 2 * (segment + 16) + n, 0xee);
          const at = n + 3;
          const written = sealer.updateInto(piece, window, at, window.length - at);
          assert.notEqual(written, null);
          sealed.push(Buffer.from(window.subarray(at, at + written!)));
        } else {
          sealer.update(piece, sealed);
        }
      }
      sealer.final(sealed);
      const opener = new StreamOpener(id, key, Buffer.from('aad'));
      const out: Buffer[] = [];
      opener.update(Buffer.concat(sealed), out);
      opener.final(out);
      assert.ok(Buffer.concat(out).equals(Buffer.concat(plain)));
      sealer.dispose();
      opener.dispose();
    }),
    { numRuns: 100 },
  );
});

test('updateInto refuses an output region too small before the stream moves on', () => {
  const sealer = new StreamSealer(3, randomBytes(32), 1024, undefined);
  const window = Buffer.alloc(8192);
  assert.throws(() => sealer.updateInto(Buffer.alloc(3000), window, 4000, 1000), (err: Error) => /does not fit/.test(err.message));
  // Nothing was sealed: the same piece goes through with room.
  assert.equal(sealer.updateInto(Buffer.alloc(3000), window, 4000, 4192), 2 * (1024 + 16));
});

test('CRYPTOD_NO_NATIVE_CRYPTO=1 computes the same MACs with node:crypto', () => {
  const script = `import { hmacOf, hmacsOf, nativeHmac } from ${JSON.stringify(join(packageRoot()!, 'src/ops/native-crypto.ts'))};
    console.log(JSON.stringify({ native: nativeHmac(), one: hmacOf('sha256', Buffer.from('k'), Buffer.from('m')).toString('hex'), many: hmacsOf('sha512', Buffer.from('k'), [Buffer.from('a'), Buffer.from('b')]).map((m) => Buffer.from(m).toString('hex')) }));`;
  const run = (env: NodeJS.ProcessEnv): { native: boolean; one: string; many: string[] } =>
    JSON.parse(execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { env: { ...process.env, ...env }, encoding: 'utf8' })) as { native: boolean; one: string; many: string[] };
  const off = run({ CRYPTOD_NO_NATIVE_CRYPTO: '1' });
  const on = run({ CRYPTOD_NO_NATIVE_CRYPTO: '' });
  assert.equal(off.native, false);
  assert.equal(on.native, true);
  assert.deepEqual(off.one, on.one);
  assert.deepEqual(off.many, on.many);
  assert.equal(on.one, createHmac('sha256', 'k').update('m').digest('hex'));
});
