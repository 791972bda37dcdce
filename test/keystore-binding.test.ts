/**
 * The root KEK and the keystore are bound to each other (src/kek/binding.ts):
 * real `cryptod serve` processes on a real data directory refuse to start on
 * a lost, emptied or foreign keystore instead of beginning an empty one.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { startCliDaemon } from './helpers/cli-daemon.js';
import { makeTempDir } from './store/tmpdir.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Start a daemon on `dataDir`, wait until it listens, stop it; returns what it logged. */
async function startAndStop(dataDir: string, extra: readonly string[] = []): Promise<string> {
  const d = await startCliDaemon(['--data-dir', dataDir, ...extra]);
  const log = d.stderr().toString();
  assert.equal(await d.stop(), 0);
  return log;
}

/** `cryptod serve` on `dataDir` that is expected to refuse to start: its exit code and stderr. */
async function refusedStart(dataDir: string, extra: readonly string[] = []): Promise<{ code: number | null; stderr: string }> {
  const args = ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--data-dir', dataDir, '--socket', path.join(dataDir, 'never.sock'), ...extra];
  const p = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  const err: Buffer[] = [];
  let listened = false;
  p.stderr.on('data', (b: Buffer) => {
    err.push(b);
    // A daemon that starts where it must not is stopped, so the test fails instead of hanging.
    if (!listened && /"msg":"listening"/.test(Buffer.concat(err).toString())) {
      listened = true;
      p.kill('SIGTERM');
    }
  });
  const code = await new Promise<number | null>((res) => p.on('close', (c) => res(c)));
  assert.equal(listened, false, `the daemon started although it should have refused: ${Buffer.concat(err).toString()}`);
  return { code, stderr: Buffer.concat(err).toString() };
}

function storeId(dataDir: string): string | undefined {
  const db = new Database(path.join(dataDir, 'keystore.sqlite'), { readonly: true });
  try {
    return (db.prepare("SELECT value FROM meta WHERE key = 'store.id'").get() as { value: string } | undefined)?.value;
  } finally {
    db.close();
  }
}

function removeKeystore(dataDir: string): void {
  for (const f of ['keystore.sqlite', 'keystore.sqlite-wal', 'keystore.sqlite-shm']) fs.rmSync(path.join(dataDir, f), { force: true });
}

