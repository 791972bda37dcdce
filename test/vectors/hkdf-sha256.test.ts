/**
 * Wycheproof HKDF-SHA-256 (hkdf_sha256_test.json) through the daemon:
 * importKey('raw', ikm, 'HKDF') then deriveBits({ hash, salt, info }, size·8).
 * The invalid cases ask for 255·32 + 1 bytes (RFC 5869 §2.3) and must be a
 * typed OperationError.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Client } from '../../src/client/client.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { hexOf, inBatches, loadVectors, outcome, Tally, unhex, type WycheproofTest } from './wycheproof.js';

interface HkdfTest extends WycheproofTest {
  ikm: string;
  salt: string;
  info: string;
  size: number;
  okm: string;
}

let t: TestDaemon;
let c: Client;
before(async () => {
  t = await startTestDaemon();
  c = await t.connect('wycheproof-hkdf');
});
after(async () => {
  await c.close();
  await t.stop();
});

test('Wycheproof hkdf_sha256: 86 cases through client.subtle', async () => {
  const file = loadVectors<HkdfTest>('hkdf_sha256');
  const tally = new Tally('hkdf_sha256', file.numberOfTests);
  for (const group of file.testGroups) {
    await inBatches(group.tests, 64, async (tc) => {
      const what = `tcId ${tc.tcId} (${tc.comment})`;
      const key = await c.subtle.importKey('raw', unhex(tc.ikm), 'HKDF', false, ['deriveBits']);
      const r = await outcome(c.subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt: unhex(tc.salt), info: unhex(tc.info) }, key, tc.size * 8), what);
      if (tc.result === 'valid') {
        assert.ok(r.ok, `${what}: rejected: ${r.ok ? '' : r.error.message}`);
        assert.equal(hexOf(r.value), tc.okm, `${what}: wrong output`);
      } else if (tc.result === 'invalid') {
        assert.ok(!r.ok, `${what}: an invalid case was accepted`);
        assert.equal(r.error.code, 'CRYPTOD_ERR_OPERATION', `${what}: ${r.error.code}`);
      }
      await key.release();
      tally.ran1(tc);
    });
  }
  tally.assertComplete({ ran: 86 });
  assert.deepEqual(tally.ran, { valid: 83, invalid: 3, acceptable: 0 });
});
