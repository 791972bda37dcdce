/**
 * `cryptod key backup|restore` between two real daemons started as an
 * operator starts them, and the progress line of long commands (drawn on a
 * terminal only).
 */
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { progress } from '../src/cli/progress.js';
import { runCli, startCliDaemon, type CliDaemon } from './helpers/cli-daemon.js';

let sender: CliDaemon;
let receiver: CliDaemon;

async function cli(d: CliDaemon, args: readonly string[], input?: Uint8Array): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  const r = await runCli(args, { CRYPTOD_SOCKET: d.socketPath }, input);
  return { ...r, stderr: r.stderr.toString() };
}

async function ok(d: CliDaemon, args: readonly string[], input?: Uint8Array): Promise<Buffer> {
  const r = await cli(d, args, input);
  assert.equal(r.code, 0, `cryptod ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

before(async () => {
  [sender, receiver] = await Promise.all([startCliDaemon(), startCliDaemon()]);
});
after(async () => {
  assert.equal(await sender?.stop(), 0);
  assert.equal(await receiver?.stop(), 0);
});

test('backup of several keys to a directory, restore on the other daemon, old ciphertexts decrypt there', async () => {
  await ok(receiver, ['key', 'create', 'transfer', '--type', 'x25519']);
  const transferPem = join(sender.dir, 'transfer.pem');
  writeFileSync(transferPem, await ok(receiver, ['key', 'public', 'transfer']));
  await ok(sender, ['key', 'create', 'signer', '--type', 'ed25519']);
  const signerJwk = join(receiver.dir, 'signer.jwk');
  writeFileSync(signerJwk, await ok(sender, ['key', 'public', 'signer', '--format', 'jwk']));
  await ok(sender, ['key', 'create', 'k1', '--type', 'aes256-gcm', '--allow-backup']);
  await ok(sender, ['key', 'create', 'k2', '--type', 'hmac-sha256', '--allow-backup']);
  const ct = await ok(sender, ['encrypt', '--key', 'k1'], Buffer.from('moved'));
  const mac = await ok(sender, ['mac', '--key', 'k2'], Buffer.from('m'));

  const out = join(sender.dir, 'backups');
  mkdirSync(out, { mode: 0o700 });
  const r = await cli(sender, ['key', 'backup', 'k1', 'k2', '--recipient', transferPem, '--signing-key', 'signer', '--out', out]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '', 'piped: no progress line');
  assert.match(r.stdout.toString(), /backed up key 'k1' \(1 version\), signed by 'signer' version 1\nbacked up key 'k2'/);
  assert.deepEqual(readdirSync(out).sort(), ['k1.cmbk', 'k2.cmbk']);

  const files = ['k1', 'k2'].map((n) => join(out, `${n}.cmbk`));
  const restored = await cli(receiver, ['key', 'restore', ...files, '--trust', signerJwk]);
  assert.equal(restored.code, 0, restored.stderr);
  assert.equal(restored.stderr, '');
  assert.match(restored.stdout.toString(), /restored key 'k1' \(aes256-gcm, 1 version\), signed by 'signer:1'/);
  assert.equal((await ok(receiver, ['decrypt', '--key', 'k1'], ct)).toString(), 'moved');
  writeFileSync(join(receiver.dir, 'mac.bin'), mac);
  assert.equal((await cli(receiver, ['verify-mac', '--key', 'k2', '--signature', join(receiver.dir, 'mac.bin')], Buffer.from('m'))).code, 0);

  const again = await cli(receiver, ['key', 'restore', files[0]!, '--trust', signerJwk]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /^cryptod: CRYPTOD_ERR_INVALID_ARGUMENT: .*already exists.*--force/);
  assert.match((await ok(receiver, ['key', 'restore', files[0]!, '--trust', signerJwk, '--force'])).toString(), /replaced key 'k1'/);
});

test('a key created without --allow-backup is refused; usage errors name what is missing', async () => {
  await ok(sender, ['key', 'create', 'stays', '--type', 'aes256-gcm']);
  const transferPem = join(sender.dir, 'transfer.pem');
  const r = await cli(sender, ['key', 'backup', 'stays', '--recipient', transferPem, '--signing-key', 'signer', '--out', join(sender.dir, 'stays.cmbk')]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /CRYPTOD_ERR_NOT_EXTRACTABLE: .*allowBackup/);
  const noRecipient = await cli(sender, ['key', 'backup', 'stays', '--signing-key', 'signer']);
  assert.equal(noRecipient.code, 2);
  assert.match(noRecipient.stderr, /--recipient/);
  const several = await cli(sender, ['key', 'backup', 'a', 'b', '--recipient', transferPem, '--signing-key', 'signer']);
  assert.equal(several.code, 2);
  assert.match(several.stderr, /--out DIR/);
  const badKey = await cli(sender, ['key', 'backup', 'stays', '--recipient', join(sender.dir, 'backups', 'k1.cmbk'), '--signing-key', 'signer', '--out', join(sender.dir, 'x')]);
  assert.equal(badKey.code, 1);
  assert.match(badKey.stderr, /is not a public key/);
});

test('progress is drawn on a terminal, in place, and erased when done', () => {
  const written: string[] = [];
  const tty = { isTTY: true, columns: 40, write: (s: string) => written.push(s) > 0 };
  const p = progress('backing up', 2, tty);
  p.step('orders');
  p.clear();
  p.step('a-very-long-key-name-that-does-not-fit-on-the-line');
  p.done();
  p.done();
  assert.deepEqual(written.slice(0, 1), ['\rbacking up 1/2: orders\x1b[K']);
  assert.equal(written[1], '\r\x1b[K', 'clear() erases the line for other output');
  assert.ok(written[2]!.length <= 1 + 39 + 3 && written[2]!.includes('2/2') && written[2]!.includes('…'), JSON.stringify(written[2]));
  assert.deepEqual(written.slice(3), ['\r\x1b[K'], 'done() erases once');
});

test('progress stays quiet when the stream is not a terminal', () => {
  const written: string[] = [];
  const p = progress('restoring', 3, { isTTY: false, write: (s: string) => written.push(s) > 0 });
  p.step('a');
  p.done();
  assert.deepEqual(written, []);
});
