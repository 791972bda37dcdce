/**
 * Several daemons on one data directory (one SQLite keystore): what one
 * creates, rotates or destroys, the others use — at once when a request names
 * a key or version they do not hold yet (one refresh, then the answer), and
 * within the poll interval for everything else. First in one test process
 * (two key managers on their own SQLite connections, two daemons, real
 * sockets), then as two `cryptod serve` processes driven by the CLI.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { connect, type Client } from '../src/client/client.js';
import { openSqliteClientRegistry } from '../src/store/sqlite/client-registry.js';
import { openManagedKeys, type OpenedManagedKeys } from '../src/daemon/managed-keys.js';
import { CryptodError, KeyVersionError, NotFoundError } from '../src/protocol/errors.js';
import { runCli } from './helpers/cli-daemon.js';
import { eventually, startTestDaemon, type TestDaemon } from './helpers/daemon.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const te = new TextEncoder();
const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

interface Side {
  keys: OpenedManagedKeys;
  td: TestDaemon;
  /** A `local/…` client: an administrator. */
  c: Client;
  /** A `token:<name>` client, with no rights but those a key's policy grants. */
  token(name: string): Promise<Client>;
}

async function side(dataDir: string, refreshIntervalMs: number): Promise<Side> {
  const keys = await openManagedKeys({ dataDir, refreshIntervalMs });
  const registry = openSqliteClientRegistry({ dataDir });
  const td = await startTestDaemon({ keys, clients: registry });
  const c = await td.connect('admin');
  const tokens: Client[] = [];
  cleanups.push(async () => {
    for (const t of tokens) t.connection.destroy();
    await td.stop();
    await keys.close();
    await registry.close();
  });
  return {
    keys, td, c,
    async token(name) {
      const { token } = await registry.add(name);
      const t = await connect({ socket: td.socketPath, token });
      tokens.push(t);
      return t;
    },
  };
}

function unknownVersion(version: number): (e: unknown) => boolean {
  return (e) => e instanceof KeyVersionError && e.detail?.version === version && e.detail?.reason === 'unknown';
}

test('a key made or rotated by one daemon is usable on the other at once; destruction reaches it within the poll', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cd-multi-'));
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
  // A polls quickly; B never polls, so everything B sees it found on demand.
  const a = await side(dir, 20);
  const b = await side(dir, 0);

  await a.c.keys.create('shared', { type: 'aes256-gcm' });
  const fromB = await b.c.encrypt('shared', te.encode('made on B'));
  assert.equal(Buffer.from(await a.c.decrypt('shared', fromB)).toString(), 'made on B');

  assert.equal(await a.c.keys.rotate('shared'), 2);
  const v2 = await a.c.encrypt('shared', te.encode('v2 from A'));
  assert.equal(Buffer.from(await b.c.decrypt('shared', v2)).toString(), 'v2 from A', 'B learns version 2 from the data');
  assert.equal((await b.c.keys.describe('shared')).currentVersion, 2, 'and encrypts with it from then on');

  // A batch on B: only the item naming the newer version waits for a refresh.
  assert.equal(await a.c.keys.rotate('shared'), 3);
  const v3 = await a.c.encrypt('shared', te.encode('v3'));
  const bogus = Buffer.from(v3);
  bogus.writeUInt32BE(99, 7 + 'shared'.length);
  const out = await b.c.decryptBatch('shared', [{ data: v3 }, { data: fromB }, { data: bogus }]);
  assert.equal(Buffer.from(out[0] as Uint8Array).toString(), 'v3');
  assert.equal(Buffer.from(out[1] as Uint8Array).toString(), 'made on B');
  assert.ok(unknownVersion(99)(out[2]), String(out[2]));
  await assert.rejects(b.c.decrypt('shared', bogus), unknownVersion(99));
  await assert.rejects(b.c.encrypt('never-created', te.encode('x')), NotFoundError);

  // Signing keys too: B verifies what A signs with a version B has not seen.
  await a.c.keys.create('signer', { type: 'ed25519' });
  await a.c.keys.rotate('signer');
  const sig = await a.c.sign('signer', te.encode('m'));
  assert.equal(await b.c.verify('signer', te.encode('m'), sig), true);

  // A right granted through A reaches a client of B on its first request, and
  // a key it may not see answers NOT_FOUND the same way a missing one does.
  await a.c.keys.create('narrow', { type: 'hmac-sha256', clients: { 'token:early': ['mac'] } });
  const late = await b.token('late');
  await assert.rejects(late.mac('narrow', te.encode('m')), NotFoundError);
  await a.c.keys.setPolicy('narrow', { clients: { 'token:late': ['mac'] } });
  assert.equal((await late.mac('narrow', te.encode('m'))).length > 32, true);

  // Destroyed on B: A (polling every 20 ms) stops decrypting without being asked.
  await b.c.keys.destroy('shared');
  await eventually(() => a.keys.manager.entry('shared')?.disabled === true, 5000, 'A to pick up the destruction');
  await assert.rejects(a.c.decrypt('shared', v2), CryptodError);
});

