/**
 * AES-CTR through the daemon: NIST SP 800-38A Appendix F.5 (F.5.1–F.5.6,
 * CTR-AES128/192/256 encrypt and decrypt; there is no Wycheproof file for
 * CTR), then the counter's `length` — only that many low bits of the block
 * count and wrap — compared with Node's crypto.subtle on the same inputs.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import type { Client } from '../../src/client/client.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { hexOf, outcome, unhex } from './wycheproof.js';

/** SP 800-38A F.5: one counter block and plaintext for all three key sizes. */
const COUNTER = 'f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff';
const PLAINTEXT =
  '6bc1bee22e409f96e93d7e117393172a' + 'ae2d8a571e03ac9c9eb76fac45af8e51' + '30c81c46a35ce411e5fbc1191a0a52ef' + 'f69f2445df4f9b17ad2b417be66c3710';
const F5 = [
  {
    name: 'F.5.1/F.5.2 CTR-AES128',
    key: '2b7e151628aed2a6abf7158809cf4f3c',
    ct: '874d6191b620e3261bef6864990db6ce' + '9806f66b7970fdff8617187bb9fffdff' + '5ae4df3edbd5d35e5b4f09020db03eab' + '1e031dda2fbe03d1792170a0f3009cee',
  },
  {
    name: 'F.5.3/F.5.4 CTR-AES192',
    key: '8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b',
    ct: '1abc932417521ca24f2b0459fe7e6e0b' + '090339ec0aa6faefd5ccc2c6f4ce8e94' + '1e36b26bd1ebc670d1bd1d665620abf7' + '4f78a7f6d29809585a97daec58c6b050',
  },
  {
    name: 'F.5.5/F.5.6 CTR-AES256',
    key: '603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4',
    ct: '601ec313775789a5b7a7f504bbf3d228' + 'f443e3ca4d62b59aca84e990cacaf5c5' + '2b0930daa23de94ce87017ba2d84988d' + 'dfc9c58db67aada613c2dd08457941a6',
  },
];

let t: TestDaemon;
let c: Client;
before(async () => {
  t = await startTestDaemon();
  c = await t.connect('nist-aes-ctr');
});
after(async () => {
  await c.close();
  await t.stop();
});

test('NIST SP 800-38A F.5: CTR-AES128/192/256 encrypt and decrypt through client.subtle', async () => {
  for (const v of F5) {
    const key = await c.subtle.importKey('raw', unhex(v.key), 'AES-CTR', false, ['encrypt', 'decrypt']);
    const params = { name: 'AES-CTR', counter: unhex(COUNTER), length: 64 };
    assert.equal(hexOf(await c.subtle.encrypt(params, key, unhex(PLAINTEXT))), v.ct, `${v.name} encrypt`);
    assert.equal(hexOf(await c.subtle.decrypt(params, key, unhex(v.ct))), PLAINTEXT, `${v.name} decrypt`);
    await key.release();
  }
});

test('AES-CTR counter lengths: the counted bits wrap as in Node; a repeating keystream is refused', async () => {
  const raw = randomBytes(16);
  const ours = await c.subtle.importKey('raw', raw, 'AES-CTR', false, ['encrypt']);
  const node = await crypto.subtle.importKey('raw', raw, 'AES-CTR', false, ['encrypt']);
  const data = randomBytes(16 * 5 + 3);
  // Counters whose counted bits are 1–2 blocks from wrapping, for several lengths (and a full 128-bit counter).
  const cases: Array<{ counter: Buffer; length: number }> = [];
  for (const length of [3, 8, 32, 64, 127, 128]) {
    const counter = Buffer.alloc(16, 0xa5);
    const top = length === 128 ? Buffer.alloc(16, 0xff) : counter;
    if (length < 128) {
      // Set the low `length` bits to all ones minus one: 2 blocks before the wrap.
      let v = BigInt(`0x${counter.toString('hex')}`);
      const mask = (1n << BigInt(length)) - 1n;
      v = (v & ~mask) | (mask - 1n);
      Buffer.from(v.toString(16).padStart(32, '0'), 'hex').copy(counter);
    }
    cases.push({ counter: length === 128 ? top : counter, length });
  }
  for (const { counter, length } of cases) {
    const params = { name: 'AES-CTR', counter, length };
    const expected = await crypto.subtle.encrypt(params, node, data).catch((e: Error) => e.name);
    const got = await outcome(c.subtle.encrypt(params, ours, data), `length ${length}`);
    if (typeof expected === 'string') {
      // Node refuses where the counter would come back to its start; both must then refuse.
      assert.equal(expected, 'OperationError');
      assert.ok(!got.ok && got.error.code === 'CRYPTOD_ERR_OPERATION', `length ${length}: expected a refusal`);
    } else {
      assert.ok(got.ok, `length ${length}: refused: ${got.ok ? '' : got.error.message}`);
      assert.equal(hexOf(got.value), hexOf(expected), `length ${length}: differs from Node`);
    }
  }
  const tooMany = await outcome(c.subtle.encrypt({ name: 'AES-CTR', counter: Buffer.alloc(16), length: 2 }, ours, Buffer.alloc(16 * 4 + 1)), 'repeat');
  assert.ok(!tooMany.ok && tooMany.error.code === 'CRYPTOD_ERR_OPERATION' && /repeat/.test(tooMany.error.message));
  for (const length of [0, 129]) {
    const r = await outcome(c.subtle.encrypt({ name: 'AES-CTR', counter: Buffer.alloc(16), length }, ours, data), `length ${length}`);
    assert.ok(!r.ok && r.error.code === 'CRYPTOD_ERR_INVALID_ARGUMENT', `length ${length} must be refused`);
  }
  const short = await outcome(c.subtle.encrypt({ name: 'AES-CTR', counter: Buffer.alloc(8), length: 64 }, ours, data), 'short counter');
  assert.ok(!short.ok && short.error.code === 'CRYPTOD_ERR_INVALID_ARGUMENT');
});
