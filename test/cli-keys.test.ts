/**
 * The managed-key CLI against a real daemon: `cryptod key …`, the data
 * commands (stdin → stdout binary, --in/--out, --aad), verify exit codes,
 * describe/list --json, usage errors.
 */
import assert from 'node:assert/strict';
import { createPublicKey, randomBytes, verify } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { splitManagedSignature } from '../src/client/managed.js';
import { runCli, startCliDaemon, type CliDaemon } from './helpers/cli-daemon.js';

let d: CliDaemon;

interface Run {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/** `cryptod ARGS…` against the test daemon, with `input` on stdin (closed either way). */
async function cli(args: readonly string[], input?: Uint8Array): Promise<Run> {
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

test('create → encrypt stdin→stdout → decrypt gives the plaintext back; --aad is bound', async () => {
  assert.match((await ok(['key', 'create', 'orders', '--type', 'aes256-gcm', '--rotation-period', '30d'])).toString(), /created key 'orders' \(aes256-gcm\), version 1/);
  const pt = Buffer.concat([randomBytes(1000), Buffer.from([0, 0xff, 0x0a, 0x0d])]);
  const ct = await ok(['encrypt', '--key', 'orders'], pt);
  assert.ok(ct.length > pt.length && !ct.includes(pt));
  assert.deepEqual(await ok(['decrypt', '--key', 'orders'], ct), pt);

  const withAad = await ok(['encrypt', '--key', 'orders', '--aad', 'order-42'], pt);
  assert.deepEqual(await ok(['decrypt', '--key', 'orders', '--aad', 'order-42'], withAad), pt);
  const wrong = await cli(['decrypt', '--key', 'orders', '--aad', 'order-43'], withAad);
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /^cryptod: CRYPTOD_ERR_DECRYPT_FAILED: /);
  assert.equal(wrong.stdout.length, 0);
});

test('--in and --out files; a plaintext written with --out is mode 600', async () => {
  const pt = randomBytes(5000);
  writeFileSync(join(d.dir, 'pt.bin'), pt);
  await ok(['encrypt', '-k', 'orders', '--in', join(d.dir, 'pt.bin'), '--out', join(d.dir, 'ct.bin')]);
  await ok(['decrypt', '-k', 'orders', '--in', join(d.dir, 'ct.bin'), '-o', join(d.dir, 'back.bin')]);
  assert.deepEqual(readFileSync(join(d.dir, 'back.bin')), pt);
  assert.equal(statSync(join(d.dir, 'back.bin')).mode & 0o777, 0o600);
});

test('sign/verify and mac/verify-mac: exit 0 when valid, 1 when not', async () => {
  await ok(['key', 'create', 'signer', '--type', 'ed25519']);
  const msg = join(d.dir, 'msg.txt');
  writeFileSync(msg, 'pay 10 to bob');
  await ok(['sign', '--key', 'signer', '--in', msg, '--out', join(d.dir, 'msg.sig')]);
  const [good, bad] = await Promise.all([
    cli(['verify', '--key', 'signer', '--signature', join(d.dir, 'msg.sig'), '--in', msg]),
    cli(['verify', '--key', 'signer', '--signature', join(d.dir, 'msg.sig')], Buffer.from('pay 99 to bob')),
  ]);
  assert.equal(good.code, 0, good.stderr);
  assert.equal(good.stdout.toString(), 'valid\n');
  assert.equal(bad.code, 1, bad.stderr);
  assert.equal(bad.stdout.toString(), 'invalid\n');

  await ok(['key', 'create', 'tags', '--type', 'hmac-sha256', '--rotation-period', '1h', '--grace-period', '10m', '--prefetch-period', '5m']);
  writeFileSync(join(d.dir, 'msg.mac'), await ok(['mac', '--key', 'tags'], Buffer.from('session-1')));
  assert.equal((await cli(['verify-mac', '--key', 'tags', '--signature', join(d.dir, 'msg.mac')], Buffer.from('session-1'))).code, 0);
  assert.equal((await cli(['verify-mac', '--key', 'tags', '--signature', join(d.dir, 'msg.mac')], Buffer.from('session-2'))).code, 1);
});

test('key public prints the signing key as PEM, DER or JWK; outside verifiers check the signature under the header', async () => {
  const msg = join(d.dir, 'msg.txt'); // from the sign/verify test
  const sig = readFileSync(join(d.dir, 'msg.sig'));
  const pem = (await ok(['key', 'public', 'signer'])).toString();
  assert.match(pem, /^-----BEGIN PUBLIC KEY-----\n[A-Za-z0-9+/=\n]+-----END PUBLIC KEY-----\n$/);
  const der = await ok(['key', 'public', 'signer', '--format', 'der', '--version', '1']);
  const jwk = JSON.parse((await ok(['key', 'public', 'signer', '--format', 'jwk'])).toString()) as Record<string, string>;
  assert.equal(jwk.kid, 'signer:1');
  assert.equal(jwk.d, undefined);
  const fromPem = createPublicKey(pem);
  assert.deepEqual(fromPem.export({ format: 'der', type: 'spki' }), der);
  assert.deepEqual(createPublicKey({ key: jwk, format: 'jwk' }).export({ format: 'der', type: 'spki' }), der);
  const plain = splitManagedSignature(sig);
  assert.deepEqual([plain.key, plain.version, plain.type], ['signer', 1, 'ed25519']);
  assert.equal(verify(null, readFileSync(msg), fromPem, plain.signature), true);
  assert.equal(verify(null, Buffer.from('pay 99 to bob'), fromPem, plain.signature), false);

  const sym = await cli(['key', 'public', 'orders']);
  assert.equal(sym.code, 1);
  assert.match(sym.stderr, /CRYPTOD_ERR_INVALID_KEY: key 'orders' \(aes256-gcm\) has no public key/);
  assert.equal((await cli(['key', 'public', 'signer', '--format', 'ssh'])).code, 2);
});

test('describe --json and list: name, type, current version, versions with state, notBefore, notAfter', async () => {
  const desc = JSON.parse((await ok(['key', 'describe', 'tags', '--json'])).toString()) as Record<string, unknown>;
  assert.equal(desc.name, 'tags');
  assert.equal(desc.type, 'hmac-sha256');
  assert.equal(desc.currentVersion, 1);
  const versions = desc.versions as Array<Record<string, unknown>>;
  assert.equal(versions.length, 1);
  assert.equal(versions[0]!.state, 'active');
  assert.ok(!Number.isNaN(Date.parse(String(versions[0]!.notBefore))));
  // A rotation period gives the version an end: notAfter = notBefore + 1h.
  assert.equal(Date.parse(String(versions[0]!.notAfter)) - Date.parse(String(versions[0]!.notBefore)), 3_600_000);
  assert.equal((desc.policy as Record<string, unknown>).rotationPeriod, '1h');

  const [textOut, listOut, tableOut] = await Promise.all([ok(['key', 'describe', 'tags']), ok(['key', 'list', '--json']), ok(['key', 'list'])]);
  const text = textOut.toString();
  assert.match(text, /^name: +tags$/m);
  assert.match(text, /^VERSION +STATE +NOT BEFORE +NOT AFTER/m);

  const list = JSON.parse(listOut.toString()) as Array<Record<string, unknown>>;
  assert.deepEqual(list.map((k) => k.name), ['orders', 'signer', 'tags']);
  for (const k of list) assert.deepEqual(Object.keys(k).sort(), ['currentVersion', 'disabled', 'name', 'origin', 'type', 'versions']);
  const table = tableOut.toString();
  assert.match(table, /^NAME +TYPE +CURRENT +VERSIONS +STATE +ORIGIN$/m);
  assert.match(table, /^signer +ed25519 +1 +1 +enabled +api$/m);
});

test('rotate, rewrap, set-policy --min-decryption-version, trim, destroy', async () => {
  const pt = Buffer.from('rotate me');
  const v1 = await ok(['encrypt', '--key', 'orders'], pt);
  assert.match((await ok(['key', 'rotate', 'orders'])).toString(), /version 2 is current/);
  const v2 = await ok(['rewrap', '--key', 'orders'], v1);
  assert.notDeepEqual(v2, v1);
  assert.deepEqual(await ok(['decrypt', '--key', 'orders'], v2), pt);

  await ok(['key', 'set-policy', 'orders', '--min-decryption-version', '2']);
  const old = await cli(['decrypt', '--key', 'orders'], v1);
  assert.equal(old.code, 1);
  assert.match(old.stderr, /CRYPTOD_ERR_KEY_VERSION/);
  assert.deepEqual(await ok(['decrypt', '--key', 'orders'], v2), pt);

  assert.match((await ok(['key', 'trim', 'orders', '--below', '2'])).toString(), /destroyed version 1 of key 'orders'/);
  const desc = JSON.parse((await ok(['key', 'describe', 'orders', '--json'])).toString()) as { versions: Array<{ version: number; state: string }> };
  assert.equal(desc.versions.find((v) => v.version === 1)?.state, 'destroyed');

  await ok(['key', 'destroy', 'signer']);
  const gone = await cli(['sign', '--key', 'signer'], Buffer.from('x'));
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /^cryptod: CRYPTOD_ERR_/);
});

