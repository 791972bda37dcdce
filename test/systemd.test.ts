/**
 * systemd integration, without systemd: a small Python launcher plays its
 * part exactly — it binds and listens on the Unix socket, puts it at fd 3,
 * sets LISTEN_FDS/LISTEN_PID (its own pid, which exec keeps)/LISTEN_FDNAMES,
 * NOTIFY_SOCKET and WATCHDOG_USEC, and execs `cryptod serve`. A Python
 * datagram socket in the abstract namespace receives the notifications.
 *
 * - the daemon serves the inherited socket, and says READY=1 once the keys
 *   of its configuration are loaded (a client then finds them), WATCHDOG=1
 *   while it runs, STOPPING=1 on SIGTERM; it exits 0 and leaves systemd's
 *   socket file in place
 * - the same with `--workers 2`: both workers serve the inherited socket
 *   (through the primary), and only the primary notifies
 * - `systemd-analyze verify` accepts both units (where it is installed)
 * - LISTEN_* for another pid are ignored; malformed ones are refused
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { connect } from '../src/client/client.js';
import { ConfigError } from '../src/protocol/errors.js';
import { LISTEN_FDS_START, takeListenFd } from '../src/daemon/systemd.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** Debian's python3 (the standard library's socket module is all it needs). */
const PYTHON = '/usr/bin/python3';
const children = new Set<ChildProcess>();
const dirs: string[] = [];
after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const RECEIVER = `
import socket, sys, json
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind('\\0' + sys.argv[1])
print(json.dumps('bound'), flush=True)
while True:
    data = s.recv(4096)
    print(json.dumps(data.decode()), flush=True)
`;

const LAUNCHER = `
import os, socket, sys
path, notify = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
os.chmod(path, 0o600)
s.listen(64)
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
# dup2 onto itself keeps the socket's close-on-exec flag: clear it, as systemd does.
os.set_inheritable(3, True)
env = dict(os.environ, LISTEN_FDS='1', LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES='cryptod', NOTIFY_SOCKET='@' + notify, WATCHDOG_USEC='100000')
os.execve(sys.argv[3], sys.argv[3:], env)
`;