test('a request naming made-up keys costs one shared refresh, not one each', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cd-multi-'));
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
  const a = await side(dir, 0);
  let refreshes = 0;
  const refresh = a.keys.manager.refresh.bind(a.keys.manager);
  a.keys.manager.refresh = () => {
    refreshes++;
    return refresh();
  };
  const misses = await Promise.allSettled(Array.from({ length: 200 }, (_, i) => a.c.encrypt(`nope-${i}`, te.encode('x'))));
  assert.ok(misses.every((r) => r.status === 'rejected' && r.reason instanceof NotFoundError));
  assert.ok(refreshes >= 1 && refreshes <= 5, `200 misses in flight together caused ${refreshes} keystore refreshes`);
  // The connection and the daemon are fine.
  await a.c.keys.create('real', { type: 'hmac-sha256' });
  assert.equal(await a.c.verifyMac('real', te.encode('m'), await a.c.mac('real', te.encode('m'))), true);
});

/** `cryptod serve` on `dataDir` with its own socket, until it accepts connections. */
async function serveProcess(dataDir: string, socket: string): Promise<() => Promise<void>> {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--data-dir', dataDir, '--socket', socket, '--log-level', 'warn'], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  proc.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise((r) => proc.once('exit', r));
  const deadline = Date.now() + 30_000;
  for (;;) {
    const up = await new Promise<boolean>((res) => {
      const s = createConnection(socket);
      s.once('connect', () => (s.destroy(), res(true)));
      s.once('error', () => res(false));
    });
    if (up) break;
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`cryptod serve did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return async () => {
    proc.kill('SIGTERM');
    await exited;
  };
}

test('two `cryptod serve` processes on one data directory, driven by the CLI', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cd-multi-'));
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
  const data = join(dir, 'data');
  const sa = join(dir, 'a.sock');
  const sb = join(dir, 'b.sock');
  const stopA = await serveProcess(data, sa);
  cleanups.push(stopA);
  const stopB = await serveProcess(data, sb);
  cleanups.push(stopB);
  const cli = async (socket: string, args: string[], input?: Buffer): Promise<Buffer> => {
    const r = await runCliWithInput(['--socket', socket], args, input);
    assert.equal(r.code, 0, `cryptod ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  await cli(sa, ['key', 'create', 'orders', '--type', 'chacha20-poly1305']);
  const ct1 = await cli(sb, ['encrypt', '--key', 'orders'], Buffer.from('one'));
  await cli(sa, ['key', 'rotate', 'orders']);
  const ct2 = await cli(sa, ['encrypt', '--key', 'orders'], Buffer.from('two'));
  assert.equal((await cli(sb, ['decrypt', '--key', 'orders'], ct2)).toString(), 'two');
  assert.equal((await cli(sa, ['decrypt', '--key', 'orders'], ct1)).toString(), 'one');
  const described = JSON.parse((await cli(sb, ['key', 'describe', 'orders', '--json'])).toString()) as { currentVersion: number };
  assert.equal(described.currentVersion, 2);
});

/** runCli with `--socket` placed after the subcommand words, and stdin. */
function runCliWithInput(socketArgs: string[], args: string[], input?: Buffer): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  if (input === undefined) return runCli([...args, ...socketArgs]).then((r) => ({ ...r, stderr: r.stderr.toString() }));
  return new Promise((res, rej) => {
    const p = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args, ...socketArgs], { cwd: ROOT });
    const out: Buffer[] = [];
    let err = '';
    p.stdout.on('data', (b: Buffer) => out.push(b));
    p.stderr.on('data', (b: Buffer) => (err += b.toString()));
    p.on('error', rej);
    p.on('close', (code) => res({ code, stdout: Buffer.concat(out), stderr: err }));
    p.stdin.end(input);
  });
}
