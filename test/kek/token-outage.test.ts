/**
 * A daemon whose root KEK is in a real SoftHSM2 token, the token taken away
 * while clients are connected (its directory moved away and the module
 * finalized behind the provider's back, so the provider's reconnect finds no
 * token): what needs the token fails with CRYPTOD_ERR_KEK_UNAVAILABLE over
 * the wire, everything else goes on, the connection survives, and the first
 * request after the token is back succeeds without a restart.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openManagedKeys, type OpenedManagedKeys } from '../../src/daemon/managed-keys.js';
import { KekUnavailableError } from '../../src/protocol/errors.js';
import { pkcs11Module } from '../../src/kek/pkcs11/token.js';
import { createSoftToken, softhsmMissing, SOFTHSM_MODULE, type SoftToken } from '../helpers/softhsm.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';

const missing = softhsmMissing();

function finalizeModuleBehindProvidersBack(): void {
  const lib = new (pkcs11Module().PKCS11)();
  lib.load(SOFTHSM_MODULE);
  try {
    lib.C_Initialize();
  } catch {
    // initialised by the provider already
  }
  lib.C_Finalize();
}

describe('token outage under a running daemon', { skip: missing }, () => {
  let token: SoftToken;
  let dataDir: string;
  let keys: OpenedManagedKeys;
  let d: TestDaemon;
  before(async () => {
    token = createSoftToken();
    token.use();
    dataDir = mkdtempSync(join(tmpdir(), 'cryptod-outage-'));
    keys = await openManagedKeys({
      dataDir, refreshIntervalMs: 0, root: 'hsm', env: { OUTAGE_PIN: token.pin },
      providers: { hsm: { type: 'pkcs11', module: SOFTHSM_MODULE, token: token.label, pin: 'env:OUTAGE_PIN', sessions: 2, retryMs: 0 } },
    });
    d = await startTestDaemon({ keys });
  });
  after(async () => {
    await d?.stop();
    await keys?.close();
    token?.remove();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('typed errors while the token is away, the rest served, recovery when it is back', async () => {
    const c = await d.connect('outage');
    await c.keys.create('orders', { type: 'aes256-gcm', gracePeriod: '30d' });
    const ct = await c.encrypt('orders', Buffer.from('before the outage'));
    assert.match(keys.kek.id, /^pkcs11:/);

    token.hide();
    finalizeModuleBehindProvidersBack();
    for (let i = 0; i < 3; i++) {
      await assert.rejects(c.keys.rotate('orders'), (err: unknown) => err instanceof KekUnavailableError && ['not-present', 'device'].includes(String(err.detail?.reason)) && !err.message.includes(token.pin));
      await assert.rejects(c.keys.create(`new-${i}`, { type: 'hmac-sha256' }), KekUnavailableError);
    }
    // Keys already loaded need no token: the connection and the other operations go on.
    assert.deepEqual(Buffer.from(await c.decrypt('orders', ct)), Buffer.from('before the outage'));
    const during = await c.encrypt('orders', Buffer.from('during'));
    assert.equal((await c.keys.describe('orders')).name, 'orders');

    token.restore();
    assert.equal(await c.keys.rotate('orders'), 2);
    await c.keys.create('after', { type: 'hmac-sha256' });
    assert.deepEqual(Buffer.from(await c.decrypt('orders', during)), Buffer.from('during'));
    const r = await c.kekRewrapAll();
    assert.equal(r.remaining, 0);
    assert.equal(r.root, keys.kek.id);
  });
});