/** The launcher runs `cryptod serve … extra`; with workers, READY=1 and the rest come from the primary alone. */
async function activated(extra: readonly string[]): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'sdn-'));
  dirs.push(dir);
  const socketPath = join(dir, 'cryptod.sock');
  const config = join(dir, 'cryptod.yaml');
  writeFileSync(config, 'keys:\n  activated: { type: hmac-sha256 }\n');
  const notifyName = `cryptod-test-${randomBytes(6).toString('hex')}`;

  const receiver = spawn(PYTHON, ['-c', RECEIVER, notifyName], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(receiver);
  const states: string[] = [];
  let buffered = '';
  receiver.stdout!.setEncoding('utf8').on('data', (s: string) => {
    buffered += s;
    const lines = buffered.split('\n');
    buffered = lines.pop()!;
    for (const l of lines) states.push(JSON.parse(l) as string);
  });
  const until = async (pred: () => boolean, what: string, ms = 60_000): Promise<void> => {
    const deadline = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; notifications: ${JSON.stringify(states)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  await until(() => states.includes('bound'), 'the notification socket');

  const daemon = spawn(PYTHON, ['-c', LAUNCHER, socketPath, notifyName, process.execPath, '--import', 'tsx', 'src/cli/main.ts', 'serve', '--data-dir', join(dir, 'data'), '--socket', socketPath, '--config', config, ...extra], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children.add(daemon);
  let stderr = '';
  daemon.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<number | null>((res) => daemon.on('exit', (code) => res(code)));

  await until(() => states.some((s) => s.startsWith('READY=1')) || daemon.exitCode !== null, 'READY=1');
  assert.equal(daemon.exitCode, null, stderr);
  assert.ok(states.find((s) => s.startsWith('READY=1'))!.includes(`MAINPID=${daemon.pid}`), 'MAINPID is the launcher’s pid, kept across exec');
  assert.match(stderr, /"msg":"listening".*"inheritedFd":3/);
  // READY=1 came after the configured keys were loaded: a client finds them at once.
  const client = await connect({ socket: socketPath, clientName: 'activated' });
  assert.equal(await client.ping('via fd 3'), 'via fd 3');
  assert.deepEqual((await client.keys.list()).map((k) => k.name), ['activated']);
  await client.close();
  if (extra.includes('--workers')) {
    // Connections on the inherited socket land on both workers; only the primary (the launcher's pid) spoke to systemd.
    const workers = /"msg":"workers started".*?"workers":\[(\d+),(\d+)\]/.exec(stderr);
    assert.ok(workers !== null, stderr);
    const pids = new Set<number>();
    for (let i = 0; i < 6; i++) {
      const c = await connect({ socket: socketPath, clientName: `w${i}` });
      pids.add(((await c.status()) as unknown as { daemon: { pid: number } }).daemon.pid);
      await c.close();
    }
    assert.deepEqual(pids, new Set([Number(workers[1]), Number(workers[2])]));
    assert.equal(states.filter((s) => s.startsWith('READY=1')).length, 1, JSON.stringify(states));
    assert.equal((stderr.match(/"inheritedFd":3/g) ?? []).length, 2, 'each worker serves the inherited descriptor');
  }

  await until(() => states.filter((s) => s === 'WATCHDOG=1').length >= 2, 'two WATCHDOG=1 (every 50 ms)');
  daemon.kill('SIGTERM');
  assert.equal(await exited, 0, stderr);
  await until(() => states.includes('STOPPING=1'), 'STOPPING=1', 5_000);
  assert.ok(states.indexOf('STOPPING=1') > states.findIndex((s) => s.startsWith('READY=1')));
  assert.ok(existsSync(socketPath), "systemd's socket file is not the daemon's to remove");
  receiver.kill('SIGTERM');
}

test('socket activation and sd_notify: READY=1 after the keys, WATCHDOG=1, STOPPING=1; the socket file stays', () => activated([]));

test('socket activation with --workers 2: the primary keeps the descriptor, both workers serve it, the primary notifies', { timeout: 120_000 }, () => activated(['--workers', '2']));

test('LISTEN_* read once: another pid ignored, several fds need a name, malformed refused', () => {
  const env = (e: Record<string, string>): NodeJS.ProcessEnv => ({ ...e });
  assert.equal(takeListenFd(env({ LISTEN_FDS: '1', LISTEN_PID: '1' }), 4242), null);
  assert.equal(takeListenFd(env({}), 4242), null);
  const once = env({ LISTEN_FDS: '1', LISTEN_PID: '4242' });
  assert.equal(takeListenFd(once, 4242), LISTEN_FDS_START);
  assert.equal(once.LISTEN_FDS, undefined, 'removed, so a child does not take our socket');
  assert.equal(takeListenFd(env({ LISTEN_FDS: '3', LISTEN_PID: '7', LISTEN_FDNAMES: 'metrics:cryptod:other' }), 7), LISTEN_FDS_START + 1);
  assert.throws(() => takeListenFd(env({ LISTEN_FDS: '2', LISTEN_PID: '7', LISTEN_FDNAMES: 'a:b' }), 7), (e: unknown) => e instanceof ConfigError && /FileDescriptorName=cryptod/.test(e.message));
  assert.throws(() => takeListenFd(env({ LISTEN_FDS: 'x', LISTEN_PID: '7' }), 7), ConfigError);
});

test('systemd-analyze verify accepts cryptod.socket and cryptod.service', (t) => {
  const probe = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
  if (probe.error !== undefined) {
    if (process.env.CI !== undefined) assert.fail('systemd-analyze is not installed on CI');
    console.warn('\n*** systemd-analyze is not installed: unit verification SKIPPED ***\n');
    t.skip('systemd-analyze not installed');
    return;
  }
  const units = ['cryptod.socket', 'cryptod.service'].map((u) => join(ROOT, 'contrib/systemd', u));
  const r = spawnSync('systemd-analyze', ['verify', ...units], { encoding: 'utf8' });
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  // Warnings go to stderr with status 0; the units must not draw any about themselves.
  assert.ok(!/cryptod\.(socket|service):\d+/.test(r.stderr), r.stderr);
});
