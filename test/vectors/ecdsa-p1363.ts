/**
 * One Wycheproof ECDSA file with IEEE P1363 signatures through the daemon
 * (shared by the P-256 and P-521 suites). Each group's public key is imported
 * as raw (uncompressed point), spki or jwk in turn (jwk only where the file
 * gives one; otherwise spki) — every group's key is well formed, so refusing
 * one is a bug. VERIFY must be true for valid cases and false (or a typed
 * error) for invalid ones.
 */
import assert from 'node:assert/strict';
import type { Client } from '../../src/client/client.js';
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

export interface EcdsaFile {
  /** The file's name without `_test.json`. */
  name: string;
  namedCurve: 'P-256' | 'P-384' | 'P-521';
  hash: 'SHA-256' | 'SHA-384' | 'SHA-512';
  /** The cases the file holds, by result: a changed file fails the suite. */
  expected: { valid: number; invalid: number; acceptable: number };
}

export async function runEcdsaP1363(c: Client, f: EcdsaFile): Promise<void> {
  const file = loadVectors<EcdsaTest, EcdsaGroup>(f.name);
  const tally = new Tally(f.name, file.numberOfTests);
  const formats = { raw: 0, spki: 0, jwk: 0 };
  const alg = { name: 'ECDSA', namedCurve: f.namedCurve };
  let gi = 0;
  for (const group of file.testGroups) {
    let format = (['raw', 'spki', 'jwk'] as const)[gi++ % 3]!;
    if (format === 'jwk' && group.publicKeyJwk === undefined) format = 'spki';
    const data = format === 'raw' ? unhex(group.publicKey.uncompressed) : format === 'spki' ? unhex(group.publicKeyDer) : group.publicKeyJwk!;
    const imported = await outcome(c.subtle.importKey(format, data as never, alg, false, ['verify']), `group ${gi} ${format} import`);
    if (!imported.ok) assert.fail(`group ${gi}: ${format} import of the public key refused: ${imported.error.message}`);
    formats[format]++;
    const key = imported.value;
    await inBatches(group.tests, 64, async (tc) => {
      const what = `tcId ${tc.tcId} (${tc.comment})`;
      const r = await outcome(c.subtle.verify({ name: 'ECDSA', hash: f.hash }, key, unhex(tc.sig), unhex(tc.msg)), what);
      const accepted = r.ok && r.value;
      if (tc.result === 'valid') assert.equal(accepted, true, `${what}: a valid signature was refused`);
      if (tc.result === 'invalid') assert.equal(accepted, false, `${what}: an invalid signature was accepted`);
      tally.ran1(tc);
    });
    await key.release();
  }
  const e = f.expected;
  tally.assertComplete({ ran: e.valid + e.invalid + e.acceptable });
  assert.deepEqual(tally.ran, e);
  assert.ok(formats.raw > 0 && formats.spki > 0 && formats.jwk > 0, `every import format was used: ${JSON.stringify(formats)}`);
}
