/**
 * The `cryptod` command, run as a real process (`node --import tsx
 * src/cli/main.ts`) against real daemons on temporary sockets: start-up and
 * permissions, status, digest (file and stdin, larger than one frame), a
 * second daemon on a live socket, a stale socket after SIGKILL, graceful
 * SIGTERM, help, usage errors and their exit statuses.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, lstatSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { connect } from '../src/client/client.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const dirs: string[] = [];
const children = new Set<ChildProcess>();

after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A short temporary directory: Unix socket paths must stay under ~100 bytes. */
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'cc-'));
  dirs.push(d);
  return d;
}

/**
 * This run's runtime directory: `serve` without --socket listens at the
 * per-user default, $XDG_RUNTIME_DIR/cryptod/cryptod.sock, which must not be
 * the real one of whoever runs the tests.
 */
let runtimeDir: string | undefined;

/** The environment without a CRYPTOD_SOCKET inherited from whoever runs the tests, with this run's runtime directory. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  runtimeDir ??= tempDir();
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_RUNTIME_DIR: runtimeDir, ...extra };
  if (!('CRYPTOD_SOCKET' in extra)) delete env.CRYPTOD_SOCKET;
  return env;
}

function spawnCli(args: string[], env: NodeJS.ProcessEnv = cleanEnv()): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
  children.add(child);
  return child;
}

interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Run a command to completion, optionally feeding `input` on stdin. */
async function run(args: string[], options: { input?: Buffer; env?: NodeJS.ProcessEnv } = {}): Promise<Result> {
  const child = spawnCli(args, options.env);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on('data', (c: Buffer) => out.push(c));
  child.stderr!.on('data', (c: Buffer) => err.push(c));
  child.stdin!.on('error', () => {}); // the command may exit before reading stdin
  child.stdin!.end(options.input);
  const [code, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null];
  return { code, signal, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
}

interface Served {
  child: ChildProcess;
  socket: string;
  stderr(): string;
  /** Send `signal` and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Start `cryptod serve` and wait for its "listening" log line. */
async function serve(args: string[], env?: NodeJS.ProcessEnv): Promise<Served> {
  const child = spawnCli(['serve', ...args], env);
  let stderr = '';
  const exited = once(child, 'close') as Promise<[number | null, NodeJS.Signals | null]>;
  const socket = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start within 20 s; stderr:\n${stderr}`)), 20_000);
    child.stderr!.on('data', (c: Buffer) => {
      stderr += c.toString();
      for (const line of stderr.split('\n')) {
        if (!line.startsWith('{')) continue;
        const event = JSON.parse(line) as { msg?: string; socket?: string };
        if (event.msg === 'listening' && typeof event.socket === 'string') {
          clearTimeout(timer);
          resolve(event.socket);
        }
      }
    });
    void exited.then(([code]) => {
      clearTimeout(timer);
      reject(new Error(`serve exited with ${code} before listening; stderr:\n${stderr}`));
    });
  });
  return {
    child,
    socket,
    stderr: () => stderr,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const [code, sig] = await exited;
      return { code, signal: sig };
    },
  };
}

test('serve creates a 0700 data directory, and a 0600 socket at the per-user default, and announces the socket', async () => {
  const dataDir = join(tempDir(), 'd');
  const s = await serve(['--data-dir', dataDir]);
  try {
    // --data-dir does not move the socket: clients find it without being told where the data is.
    assert.equal(s.socket, join(runtimeDir!, 'cryptod', 'cryptod.sock'));
    assert.equal(statSync(dataDir).mode & 0o777, 0o700);
    const st = lstatSync(s.socket);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o600);
    assert.equal(s.stderr().split('\n').filter((l) => l.includes('"listening"')).length, 1, 'one line names the socket');
  } finally {
    assert.deepEqual(await s.stop(), { code: 0, signal: null });
  }
});

test('status --json reports nodes; the table lists the clients; CRYPTOD_SOCKET and --socket both work', async () => {
  const dir = tempDir();
  const socket = join(dir, 'env.sock');
  // The daemon takes its socket from the environment…
  const s = await serve(['--data-dir', join(dir, 'd')], cleanEnv({ CRYPTOD_SOCKET: socket }));
  try {
    assert.equal(s.socket, socket);
    // …and so does a client,
    const viaEnv = await run(['status', '--json'], { env: cleanEnv({ CRYPTOD_SOCKET: socket }) });
    assert.equal(viaEnv.code, 0, viaEnv.stderr);
    const json = JSON.parse(viaEnv.stdout) as { nodes: unknown; connections: unknown; clients: Array<{ clientId: string }> };
    assert.equal(typeof json.nodes, 'number');
    assert.equal(json.connections, 1);
    assert.ok(json.clients.some((c) => c.clientId.endsWith('/cryptod-cli')), viaEnv.stdout);
    // …while the flag wins over the environment.
    const viaFlag = await run(['status', '--socket', socket], { env: cleanEnv({ CRYPTOD_SOCKET: join(dir, 'nothing.sock') }) });
    assert.equal(viaFlag.code, 0, viaFlag.stderr);
    assert.match(viaFlag.stdout, /^CLIENT\s+CONNS\s+NODES\s+BUSY\s+KEY\s+HASH\s+HMAC\s+CIPHER\s+WINDOW$/m);
    assert.match(viaFlag.stdout, /cryptod-cli\s+1\s+0\s+0/);
    assert.match(viaFlag.stdout, new RegExp(`socket ${socket.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));

    // A client holding a live hash context shows up in both forms.
    await using holder = await connect({ socket, clientName: 'holder' });
    const h = holder.createHash('SHA-256');
    await h.update(Buffer.from('partial'));
    const held = await run(['status', '--json', '--socket', socket]);
    const heldJson = JSON.parse(held.stdout) as { nodes: number; clients: Array<{ clientId: string; nodes: number; byType: Record<string, number> }> };
    assert.equal(heldJson.nodes, 1);
    const holderRow = heldJson.clients.find((c) => c.clientId.endsWith('/holder'));
    assert.deepEqual({ nodes: holderRow?.nodes, byType: { ...holderRow?.byType } }, { nodes: 1, byType: { hash: 1 } });
    const table = await run(['status', '--socket', socket]);
    assert.match(table.stdout, /^\S+\/holder\s+1\s+1\s+0\s+0\s+1\s+0\s+0\s+0$/m, table.stdout);
    assert.match(table.stdout, /2 connection\(s\), 1 live node\(s\)/);
    await h.release();
  } finally {
    await s.stop();
  }
});

