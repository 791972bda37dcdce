/**
 * Files the daemon trusts must be its own (src/files/trusted-files.ts): with
 * a real second user, a data directory, a file in it, a parent directory,
 * the configuration, the KEK passphrase file, the TLS key and the audit log
 * that this user owns — or that group or others may write — are refused
 * with a message naming the path and the fix; what root owns in a sticky
 * /tmp-like directory is accepted.
 *
 * Creating users needs root. CI runs as root; elsewhere these tests FAIL
 * with a message saying so, rather than pass without having checked anything.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, lchownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ConfigFileError, loadConfig } from '../src/config/load.js';
import { createAudit } from '../src/observe/audit.js';
import { loadTlsMaterial } from '../src/daemon/tls-listener.js';
import { ConfigError } from '../src/protocol/errors.js';
import { ensurePrivateDir } from '../src/files/private-files.js';
import { runCliWithin } from './helpers/bounded-cli.js';
import { createTestUser, type TestUser } from './helpers/second-user.js';

const isRoot = process.getuid?.() === 0;
const NEEDS_ROOT = 'this test creates a second user (useradd) and gives it files, which needs root; run it as root (CI does)';

let user: TestUser | null = null;
let uid = -1;
const dirs: string[] = [];

before(() => {
  if (!isRoot) return;
  user = createTestUser('cryptod-t-files');
  uid = user.uid;
});

after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  user?.remove();
});

function tmp(): string {
  assert.ok(isRoot, NEEDS_ROOT);
  const d = mkdtempSync(join(tmpdir(), 'ctf-'));
  dirs.push(d);
  return d;
}

/** The repro: mode 0700, a planted all-zero root.key, empty keystore and WAL, all 0600, then chown -R. */
function plantedDataDir(parent: string): string {
  const d = join(parent, 'd');
  mkdirSync(d, { mode: 0o700 });
  writeFileSync(join(d, 'root.key'), Buffer.alloc(32), { mode: 0o600 });
  writeFileSync(join(d, 'keystore.sqlite'), '', { mode: 0o600 });
  writeFileSync(join(d, 'keystore.sqlite-wal'), '', { mode: 0o600 });
  for (const f of ['', 'root.key', 'keystore.sqlite', 'keystore.sqlite-wal']) chownSync(join(d, f), uid, uid);
  return d;
}

function refusedWith(...parts: Array<string | RegExp>): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof ConfigError, String(err));
    for (const p of parts) {
      if (typeof p === 'string') assert.ok(err.message.includes(p), `expected ${JSON.stringify(p)} in: ${err.message}`);
      else assert.match(err.message, p);
    }
    return true;
  };
}

test('cryptod serve refuses a data directory another user owns (the planted root.key repro), naming it and the fix', async () => {
  const parent = tmp();
  const d = plantedDataDir(parent);
  const r = await runCliWithin(['serve', '--data-dir', d, '--socket', join(parent, 's.sock')], 30_000);
  assert.equal(r.timedOut, false, `the daemon started on a directory uid ${uid} owns:\n${r.stderr}`);
  assert.equal(r.code, 1, r.stderr);
  assert.ok(r.stderr.includes(`the data directory ${d} is owned by uid ${uid}`), r.stderr);
  assert.ok(r.stderr.includes(`chown 0 ${d}`), r.stderr);
});

test('a file in the data directory that another user owns is refused, even when the directory is ours', () => {
  const d = plantedDataDir(tmp());
  chownSync(d, 0, 0);
  chownSync(join(d, 'root.key'), 0, 0);
  chownSync(join(d, 'keystore.sqlite'), 0, 0);
  // Only the WAL is theirs: whoever owns it can rewrite committed pages.
  assert.throws(() => ensurePrivateDir(d), refusedWith(`${join(d, 'keystore.sqlite-wal')} is owned by uid ${uid}`, 'chown 0'));
  chownSync(join(d, 'keystore.sqlite-wal'), 0, 0);
  assert.equal(ensurePrivateDir(d), d);
});

test('a symlink or a FIFO inside the data directory is refused', () => {
  const d = join(tmp(), 'data');
  ensurePrivateDir(d);
  symlinkSync('/etc/hostname', join(d, 'keystore.sqlite-shm'));
  assert.throws(() => ensurePrivateDir(d), refusedWith(`${join(d, 'keystore.sqlite-shm')} in the data directory is a symlink`));
  rmSync(join(d, 'keystore.sqlite-shm'));
  execFileSync('mkfifo', [join(d, 'root.key')]);
  assert.throws(() => ensurePrivateDir(d), refusedWith('is a FIFO'));
});

