/**
 * Wycheproof AES-GCM (aes_gcm_test.json) through the daemon: every case is
 * `client.subtle.importKey('raw', …)` then `encrypt` / `decrypt`.
 * - valid: encrypt gives exactly ct ‖ tag and decrypt gives back msg — among
 *   them IVs from 1 to 257 bytes (those over 128 bytes, which OpenSSL refuses,
 *   go through src/ops/gcm-iv.ts);
 * - invalid: decrypt is rejected with a typed error — DecryptError for a
 *   modified tag; InvalidArgumentError for an empty IV, on encrypt as well.
 * Requests are pipelined in batches of 64 on one connection.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Client } from '../../src/client/client.js';
import type { CryptoKey } from '../../src/client/subtle.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { hexOf, inBatches, loadVectors, outcome, Tally, unhex, type WycheproofTest } from './wycheproof.js';

interface AeadTest extends WycheproofTest {
  key: string;
  iv: string;
  aad: string;
  msg: string;
  ct: string;
  tag: string;
}

let t: TestDaemon;
let c: Client;
before(async () => {
  t = await startTestDaemon();
  c = await t.connect('wycheproof-aes-gcm');
});
after(async () => {
  await c.close();
  await t.stop();
});

test('Wycheproof aes_gcm: 316 cases through client.subtle', async () => {
  const file = loadVectors<AeadTest, { keySize: number; ivSize: number; tagSize: number }>('aes_gcm');
  const tally = new Tally('aes_gcm', file.numberOfTests);
  // One imported key per distinct key value.
  const keys = new Map<string, Promise<CryptoKey>>();
  const keyFor = (hex: string): Promise<CryptoKey> => {
    let k = keys.get(hex);
    if (k === undefined) {
      k = c.subtle.importKey('raw', unhex(hex), { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
      keys.set(hex, k);
    }
    return k;
  };
  let longIvs = 0;

  const cases = file.testGroups.flatMap((g) => g.tests.map((tc) => ({ tc, tagLength: g.tagSize })));
  await inBatches(cases, 64, async ({ tc, tagLength }) => {
    const what = `tcId ${tc.tcId} (${tc.flags.join(',')}${tc.comment ? `: ${tc.comment}` : ''})`;
    const key = await keyFor(tc.key);
    const algorithm = { name: 'AES-GCM', iv: unhex(tc.iv), additionalData: unhex(tc.aad), tagLength };
    const sealed = unhex(tc.ct + tc.tag);
    const decrypted = await outcome(c.subtle.decrypt(algorithm, key, sealed), `${what} decrypt`);
    if (tc.result === 'valid') {
      const encrypted = await outcome(c.subtle.encrypt(algorithm, key, unhex(tc.msg)), `${what} encrypt`);
      assert.ok(encrypted.ok, `${what}: encrypt refused: ${encrypted.ok ? '' : encrypted.error.message}`);
      assert.equal(hexOf(encrypted.value), tc.ct + tc.tag, `${what}: ciphertext ‖ tag`);
      assert.ok(decrypted.ok, `${what}: decrypt refused: ${decrypted.ok ? '' : decrypted.error.message}`);
      assert.equal(hexOf(decrypted.value), tc.msg, `${what}: plaintext`);
      if (tc.iv.length / 2 > 128) longIvs++;
    } else {
      assert.equal(tc.result, 'invalid', `${what}: this file has no acceptable cases`);
      assert.ok(!decrypted.ok, `${what}: an invalid case was decrypted`);
      if (tc.flags.includes('ModifiedTag')) {
        assert.equal(decrypted.error.code, 'CRYPTOD_ERR_DECRYPT_FAILED', `${what}: ${decrypted.error.message}`);
      } else {
        assert.deepEqual(tc.flags, ['ZeroLengthIv'], `${what}: an invalid class this test does not know`);
        assert.equal(decrypted.error.code, 'CRYPTOD_ERR_INVALID_ARGUMENT', `${what}: ${decrypted.error.message}`);
        const encrypted = await outcome(c.subtle.encrypt(algorithm, key, unhex(tc.msg)), `${what} encrypt`);
        assert.ok(!encrypted.ok && encrypted.error.code === 'CRYPTOD_ERR_INVALID_ARGUMENT', `${what}: encrypt with an empty IV was not refused`);
      }
    }
    tally.ran1(tc);
  });

  tally.assertComplete({ ran: 316 });
  assert.deepEqual(tally.ran, { valid: 229, invalid: 87, acceptable: 0 });
  assert.equal(longIvs, 3, 'the three 2056-bit IV cases ran');
});

test('Wycheproof aes_gcm: the same 316 cases through the batch forms, one request per key and tag length', async () => {
  const file = loadVectors<AeadTest, { keySize: number; ivSize: number; tagSize: number }>('aes_gcm');
  const groups = new Map<string, { key: string; tagLength: number; cases: AeadTest[] }>();
  for (const g of file.testGroups) {
    for (const tc of g.tests) {
      const id = `${tc.key}/${g.tagSize}`;
      const group = groups.get(id) ?? { key: tc.key, tagLength: g.tagSize, cases: [] };
      group.cases.push(tc);
      groups.set(id, group);
    }
  }
  const ran = { valid: 0, invalid: 0 };
  for (const { key: keyHex, tagLength, cases } of groups.values()) {
    const key = await c.subtle.importKey('raw', unhex(keyHex), { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
    const algorithm = { name: 'AES-GCM', tagLength };
    const opened = await c.subtle.decryptBatch(algorithm, key, cases.map((tc) => ({ data: unhex(tc.ct + tc.tag), iv: unhex(tc.iv), additionalData: unhex(tc.aad) })));
    const sealed = await c.subtle.encryptBatch(algorithm, key, cases.map((tc) => ({ data: unhex(tc.msg), iv: unhex(tc.iv), additionalData: unhex(tc.aad) })));
    cases.forEach((tc, i) => {
      const what = `tcId ${tc.tcId} (${tc.flags.join(',')})`;
      const d = opened[i]!;
      const e = sealed[i]!;
      if (tc.result === 'valid') {
        assert.ok(d instanceof Uint8Array && e instanceof Uint8Array, `${what}: ${String(d)} / ${String(e)}`);
        assert.equal(hexOf(d), tc.msg, `${what}: plaintext`);
        assert.equal(hexOf(e), tc.ct + tc.tag, `${what}: ciphertext ‖ tag`);
        ran.valid++;
      } else if (tc.flags.includes('ModifiedTag')) {
        assert.ok(!(d instanceof Uint8Array) && d.code === 'CRYPTOD_ERR_DECRYPT_FAILED', `${what}: ${String(d)}`);
        ran.invalid++;
      } else {
        assert.deepEqual(tc.flags, ['ZeroLengthIv'], `${what}: an invalid class this test does not know`);
        assert.ok(!(d instanceof Uint8Array) && d.code === 'CRYPTOD_ERR_INVALID_ARGUMENT', `${what}: decrypt ${String(d)}`);
        assert.ok(!(e instanceof Uint8Array) && e.code === 'CRYPTOD_ERR_INVALID_ARGUMENT', `${what}: encrypt ${String(e)}`);
        ran.invalid++;
      }
    });
    await key.release();
  }
  assert.deepEqual(ran, { valid: 229, invalid: 87 });
});
