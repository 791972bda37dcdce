/**
 * createDaemon (src/daemon/assemble.ts) on real parts: a data directory with
 * its SQLite file, the audit log, the Unix socket, a client. Checked from the
 * outside: after close(), and after a start that failed half way, no socket
 * file is left, no descriptor of the process points into the data directory,
 * the WAL is checkpointed away and the database opens in exclusive mode, and
 * no timer keeps the process alive.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import { connect } from '../src/client/client.js';
import { daemonConfig, type ConfigOverrides } from '../src/config/daemon-config.js';
import { createDaemon, type AssembledDaemon } from '../src/daemon/assemble.js';
import { silentLogger } from '../src/observe/logger.js';
import { ConfigError, DaemonRunningError } from '../src/protocol/errors.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'asm-'));
  dirs.push(d);
  return d;
}

function assemble(overrides: ConfigOverrides): AssembledDaemon {
  return createDaemon(daemonConfig(null, overrides), { logger: silentLogger });
}

/** Descriptors of this process open on anything under `dir`. */
function openUnder(dir: string): string[] {
  const out: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith(`${resolve(dir)}/`)) out.push(target);
    } catch {
      // closed between readdir and readlink (the directory's own descriptor)
    }
  }
  return out;
}

/** The database is closed by everyone: no WAL left, and an exclusive lock can be taken. */
function assertDatabaseReleased(dataDir: string): void {
  const file = join(dataDir, 'keystore.sqlite');
  assert.equal(existsSync(`${file}-wal`), false, 'the last connection to close checkpoints and removes the WAL');
  const db = new Database(file, { fileMustExist: true, timeout: 0 });
  try {
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('BEGIN EXCLUSIVE');
    db.exec('COMMIT');
  } finally {
    db.close();
  }
}

test('start opens every part, close releases every part', async () => {
  const dir = tempDir();
  const dataDir = join(dir, 'data');
  const auditLog = join(dir, 'data', 'audit.log');
  const d = assemble({ dataDir, socket: join(dir, 'cryptod.sock'), auditLog, limits: { maxFrame: 65_536 } });
  await d.start();
  const socketPath = d.config.socket.path;
  assert.equal(socketPath, join(dir, 'cryptod.sock'));
  assert.ok(existsSync(socketPath));
  assert.ok(existsSync(`${join(dataDir, 'keystore.sqlite')}-wal`), 'the keystore is open in WAL mode');
  assert.ok(openUnder(dataDir).some((f) => f.endsWith('audit.log')), 'the audit log is open');

  const client = await connect({ socket: socketPath, clientName: 'assembled' });
  try {
    assert.equal(client.info.limits.maxFrame, 65_536, "HELLO reports the configuration's limits");
    assert.equal(Buffer.from(await client.subtle.digest('SHA-256', Buffer.from('abc'))).toString('hex'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    assert.equal(d.status().connections, 1);
  } finally {
    await client.close();
  }

  await d.close();
  assert.equal(existsSync(socketPath), false, 'the socket file is removed');
  assert.deepEqual(openUnder(dataDir), [], 'no descriptor points into the data directory');
  assertDatabaseReleased(dataDir);
  await d.close(); // idempotent
  await assert.rejects(d.start(), /already called/);
});

test('after close, nothing keeps the process alive', async () => {
  const dir = tempDir();
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/assemble-child.ts', join(dir, 'data'), join(dir, 'audit.log'), join(dir, 'cryptod.sock')], {
    cwd: new URL('..', import.meta.url),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((res) => child.once('exit', (c, s) => res([c, s])));
  clearTimeout(timer);
  assert.equal(out, 'started\nclosed\n', err);
  assert.deepEqual([code, signal], [0, null], `the child did not exit on its own after close(); stderr: ${err}`);
});

test('a socket taken by a live daemon: start fails and closes what it had opened', async () => {
  const dir = tempDir();
  const first = assemble({ dataDir: join(dir, 'first'), socket: join(dir, 'first.sock') });
  await first.start();
  try {
    const dataDir = join(dir, 'second');
    const second = assemble({ dataDir, socket: first.config.socket.path, auditLog: join(dataDir, 'audit.log') });
    await assert.rejects(second.start(), (e: unknown) => e instanceof DaemonRunningError);
    assert.deepEqual(openUnder(dataDir), [], 'keystore, client registry and audit log are closed again');
    assertDatabaseReleased(dataDir);
    assert.ok(existsSync(first.config.socket.path), "the live daemon's socket is left alone");
    await second.close(); // nothing left to close
  } finally {
    await first.close();
  }
});

test('a bad TLS file: start fails after the keystore opened, and closes it; no socket is left', async () => {
  const dir = tempDir();
  const dataDir = join(dir, 'data');
  for (const f of ['cert.pem', 'key.pem', 'ca.pem']) writeFileSync(join(dir, f), 'not PEM\n', { mode: 0o600 });
  const d = assemble({
    dataDir,
    socket: join(dir, 'cryptod.sock'),
    tcp: { url: 'tcp://127.0.0.1:0', certFile: join(dir, 'cert.pem'), keyFile: join(dir, 'key.pem'), clientCaFile: join(dir, 'ca.pem') },
  });
  await assert.rejects(d.start(), (e: unknown) => e instanceof ConfigError);
  assert.ok(existsSync(join(dataDir, 'keystore.sqlite')), 'the keystore had been opened');
  assert.equal(existsSync(d.config.socket.path), false);
  assert.deepEqual(openUnder(dataDir), []);
  assertDatabaseReleased(dataDir);
});

test('close() while start() runs waits for it, then closes everything', async () => {
  const dir = tempDir();
  const dataDir = join(dir, 'data');
  const d = assemble({ dataDir, socket: join(dir, 'cryptod.sock') });
  const started = d.start();
  const closed = d.close();
  await started;
  await closed;
  assert.equal(existsSync(d.config.socket.path), false);
  assert.deepEqual(openUnder(dataDir), []);
  assertDatabaseReleased(dataDir);
  assert.throws(() => d.status(), /not running/);
});

test('without a configuration file or a TLS listener there is nothing to reload', async () => {
  const dir = tempDir();
  const d = assemble({ dataDir: join(dir, 'data'), socket: join(dir, 'cryptod.sock') });
  await d.start();
  try {
    assert.equal(await d.reload('test'), null);
  } finally {
    await d.close();
  }
});

test('the merged configuration: a flag wins over the file, limits are checked together', () => {
  assert.throws(
    () => daemonConfig(null, { limits: { maxContextMemory: 1_048_576, maxContextMemoryPerClient: 2_097_152 } }),
    (e: unknown) => e instanceof ConfigError && e.detail?.field === 'maxContextMemoryPerClient',
  );
  const c = daemonConfig(null, { dataDir: 'relative', limits: { maxContextMemory: 1_048_576 } });
  assert.equal(c.dataDir, resolve('relative'));
  assert.equal(c.limits.maxContextMemoryPerClient, 262_144, 'the share follows the total');
  assert.equal(c.socketMode, 0o600);
});
