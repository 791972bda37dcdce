/**
 * The root KEK in a real SoftHSM2 token, end to end through `cryptod serve`:
 * keys made under `local`, the root moved to the token (`--root-provider
 * hsm`), `kek rewrap-all` interrupted by SIGKILL and run again (every
 * version readable, all under the token's KEK), then the keystore copied
 * with root.key to another directory: refused beside a token that lacks the
 * key, and beside no token at all; no key material in the file.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { connect } from '../../src/client/client.js';
import { createSoftToken, softhsmMissing, SOFTHSM_MODULE, type SoftToken } from '../helpers/softhsm.js';
import { runCli, startCliDaemon, type CliDaemon } from '../helpers/cli-daemon.js';

const missing = softhsmMissing();
const PIN_ENV = 'CRYPTOD_PKCS11_PIN';

function config(dir: string, withHsm: boolean, root?: string): string {
  const file = join(dir, `cryptod-${withHsm ? 'hsm' : 'local'}.yaml`);
  writeFileSync(
    file,
    (withHsm ? `providers:\n  hsm: { type: pkcs11, module: ${SOFTHSM_MODULE}, token: cryptod, pin: env:${PIN_ENV}, retryMs: 0 }\n` : '') +
      (root === undefined ? '' : `root: ${root}\n`),
    { mode: 0o600 },
  );
  return file;
}

function versionsByKek(dataDir: string): Map<string, number> {
  const db = new Database(join(dataDir, 'keystore.sqlite'), { readonly: true, fileMustExist: true });
  try {
    const rows = db.prepare('SELECT kek_id AS kekId, count(*) AS n FROM key_versions WHERE wrapped IS NOT NULL GROUP BY kek_id').all() as { kekId: string; n: number }[];
    return new Map(rows.map((r) => [r.kekId, r.n]));
  } finally {
    db.close();
  }
}

describe('root KEK in a PKCS#11 token', { skip: missing }, () => {
  let token: SoftToken;
  let work: string;
  let dataDir: string;
  const KNOWN = Buffer.alloc(32, 0xa7);
  const KEYS = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot'];
  const ROTATIONS = 5;
  const samples: { key: string; ct: Uint8Array; pt: Buffer }[] = [];

  before(() => {
    token = createSoftToken();
    token.use();
    process.env[PIN_ENV] = token.pin;
    work = mkdtempSync(join(tmpdir(), 'cryptod-root-hsm-'));
    dataDir = join(work, 'data');
  });
  after(() => {
    token?.remove();
    rmSync(work, { recursive: true, force: true });
  });

  const start = (cfg: string, dir = dataDir, extra: string[] = []): Promise<CliDaemon> =>
    startCliDaemon((tmp) => ['--config', cfg, '--data-dir', dir, '--socket', join(tmp, 'run', 'cryptod.sock'), ...extra]);

  test('keys made under local, the root moved to the token, rewrap-all killed and rerun: all readable, all under the token', async () => {
    const cfg = config(work, true);
    // 1. Under local: many versions, one known secret, one ciphertext per version.
    let d = await start(cfg);
    try {
      const c = await connect({ socket: d.socketPath });
      try {
        await c.keys.import('known', { type: 'aes256-gcm', gracePeriod: '30d', material: KNOWN });
        for (const k of KEYS) {
          await c.keys.create(k, { type: 'aes256-gcm', gracePeriod: '30d' });
          for (let v = 1; v <= ROTATIONS; v++) {
            const pt = Buffer.from(`${k} version ${v}`);
            samples.push({ key: k, ct: await c.encrypt(k, pt), pt });
            if (v < ROTATIONS) await c.keys.rotate(k);
          }
        }
      } finally {
        await c.close();
      }
    } finally {
      await d.stop(true);
    }
    const before = versionsByKek(dataDir);
    assert.deepEqual([...before.keys()].map((id) => id.split(':')[0]), ['local']);
    const total = [...before.values()].reduce((a, b) => a + b, 0);
    assert.equal(total, 1 + KEYS.length * ROTATIONS);

    // 2. Root moved to the token: one batch, then a batch killed in flight.
    d = await start(cfg, dataDir, ['--root-provider', 'hsm']);
    let hsmId: string;
    try {
      const c = await connect({ socket: d.socketPath });
      const first = await c.kekRewrapAll(4);
      hsmId = first.root;
      assert.match(hsmId, /^pkcs11:[0-9a-f]{16}$/);
      assert.equal(first.rewrapped, 4);
      assert.equal(first.remaining, total - 4);
      const inFlight = c.kekRewrapAll(10).catch((err: unknown) => err);
      d.proc.kill('SIGKILL');
      const outcome = await inFlight;
      assert.ok(outcome instanceof Error || typeof outcome === 'object');
      await c.close().catch(() => undefined);
    } finally {
      await d.stop(true);
    }
    const mid = versionsByKek(dataDir);
    assert.ok((mid.get(hsmId) ?? 0) >= 4, 'the first batch is kept');

    // 3. Restarted: every version still opens (the daemon starts, which unwraps them all), the rerun finishes.
    d = await start(cfg, dataDir, ['--root-provider', 'hsm']);
    try {
      const run = await runCli(['kek', 'rewrap-all', '--socket', d.socketPath, '--batch', '7', '--json']);
      assert.equal(run.code, 0, run.stderr.toString());
      const summary = JSON.parse(run.stdout.toString()) as { root: string; total: number; remaining: number; failed: unknown[] };
      assert.equal(summary.root, hsmId);
      assert.equal(summary.total, total);
      assert.equal(summary.remaining, 0);
      assert.deepEqual(summary.failed, []);
      assert.equal(run.stderr.toString().includes('rewrapped'), false, 'no progress lines when stderr is not a terminal');
      assert.deepEqual([...versionsByKek(dataDir).entries()], [[hsmId, total]]);
      const again = await runCli(['kek', 'rewrap-all', '--socket', d.socketPath]);
      assert.equal(again.code, 0);
      assert.match(again.stdout.toString(), /rewrapped:\s+0\nremaining:\s+0/);
      const c = await connect({ socket: d.socketPath });
      try {
        for (const s of samples) assert.deepEqual(Buffer.from(await c.decrypt(s.key, s.ct)), s.pt);
      } finally {
        await c.close();
      }
    } finally {
      await d.stop(true);
    }
    // After a restart too: the blobs are read back from the token-wrapped rows.
    d = await start(config(work, true, 'hsm'));
    try {
      const c = await connect({ socket: d.socketPath });
      try {
        for (const s of samples) assert.deepEqual(Buffer.from(await c.decrypt(s.key, s.ct)), s.pt);
      } finally {
        await c.close();
      }
    } finally {
      await d.stop(true);
    }
    assert.equal(d.stderr().includes(token.pin), false, 'the PIN is not in the log');
    // The offline check opens the same providers: token-wrapped blobs are not damage.
    const check = await runCli(['keystore', 'check', '--data-dir', dataDir, '--config', config(work, true, 'hsm')]);
    assert.equal(check.code, 0, check.stdout.toString() + check.stderr.toString());
    for (const f of ['keystore.sqlite', 'keystore.sqlite-wal']) {
      const p = join(dataDir, f);
      if (existsSync(p)) assert.equal(readFileSync(p).includes(KNOWN), false, `${f} holds no plaintext key`);
    }
  });

  test('the keystore copied with root.key elsewhere cannot be opened without the token that holds the key', async () => {
    const copy = join(work, 'copy');
    mkdirSync(copy, { mode: 0o700 });
    for (const f of ['keystore.sqlite', 'keystore.sqlite-wal', 'keystore.sqlite-shm', 'root.key', 'kek.binding']) {
      if (existsSync(join(dataDir, f))) copyFileSync(join(dataDir, f), join(copy, f));
    }
    // A token with the same label and a PIN the thief knows, but not the key.
    const other = createSoftToken({ label: 'cryptod' });
    const saved = { conf: process.env.SOFTHSM2_CONF, pin: process.env[PIN_ENV] };
    try {
      other.use();
      process.env[PIN_ENV] = other.pin;
      await assert.rejects(start(config(work, true, 'hsm'), copy), (err: Error) => {
        assert.match(err.message, /exited with 1/);
        assert.match(err.message, /the token "cryptod" holds no key .* the keystore was wrapped by a key in another token/);
        assert.equal(err.message.includes(other.pin), false, 'the PIN is not printed');
        return true;
      });
      // No provider at all (root.key alone): refused too, nothing unwrapped.
      await assert.rejects(start(config(work, false), copy), (err: Error) => /exited with 1/.test(err.message) && /wrapped by a PKCS#11 token .* no such provider is configured/.test(err.message));
    } finally {
      process.env.SOFTHSM2_CONF = saved.conf;
      process.env[PIN_ENV] = saved.pin;
      other.remove();
    }
  });
});
