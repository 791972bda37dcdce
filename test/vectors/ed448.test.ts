/**
 * Wycheproof Ed448 (ed448_test.json) through the daemon. Each group's public
 * key is imported as raw (57 bytes), spki or jwk in turn; VERIFY must be true
 * for valid cases and false (or a typed error) for invalid ones. Then a key
 * pair made by the daemon signs, and node:crypto checks the signature.
 */
import assert from 'node:assert/strict';
import { createPublicKey, verify } from 'node:crypto';
import { after, before, test } from 'node:test';
import type { Client } from '../../src/client/client.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { inBatches, loadVectors, outcome, Tally, unhex, type WycheproofTest } from './wycheproof.js';

interface EddsaTest extends WycheproofTest {
  msg: string;
  sig: string;
}
interface EddsaGroup {
  publicKey: { pk: string };
  publicKeyDer: string;
  publicKeyJwk?: Record<string, string>;
}

let t: TestDaemon;
let c: Client;
before(async () => {
  t = await startTestDaemon();
  c = await t.connect('wycheproof-ed448');
});
after(async () => {
  await c.close();
  await t.stop();
});

test('Wycheproof ed448: 87 cases through client.subtle', async () => {
  const file = loadVectors<EddsaTest, EddsaGroup>('ed448');
  const tally = new Tally('ed448', file.numberOfTests);
  const formats = { raw: 0, spki: 0, jwk: 0 };
  let gi = 0;
  for (const group of file.testGroups) {
    let format = (['raw', 'spki', 'jwk'] as const)[gi++ % 3]!;
    if (format === 'jwk' && group.publicKeyJwk === undefined) format = 'spki';
    const data = format === 'raw' ? unhex(group.publicKey.pk) : format === 'spki' ? unhex(group.publicKeyDer) : group.publicKeyJwk!;
    const imported = await outcome(c.subtle.importKey(format, data as never, 'Ed448', false, ['verify']), `group ${gi} ${format} import`);
    if (!imported.ok) assert.fail(`group ${gi}: ${format} import of the public key refused: ${imported.error.message}`);
    formats[format]++;
    const key = imported.value;
    await inBatches(group.tests, 64, async (tc) => {
      const what = `tcId ${tc.tcId} (${tc.comment})`;
      const r = await outcome(c.subtle.verify('Ed448', key, unhex(tc.sig), unhex(tc.msg)), what);
      const accepted = r.ok && r.value;
      if (tc.result === 'valid') assert.equal(accepted, true, `${what}: a valid signature was refused`);
      if (tc.result === 'invalid') assert.equal(accepted, false, `${what}: an invalid signature was accepted`);
      tally.ran1(tc);
    });
    await key.release();
  }
  tally.assertComplete({ ran: 87 });
  assert.deepEqual(tally.ran, { valid: 17, invalid: 70, acceptable: 0 });
  assert.ok(formats.raw > 0 && formats.spki > 0 && formats.jwk > 0, `every import format was used: ${JSON.stringify(formats)}`);
});

test('Ed448: a daemon key pair signs; node:crypto verifies; raw import takes 57 bytes only', async () => {
  const pair = await c.subtle.generateKey('Ed448', false, ['sign', 'verify']);
  const data = Buffer.from('ed448');
  const sig = Buffer.from(await c.subtle.sign('Ed448', pair.privateKey, data));
  assert.equal(sig.length, 114);
  const raw = Buffer.from(await c.subtle.exportKey('raw', pair.publicKey) as ArrayBuffer);
  assert.equal(raw.length, 57);
  const pub = createPublicKey({ key: { kty: 'OKP', crv: 'Ed448', x: raw.toString('base64url') }, format: 'jwk' });
  assert.ok(verify(null, data, pub, sig));
  const r = await outcome(c.subtle.importKey('raw', raw.subarray(1), 'Ed448', false, ['verify']), 'short raw key');
  assert.ok(!r.ok && r.error.code === 'CRYPTOD_ERR_DATA' && /57-byte/.test(r.error.message));
  // An empty context is the default; a non-empty one is refused, as Node 20 refuses it.
  assert.equal(await c.subtle.verify({ name: 'Ed448', context: new Uint8Array(0) }, pair.publicKey, sig, data), true);
  const ctx = await outcome(c.subtle.sign({ name: 'Ed448', context: Buffer.from('app') }, pair.privateKey, data), 'context');
  assert.ok(!ctx.ok && ctx.error.code === 'CRYPTOD_ERR_UNSUPPORTED');
});
