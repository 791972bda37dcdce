/**
 * Wycheproof ECDSA P-256 / SHA-256 with IEEE P1363 signatures
 * (ecdsa_secp256r1_sha256_p1363_test.json) through the daemon. Each group's
 * public key is imported as raw (uncompressed point), spki or jwk in turn
 * (jwk only where the file gives one; otherwise spki). VERIFY with
 * `{ name: 'ECDSA', hash: 'SHA-256' }` must be true for valid cases and
 * false (or a typed error) for invalid ones.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Client } from '../../src/client/client.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { inBatches, loadVectors, outcome, Tally, unhex, type WycheproofTest } from './wycheproof.js';

interface EcdsaTest extends WycheproofTest {
  msg: string;
  sig: string;
}
interface EcdsaGroup {
  publicKey: { uncompressed: string };
  publicKeyDer: string;
  publicKeyJwk?: Record<string, string>;
}

let t: TestDaemon;
let c: Client;
before(async () => {
  t = await startTestDaemon();
  c = await t.connect('wycheproof-ecdsa');
});
after(async () => {
  await c.close();
  await t.stop();
});

test('Wycheproof ecdsa_secp256r1_sha256_p1363: 262 cases through client.subtle', async () => {
  const file = loadVectors<EcdsaTest, EcdsaGroup>('ecdsa_secp256r1_sha256_p1363');
  const tally = new Tally('ecdsa_secp256r1_sha256_p1363', file.numberOfTests);
  const formats = { raw: 0, spki: 0, jwk: 0 };
  const alg = { name: 'ECDSA', namedCurve: 'P-256' };
  let gi = 0;
  for (const group of file.testGroups) {
    let format = (['raw', 'spki', 'jwk'] as const)[gi++ % 3]!;
    if (format === 'jwk' && group.publicKeyJwk === undefined) format = 'spki';
    const data = format === 'raw' ? unhex(group.publicKey.uncompressed) : format === 'spki' ? unhex(group.publicKeyDer) : group.publicKeyJwk!;
    const imported = await outcome(c.subtle.importKey(format, data as never, alg, false, ['verify']), `group ${gi} ${format} import`);
    // Every group's public key in this file is well formed: refusing one is a bug.
    if (!imported.ok) assert.fail(`group ${gi}: ${format} import of the public key refused: ${imported.error.message}`);
    formats[format]++;
    const key = imported.value;
    await inBatches(group.tests, 64, async (tc) => {
      const what = `tcId ${tc.tcId} (${tc.comment})`;
      const r = await outcome(c.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, key, unhex(tc.sig), unhex(tc.msg)), what);
      const accepted = r.ok && r.value;
      if (tc.result === 'valid') assert.equal(accepted, true, `${what}: a valid signature was refused`);
      if (tc.result === 'invalid') assert.equal(accepted, false, `${what}: an invalid signature was accepted`);
      tally.ran1(tc);
    });
    await key.release();
  }
  tally.assertComplete({ ran: 262 });
  assert.deepEqual(tally.ran, { valid: 173, invalid: 89, acceptable: 0 });
  assert.ok(formats.raw > 0 && formats.spki > 0 && formats.jwk > 0, `every import format was used: ${JSON.stringify(formats)}`);
});