test('import brings a key from a file', async () => {
  const material = randomBytes(32);
  writeFileSync(join(d.dir, 'k.bin'), material, { mode: 0o600 });
  await ok(['key', 'import', 'byok', '--type', 'aes256-gcm', '--material-file', join(d.dir, 'k.bin')]);
  const pt = Buffer.from('bring your own key');
  assert.deepEqual(await ok(['decrypt', '--key', 'byok'], await ok(['encrypt', '--key', 'byok'], pt)), pt);
});

test('mistakes: usage errors exit 2, daemon refusals exit 1 with their code', async () => {
  // Independent commands: run them side by side to keep the test fast.
  const [noKey, noType, badType, badDuration, unknownSub, missing, noConfig, ...helps] = await Promise.all([
    cli(['encrypt'], Buffer.from('x')),
    cli(['key', 'create', 'x']),
    cli(['key', 'create', 'x', '--type', 'aes128-ecb']),
    cli(['key', 'create', 'x', '--type', 'aes256-gcm', '--rotation-period', '3 weeks']),
    cli(['key', 'frobnicate']),
    cli(['key', 'describe', 'nope']),
    cli(['reload']),
    ...['key', 'verify'].map((c) => cli([c, '--help'])),
  ]);
  assert.equal(noKey!.code, 2);
  assert.match(noKey!.stderr, /missing required option '--key NAME'/);
  assert.equal(noType!.code, 2);
  assert.match(noType!.stderr, /missing required option '--type'/);
  assert.equal(badType!.code, 1);
  assert.match(badType!.stderr, /CRYPTOD_ERR_INVALID_ARGUMENT: .*type/);
  assert.equal(badDuration!.code, 1);
  assert.match(badDuration!.stderr, /rotationPeriod/);
  assert.equal(unknownSub!.code, 2);
  assert.equal(missing!.code, 1);
  assert.match(missing!.stderr, /CRYPTOD_ERR_NOT_FOUND/);
  assert.equal(noConfig!.code, 1);
  assert.match(noConfig!.stderr, /--config/);
  for (const h of helps) {
    assert.equal(h.code, 0);
    assert.match(h.stdout.toString(), /^Usage: cryptod /);
  }
});

