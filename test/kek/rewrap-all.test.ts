/**
 * rewrapBatch (src/keys/rewrap-all.ts) on a real keystore and a real
 * SoftHSM2 token: batches bounded by `limit`, a version whose blob does not
 * unwrap reported and passed over (never stopping the others), material
 * unchanged, and the limit checked at the edge.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openManagedKeys } from '../../src/daemon/managed-keys.js';
import { rewrapBatch } from '../../src/keys/rewrap-all.js';
import { InvalidArgumentError } from '../../src/protocol/errors.js';
import { keyVersionAad } from '../../src/kek/provider.js';
import { createSoftToken, softhsmMissing, SOFTHSM_MODULE, type SoftToken } from '../helpers/softhsm.js';

const missing = softhsmMissing();

describe('rewrapBatch', { skip: missing }, () => {
  let token: SoftToken;
  let dataDir: string;
  before(() => {
    token = createSoftToken();
    token.use();
    dataDir = mkdtempSync(join(tmpdir(), 'cryptod-rewrap-'));
  });
  after(() => {
    token?.remove();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const open = (root: 'local' | 'hsm') => openManagedKeys({
    dataDir, refreshIntervalMs: 0, root, env: { REWRAP_PIN: token.pin },
    providers: { hsm: { type: 'pkcs11', module: SOFTHSM_MODULE, token: token.label, pin: 'env:REWRAP_PIN', sessions: 2, retryMs: 0 } },
  });

  test('bounded batches, a damaged version reported and passed over, material unchanged', async () => {
    let keys = await open('local');
    const originals = new Map<string, Buffer>();
    try {
      for (const name of ['a', 'b', 'c']) {
        await keys.manager.create(name, { type: 'aes256-gcm' });
        await keys.manager.rotate(name);
      }
      // Damage b v1: flip a byte of its blob.
      await keys.store.transaction(async (tx) => {
        const v = (await tx.getVersion('b', 1))!;
        const w = Buffer.from(v.wrapped!);
        w[w.length - 1]! ^= 1;
        await tx.putVersion({ ...v, wrapped: w });
      });
      for (const name of ['a', 'c']) {
        for (const version of [1, 2]) {
          const v = (await keys.store.read((r) => r.getVersion(name, version)))!;
          originals.set(`${name}/${version}`, await keys.kek.unwrap(v.wrapped!, keyVersionAad(name, version)));
        }
      }
    } finally {
      await keys.close();
    }
    keys = await open('hsm');
    try {
      await assert.rejects(rewrapBatch(keys.store, keys.kek, { limit: 0 }), InvalidArgumentError);
      await assert.rejects(rewrapBatch(keys.store, keys.kek, { limit: 1001 }), InvalidArgumentError);
      const first = await rewrapBatch(keys.store, keys.kek, { limit: 2 });
      assert.equal(first.total, 6);
      assert.equal(first.rewrapped, 2);
      assert.equal(first.remaining, 4);
      const second = await rewrapBatch(keys.store, keys.kek, { limit: 100 });
      assert.equal(second.rewrapped, 3);
      assert.equal(second.remaining, 1);
      assert.deepEqual(second.failed.map((f) => [f.key, f.version, f.code]), [['b', 1, 'CRYPTOD_ERR_DECRYPT_FAILED']]);
      const third = await rewrapBatch(keys.store, keys.kek);
      assert.equal(third.rewrapped, 0);
      assert.equal(third.remaining, 1);
      for (const [id, bytes] of originals) {
        const [name, version] = [id.split('/')[0]!, Number(id.split('/')[1])];
        const v = (await keys.store.read((r) => r.getVersion(name, version)))!;
        assert.equal(v.kekId, keys.kek.id);
        assert.equal(v.wrapped![0], 0x02);
        assert.deepEqual(await keys.kek.unwrap(v.wrapped!, keyVersionAad(name, version)), bytes);
      }
    } finally {
      await keys.close();
    }
  });
});
