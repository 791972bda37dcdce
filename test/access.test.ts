/**
 * Admission by kernel identity, with a real second user: the test creates a
 * system user, runs a client process as that uid against a daemon whose
 * socket it can reach, and checks that the daemon refuses it by default and
 * admits it when the policy lists its uid or primary gid — through
 * startDaemon and through `cryptod serve --allow-uid/--allow-gid`.
 *
 * Creating users needs root. CI runs as root; elsewhere these tests FAIL
 * with a message saying so, rather than pass without having checked anything.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { createAccessControl } from '../src/daemon/access.js';
import type { RefusedConnection } from '../src/daemon/access.js';
import { createLogger } from '../src/observe/logger.js';
import { peerCred, peerCredAvailable } from '../src/daemon/peer-cred.js';
import { startDaemon, type DaemonOptions } from '../src/daemon/server.js';
import { decode } from '../src/protocol/cbor.js';
import { ConfigError } from '../src/protocol/errors.js';
import { FrameKind, encodeFrame } from '../src/protocol/frame.js';
import { Op, PROTOCOL_VERSION } from '../src/protocol/ops.js';
import { createTestUser, type TestUser } from './helpers/second-user.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const isRoot = process.getuid?.() === 0;
const NEEDS_ROOT =
  'this test creates a second user (useradd) and runs a client as that uid, which needs root; run it as root (CI does) — it fails here instead of passing without checking admission';

let user: TestUser | null = null;
const dirs: string[] = [];

before(() => {
  if (!isRoot) return;
  user = createTestUser('cryptod-t-access');
});

after(() => {
  user?.remove();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function requireUser(): { name: string; uid: number; gid: number } {
  assert.ok(isRoot, NEEDS_ROOT);
  assert.ok(peerCredAvailable(), 'the SO_PEERCRED addon is not built: run npm install (admission cannot be tested without it)');
  assert.ok(user !== null, 'the test user was not created');
  return user;
}

/** A directory the test user can traverse (mkdtemp makes 0700). */
function reachableDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'ca-'));
  chmodSync(d, 0o755);
  dirs.push(d);
  return d;
}

/**
 * The child: connect, send the HELLO frame given in hex, and report every
 * byte the daemon sent until it closed or answered one frame.
 */
const CHILD = `
const net = require('node:net');
const s = net.connect(process.argv[1]);
const got = [];
let connected = false;
const done = (how) => { process.stdout.write(JSON.stringify({ connected, how, hex: Buffer.concat(got).toString('hex') })); process.exit(0); };
s.on('connect', () => { connected = true; s.write(Buffer.from(process.argv[2], 'hex')); });
s.on('data', (c) => { got.push(c); const b = Buffer.concat(got); if (b.length >= 4 && b.length >= 4 + b.readUInt32BE(0)) done('reply'); });
s.on('error', (e) => done('error ' + e.code));
s.on('close', () => done('closed'));
setTimeout(() => done('timeout'), 5000);
`;

interface Probe {
  connected: boolean;
  how: string;
  /** The reply frame, if one came. */
  reply: { kind: number; payload: Record<string, unknown> } | null;
}

async function probeAs(ids: { uid: number; gid: number }, socketPath: string): Promise<Probe> {
  const hello = encodeFrame(FrameKind.REQUEST, 1, Op.HELLO, { version: PROTOCOL_VERSION, client: 'probe' });
  const child = spawn(process.execPath, ['-e', CHILD, socketPath, hello.toString('hex')], { uid: ids.uid, gid: ids.gid, cwd: '/', stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const code = await new Promise<number | null>((res) => child.on('close', (c) => res(c)));
  assert.equal(code, 0, `probe child failed: ${err}`);
  const r = JSON.parse(out) as { connected: boolean; how: string; hex: string };
  const bytes = Buffer.from(r.hex, 'hex');
  const reply = bytes.length >= 11 ? { kind: bytes[4]!, payload: decode(bytes.subarray(11, 4 + bytes.readUInt32BE(0))) as Record<string, unknown> } : null;
  return { connected: r.connected, how: r.how, reply };
}

/** A daemon on a socket the test user can reach (0666 socket in a 0755 directory: test only). */
async function reachableDaemon(options: Partial<DaemonOptions> = {}) {
  const socketPath = join(reachableDir(), 's.sock');
  const lines: string[] = [];
  const refused: RefusedConnection[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString().split('\n').filter((l) => l !== ''));
      cb();
    },
  });
  const daemon = await startDaemon({
    socketPath,
    socketMode: 0o666,
    peerIdentity: peerCred,
    logger: createLogger({ stream }),
    onRefused: (e) => refused.push(e),
    ...options,
  });
  return { daemon, socketPath, lines, refused };
}

/** The one frame a refused peer gets: ACCESS_DENIED with request id 0, naming its uid and gid. */
function assertAccessDenied(probe: Probe, u: { uid: number; gid: number }): void {
  assert.equal(probe.reply?.kind, FrameKind.ERROR, `the refused peer got no error frame (${probe.how})`);
  assert.equal(probe.reply.payload.code, 'CRYPTOD_ERR_ACCESS_DENIED');
  assert.deepEqual({ ...(probe.reply.payload.detail as object) }, { uid: u.uid, gid: u.gid });
  assert.match(String(probe.reply.payload.message), new RegExp(`--allow-uid ${u.uid}`));
}

