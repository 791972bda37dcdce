/**
 * Wycheproof PBKDF2-HMAC-SHA-256 (pbkdf2_hmacsha256_test.json) through the
 * daemon: the password is imported as a raw PBKDF2 key and DERIVE_BITS with
 * `{ hash: 'SHA-256', salt, iterations }` and `dkLen × 8` bits must give
 * `dk`. Every case in the file is valid. Then the parameter errors, as Node's
 * crypto.subtle gives them.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Client } from '../../src/client/client.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { hexOf, inBatches, loadVectors, outcome, Tally, unhex, type WycheproofTest } from './wycheproof.js';

interface PbkdfTest extends WycheproofTest {
  password: string;
  salt: string;
  iterationCount: number;
  dkLen: number;
  dk: string;
}

let t: TestDaemon;
let c: Client;
before(async () => {
  t = await startTestDaemon();
  c = await t.connect('wycheproof-pbkdf2');
});
after(async () => {
  await c.close();
  await t.stop();
});

test('Wycheproof pbkdf2_hmacsha256: 60 cases through client.subtle', async () => {
  const file = loadVectors<PbkdfTest>('pbkdf2_hmacsha256');
  const tally = new Tally('pbkdf2_hmacsha256', file.numberOfTests);
  for (const group of file.testGroups) {
    await inBatches(group.tests, 8, async (tc) => {
      const what = `tcId ${tc.tcId} (${tc.comment})`;
      const key = await c.subtle.importKey('raw', unhex(tc.password), 'PBKDF2', false, ['deriveBits']);
      const r = await outcome(c.subtle.deriveBits({ name: 'PBKDF2', hash: 'SHA-256', salt: unhex(tc.salt), iterations: tc.iterationCount }, key, tc.dkLen * 8), what);
      assert.ok(r.ok, `${what}: refused: ${r.ok ? '' : r.error.message}`);
      assert.equal(hexOf(r.value), tc.dk, `${what}: wrong derived key`);
      await key.release();
      tally.ran1(tc);
    });
  }
  tally.assertComplete({ ran: 60 });
  assert.deepEqual(tally.ran, { valid: 60, invalid: 0, acceptable: 0 });
});

test('PBKDF2: deriveKey, length 0, and the errors Node gives', async () => {
  const ok = { name: 'PBKDF2', hash: 'SHA-256', salt: Buffer.from('salt'), iterations: 2 };
  const key = await c.subtle.importKey('raw', Buffer.from('password'), 'PBKDF2', false, ['deriveBits', 'deriveKey']);
  const mine = Buffer.from(await c.subtle.deriveBits(ok, key, 256));
  const node = Buffer.from(await crypto.subtle.deriveBits(ok, await crypto.subtle.importKey('raw', Buffer.from('password'), 'PBKDF2', false, ['deriveBits']), 256));
  assert.ok(mine.equals(node));
  assert.equal((await c.subtle.deriveBits(ok, key, 0)).byteLength, 0);
  const aes = await c.subtle.deriveKey(ok, key, { name: 'AES-GCM', length: 256 }, true, ['encrypt']);
  assert.ok(Buffer.from(await c.subtle.exportKey('raw', aes) as ArrayBuffer).equals(mine));
  const code = async (p: Promise<unknown>): Promise<string> => {
    const r = await outcome(p, 'bad PBKDF2 call');
    assert.ok(!r.ok, 'expected a refusal');
    return r.error.code;
  };
  assert.equal(await code(c.subtle.deriveBits({ ...ok, iterations: 0 }, key, 256)), 'CRYPTOD_ERR_OPERATION');
  assert.equal(await code(c.subtle.deriveBits(ok, key, 12)), 'CRYPTOD_ERR_OPERATION');
  assert.equal(await code(c.subtle.deriveBits(ok, key, null)), 'CRYPTOD_ERR_OPERATION');
  assert.equal(await code(c.subtle.deriveBits({ ...ok, salt: undefined }, key, 256)), 'CRYPTOD_ERR_INVALID_ARGUMENT');
  assert.equal(await code(c.subtle.deriveBits({ ...ok, iterations: 10_000_001 }, key, 256)), 'CRYPTOD_ERR_UNSUPPORTED');
  assert.equal(await code(c.subtle.importKey('raw', Buffer.from('pw'), 'PBKDF2', true, ['deriveBits'])), 'CRYPTOD_ERR_INVALID_ARGUMENT');
  assert.equal(await code(c.subtle.generateKey('PBKDF2' as never, false, ['deriveBits'])), 'CRYPTOD_ERR_UNSUPPORTED');
});