test('digest of a file and of stdin equals node:crypto, across several frames', async () => {
  const dir = tempDir();
  // 64 KiB frames: the 1 MiB input needs 17 CONTEXT_UPDATEs, so stdin's
  // coalescing buffers (src/cli/digest.ts, four in rotation) are each reused.
  const s = await serve(['--data-dir', join(dir, 'd'), '--max-frame', '65536']);
  try {
    const data = randomBytes(1024 * 1024 + 17);
    const file = join(dir, 'input.bin');
    writeFileSync(file, data);
    for (const [alg, node] of [['SHA-256', 'sha256'], ['SHA-512', 'sha512']] as const) {
      const want = `${createHash(node).update(data).digest('hex')}\n`;
      const fromFile = await run(['digest', '--socket', s.socket, '--algorithm', alg, file]);
      assert.equal(fromFile.code, 0, fromFile.stderr);
      assert.equal(fromFile.stdout, want);
      const fromStdin = await run(['digest', '-s', s.socket, '-a', alg], { input: data });
      assert.equal(fromStdin.code, 0, fromStdin.stderr);
      assert.equal(fromStdin.stdout, want);
    }
    const empty = await run(['digest', '--socket', s.socket, '--algorithm', 'SHA-256', '-'], { input: Buffer.alloc(0) });
    assert.equal(empty.stdout, `${createHash('sha256').digest('hex')}\n`);
    // Nothing is left behind: the contexts were finished and the CLI connections closed.
    const st = await run(['status', '--json', '--socket', s.socket]);
    assert.equal((JSON.parse(st.stdout) as { nodes: number }).nodes, 0);
  } finally {
    await s.stop();
  }
});

