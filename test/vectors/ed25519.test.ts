/**
 * Wycheproof Ed25519 verification (ed25519_test.json) through the daemon.
 * Each group's public key is imported in turn as raw, spki and jwk (group
 * index mod 3), so all three import paths meet every kind of case. A valid
 * signature must verify; an invalid one must give `false` (or a typed error).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Client } from '../../src/client/client.js';
import type { CryptoKey } from '../../src/client/subtle.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { inBatches, loadVectors, outcome, Tally, unhex, type WycheproofTest } from './wycheproof.js';

interface EddsaTest extends WycheproofTest {
  msg: string;
  sig: string;
}
interface EddsaGroup {
  publicKey: { pk: string };
  publicKeyDer: string;
  publicKeyJwk: Record<string, string>;
}

let t: TestDaemon;
let c: Client;
before(async () => {
  t = await startTestDaemon();
  c = await t.connect('wycheproof-ed25519');
});
after(async () => {
  await c.close();
  await t.stop();
});

test('Wycheproof ed25519: 151 cases through client.subtle', async () => {
  const file = loadVectors<EddsaTest, EddsaGroup>('ed25519');
  const tally = new Tally('ed25519', file.numberOfTests);
  const formats = { raw: 0, spki: 0, jwk: 0 };
  let gi = 0;
  for (const group of file.testGroups) {
    const format = (['raw', 'spki', 'jwk'] as const)[gi++ % 3]!;
    const data = format === 'raw' ? unhex(group.publicKey.pk) : format === 'spki' ? unhex(group.publicKeyDer) : group.publicKeyJwk;
    const imported = await outcome(c.subtle.importKey(format, data as never, 'Ed25519', false, ['verify']), `group ${gi} ${format} import`);
    // Every group's public key in this file is well formed: refusing one is a bug.
    if (!imported.ok) assert.fail(`group ${gi}: ${format} import of the public key refused: ${imported.error.message}`);
    formats[format]++;
    const key: CryptoKey = imported.value;
    await inBatches(group.tests, 64, async (tc) => {
      const what = `tcId ${tc.tcId} (${tc.comment})`;
      const r = await outcome(c.subtle.verify('Ed25519', key, unhex(tc.sig), unhex(tc.msg)), what);
      const accepted = r.ok && r.value;
      if (tc.result === 'valid') assert.equal(accepted, true, `${what}: a valid signature was refused`);
      if (tc.result === 'invalid') assert.equal(accepted, false, `${what}: an invalid signature was accepted`);
      tally.ran1(tc);
    });
    await key.release();
  }
  tally.assertComplete({ ran: 151 });
  assert.deepEqual(tally.ran, { valid: 88, invalid: 63, acceptable: 0 });
  assert.ok(formats.raw > 0 && formats.spki > 0 && formats.jwk > 0, `every import format was used: ${JSON.stringify(formats)}`);
});