test('a second uid is refused by default: told why before anything is read, closed, logged with uid/gid/pid', async () => {
  const u = requireUser();
  const d = await reachableDaemon();
  try {
    const probe = await probeAs(u, d.socketPath);
    assert.ok(probe.connected, 'the probe could not even reach the socket (file permissions), so admission was not tested');
    assertAccessDenied(probe, u);
    assert.equal(d.refused.length, 1);
    const ev = d.refused[0]!;
    assert.equal(ev.transport, 'unix');
    assert.equal(ev.uid, u.uid);
    assert.equal(ev.gid, u.gid);
    assert.ok(typeof ev.pid === 'number' && ev.pid > 0);
    const warn = d.lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'connection refused');
    assert.ok(warn !== undefined, `no warn line: ${d.lines.join('\n')}`);
    assert.equal(warn.level, 'warn');
    assert.equal(warn.uid, u.uid);
    assert.equal(warn.gid, u.gid);
    assert.equal(warn.pid, ev.pid);
    assert.equal(d.daemon.status().connections, 0);

    // The daemon's own user (root here) is still admitted on the same daemon.
    const self = await probeAs({ uid: process.getuid!(), gid: process.getgid!() }, d.socketPath);
    assert.equal(self.reply?.kind, FrameKind.RESPONSE);
    assert.equal(self.reply?.payload.clientId, `uid:${process.getuid!()}/probe`);
  } finally {
    await d.daemon.close();
  }
});

test('the policy admits a listed uid, or a listed primary gid, and names the client by that uid', async () => {
  const u = requireUser();
  for (const access of [{ uids: [u.uid] }, { gids: [u.gid] }]) {
    const d = await reachableDaemon({ access });
    try {
      const probe = await probeAs(u, d.socketPath);
      assert.equal(probe.reply?.kind, FrameKind.RESPONSE, `${JSON.stringify(access)}: not admitted (${probe.how})`);
      assert.equal(probe.reply?.payload.clientId, `uid:${u.uid}/probe`);
      assert.deepEqual(d.refused, []);
    } finally {
      await d.daemon.close();
    }
  }
  // Another uid in the list does not admit this one.
  const d = await reachableDaemon({ access: { uids: [u.uid + 1], gids: [u.gid + 1] } });
  try {
    assertAccessDenied(await probeAs(u, d.socketPath), u);
    assert.equal(d.refused[0]?.uid, u.uid);
  } finally {
    await d.daemon.close();
  }
});

test('cryptod serve --allow-uid admits the user; without it the user is refused', async () => {
  const u = requireUser();
  for (const allow of [false, true]) {
    const dataDir = join(reachableDir(), 'data');
    const socketPath = join(reachableDir(), 's.sock');
    const args = ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--data-dir', dataDir, '--socket', socketPath, '--socket-mode', '666'];
    if (allow) args.push('--allow-uid', String(u.uid + 7), '--allow-uid', String(u.uid));
    const serve = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    await new Promise<void>((res, rej) => {
      serve.stderr.on('data', (c: Buffer) => {
        stderr += c.toString();
        if (stderr.includes('"msg":"listening"')) res();
      });
      serve.on('exit', () => rej(new Error(`serve exited: ${stderr}`)));
    });
    try {
      const probe = await probeAs(u, socketPath);
      if (allow) {
        assert.equal(probe.reply?.kind, FrameKind.RESPONSE, `--allow-uid ${u.uid} did not admit it: ${stderr}`);
      } else {
        assertAccessDenied(probe, u);
        await new Promise((r) => setTimeout(r, 50));
        assert.match(stderr, new RegExp(`"msg":"connection refused".*"uid":${u.uid}`));
      }
    } finally {
      serve.kill('SIGTERM');
      await new Promise((r) => serve.once('exit', r));
    }
  }
});

test('access policy: defaults, validation, and a widened policy needs peer credentials', async () => {
  const ac = createAccessControl({}, 1000);
  assert.equal(ac.admit({ uid: 1000, gid: 5, pid: 1 }), 'daemon-user');
  assert.equal(ac.admit({ uid: 0, gid: 0, pid: 1 }), 'root');
  assert.equal(ac.admit({ uid: 1001, gid: 1000, pid: 1 }), null, 'sharing the daemon user\'s gid is not enough by default');
  const wide = createAccessControl({ uids: [2000], gids: [3000] }, 1000);
  assert.equal(wide.admit({ uid: 2000, gid: 1, pid: 1 }), 'uid');
  assert.equal(wide.admit({ uid: 2001, gid: 3000, pid: 1 }), 'gid');
  assert.equal(wide.admit({ uid: 2001, gid: 3001, pid: 1 }), null);
  for (const bad of [{ uids: [-1] }, { gids: [1.5] }, { uids: [2 ** 32 - 1] }, { uids: ['7' as unknown as number] }]) {
    assert.throws(() => createAccessControl(bad), ConfigError, JSON.stringify(bad));
  }
  const dir = reachableDir();
  await assert.rejects(
    startDaemon({ socketPath: join(dir, 's.sock'), access: { uids: [1234] } }),
    (e: unknown) => e instanceof ConfigError && /needs peer credentials/.test(e.message),
  );
});