test('digest: a daemon error prints its code; a missing file and a missing daemon are one clear line', async () => {
  const dir = tempDir();
  const s = await serve(['--data-dir', join(dir, 'd')]);
  try {
    const bad = await run(['digest', '--socket', s.socket, '--algorithm', 'MD5'], { input: Buffer.from('x') });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^cryptod: CRYPTOD_ERR_[A-Z_]+: .*MD5/);
    assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);
    // Only hashes are named as supported: a digest of AES-GCM makes no sense.
    assert.match(bad.stderr, /supported hashes: SHA-1, SHA-256, SHA-384, SHA-512\n$/);
    assert.doesNotMatch(bad.stderr, /AES-GCM|HMAC|Ed25519/);

    const missing = await run(['digest', '--socket', s.socket, '--algorithm', 'SHA-256', join(dir, 'nope')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^cryptod: cannot open .*nope/);
  } finally {
    await s.stop();
  }
  const none = await run(['status', '--socket', join(dir, 'gone.sock')]);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /^cryptod: no cryptod is listening on .*gone\.sock.*start one with `cryptod serve` or set CRYPTOD_SOCKET\n$/);
});

test('a second serve on a live socket exits 1 with a clear message; the first keeps serving', async () => {
  const dir = tempDir();
  const first = await serve(['--data-dir', join(dir, 'd')]);
  try {
    const second = await run(['serve', '--data-dir', join(dir, 'd'), '--log-level', 'error']);
    assert.equal(second.code, 1);
    assert.match(second.stderr, /^cryptod: another cryptod is already listening on .*cryptod\.sock; stop it first or choose another --socket\n$/);
    assert.ok(lstatSync(first.socket).isSocket(), 'the live socket was not removed');
    const st = await run(['status', '--json', '--socket', first.socket]);
    assert.equal(st.code, 0, st.stderr);
  } finally {
    assert.deepEqual(await first.stop(), { code: 0, signal: null });
  }
});

test('a stale socket left by a daemon killed with SIGKILL is replaced on restart', async () => {
  const dir = tempDir();
  const first = await serve(['--data-dir', join(dir, 'd')]);
  assert.deepEqual(await first.stop('SIGKILL'), { code: null, signal: 'SIGKILL' });
  assert.ok(lstatSync(first.socket).isSocket(), 'SIGKILL leaves the socket file behind');
  const second = await serve(['--data-dir', join(dir, 'd')]);
  try {
    assert.equal(second.socket, first.socket);
    const st = await run(['status', '--json', '--socket', second.socket]);
    assert.equal(st.code, 0, st.stderr);
  } finally {
    await second.stop();
  }
});

test('SIGTERM and SIGINT stop the daemon with status 0 and remove the socket', async () => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    const s = await serve(['--data-dir', join(tempDir(), 'd')]);
    assert.deepEqual(await s.stop(signal), { code: 0, signal: null });
    assert.equal(existsSync(s.socket), false, `${signal} left the socket behind`);
    assert.match(s.stderr(), /"msg":"stopped"/);
  }
});

