/**
 * Token clients: the token format and its digest, the SQLite registry (the
 * token is never stored, only its SHA-256), HELLO with a token over a real
 * socket (ClientId token:NAME; bad, revoked and wrong-uid tokens get
 * CRYPTOD_ERR_AUTH_FAILED and a closed connection), revocation cutting live
 * connections, and `cryptod client add|revoke|list` run as a real process
 * against the same data directory as a running daemon.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { digestsMatch, issueToken, parseToken, TOKEN_ID_LENGTH } from '../src/auth/tokens.js';
import { connect } from '../src/client/client.js';
import { peerCred } from '../src/daemon/peer-cred.js';
import { AuthFailedError, ConnectionClosedError, InvalidArgumentError, NotFoundError } from '../src/protocol/errors.js';
import { FrameKind } from '../src/protocol/frame.js';
import { Op, PROTOCOL_VERSION } from '../src/protocol/ops.js';
import { openSqliteClientRegistry, type SqliteClientRegistry } from '../src/store/sqlite/client-registry.js';
import { eventually, startTestDaemon, type TestDaemon } from './helpers/daemon.js';
import { RawClient } from './helpers/raw-client.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'ct-'));
  dirs.push(d);
  return d;
}

/** A daemon with a registry on `dataDir`, identifying peers by SO_PEERCRED. */
async function daemonWithRegistry(dataDir = join(tempDir(), 'data')): Promise<{ td: TestDaemon; registry: SqliteClientRegistry; dataDir: string; stop(): Promise<void> }> {
  const registry = openSqliteClientRegistry({ dataDir });
  const td = await startTestDaemon({ clients: registry, peerIdentity: peerCred, revocationCheckMs: 50 });
  return {
    td,
    registry,
    dataDir,
    async stop() {
      await td.stop();
      await registry.close();
    },
  };
}

test('a token is cdt_ + base64url of 32 random bytes; parse gives its id and SHA-256', () => {
  const a = issueToken();
  const b = issueToken();
  assert.match(a.token, /^cdt_[A-Za-z0-9_-]{43}$/);
  assert.equal(Buffer.from(a.token.slice(4), 'base64url').length, 32);
  assert.notEqual(a.token, b.token);
  assert.equal(a.id, a.token.slice(4, 4 + TOKEN_ID_LENGTH));
  assert.deepEqual(a.hash, createHash('sha256').update(a.token).digest());
  const parsed = parseToken(a.token)!;
  assert.equal(parsed.id, a.id);
  assert.ok(digestsMatch(parsed.hash, a.hash));
  assert.ok(!digestsMatch(parsed.hash, b.hash));
  assert.ok(!digestsMatch(parsed.hash, a.hash.subarray(0, 31)), 'a digest of another length never matches (and does not throw)');
  for (const bad of ['', 'cdt_', `${a.token}x`, a.token.slice(0, -1), `cdx_${a.token.slice(4)}`, `cdt_${'!'.repeat(43)}`, 42, null]) {
    assert.equal(parseToken(bad), null, `parseToken(${JSON.stringify(bad)})`);
  }
});