describe('keystore binding', () => {
  it('a fresh directory just works, and is bound on both sides', async () => {
    const tmp = makeTempDir();
    try {
      const dir = path.join(tmp.path, 'data');
      const log = await startAndStop(dir);
      assert.match(log, /new keystore created and bound to its KEK/);
      const binding = JSON.parse(fs.readFileSync(path.join(dir, 'kek.binding'), 'utf8')) as { storeId: string };
      assert.equal(binding.storeId, storeId(dir));
      assert.equal(fs.statSync(path.join(dir, 'kek.binding')).mode & 0o777, 0o600);
      const again = await startAndStop(dir);
      assert.doesNotMatch(again, /new keystore created/);
    } finally {
      await tmp.cleanup();
    }
  });

  it('refuses to start when keystore.sqlite was removed or truncated, naming the files and the fix; --init starts a new one', async () => {
    const tmp = makeTempDir();
    try {
      const dir = path.join(tmp.path, 'data');
      await startAndStop(dir);
      const first = storeId(dir);

      removeKeystore(dir);
      const removed = await refusedStart(dir);
      assert.equal(removed.code, 1);
      assert.match(removed.stderr, /keystore\.sqlite is missing or empty, but .*kek\.binding and .*root\.key are there/);
      assert.match(removed.stderr, /Restore keystore\.sqlite from the backup/);
      assert.match(removed.stderr, /cryptod serve --init/);

      removeKeystore(dir);
      fs.writeFileSync(path.join(dir, 'keystore.sqlite'), '', { mode: 0o600 }); // truncate -s0
      const truncated = await refusedStart(dir);
      assert.equal(truncated.code, 1);
      assert.match(truncated.stderr, /keystore\.sqlite is missing or empty/);

      // Only kek.binding left (e.g. a passphrase store): refused as well.
      removeKeystore(dir);
      const rootKey = fs.readFileSync(path.join(dir, 'root.key'));
      fs.rmSync(path.join(dir, 'root.key'));
      assert.match((await refusedStart(dir)).stderr, /but .*kek\.binding is there/);
      fs.writeFileSync(path.join(dir, 'root.key'), rootKey, { mode: 0o600 });

      // The operator means it: a new, empty store bound to the same root.key.
      removeKeystore(dir);
      const init = await startAndStop(dir, ['--init']);
      assert.match(init, /new keystore created and bound to its KEK/);
      const second = storeId(dir);
      assert.ok(second !== undefined && second !== first, 'a new store id');
      assert.ok(fs.readFileSync(path.join(dir, 'root.key')).equals(rootKey), 'root.key is kept, not replaced');

      // --init never replaces a store that exists.
      const again = await refusedStart(dir, ['--init']);
      assert.equal(again.code, 1);
      assert.match(again.stderr, /--init refused: .*keystore\.sqlite already holds a keystore .*move keystore\.sqlite .* out of it first/);
      assert.equal(storeId(dir), second);
    } finally {
      await tmp.cleanup();
    }
  });

  it('refuses a swapped root.key and a keystore from another directory', async () => {
    const tmp = makeTempDir();
    try {
      const a = path.join(tmp.path, 'a');
      const b = path.join(tmp.path, 'b');
      await startAndStop(a);
      await startAndStop(b);
      const rootA = fs.readFileSync(path.join(a, 'root.key'));

      fs.writeFileSync(path.join(a, 'root.key'), randomBytes(32), { mode: 0o600 });
      const swapped = await refusedStart(a);
      assert.equal(swapped.code, 1);
      assert.match(swapped.stderr, /root\.key does not match .*keystore\.sqlite: its keys are wrapped by KEK local:[0-9a-f]{16}, another root key/);
      fs.writeFileSync(path.join(a, 'root.key'), rootA, { mode: 0o600 });

      // b's keystore beside a's root.key: another KEK, refused by the verifier.
      removeKeystore(a);
      fs.copyFileSync(path.join(b, 'keystore.sqlite'), path.join(a, 'keystore.sqlite'));
      assert.match((await refusedStart(a)).stderr, /root\.key does not match/);

      // A store of the same root key but another store id (a copy of this
      // directory that was re-initialized): refused by the store id.
      removeKeystore(a);
      fs.rmSync(path.join(b, 'root.key'));
      fs.rmSync(path.join(b, 'kek.binding'));
      removeKeystore(b);
      fs.writeFileSync(path.join(b, 'root.key'), rootA, { mode: 0o600 });
      await startAndStop(b, ['--init']);
      fs.copyFileSync(path.join(b, 'keystore.sqlite'), path.join(a, 'keystore.sqlite'));
      fs.chmodSync(path.join(a, 'keystore.sqlite'), 0o600);
      const foreign = await refusedStart(a);
      assert.match(foreign.stderr, /keystore\.sqlite is keystore [0-9a-f]{32}, but .*kek\.binding records keystore [0-9a-f]{32}/);
    } finally {
      await tmp.cleanup();
    }
  });

  it('refuses a wrong passphrase at start, and a lost passphrase store', async () => {
    const tmp = makeTempDir();
    try {
      const dir = path.join(tmp.path, 'data');
      const pass = path.join(tmp.path, 'pass');
      const config = path.join(tmp.path, 'cryptod.yaml');
      fs.writeFileSync(config, `kek:\n  passphraseFile: ${pass}\n`);
      fs.writeFileSync(pass, 'the right passphrase\n', { mode: 0o600 });
      await startAndStop(dir, ['--config', config]);
      assert.equal(fs.existsSync(path.join(dir, 'root.key')), false);

      fs.writeFileSync(pass, 'a wrong passphrase\n');
      const wrong = await refusedStart(dir, ['--config', config]);
      assert.equal(wrong.code, 1);
      assert.match(wrong.stderr, /the passphrase does not match this keystore \(.*keystore\.sqlite, KEK local:[0-9a-f]{16}\)/);

      fs.writeFileSync(pass, 'the right passphrase\n');
      removeKeystore(dir);
      assert.match((await refusedStart(dir, ['--config', config])).stderr, /keystore\.sqlite is missing or empty, but .*kek\.binding is there/);
    } finally {
      await tmp.cleanup();
    }
  });

  it('binds a data directory from before binding on its first start (migration), keeping its keys', async () => {
    const tmp = makeTempDir();
    try {
      const dir = path.join(tmp.path, 'data');
      await startAndStop(dir);
      // What the previous version left: root.key and a keystore with a KEK record, no store id, no kek.binding.
      const db = new Database(path.join(dir, 'keystore.sqlite'));
      db.prepare("DELETE FROM meta WHERE key = 'store.id'").run();
      db.close();
      fs.rmSync(path.join(dir, 'kek.binding'));

      const log = await startAndStop(dir);
      assert.match(log, /keystore bound to its KEK \(store id added\)/);
      const id = storeId(dir);
      assert.match(id ?? '', /^[0-9a-f]{32}$/);
      assert.equal((JSON.parse(fs.readFileSync(path.join(dir, 'kek.binding'), 'utf8')) as { storeId: string }).storeId, id);
    } finally {
      await tmp.cleanup();
    }
  });

  it('two daemons starting at once on a fresh directory make one binding', async () => {
    const tmp = makeTempDir();
    try {
      const dir = path.join(tmp.path, 'data');
      const [x, y] = await Promise.all([startCliDaemon(['--data-dir', dir]), startCliDaemon(['--data-dir', dir])]);
      const created = [x, y].filter((d) => /new keystore created/.test(d.stderr().toString())).length;
      assert.equal(await x.stop(), 0);
      assert.equal(await y.stop(), 0);
      assert.equal(created, 1, 'exactly one of them created the store');
      assert.equal((JSON.parse(fs.readFileSync(path.join(dir, 'kek.binding'), 'utf8')) as { storeId: string }).storeId, storeId(dir));
    } finally {
      await tmp.cleanup();
    }
  });
});