test('a second signal during shutdown ends the daemon at once, by that signal', async () => {
  // One libuv thread and a long grace: eight RSA-4096 key generations keep
  // requests in flight for seconds, so the graceful shutdown is still waiting
  // when the second signal arrives.
  const dir = tempDir();
  const s = await serve(['--data-dir', join(dir, 'd'), '--shutdown-grace-ms', '60000'], cleanEnv({ UV_THREADPOOL_SIZE: '1' }));
  const client = await connect({ socket: s.socket, clientName: 'slow' });
  const algorithm = { name: 'RSA-PSS', modulusLength: 4096, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' };
  const pending = Array.from({ length: 8 }, () => client.subtle.generateKey(algorithm, false, ['sign', 'verify']).then(
    () => 'done',
    () => 'failed',
  ));
  // The daemon has the requests once the status reply (sent after them) is back.
  await client.status();
  s.child.kill('SIGTERM');
  const deadline = Date.now() + 10_000;
  while (!s.stderr().includes('"shutting down"') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.match(s.stderr(), /"msg":"shutting down"/);
  const started = Date.now();
  // Killed by SIGINT, as a shell reports with status 130 (exit() would first
  // wait for the thread pool to run every queued key generation).
  assert.deepEqual(await s.stop('SIGINT'), { code: null, signal: 'SIGINT' });
  assert.ok(Date.now() - started < 5000, 'the second signal did not wait for requests in flight');
  assert.match(s.stderr(), /"msg":"second signal during shutdown: exiting now"/);
  client.connection.destroy();
  const outcomes = await Promise.all(pending);
  assert.ok(outcomes.includes('failed'), 'some key generation was still running when the daemon exited');
});

test('--help works at the top level and for every command', async () => {
  const top = await run(['--help']);
  assert.equal(top.code, 0);
  for (const cmd of ['serve', 'digest', 'status']) assert.match(top.stdout, new RegExp(`^  ${cmd} `, 'm'));
  for (const cmd of ['serve', 'digest', 'status']) {
    for (const args of [[cmd, '--help'], [cmd, '-h'], ['help', cmd]]) {
      const r = await run(args);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stdout, new RegExp(`^Usage: cryptod ${cmd}`), args.join(' '));
      assert.equal(r.stderr, '');
    }
  }
  const bare = await run([]);
  assert.equal(bare.code, 2);
  assert.match(bare.stderr, /^Usage: cryptod <command>/);
});

test('usage errors name the flag or command and exit 2', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['serve', '--bogus'], /unknown option '--bogus' for `cryptod serve`/],
    [['status', '--frobnicate'], /unknown option '--frobnicate' for `cryptod status`/],
    [['digest', '-a', 'SHA-256', '--nope'], /unknown option '--nope' for `cryptod digest`/],
    [['digest', 'file'], /missing required option '--algorithm'/],
    [['digest', '-a', 'SHA-256', 'one', 'two'], /`cryptod digest` takes at most one argument, got an extra 'two'/],
    [['status', '--socket'], /option '--socket' needs a value/],
    [['serve', '--max-frame', 'big'], /option '--max-frame' expects a non-negative integer, got 'big'/],
    [['serve', '--socket-mode', '999'], /option '--socket-mode' expects an octal mode/],
    [['serve', '--log-level', 'loud'], /option '--log-level' expects one of debug, info, warn, error, got 'loud'/],
    [['launch'], /unknown command 'launch'/],
    [['--verbose'], /unknown option '--verbose'/],
  ];
  for (const [args, message] of cases) {
    const r = await run(args);
    assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code}, stderr ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`^cryptod: ${message.source}`), args.join(' '));
    assert.equal(r.stdout, '');
  }
});

test('a limit out of range is a configuration error: exit 1, no socket left behind', async () => {
  const dir = tempDir();
  const r = await run(['serve', '--data-dir', join(dir, 'd'), '--max-frame', '10']);
  assert.equal(r.code, 1);
  // The keystore is opened (and, in a new directory, created: one info line) before the limits are checked.
  assert.match(r.stderr, /(^|\n)cryptod: limit maxFrame must be an integer from 1024 to 67108864, got 10\n$/);
  assert.equal(existsSync(join(runtimeDir!, 'cryptod', 'cryptod.sock')), false);
});