test('a parent directory that group or others may write, or another user owns, is refused; a sticky one (like /tmp) is not', () => {
  const base = tmp();
  const shared = join(base, 'shared');
  mkdirSync(shared);
  chmodSync(shared, 0o775);
  // Both an existing data directory and one the daemon would create.
  mkdirSync(join(shared, 'existing'), { mode: 0o700 });
  assert.throws(() => ensurePrivateDir(join(shared, 'existing')), refusedWith(`the directory ${shared} has mode 775`, `chmod go-w ${shared}`));
  assert.throws(() => ensurePrivateDir(join(shared, 'new')), refusedWith(`the directory ${shared} has mode 775`));

  const theirs = join(base, 'theirs');
  mkdirSync(theirs, { mode: 0o755 });
  chownSync(theirs, uid, uid);
  assert.throws(() => ensurePrivateDir(join(theirs, 'data')), refusedWith(`the directory ${theirs} is owned by uid ${uid}`, `chown 0 ${theirs}`));

  const sticky = join(base, 'sticky');
  mkdirSync(sticky);
  chmodSync(sticky, 0o1777);
  assert.equal(ensurePrivateDir(join(sticky, 'data')), join(sticky, 'data'));
});

test('the configuration file: another owner, group/other-writable, or a symlink another user owns is refused', () => {
  const d = tmp();
  const file = join(d, 'cryptod.yaml');
  writeFileSync(file, 'keys: {}\n', { mode: 0o644 });
  assert.equal(loadConfig(file).config.path, file);

  const refused = (p: string, ...parts: string[]) =>
    assert.throws(
      () => loadConfig(p),
      (err: unknown) => {
        assert.ok(err instanceof ConfigFileError, String(err));
        for (const part of parts) assert.ok(err.message.includes(part), `expected ${JSON.stringify(part)} in: ${err.message}`);
        return true;
      },
    );
  chownSync(file, uid, uid);
  refused(file, `the configuration file ${file} is owned by uid ${uid}`, `chown 0 ${file}`);
  chownSync(file, 0, 0);
  chmodSync(file, 0o666);
  refused(file, `the configuration file ${file} has mode 666`, `chmod go-w ${file}`);
  chmodSync(file, 0o644);

  // A symlink is followed (certbot and /etc/alternatives use them), but only one root or the daemon's user made.
  const link = join(d, 'link.yaml');
  symlinkSync(file, link);
  assert.equal(loadConfig(link).config.keys !== undefined, true);
  lchownSync(link, uid, uid);
  refused(link, `the symlink ${link} is owned by uid ${uid}`);
});

test('cryptod serve refuses a KEK passphrase file another user owns', async () => {
  const d = tmp();
  const pass = join(d, 'kek.pass');
  writeFileSync(pass, 'correct horse battery staple\n', { mode: 0o600 });
  chownSync(pass, uid, uid);
  const config = join(d, 'cryptod.yaml');
  writeFileSync(config, `kek: { passphraseFile: ${pass} }\n`, { mode: 0o600 });
  const r = await runCliWithin(['serve', '--config', config, '--data-dir', join(d, 'data'), '--socket', join(d, 's.sock')], 30_000);
  assert.equal(r.timedOut, false, `the daemon started with a passphrase uid ${uid} can change:\n${r.stderr}`);
  assert.equal(r.code, 1, r.stderr);
  assert.ok(r.stderr.includes(`kek.passphraseFile ${pass} is owned by uid ${uid}`), r.stderr);
});

test('a TLS key another user owns, and one in a directory others may write, are refused', () => {
  const d = tmp();
  const files = { certFile: join(d, 'cert.pem'), keyFile: join(d, 'key.pem'), clientCaFile: join(d, 'ca.pem') };
  for (const f of Object.values(files)) writeFileSync(f, '-----BEGIN X-----\n-----END X-----\n', { mode: 0o600 });
  chownSync(files.keyFile, uid, uid);
  assert.throws(() => loadTlsMaterial({ url: 'tcp://127.0.0.1:0', ...files }), refusedWith(`--tls-key ${files.keyFile} is owned by uid ${uid}`));
  chownSync(files.keyFile, 0, 0);
  chmodSync(d, 0o770);
  assert.throws(() => loadTlsMaterial({ url: 'tcp://127.0.0.1:0', ...files }), refusedWith(`the directory ${d} has mode 770`));
});

test('an audit log another user owns, or in a directory others may write, is refused', () => {
  const d = tmp();
  const log = join(d, 'audit.log');
  writeFileSync(log, '', { mode: 0o600 });
  chownSync(log, uid, uid);
  assert.throws(() => createAudit({ target: log }), refusedWith(`the audit log ${log} is owned by uid ${uid}`, `chown 0 ${log}`));
  rmSync(log);
  chmodSync(d, 0o777);
  assert.throws(() => createAudit({ target: log }), refusedWith(`the directory ${d} has mode 777`));
  chmodSync(d, 0o700);
  createAudit({ target: log }).close();
});
