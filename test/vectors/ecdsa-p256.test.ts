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
import { runEcdsaP1363 } from './ecdsa-p1363.js';

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
  await runEcdsaP1363(c, { name: 'ecdsa_secp256r1_sha256_p1363', namedCurve: 'P-256', hash: 'SHA-256', expected: { valid: 173, invalid: 89, acceptable: 0 } });
});
