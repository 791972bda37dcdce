/**
 * Reloading the configuration of a running `cryptod serve --config FILE`:
 * SIGHUP and `cryptod reload` add a key, keep one, change a policy, disable
 * a key no longer declared (never destroy it); an invalid file is refused
 * with its line and field and the running configuration stays; a client
 * encrypting in a loop while reloads happen sees zero errors.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { connect, type Client } from '../src/client/client.js';
import { CryptodError } from '../src/protocol/errors.js';
import { runCli, startCliDaemon, type CliDaemon } from './helpers/cli-daemon.js';

let d: CliDaemon;
let file: string;
let client: Client;

const ORDERS = '  orders:   { type: aes256-gcm, rotationPeriod: 30d }';
const SESSIONS = '  sessions: { type: hmac-sha256, rotationPeriod: 1h, gracePeriod: 10m, prefetchPeriod: 5m }';

function writeConfig(...keys: string[]): void {
  writeFileSync(file, `keys:\n${keys.join('\n')}\n`);
}

/** Log lines with this message so far. */
function logged(msg: string): Array<Record<string, unknown>> {
  return d
    .stderr()
    .toString()
    .split('\n')
    .filter((l) => l.includes(`"msg":"${msg}"`))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function until(pred: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; log:\n${d.stderr().toString()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function hangup(): Promise<Record<string, unknown>> {
  const n = logged('configuration reloaded').length + logged('configuration reload refused; the running configuration stays').length;
  d.proc.kill('SIGHUP');
  await until(() => logged('configuration reloaded').length + logged('configuration reload refused; the running configuration stays').length > n, 'the SIGHUP reload');
  return logged('configuration reloaded').at(-1) ?? {};
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof CryptodError, String(err));
    return err.code;
  }
  return 'ok';
}

before(async () => {
  d = await startCliDaemon((dir) => {
    file = join(dir, 'cryptod.yaml');
    writeFileSync(file, `keys:\n${ORDERS}\n${SESSIONS}\n`);
    return ['--config', file];
  });
  client = await connect({ socket: d.socketPath, clientName: 'reload-test' });
});

after(async () => {
  await client?.close();
  assert.equal(await d?.stop(), 0);
});

test('SIGHUP: a new key is created, a kept key is untouched, an undeclared key is disabled (not destroyed)', async () => {
  const pt = Buffer.from('order #1');
  const ct = await client.encrypt('orders', pt);
  const tag = await client.mac('sessions', Buffer.from('session-1'));

  writeConfig(ORDERS, '  invoices: { type: ed25519 }');
  const r = await hangup();
  assert.deepEqual(r.created, ['invoices']);
  assert.deepEqual(r.disabled, ['sessions']);
  assert.deepEqual(r.unchanged, ['orders']);

  // The kept key decrypts what it encrypted before the reload.
  assert.deepEqual(Buffer.from(await client.decrypt('orders', ct)), pt);
  // The new key works.
  const sig = await client.sign('invoices', Buffer.from('inv'));
  assert.equal(await client.verify('invoices', Buffer.from('inv'), sig), true);
  // The disabled key refuses use both ways — its old MACs cannot be checked
  // until it is declared again — but its versions are kept.
  assert.equal(await codeOf(client.mac('sessions', Buffer.from('x'))), 'CRYPTOD_ERR_KEY_DISABLED');
  assert.equal(await codeOf(client.verifyMac('sessions', Buffer.from('session-1'), tag)), 'CRYPTOD_ERR_KEY_DISABLED');
  const desc = await client.keys.describe('sessions');
  assert.equal(desc.disabled, true);
  assert.ok(desc.versions.length >= 1 && desc.versions.every((v) => v.state !== 'destroyed'));

  // Declared again: enabled with its old versions, so its old MAC verifies.
  writeConfig(ORDERS, '  invoices: { type: ed25519 }', SESSIONS);
  const r2 = await hangup();
  assert.deepEqual(r2.enabled, ['sessions']);
  assert.equal(await client.verifyMac('sessions', Buffer.from('session-1'), tag), true);
});

test('cryptod reload: a changed policy is applied and the summary comes back', async () => {
  writeConfig('  orders:   { type: aes256-gcm, rotationPeriod: 7d }', '  invoices: { type: ed25519 }', SESSIONS);
  const r = await runCli(['reload', '--json', '--socket', d.socketPath]);
  assert.equal(r.code, 0, r.stderr.toString());
  const s = JSON.parse(r.stdout.toString()) as Record<string, unknown>;
  assert.deepEqual(s.updated, ['orders']);
  assert.deepEqual(s.restartNeeded, []);
  assert.equal((await client.keys.describe('orders')).policy.rotationPeriod, '7d');
});

test('an invalid file is refused as a whole with line and field; the running configuration stays', async () => {
  // Line 3 is bad; line 2 (a new key) must not be created either.
  writeFileSync(file, `keys:\n  extra: { type: hmac-sha256 }\n  orders: { type: aes256-gcm, rotationPeriod: 7 days }\n`);
  const r = await runCli(['reload', '--socket', d.socketPath]);
  const err = r.stderr.toString();
  assert.equal(r.code, 1, err);
  assert.match(err, /CRYPTOD_ERR_CONFIG/);
  assert.ok(err.includes(`\n${file}:3:47: keys.orders.rotationPeriod: expected rotationPeriod as a duration`), err);
  assert.equal(await codeOf(client.keys.describe('extra')), 'CRYPTOD_ERR_NOT_FOUND');
  assert.equal((await client.keys.describe('orders')).policy.rotationPeriod, '7d');
  assert.ok(logged('configuration reload refused; the running configuration stays').length >= 1);

  // The same through SIGHUP: logged, nothing applied.
  writeFileSync(file, 'keys:\n  orders: { type: aes256-gcm, rotatoinPeriod: 1d }\n');
  const before = logged('configuration reloaded').length;
  await hangup();
  assert.equal(logged('configuration reloaded').length, before);
  const refused = logged('configuration reload refused; the running configuration stays').at(-1)!;
  assert.match(String((refused.problems as string[])[0]), /:2:31: keys\.orders\.rotatoinPeriod: unknown field/);

  // A change the key manager forbids (a key's type) is refused the same way.
  writeConfig('  orders:   { type: chacha20-poly1305, rotationPeriod: 7d }', '  invoices: { type: ed25519 }', SESSIONS);
  const r3 = await runCli(['reload', '--socket', d.socketPath]);
  assert.equal(r3.code, 1);
  assert.match(r3.stderr.toString(), new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:2:\\d+: keys\\.orders\\.type: `));
  assert.equal((await client.keys.describe('orders')).type, 'aes256-gcm');
});

test('settings other than keys are reported as needing a restart', async () => {
  writeFileSync(file, `limits: { maxFrame: 1048576 }\nkeys:\n${ORDERS}\n  invoices: { type: ed25519 }\n${SESSIONS}\n`);
  const r = await runCli(['reload', '--json', '--socket', d.socketPath]);
  assert.equal(r.code, 0, r.stderr.toString());
  assert.deepEqual((JSON.parse(r.stdout.toString()) as { restartNeeded: string[] }).restartNeeded, ['limits']);
  assert.ok(logged('configuration settings changed that only take effect at restart; the running values stay until then').length >= 1);
});

test('readers are unaffected: a client encrypting in a loop through reloads sees zero errors', async () => {
  const reader = await connect({ socket: d.socketPath, clientName: 'reader' });
  let stop = false;
  let ops = 0;
  const errors: unknown[] = [];
  const loop = async (): Promise<void> => {
    while (!stop) {
      try {
        const pt = Buffer.from(`m${ops}`);
        const ct = await reader.encrypt('orders', pt, { aad: Buffer.from('ctx') });
        const back = await reader.decrypt('orders', ct, { aad: Buffer.from('ctx') });
        if (!Buffer.from(back).equals(pt)) errors.push(new Error('round trip mismatch'));
        ops++;
      } catch (err) {
        errors.push(err);
      }
    }
  };
  const loops = [loop(), loop(), loop(), loop()];
  try {
    for (let i = 0; i < 6; i++) {
      // Alternate adding and removing a key and changing the reader's key's policy.
      const period = i % 2 === 0 ? '30d' : '7d';
      const keys = [`  orders:   { type: aes256-gcm, rotationPeriod: ${period} }`, '  invoices: { type: ed25519 }', SESSIONS];
      if (i % 2 === 0) keys.push(`  churn: { type: hmac-sha256 }`);
      writeConfig(...keys);
      if (i % 2 === 0) await hangup();
      else await client.reload();
    }
  } finally {
    stop = true;
    await Promise.all(loops);
    await reader.close();
  }
  assert.deepEqual(errors, []);
  assert.ok(ops > 50, `only ${ops} round trips`);
});
