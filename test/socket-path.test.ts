/**
 * The default socket (src/client/socket-path.ts): one per-user path that the
 * daemon, the CLI and connect() agree on from any working directory, and the
 * ownership checks that keep another user from planting the directory.
 *
 * Every test points XDG_RUNTIME_DIR at a directory of its own, so nothing here
 * touches the real /tmp/cryptod-$UID; the /tmp fallback is exercised through
 * the `tmp` parameter of the same functions.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, chownSync, lstatSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { resolveSocket } from '../src/client/socket-path.js';
import { preparePrivateSocketDirectory } from '../src/config/paths.js';
import { ConfigError } from '../src/protocol/errors.js';

const MAIN = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));
// An absolute loader, so that the CLI runs from directories outside the checkout.
const TSX = import.meta.resolve('tsx');
const UID = process.getuid!();
const OTHER_UID = UID === 0 ? 4242 : undefined;

const dirs: string[] = [];
const children = new Set<ChildProcess>();
after(() => {
  for (const c of children) c.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'sp-'));
  chmodSync(d, 0o700);
  dirs.push(d);
  return d;
}

/** The environment of a user whose runtime directory is `runtime`, without an inherited CRYPTOD_SOCKET. */
function envWith(runtime: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_RUNTIME_DIR: runtime };
  delete env.CRYPTOD_SOCKET;
  return env;
}

function cryptod(args: readonly string[], cwd: string, env: NodeJS.ProcessEnv): ChildProcess {
  const child = spawn(process.execPath, ['--import', TSX, MAIN, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  return child;
}

async function finish(child: ChildProcess): Promise<{ code: number | null; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout, stderr };
}

/** `cryptod serve` in `cwd`; resolves with the socket its "listening" line names. */
async function serve(cwd: string, env: NodeJS.ProcessEnv): Promise<{ socket: string; stop(): Promise<number | null> }> {
  const child = cryptod(['serve'], cwd, env);
  const exited = once(child, 'close');
  let stderr = '';
  const socket = await new Promise<string>((resolve, reject) => {
    child.stderr!.on('data', (c: Buffer) => {
      stderr += c.toString();
      const m = /"msg":"listening"[^\n]*"socket":"([^"]+)"/.exec(stderr);
      if (m !== null) resolve(m[1]!);
    });
    void exited.then(() => reject(new Error(`serve exited before listening:\n${stderr}`)));
  });
  return {
    socket,
    async stop() {
      child.kill('SIGTERM');
      const [code] = (await exited) as [number | null];
      return code;
    },
  };
}

test('the default is CRYPTOD_SOCKET, else $XDG_RUNTIME_DIR/cryptod when it is your own directory, else /tmp/cryptod-$UID', () => {
  const runtime = tempDir();
  const tmp = tempDir();
  assert.deepEqual(resolveSocket('rel.sock', { env: { CRYPTOD_SOCKET: '/x.sock' } }), { path: join(process.cwd(), 'rel.sock'), source: 'explicit' });
  assert.deepEqual(resolveSocket(undefined, { env: { CRYPTOD_SOCKET: '/x.sock', XDG_RUNTIME_DIR: runtime } }), { path: '/x.sock', source: 'env' });
  assert.deepEqual(resolveSocket(undefined, { env: { XDG_RUNTIME_DIR: runtime }, tmp }), { path: join(runtime, 'cryptod', 'cryptod.sock'), source: 'runtime-dir' });
  const fallback = { path: join(tmp, `cryptod-${UID}`, 'cryptod.sock'), source: 'fallback' };
  assert.deepEqual(resolveSocket(undefined, { env: {}, tmp }), fallback);
  assert.deepEqual(resolveSocket(undefined, { env: { XDG_RUNTIME_DIR: 'relative/dir' }, tmp }), fallback);
  assert.deepEqual(resolveSocket(undefined, { env: { XDG_RUNTIME_DIR: join(runtime, 'missing') }, tmp }), fallback);
  if (OTHER_UID !== undefined) {
    const foreign = tempDir();
    chownSync(foreign, OTHER_UID, OTHER_UID);
    assert.deepEqual(resolveSocket(undefined, { env: { XDG_RUNTIME_DIR: foreign }, tmp }), fallback, "another user's runtime directory is not used");
  }
  // Without a temporary root the fallback is the fixed /tmp, whatever TMPDIR says.
  assert.equal(resolveSocket(undefined, { env: { TMPDIR: tmp } }).path, `/tmp/cryptod-${UID}/cryptod.sock`);
});

