/**
 * The data-key CLI against a real daemon: `cryptod datakey generate|rewrap`
 * and `cryptod encrypt|decrypt --wrapped-key FILE`, across a KEK rotation.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { parseWrappedKey } from '../src/protocol/datakey-format.js';
import { runCli, startCliDaemon, type CliDaemon } from './helpers/cli-daemon.js';

let d: CliDaemon;

async function cli(args: readonly string[], input?: Uint8Array): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  const r = await runCli(args, { CRYPTOD_SOCKET: d.socketPath }, input);
  return { ...r, stderr: r.stderr.toString() };
}

async function ok(args: readonly string[], input?: Uint8Array): Promise<Buffer> {
  const r = await cli(args, input);
  assert.equal(r.code, 0, `cryptod ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

before(async () => {
  d = await startCliDaemon();
});
after(async () => {
  assert.equal(await d?.stop(), 0);
});

test('datakey generate → encrypt/decrypt --wrapped-key → key rotate → datakey rewrap', async () => {
  await ok(['key', 'create', 'tenants', '--type', 'aes256-kwp']);
  const wk = join(d.dir, 'tenant-1.key');
  await ok(['datakey', 'generate', '--kek', 'tenants', '--context', 'tenant 1', '--out', wk]);
  assert.equal(statSync(wk).mode & 0o777, 0o600);
  const pt = randomBytes(3000);
  const ct = await ok(['encrypt', '--wrapped-key', wk, '--aad', 'row 9'], pt);
  assert.deepEqual(await ok(['decrypt', '--wrapped-key', wk, '--aad', 'row 9'], ct), pt);
  const wrong = await cli(['decrypt', '--wrapped-key', wk], ct);
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /^cryptod: CRYPTOD_ERR_DECRYPT_FAILED: /);

  await ok(['key', 'rotate', 'tenants']);
  const wk2 = join(d.dir, 'tenant-1.v2.key');
  await ok(['datakey', 'rewrap', '--wrapped-key', wk, '--out', wk2]);
  const { readFileSync } = await import('node:fs');
  assert.equal(parseWrappedKey(readFileSync(wk2)).header.kekVersion, 2);
  assert.deepEqual(await ok(['decrypt', '--wrapped-key', wk2, '--aad', 'row 9'], ct), pt, 'the same data key under version 2');
  const stdoutKey = await ok(['datakey', 'generate', '--kek', 'tenants', '--length', '16']);
  assert.equal(parseWrappedKey(stdoutKey).header.length, 16);
});

test('usage errors name the flag; a wrong KEK type is a typed error', async () => {
  const missing = await cli(['datakey', 'generate']);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /--kek NAME/);
  const both = await cli(['encrypt', '--key', 'x', '--wrapped-key', '/nonexistent'], Buffer.from('x'));
  assert.equal(both.code, 2);
  assert.match(both.stderr, /either --key NAME .* or --wrapped-key FILE/);
  const badLength = await cli(['datakey', 'generate', '--kek', 'tenants', '--length', '20']);
  assert.equal(badLength.code, 2);
  await ok(['key', 'create', 'plain-aes', '--type', 'aes256-gcm']);
  const notKek = await cli(['datakey', 'generate', '--kek', 'plain-aes']);
  assert.equal(notKek.code, 1);
  assert.match(notKek.stderr, /CRYPTOD_ERR_INVALID_KEY: .*cannot be used to datakey/);
  assert.match((await ok(['datakey', '--help'])).toString(), /cryptod datakey generate --kek NAME/);
});