test('the registry stores a hash, never the token; verify, revoke, re-add, uid restriction', async () => {
  const dataDir = join(tempDir(), 'data');
  const registry = openSqliteClientRegistry({ dataDir });
  try {
    const { token, client } = await registry.add('billing');
    assert.equal(client.name, 'billing');
    assert.equal(client.uid, null);
    assert.equal(client.revokedAt, null);
    const v = await registry.verify(token);
    assert.equal(v?.name, 'billing');
    assert.equal(v?.uid, null);

    await assert.rejects(registry.add('billing'), (e: unknown) => e instanceof InvalidArgumentError && /already has an active token/.test(e.message));
    await assert.rejects(registry.add('bad name'), InvalidArgumentError);
    await assert.rejects(registry.add('x', { uid: -1 }), InvalidArgumentError);

    // A token with one character changed, and one of the right shape that was never issued.
    const flipped = token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A');
    assert.equal(await registry.verify(flipped), null);
    assert.equal(await registry.verify(issueToken().token), null);
    assert.equal(await registry.verify('not a token'), null);

    const { token: restricted } = await registry.add('reports', { uid: 1234 });
    assert.equal((await registry.verify(restricted))?.uid, 1234);

    const revoked = await registry.revoke('billing');
    assert.notEqual(revoked.revokedAt, null);
    assert.equal(await registry.verify(token), null, 'a revoked token no longer verifies');
    await assert.rejects(registry.revoke('billing'), NotFoundError);
    await assert.rejects(registry.revoke('nobody'), NotFoundError);

    const again = await registry.add('billing');
    assert.notEqual(again.token, token);
    assert.equal((await registry.verify(again.token))?.name, 'billing');
    assert.equal(await registry.verify(token), null, 'the old token stays revoked after the name is re-added');
    const ids = [(await registry.verify(again.token))!.tokenId, parseToken(token)!.id];
    assert.deepEqual([...(await registry.stillValid(ids))], [ids[0]]);

    const list = await registry.list();
    // Oldest first; rows made in the same millisecond may come in either order.
    assert.deepEqual(
      list.map((c) => `${c.name} ${c.uid} ${c.revokedAt === null ? 'active' : 'revoked'}`).sort(),
      ['billing null active', 'billing null revoked', 'reports 1234 active'],
    );
    assert.equal(list[0]!.name, 'billing', 'the first token issued is listed first');
    assert.ok(!JSON.stringify(list).includes('cdt_'));

    // Not one of the tokens, nor their secret parts, is anywhere in the database files.
    await registry.close();
    const files = readdirSync(dataDir).map((f) => readFileSync(join(dataDir, f)));
    for (const t of [token, restricted, again.token]) {
      for (const f of files) {
        assert.ok(!f.includes(t), 'token found in the database');
        assert.ok(!f.includes(t.slice(4 + TOKEN_ID_LENGTH)), 'secret part of a token found in the database');
        assert.ok(!f.includes(Buffer.from(t.slice(4), 'base64url')), 'raw token bytes found in the database');
      }
    }
  } finally {
    await registry.close();
  }
});