test('the fallback directory is created 0700; one that is open to others, foreign or a symlink is refused', () => {
  const tmp = tempDir();
  const location = resolveSocket(undefined, { env: {}, tmp });
  const dir = join(tmp, `cryptod-${UID}`);
  preparePrivateSocketDirectory(location);
  assert.equal(lstatSync(dir).mode & 0o777, 0o700);
  preparePrivateSocketDirectory(location); // an existing private directory is fine

  chmodSync(dir, 0o755);
  assert.throws(() => preparePrivateSocketDirectory(location), (err: unknown) => err instanceof ConfigError && /mode is 755, open to group or others; run `chmod 700 /.test(err.message));
  chmodSync(dir, 0o700);

  if (OTHER_UID !== undefined) {
    chownSync(dir, OTHER_UID, OTHER_UID);
    assert.throws(
      () => preparePrivateSocketDirectory(location),
      (err: unknown) => err instanceof ConfigError && err.message.includes(`it is owned by uid ${OTHER_UID}, not a directory of the daemon's user (uid ${UID})`),
    );
  }
  rmSync(dir, { recursive: true });
  symlinkSync(tempDir(), dir);
  assert.throws(() => preparePrivateSocketDirectory(location), (err: unknown) => err instanceof ConfigError && /it is a symbolic link/.test(err.message));
});

test('a daemon started in one directory is found by a client started in another, with no socket named', async () => {
  const runtime = tempDir();
  const env = envWith(runtime);
  const checkout = tempDir();
  const elsewhere = tempDir();
  const d = await serve(checkout, env);
  try {
    assert.equal(d.socket, join(runtime, 'cryptod', 'cryptod.sock'));
    assert.equal(lstatSync(join(runtime, 'cryptod')).mode & 0o777, 0o700);
    // Data stays in the directory serve was started from.
    assert.equal(lstatSync(join(checkout, '.cryptod')).isDirectory(), true);
    const st = await finish(cryptod(['status', '--json'], elsewhere, env));
    assert.equal(st.code, 0, st.stderr);
    assert.equal(typeof (JSON.parse(st.stdout) as { nodes: unknown }).nodes, 'number');
  } finally {
    assert.equal(await d.stop(), 0);
  }
});

test('serve refuses a default socket directory that another user created; the client refuses to connect through it', async () => {
  const runtime = tempDir();
  const env = envWith(runtime);
  const planted = join(runtime, 'cryptod');
  // As root: a directory owned by another uid. Otherwise a symbolic link, which is refused the same way.
  let why: string;
  if (OTHER_UID !== undefined) {
    mkdirSync(planted, { mode: 0o700 });
    chownSync(planted, OTHER_UID, OTHER_UID);
    why = `is owned by uid ${OTHER_UID}`;
  } else {
    symlinkSync(tempDir(), planted);
    why = 'is a symbolic link';
  }

  const served = await finish(cryptod(['serve', '--data-dir', join(tempDir(), 'd')], tempDir(), env));
  assert.equal(served.code, 1);
  assert.match(served.stderr, new RegExp(`refusing the socket directory ${planted}: it ${why}`));

  const client = await finish(cryptod(['status'], tempDir(), env));
  assert.equal(client.code, 1);
  assert.match(client.stderr, new RegExp(`^cryptod: CRYPTOD_ERR_CONFIG: refusing to connect through ${planted}: .* ${why}; another user may have created it`));
});
