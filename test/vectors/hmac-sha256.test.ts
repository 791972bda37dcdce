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