test('HELLO with a valid token: ClientId token:NAME, handles shared across its connections only', async () => {
  const d = await daemonWithRegistry();
  try {
    const { token } = await d.registry.add('billing');
    const a = await connect({ socket: d.td.socketPath, token, clientName: 'whatever' });
    const b = await connect({ socket: d.td.socketPath, token });
    const plain = await connect({ socket: d.td.socketPath, clientName: 'billing' });
    assert.equal(a.info.clientId, 'token:billing');
    assert.equal(b.info.clientId, 'token:billing');
    assert.equal(plain.info.clientId, `uid:${process.getuid!()}/billing`, 'a client that only claims the name is not the token client');
    const key = await a.subtle.generateKey({ name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    const sig = await b.subtle.sign('HMAC', key, Buffer.from('abc'));
    assert.equal(sig.byteLength, 32);
    await assert.rejects(plain.subtle.sign('HMAC', key, Buffer.from('abc')), NotFoundError);
    const status = d.td.daemon.status();
    assert.equal(status.clients.find((c) => c.clientId === 'token:billing')?.connections, 2);
    for (const c of [a, b, plain]) await c.close();
  } finally {
    await d.stop();
  }
});

test('an invalid token gets CRYPTOD_ERR_AUTH_FAILED, never echoed, and the connection is closed', async () => {
  const d = await daemonWithRegistry();
  try {
    const { token } = await d.registry.add('svc');
    const forged = token.slice(0, -2) + (token.endsWith('AA') ? 'BB' : 'AA');
    const err = await connect({ socket: d.td.socketPath, token: forged }).then(
      () => assert.fail('connected with a forged token'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof AuthFailedError, `got ${String(err)}`);
    assert.equal(err.code, 'CRYPTOD_ERR_AUTH_FAILED');
    assert.ok(!err.message.includes(forged) && !err.message.includes(forged.slice(4, 20)), 'the error quotes the token');

    // Raw: the error frame comes first, then the daemon closes, and a request
    // pipelined behind the failed HELLO is never answered.
    const raw = await RawClient.connect(d.td.socketPath);
    raw.send(1, Op.HELLO, { version: PROTOCOL_VERSION, client: 'x', token: forged });
    raw.send(2, Op.PING, null);
    const reply = await raw.reply(1);
    assert.equal(reply.kind, FrameKind.ERROR);
    assert.equal((reply.payload as { code: string }).code, 'CRYPTOD_ERR_AUTH_FAILED');
    await raw.whenClosed;
    assert.equal(raw.queued.length, 0, 'the pipelined PING was answered after a failed authentication');

    // A token of the wrong type is an argument error, and the connection survives it.
    const raw2 = await RawClient.connect(d.td.socketPath);
    const typed = await raw2.call(Op.HELLO, { version: PROTOCOL_VERSION, token: Buffer.from(token) });
    assert.equal((typed.payload as { code: string }).code, 'CRYPTOD_ERR_INVALID_ARGUMENT');
    const ok = await raw2.call(Op.HELLO, { version: PROTOCOL_VERSION, token });
    assert.equal(ok.kind, FrameKind.RESPONSE);
    assert.equal((ok.payload as { clientId: string }).clientId, 'token:svc');
    raw2.destroy();
    assert.equal(d.td.daemon.dm.liveNodes(), 0);
  } finally {
    await d.stop();
  }
});

test('requests pipelined behind a token HELLO run as the token client', async () => {
  const d = await daemonWithRegistry();
  try {
    const { token } = await d.registry.add('piped');
    const raw = await RawClient.connect(d.td.socketPath);
    raw.send(1, Op.HELLO, { version: PROTOCOL_VERSION, token });
    raw.send(2, Op.PING, 'x');
    assert.equal((await raw.reply(1)).kind, FrameKind.RESPONSE);
    const ping = await raw.reply(2);
    assert.equal(ping.kind, FrameKind.RESPONSE, `PING after the token HELLO failed: ${JSON.stringify(ping.payload)}`);
    raw.destroy();
  } finally {
    await d.stop();
  }
});

test('revocation refuses new connections at once and cuts live ones', async () => {
  const d = await daemonWithRegistry();
  try {
    const { token } = await d.registry.add('tenant');
    const live = await connect({ socket: d.td.socketPath, token });
    const key = await live.subtle.generateKey({ name: 'AES-GCM', length: 256 }, false, ['encrypt']);
    assert.ok(key);
    assert.equal(d.td.daemon.dm.liveNodes(), 1);
    await d.registry.revoke('tenant');
    await assert.rejects(connect({ socket: d.td.socketPath, token }), AuthFailedError);
    // The live connection is closed by the periodic re-check, and its key freed.
    await eventually(() => live.connection.closed, 3000, 'the revoked connection to close');
    await assert.rejects(live.ping(), ConnectionClosedError);
    await eventually(() => d.td.daemon.dm.liveNodes() === 0, 3000, 'the revoked client\'s key to be released');
  } finally {
    await d.stop();
  }
});

test('a uid-restricted token works only from that uid', async () => {
  const d = await daemonWithRegistry();
  try {
    const me = process.getuid!();
    const { token: mine } = await d.registry.add('mine', { uid: me });
    const { token: theirs } = await d.registry.add('theirs', { uid: me + 1 });
    const c = await connect({ socket: d.td.socketPath, token: mine });
    assert.equal(c.info.clientId, 'token:mine');
    await c.close();
    await assert.rejects(connect({ socket: d.td.socketPath, token: theirs }), (e: unknown) => e instanceof AuthFailedError && /restricted to a uid/.test(e.message));
  } finally {
    await d.stop();
  }
});

test('a daemon without a client registry refuses every token; CRYPTOD_TOKEN is used by connect()', async () => {
  const td = await startTestDaemon();
  const saved = process.env.CRYPTOD_TOKEN;
  try {
    process.env.CRYPTOD_TOKEN = issueToken().token;
    await assert.rejects(connect({ socket: td.socketPath }), (e: unknown) => e instanceof AuthFailedError && /no client registry/.test(e.message));
    delete process.env.CRYPTOD_TOKEN;
    const c = await connect({ socket: td.socketPath });
    assert.equal(c.info.clientId, 'local/anonymous');
    await c.close();
  } finally {
    if (saved === undefined) delete process.env.CRYPTOD_TOKEN;
    else process.env.CRYPTOD_TOKEN = saved;
    await td.stop();
  }
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

async function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const code = await new Promise<number | null>((res) => child.on('close', (c) => res(c)));
  return { code, stdout, stderr };
}

test('cryptod client add|list|revoke against the data directory of a running daemon', async () => {
  const d = await daemonWithRegistry();
  try {
    const added = await cli(['client', 'add', 'web', '--data-dir', d.dataDir]);
    assert.equal(added.code, 0, added.stderr);
    const token = added.stdout.trim();
    assert.match(token, /^cdt_[A-Za-z0-9_-]{43}$/);
    assert.match(added.stderr, /shown once/);

    const again = await cli(['client', 'add', 'web', '--data-dir', d.dataDir]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /CRYPTOD_ERR_INVALID_ARGUMENT: .*already has an active token/);
    assert.equal(again.stdout, '');

    const restricted = await cli(['client', 'add', 'cron', '--uid', '0', '--data-dir', d.dataDir]);
    assert.equal(restricted.code, 0, restricted.stderr);

    // The running daemon accepts a token the CLI wrote, through CRYPTOD_TOKEN too.
    const saved = process.env.CRYPTOD_TOKEN;
    process.env.CRYPTOD_TOKEN = token;
    const c = await connect({ socket: d.td.socketPath }).finally(() => {
      if (saved === undefined) delete process.env.CRYPTOD_TOKEN;
      else process.env.CRYPTOD_TOKEN = saved;
    });
    assert.equal(c.info.clientId, 'token:web');

    const listed = await cli(['client', 'list', '--json', '--data-dir', d.dataDir]);
    assert.equal(listed.code, 0, listed.stderr);
    const rows = JSON.parse(listed.stdout) as Array<{ name: string; uid: number | null; created: string; revoked: string | null }>;
    assert.deepEqual(rows.map((r) => [r.name, r.uid, r.revoked]), [
      ['web', null, null],
      ['cron', 0, null],
    ]);
    assert.ok(!Number.isNaN(Date.parse(rows[0]!.created)));
    const table = await cli(['client', 'list', '--data-dir', d.dataDir]);
    assert.match(table.stdout, /^NAME +UID +CREATED +REVOKED\nweb +any +\S+ +-\ncron +0 +\S+ +-\n$/);
    for (const out of [listed.stdout, table.stdout, listed.stderr, table.stderr]) assert.ok(!out.includes(token.slice(4, 20)));

    // Revoked by another process: the daemon refuses the token and cuts the live connection.
    const revoked = await cli(['client', 'revoke', 'web', '--data-dir', d.dataDir]);
    assert.equal(revoked.code, 0, revoked.stderr);
    await assert.rejects(connect({ socket: d.td.socketPath, token }), AuthFailedError);
    await eventually(() => c.connection.closed, 3000, 'the connection of the revoked token to close');
    const after = JSON.parse((await cli(['client', 'list', '--json', '--data-dir', d.dataDir])).stdout) as Array<{ revoked: string | null }>;
    assert.notEqual(after[0]!.revoked, null);

    const missing = await cli(['client', 'revoke', 'web', '--data-dir', d.dataDir]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /CRYPTOD_ERR_NOT_FOUND/);
    const usage = await cli(['client', 'add', '--data-dir', d.dataDir]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /needs a client NAME/);
    const badUid = await cli(['client', 'add', 'x', '--uid', 'root', '--data-dir', d.dataDir]);
    assert.equal(badUid.code, 2);
    const unknown = await cli(['client', 'rotate', 'x']);
    assert.equal(unknown.code, 2);
  } finally {
    await d.stop();
  }
});