test('a negative duration is rejected as negative, not reported as a missing value', async () => {
  await ok(['key', 'create', 'negative', '--type', 'aes256-gcm']);
  const [long, joined, setPolicy] = await Promise.all([
    cli(['key', 'create', 'y', '--type', 'aes256-gcm', '--rotation-period', '-5d']),
    cli(['key', 'create', 'y', '--type', 'aes256-gcm', '--grace-period=-5d']),
    cli(['key', 'set-policy', 'negative', '--prefetch-period', '-1h']),
  ]);
  for (const [r, field] of [[long, 'rotationPeriod'], [joined, 'gracePeriod'], [setPolicy, 'prefetchPeriod']] as const) {
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`^cryptod: CRYPTOD_ERR_INVALID_ARGUMENT: .*${field}.*durations cannot be negative, got "-\\d+[dh]"`));
    assert.doesNotMatch(r.stderr, /needs a value/);
  }
  // A flag really given no value still says so.
  const last = await cli(['key', 'create', 'y', '--type', 'aes256-gcm', '--rotation-period']);
  assert.equal(last.code, 2);
  assert.match(last.stderr, /option '--rotation-period' needs a value/);
});

test('the reserved key names are refused by `key create` with the same rule as the configuration file', async () => {
  for (const name of ['__proto__', 'constructor', 'prototype']) {
    const r = await cli(['key', 'create', name, '--type', 'aes256-gcm']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`CRYPTOD_ERR_INVALID_ARGUMENT: .*'${name}' is reserved and cannot name a key \\(reserved: __proto__, constructor, prototype\\); choose another name`));
  }
  const list = JSON.parse((await ok(['key', 'list', '--json'])).toString()) as Array<{ name: string }>;
  assert.deepEqual(list.filter((k) => ['__proto__', 'constructor', 'prototype'].includes(k.name)), []);
});

test('describe reports the reserved encryption budget under its own name, not as a count of encryptions', async () => {
  await ok(['key', 'create', 'budgeted', '--type', 'aes256-gcm']);
  await ok(['encrypt', '--key', 'budgeted'], Buffer.from('one'));
  const desc = JSON.parse((await ok(['key', 'describe', 'budgeted', '--json'])).toString()) as { versions: Array<Record<string, unknown>> };
  const v1 = desc.versions[0]!;
  assert.equal('encryptions' in v1, false, 'the ambiguous field name is gone');
  // One block reserved for one encryption: a reservation, at least the one encryption made.
  assert.equal(typeof v1.encryptionsReserved, 'number');
  assert.ok((v1.encryptionsReserved as number) >= 1);
});
