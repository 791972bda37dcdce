/**
 * SO_PEERCRED over real Unix sockets: the daemon authorises clients on what
 * these tests check, so they use real sockets and real processes (including a
 * second uid when running as root) rather than mocks.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmod, copyFile, mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import type { Server, Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { peerCred, peerCredAvailable } from '../src/daemon/peer-cred.js';
import type { PeerCred } from '../src/daemon/peer-cred.js';
import { ConnectionClosedError, InvalidArgumentError } from '../src/protocol/errors.js';

const NOBODY = 65534;
const linux = process.platform === 'linux';

interface Listening {
  dir: string;
  socketPath: string;
  server: Server;
  /** Resolves with the peer credentials the server side saw for its first connection. */
  seen: Promise<PeerCred>;
  close(): Promise<void>;
}

/** A Unix-socket server in a fresh temp dir, reading peerCred() on accept. */
async function listen(options: { worldAccessible?: boolean } = {}): Promise<Listening> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'cryptod-peercred-'));
  const socketPath = path.join(dir, 's.sock');
  let resolveSeen!: (cred: PeerCred) => void;
  let rejectSeen!: (err: unknown) => void;
  const seen = new Promise<PeerCred>((resolve, reject) => {
    resolveSeen = resolve;
    rejectSeen = reject;
  });
  const server = net.createServer((conn: Socket) => {
    try {
      resolveSeen(peerCred(conn));
    } catch (err) {
      rejectSeen(err);
    } finally {
      conn.destroy(); // the client (or child) sees 'close' and exits
    }
  });
  server.listen(socketPath);
  await once(server, 'listening');
  if (options.worldAccessible === true) {
    await chmod(dir, 0o777);
    await chmod(socketPath, 0o777);
  }
  return {
    dir,
    socketPath,
    server,
    seen,
    async close() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Script for a child that connects, waits for the server to hang up, and exits 0. */
const CHILD_CONNECT = `
const s = require('node:net').connect(process.argv[1]);
s.on('error', (e) => { console.error(e); process.exit(2); });
s.on('close', () => process.exit(0));
s.resume();
`;

async function childConnect(socketPath: string, ids?: { uid: number; gid: number }, cwd?: string): Promise<{ pid: number; exited: Promise<number | null> }> {
  const child = spawn(process.execPath, ['-e', CHILD_CONNECT, socketPath], {
    stdio: ['ignore', 'inherit', 'inherit'],
    ...(ids ?? {}),
    ...(cwd === undefined ? {} : { cwd }),
  });
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  await once(child, 'spawn');
  assert.ok(child.pid !== undefined, 'child has a pid');
  return { pid: child.pid, exited };
}

test('the addon is available on Linux', { skip: !linux && 'SO_PEERCRED is Linux-only' }, () => {
  assert.equal(peerCredAvailable(), true);
});

test('the server side sees this process as the peer', { skip: !linux && 'SO_PEERCRED is Linux-only', timeout: 10_000 }, async () => {
  const l = await listen();
  try {
    const client = net.connect(l.socketPath);
    client.on('error', () => {});
    const cred = await l.seen;
    client.destroy();
    assert.deepEqual(cred, { uid: process.getuid!(), gid: process.getgid!(), pid: process.pid });
  } finally {
    await l.close();
  }
});

test('the client side sees the server process as the peer', { skip: !linux && 'SO_PEERCRED is Linux-only', timeout: 10_000 }, async () => {
  const l = await listen();
  try {
    const client = net.connect(l.socketPath);
    client.on('error', () => {});
    await once(client, 'connect');
    const cred = peerCred(client);
    client.destroy();
    await l.seen;
    assert.deepEqual(cred, { uid: process.getuid!(), gid: process.getgid!(), pid: process.pid });
  } finally {
    await l.close();
  }
});

test('the pid seen is that of a child process that connects', { skip: !linux && 'SO_PEERCRED is Linux-only', timeout: 10_000 }, async () => {
  const l = await listen();
  try {
    const child = await childConnect(l.socketPath);
    const cred = await l.seen;
    assert.equal(await child.exited, 0);
    assert.equal(cred.pid, child.pid);
    assert.notEqual(cred.pid, process.pid);
    assert.equal(cred.uid, process.getuid!());
    assert.equal(cred.gid, process.getgid!());
  } finally {
    await l.close();
  }
});

test(
  'a child running as nobody is seen with uid/gid 65534',
  {
    skip: !linux ? 'SO_PEERCRED is Linux-only' : process.getuid?.() !== 0 ? 'needs root to spawn a child as another uid' : false,
    timeout: 10_000,
  },
  async () => {
    const l = await listen({ worldAccessible: true });
    try {
      const child = await childConnect(l.socketPath, { uid: NOBODY, gid: NOBODY }, l.dir);
      const cred = await l.seen;
      assert.equal(await child.exited, 0);
      assert.equal(cred.uid, NOBODY);
      assert.equal(cred.gid, NOBODY);
      assert.equal(cred.pid, child.pid);
    } finally {
      await l.close();
    }
  },
);

test('a destroyed socket gives ConnectionClosedError, not a crash', { skip: !linux && 'SO_PEERCRED is Linux-only', timeout: 10_000 }, async () => {
  const l = await listen();
  try {
    const client = net.connect(l.socketPath);
    client.on('error', () => {});
    await once(client, 'connect');
    client.destroy();
    assert.throws(() => peerCred(client), (err: unknown) => {
      assert.ok(err instanceof ConnectionClosedError, `expected ConnectionClosedError, got ${String(err)}`);
      assert.equal(err.code, 'CRYPTOD_ERR_CONNECTION_CLOSED');
      assert.match(err.message, /closed/);
      return true;
    });
    await l.seen;
  } finally {
    await l.close();
  }
});

test('a socket that never connected gives a clear error', { skip: !linux && 'SO_PEERCRED is Linux-only' }, () => {
  const socket = new net.Socket();
  assert.throws(() => peerCred(socket), ConnectionClosedError);
});

test('a TCP socket is rejected instead of yielding uid -1', { skip: !linux && 'SO_PEERCRED is Linux-only', timeout: 10_000 }, async () => {
  const server = net.createServer((conn) => conn.destroy());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    const addr = server.address();
    assert.ok(addr !== null && typeof addr === 'object');
    const client = net.connect(addr.port, '127.0.0.1');
    client.on('error', () => {});
    await once(client, 'connect');
    try {
      assert.throws(() => peerCred(client), (err: unknown) => {
        assert.ok(err instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(err)}`);
        assert.match(err.message, /Unix-domain/);
        assert.equal((err.cause as { code?: unknown } | undefined)?.code, 'EAFNOSUPPORT');
        return true;
      });
    } finally {
      client.destroy();
    }
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

test('setNonDumpable makes a process non-dumpable (its /proc entries pass to root)', { skip: !linux && 'prctl is Linux-only', timeout: 15_000 }, async () => {
  assert.equal(process.getuid?.(), 0, 'this test runs the child as nobody and needs root (CI runs as root)');
  // A dumpable process owns its /proc/<pid> files; PR_SET_DUMPABLE 0 hands them to root.
  // The child may not be able to reach the checkout (CI may clone under a 0700 home): copy the addon out.
  const dir = await mkdtemp(path.join(os.tmpdir(), 'cd-dump-'));
  await chmod(dir, 0o755);
  const addonPath = path.join(dir, 'peercred.node');
  await copyFile(path.join(process.cwd(), 'build/Release/peercred.node'), addonPath);
  await chmod(addonPath, 0o755);
  const script = `
    const { statSync } = require('node:fs');
    const before = statSync('/proc/self/status').uid;
    const { createRequire } = require('node:module');
    const addon = createRequire(${JSON.stringify(path.join(dir, 'x.js'))})(${JSON.stringify(addonPath)});
    const ok = addon.setNonDumpable();
    const after = statSync('/proc/self/status').uid;
    process.stdout.write(JSON.stringify({ before, ok, after }));`;
  const child = spawn(process.execPath, ['-e', script], { uid: NOBODY, gid: NOBODY, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  await once(child, 'exit');
  await rm(dir, { recursive: true, force: true });
  const r = JSON.parse(out) as { before: number; ok: boolean; after: number };
  assert.deepEqual(r, { before: NOBODY, ok: true, after: 0 });
});
