/**
 * Wycheproof HMAC-SHA-256 (hmac_sha256_test.json) through the daemon.
 *
 * Truncated tags (tagSize 128): WebCrypto's HMAC verify compares the full
 * tag (a truncated tag is `false`), so each case signs the message and
 * compares the first tagSize/8 bytes with the vector's tag — equal for every
 * valid case, different for every invalid (modified-tag) case. Full-size tags
 * also go through VERIFY, which must answer true / false.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Client } from '../../src/client/client.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { hexOf, inBatches, loadVectors, outcome, Tally, unhex, type WycheproofTest } from './wycheproof.js';

interface MacTest extends WycheproofTest {
  key: string;
  msg: string;
  tag: string;
}

let t: TestDaemon;
let c: Client;
before(async () => {
  t = await startTestDaemon();
  c = await t.connect('wycheproof-hmac');
});
after(async () => {
  await c.close();
  await t.stop();
});

test('Wycheproof hmac_sha256: 174 cases through client.subtle', async () => {
  const file = loadVectors<MacTest, { keySize: number; tagSize: number }>('hmac_sha256');
  const tally = new Tally('hmac_sha256', file.numberOfTests);
  for (const group of file.testGroups) {
    const tagBytes = group.tagSize / 8;
    await inBatches(group.tests, 64, async (tc) => {
      const what = `tcId ${tc.tcId} (${tc.comment})`;
      const key = await c.subtle.importKey('raw', unhex(tc.key), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
      const full = await c.subtle.sign('HMAC', key, unhex(tc.msg));
      const matches = hexOf(full).slice(0, tagBytes * 2) === tc.tag;
      if (tc.result === 'valid') assert.ok(matches, `${what}: tag differs`);
      else if (tc.result === 'invalid') assert.ok(!matches, `${what}: a modified tag matched`);
      if (tagBytes === 32) {
        const r = await outcome(c.subtle.verify('HMAC', key, unhex(tc.tag), unhex(tc.msg)), what);
        const accepted = r.ok && r.value;
        if (tc.result === 'valid') assert.equal(accepted, true, `${what}: verify refused a valid tag`);
        if (tc.result === 'invalid') assert.equal(accepted, false, `${what}: verify accepted an invalid tag`);
      }
      await key.release();
      tally.ran1(tc);
    });
  }
  tally.assertComplete({ ran: 174 });
  assert.deepEqual(tally.ran, { valid: 66, invalid: 108, acceptable: 0 });
});

test('the vector loader fails loudly (never skips) when a file is missing', () => {
  assert.throws(() => loadVectors('no_such_file'), /Wycheproof vector file not found: .*no_such_file_test\.json/);
});

test('Wycheproof hmac_sha256: the full-size tags through the batch forms, one SIGN and one VERIFY batch per key', async () => {
  const file = loadVectors<MacTest, { keySize: number; tagSize: number }>('hmac_sha256');
  const byKey = new Map<string, MacTest[]>();
  for (const group of file.testGroups) {
    if (group.tagSize !== 256) continue;
    for (const tc of group.tests) byKey.set(tc.key, [...(byKey.get(tc.key) ?? []), tc]);
  }
  const ran = { valid: 0, invalid: 0 };
  for (const [keyHex, cases] of byKey) {
    const key = await c.subtle.importKey('raw', unhex(keyHex), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
    const tags = await c.subtle.signBatch('HMAC', key, cases.map((tc) => unhex(tc.msg)));
    const verdicts = await c.subtle.verifyBatch('HMAC', key, cases.map((tc) => ({ signature: unhex(tc.tag), data: unhex(tc.msg) })));
    cases.forEach((tc, i) => {
      const what = `tcId ${tc.tcId} (${tc.comment})`;
      assert.equal(hexOf(tags[i] as Uint8Array) === tc.tag, tc.result === 'valid', `${what}: sign`);
      assert.equal(verdicts[i], tc.result === 'valid', `${what}: verify`);
      ran[tc.result === 'valid' ? 'valid' : 'invalid']++;
    });
    await key.release();
  }
  assert.deepEqual(ran, { valid: 33, invalid: 54 }, 'every full-size case ran, 34 keys');
  assert.equal(byKey.size, 34);
});
