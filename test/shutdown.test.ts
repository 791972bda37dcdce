/**
 * Daemon lifecycle (src/daemon/server.ts): graceful close with requests in
 * flight, refusal of new work, release of every node, removal of the socket;
 * start-up against a live socket, a stale socket and a non-socket file; the
 * modes of the socket and of the directory the daemon creates.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { connect } from '../src/client/client.js';
import { silentLogger } from '../src/observe/logger.js';
import { startDaemon } from '../src/daemon/server.js';
import { ConfigError, ConnectionClosedError, DaemonRunningError, ShuttingDownError } from '../src/protocol/errors.js';
import { FrameKind } from '../src/protocol/frame.js';
import { Op, PROTOCOL_VERSION } from '../src/protocol/ops.js';
import { eventually, startTestDaemon } from './helpers/daemon.js';
import { RawClient, errorCode } from './helpers/raw-client.js';
import { TestOp, instrument, testNodes, withTestOps } from './helpers/test-ops.js';
import { allOperations } from '../src/ops/index.js';

const HMAC_PARAMS = { name: 'HMAC', hash: 'SHA-256' };

test('close() lets requests in flight finish, refuses new ones, releases every node, removes the socket', async () => {
  const t = await startTestDaemon({ operations: withTestOps(), limits: { shutdownGraceMs: 5000 } });
  try {
    const c = await t.connect('graceful');
    // State of every kind: keys, a hash context, an HMAC context under its key, a test node.
    const key = await c.subtle.generateKey(HMAC_PARAMS, false, ['sign', 'verify']);
    await c.subtle.generateKey({ name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
    const h = c.createHash('SHA-256');
    await h.update(Buffer.from('x'));
    const m = c.createHmac(key as never);
    await m.update(Buffer.from('y'));
    await c.request(TestOp.NODE_ADD, {});
    assert.equal(t.daemon.dm.liveNodes(), 5);

    const raw = await RawClient.ready(t.socketPath, 'graceful-raw');
    const inflight = [200, 300, 400].map((ms) => c.request(TestOp.SLOW, { ms, echo: ms }));
    await sleep(30);
    const started = Date.now();
    const closing = t.daemon.close();
    assert.equal(t.daemon.close(), closing, 'close() is idempotent');
    assert.equal(t.daemon.status().daemon.shuttingDown, true);

    // New requests, on either connection, are refused with SHUTTING_DOWN while the old ones run.
    await assert.rejects(c.ping(), ShuttingDownError);
    await assert.rejects(c.subtle.digest('SHA-256', Buffer.from('x')), ShuttingDownError);
    const refused = await raw.call(Op.PING, 'late');
    assert.equal(errorCode(refused), 'CRYPTOD_ERR_SHUTTING_DOWN');
    // And nobody new gets in.
    await assert.rejects(connect({ socket: t.socketPath, clientName: 'too-late' }), ConnectionClosedError);

    assert.deepEqual(await Promise.all(inflight), [200, 300, 400]);
    await closing;
    assert.ok(Date.now() - started < 4000, 'close did not wait for the grace period once the requests were done');
    assert.equal(t.daemon.dm.liveNodes(), 0);
    assert.deepEqual(t.daemon.dm.stats(), []);
    assert.equal(existsSync(t.socketPath), false, 'the socket file is removed');
    await raw.whenClosed;
    await assert.rejects(c.ping(), ConnectionClosedError);
  } finally {
    await t.stop();
  }
});

test('close() waits at most shutdownGraceMs; an operation still running frees its nodes when it ends', async () => {
  const t = await startTestDaemon({ operations: withTestOps(), limits: { shutdownGraceMs: 150 } });
  try {
    const disposedBefore = testNodes.disposed;
    const c = await t.connect('slowpoke');
    const handle = (await c.request(TestOp.NODE_ADD, {})) as string;
    // Watched from the start: both reject while close() is awaited.
    const holding = assert.rejects(c.request(TestOp.NODE_USE, { handle, ms: 1000 }), ConnectionClosedError); // holds the node for 1 s
    const slow = assert.rejects(c.request(TestOp.SLOW, { ms: 5000 }), ConnectionClosedError);
    await sleep(30);
    const started = Date.now();
    await t.daemon.close();
    const took = Date.now() - started;
    assert.ok(took >= 140 && took < 900, `close took ${took} ms with a 150 ms grace`);
    await slow;
    await holding;
    // The connection put its reference; the operation's accessor still holds the node.
    assert.equal(t.daemon.dm.liveNodes(), 1);
    assert.equal(testNodes.disposed, disposedBefore);
    await eventually(() => t.daemon.dm.liveNodes() === 0, 3000, 'the held node freed when its operation ended');
    assert.equal(testNodes.disposed, disposedBefore + 1);
    assert.equal(existsSync(t.socketPath), false);
  } finally {
    await t.stop();
  }
});

test('close() with idle connections and no requests returns promptly', async () => {
  const t = await startTestDaemon();
  try {
    const clients = await Promise.all(Array.from({ length: 5 }, (_, i) => t.connect(`idle${i}`)));
    await Promise.all(clients.map((c) => c.subtle.generateKey(HMAC_PARAMS, false, ['sign'])));
    const started = Date.now();
    await t.daemon.close();
    assert.ok(Date.now() - started < 1000);
    assert.equal(t.daemon.dm.liveNodes(), 0);
    for (const c of clients) await assert.rejects(c.ping(), ConnectionClosedError);
  } finally {
    await t.stop();
  }
});

test('a second daemon on a live socket fails with DaemonRunningError and leaves the first one serving', async () => {
  const t = await startTestDaemon();
  try {
    await assert.rejects(
      startDaemon({ socketPath: t.socketPath, logger: silentLogger }),
      (e: unknown) => e instanceof DaemonRunningError && e.code === 'CRYPTOD_ERR_DAEMON_RUNNING' && e.message.includes(t.socketPath),
    );
    assert.ok(lstatSync(t.socketPath).isSocket());
    const c = await t.connect('still-first');
    assert.equal(await c.ping('ok'), 'ok');
    await c.close();
  } finally {
    await t.stop();
  }
});

/** Leave a socket file nobody listens on: a process binds it, then dies without cleaning up. */
async function staleSocket(path: string): Promise<void> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const child = spawn(
    process.execPath,
    ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => { console.log('bound'); process.kill(process.pid, 'SIGKILL'); })`],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise<void>((res) => child.on('exit', () => res()));
  assert.ok(lstatSync(path).isSocket(), 'the dead process left its socket file');
}

test('a stale socket file (no listener) is replaced', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cd-'));
  const socketPath = join(dir, 'run', 'cryptod.sock');
  try {
    await staleSocket(socketPath);
    const daemon = await startDaemon({ socketPath, logger: silentLogger });
    try {
      const c = await connect({ socket: socketPath, clientName: 'after-stale' });
      assert.equal(await c.ping('p'), 'p');
      await c.close();
    } finally {
      await daemon.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a file that is not a socket at the path: ConfigError, and the file is left alone', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cd-'));
  const socketPath = join(dir, 'cryptod.sock');
  try {
    writeFileSync(socketPath, 'precious data');
    await assert.rejects(
      startDaemon({ socketPath, logger: silentLogger }),
      (e: unknown) => e instanceof ConfigError && e.code === 'CRYPTOD_ERR_CONFIG' && /is not a socket/.test(e.message),
    );
    assert.equal(readFileSync(socketPath, 'utf8'), 'precious data');
    mkdirSync(join(dir, 'adir'));
    await assert.rejects(startDaemon({ socketPath: join(dir, 'adir'), logger: silentLogger }), ConfigError);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the socket is mode 0600 and the directory the daemon created 0700', async () => {
  const t = await startTestDaemon(); // the daemon creates <tmp>/run
  try {
    assert.equal(lstatSync(t.socketPath).mode & 0o777, 0o600);
    assert.equal(statSync(dirname(t.socketPath)).mode & 0o777, 0o700);
  } finally {
    await t.stop();
  }
});

test('nested directories the daemon creates are 0700; socketMode is honoured; an existing directory keeps its mode', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cd-'));
  const oldUmask = process.umask(0o000); // the daemon must not depend on a friendly umask
  try {
    const deep = join(dir, 'a', 'b', 'cryptod.sock');
    const d1 = await startDaemon({ socketPath: deep, logger: silentLogger, socketMode: 0o660 });
    try {
      assert.equal(lstatSync(deep).mode & 0o777, 0o660);
      assert.equal(statSync(join(dir, 'a', 'b')).mode & 0o777, 0o700);
      assert.equal(statSync(join(dir, 'a')).mode & 0o777, 0o700);
    } finally {
      await d1.close();
    }
    const shared = join(dir, 'shared');
    mkdirSync(shared, { mode: 0o755 });
    const d2 = await startDaemon({ socketPath: join(shared, 'cryptod.sock'), logger: silentLogger });
    try {
      assert.equal(statSync(shared).mode & 0o777, 0o755, 'an existing directory is not chmodded');
      assert.equal(lstatSync(join(shared, 'cryptod.sock')).mode & 0o777, 0o600);
    } finally {
      await d2.close();
    }
  } finally {
    process.umask(oldUmask);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('HELLO still completes during shutdown, but the session can do nothing', async () => {
  const t = await startTestDaemon({ operations: withTestOps(), limits: { shutdownGraceMs: 2000 } });
  try {
    const c = await t.connect('keeps-busy');
    const busy = c.request(TestOp.SLOW, { ms: 300 });
    const raw = await RawClient.connect(t.socketPath);
    await sleep(20);
    const closing = t.daemon.close();
    const hello = await raw.call(Op.HELLO, { version: PROTOCOL_VERSION, client: 'during' });
    assert.equal(hello.kind, FrameKind.RESPONSE);
    assert.equal(errorCode(await raw.call(Op.GENERATE_KEY, { algorithm: HMAC_PARAMS, extractable: false, usages: ['sign'] })), 'CRYPTOD_ERR_SHUTTING_DOWN');
    await busy;
    await closing;
    assert.equal(t.daemon.dm.liveNodes(), 0);
  } finally {
    await t.stop();
  }
});

// Regression: close() destroyed every connection, throwing away the unsent
// part of a reply the daemon had already produced for a client still reading it.
test('a large reply a client is still reading when close() starts is delivered whole', async () => {
  const { operations, stats } = instrument(allOperations());
  const t = await startTestDaemon({ operations, limits: { shutdownGraceMs: 5000 } });
  try {
    const raw = await RawClient.ready(t.socketPath, 'slow-reader');
    const k = await raw.call(Op.GENERATE_KEY, { algorithm: { name: 'AES-GCM', length: 256 }, extractable: false, usages: ['encrypt'] });
    const key = (k.payload as { handle: string }).handle;
    raw.socket.pause(); // not reading: most of the reply stays in the daemon's socket buffer
    const data = Buffer.alloc(3_000_000, 1);
    const before = stats.started;
    raw.send(9, Op.ENCRYPT, { algorithm: { name: 'AES-GCM', iv: Buffer.alloc(12) }, key, data });
    await eventually(() => stats.started === before + 1, 5000, 'the daemon to encrypt'); // its reply is being written now
    const closing = t.daemon.close();
    await sleep(50);
    raw.socket.resume();
    const reply = await raw.reply(9);
    assert.equal(reply.kind, FrameKind.RESPONSE);
    assert.equal((reply.payload as Uint8Array).length, data.length + 16);
    await closing;
    await raw.whenClosed;
    assert.equal(t.daemon.dm.liveNodes(), 0);
  } finally {
    await t.stop();
  }
});

test('a client that never reads its reply does not hold close() past the grace period', async () => {
  const t = await startTestDaemon({ limits: { shutdownGraceMs: 300 } });
  try {
    const raw = await RawClient.ready(t.socketPath, 'never-reads');
    const k = await raw.call(Op.GENERATE_KEY, { algorithm: { name: 'AES-GCM', length: 256 }, extractable: false, usages: ['encrypt'] });
    const key = (k.payload as { handle: string }).handle;
    raw.socket.pause();
    raw.send(9, Op.ENCRYPT, { algorithm: { name: 'AES-GCM', iv: Buffer.alloc(12) }, key, data: Buffer.alloc(3_000_000, 1) });
    await sleep(200);
    const started = Date.now();
    await t.daemon.close();
    const took = Date.now() - started;
    assert.ok(took >= 250 && took < 1500, `close took ${took} ms with a 300 ms grace and a client that never reads`);
    assert.equal(t.daemon.dm.liveNodes(), 0);
    raw.destroy();
  } finally {
    await t.stop();
  }
});
