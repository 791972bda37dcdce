/**
 * The HTTP front door keeps the native protocol's identity rules: audit
 * records for what it creates and denies, revoked tokens stop working,
 * a uid-restricted token works only from that uid on the Unix socket, the
 * access policy refuses other users' connections at accept, and the
 * configuration surface (YAML `http:`, `adminClients`, loopback unless mutual TLS).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startVaultDaemon, type VaultDaemon } from './helpers/vault-daemon.js';
import { createTestUser } from './helpers/second-user.js';
import { parseHttpUrl, VaultFrontDoor } from '../src/http/vault-front-door.js';
import { loadConfig } from '../src/config/load.js';
import { daemonConfig } from '../src/config/daemon-config.js';
import { createDaemon } from '../src/daemon/assemble.js';

function call(vd: VaultDaemon, method: string, path: string, token: string | null, body?: unknown): Promise<{ status: number; body: { errors?: string[]; data?: Record<string, unknown> } | null }> {
  const headers: Record<string, string> = token === null ? {} : { 'X-Vault-Token': token };
  const url = vd.url !== null ? `${vd.url}${path}` : `http://localhost${path}`;
  return new Promise((resolve, reject) => {
    const r = request(url, { method, headers, ...(vd.url === null ? { socketPath: vd.socketPath! } : {}) }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, body: text === '' ? null : (JSON.parse(text) as never) }));
    });
    r.on('error', reject);
    if (body !== undefined) r.write(JSON.stringify(body));
    r.end();
  });
}

const b64 = (s: string): string => Buffer.from(s).toString('base64');

/** Retry `check` until it holds (no timing is asserted: only that it happens within 10 s). */
async function until(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`never happened: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('audit: key.created by the token client, request.denied for a key it may see but not use, revocation within the check interval', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cv-audit-'));
  const auditLog = join(dir, 'audit.log');
  const vd = await startVaultDaemon({ transport: 'tcp', adminClients: ['admin'], auditLog });
  try {
    const admin = await vd.addClient('admin');
    const reader = await vd.addClient('reader');
    assert.equal((await call(vd, 'POST', '/v1/transit/keys/audited', admin, { type: 'aes256-gcm96' })).status, 200);
    // reader may decrypt but not encrypt: some right, not this one → 403, audited.
    const policy = await call(vd, 'POST', '/v1/transit/keys/audited/config', admin, { deletion_allowed: false });
    assert.equal(policy.status, 200);
    const native = (await import('../src/client/client.js')).connect;
    const c = await native({ socket: vd.daemon.config.socket.path, token: admin });
    await c.keys.setPolicy('audited', { clients: { 'token:admin': ['encrypt', 'decrypt', 'admin'], 'token:reader': ['decrypt'] } });
    await c.close();
    const denied = await call(vd, 'POST', '/v1/transit/encrypt/audited', reader, { plaintext: b64('x') });
    assert.equal(denied.status, 403, JSON.stringify(denied.body));
    assert.match(denied.body!.errors![0]!, /FORBIDDEN/);
    const events = (): Array<Record<string, unknown>> => readFileSync(auditLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    await until('key.created audited', () => events().some((e) => e.event === 'key.created' && e.key === 'audited' && e.by === 'token:admin'));
    await until('request.denied audited', () => events().some((e) => e.event === 'request.denied' && e.clientId === 'token:reader' && e.key === 'audited' && e.op === 'MANAGED_ENCRYPT'));
    // Revoked: refused once the remembered verification expires (the revocation check interval, 50 ms here).
    assert.equal((await call(vd, 'POST', '/v1/transit/decrypt/audited', reader, { ciphertext: 'vault:v1:AAAA' })).status, 400);
    await vd.revokeClient('reader');
    await until('the revoked token refused', async () => (await call(vd, 'GET', '/v1/auth/token/lookup-self', reader)).status === 403);
  } finally {
    await vd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

/** One request through `agent`; `reused` says whether it went out on a connection the agent already had. */
function callOn(agent: Agent, vd: VaultDaemon, path: string, token: string, method = 'GET', body?: unknown): Promise<{ status: number; reused: boolean; body: { data?: Record<string, unknown> } | null }> {
  return new Promise((resolve, reject) => {
    const r = request(`${vd.url}${path}`, { agent, method, headers: { 'X-Vault-Token': token } }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, reused: r.reusedSocket, body: text === '' ? null : (JSON.parse(text) as never) }));
    });
    r.on('error', reject);
    if (body !== undefined) r.write(JSON.stringify(body));
    r.end();
  });
}

test('a connection moved onto the LIST rewriter carries large bodies both ways, and LIST again, kept alive', async () => {
  const vd = await startVaultDaemon({ transport: 'tcp', adminClients: ['admin'] });
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const admin = await vd.addClient('admin');
    assert.equal((await callOn(agent, vd, '/v1/transit/keys/big', admin, 'POST', { type: 'aes256-gcm96' })).status, 200);
    assert.deepEqual((await callOn(agent, vd, '/v1/transit/keys', admin, 'LIST')).body!.data!.keys, ['big']);
    // About 550 KB each way: more than the streams' buffers, so both sides pause and resume.
    const batch = { batch_input: Array.from({ length: 400 }, (_, i) => ({ plaintext: Buffer.alloc(1024, i).toString('base64'), reference: String(i) })) };
    const enc = await callOn(agent, vd, '/v1/transit/encrypt/big', admin, 'POST', batch);
    assert.equal(enc.status, 200);
    assert.equal(enc.reused, true);
    const results = enc.body!.data!.batch_results as Array<{ ciphertext: string; reference: string }>;
    assert.equal(results.length, 400);
    const dec = await callOn(agent, vd, '/v1/transit/decrypt/big', admin, 'POST', { batch_input: results.map((r) => ({ ciphertext: r.ciphertext })) });
    assert.equal(Buffer.from((dec.body!.data!.batch_results as Array<{ plaintext: string }>)[399]!.plaintext, 'base64')[0], 399 & 0xff);
    const again = await callOn(agent, vd, '/v1/transit/keys', admin, 'LIST');
    assert.deepEqual(again.body!.data!.keys, ['big']);
    assert.equal(again.reused, true);
  } finally {
    agent.destroy();
    await vd.stop();
  }
});

test('one keep-alive connection: the same token is served from the connection, another token is its own client, a wrong one is refused, a revoked one stops working', async () => {
  const vd = await startVaultDaemon({ transport: 'tcp' });
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const alpha = await vd.addClient('alpha');
    const beta = await vd.addClient('beta');
    const who = async (token: string, status = 200): Promise<unknown> => {
      const r = await callOn(agent, vd, '/v1/auth/token/lookup-self', token);
      assert.equal(r.status, status, JSON.stringify(r.body));
      return r.body?.data?.entity_id;
    };
    assert.equal(await who(alpha), 'token:alpha');
    assert.equal(await who(alpha), 'token:alpha');
    assert.equal(await who(beta), 'token:beta');
    // The same length as alpha's, one character off: refused, and alpha is verified afresh after it.
    const wrong = alpha.slice(0, -1) + (alpha.endsWith('A') ? 'B' : 'A');
    await who(wrong, 403);
    assert.equal(await who(alpha), 'token:alpha');
    const last = await callOn(agent, vd, '/v1/auth/token/lookup-self', alpha);
    assert.equal(last.reused, true, 'all of it on one kept-alive connection');
    await vd.revokeClient('alpha');
    await until('the revoked token refused on the same connection', async () => {
      const r = await callOn(agent, vd, '/v1/auth/token/lookup-self', alpha);
      return r.status === 403 && r.reused;
    });
    assert.equal(await who(beta), 'token:beta');
  } finally {
    agent.destroy();
    await vd.stop();
  }
});

test('Unix socket: a token restricted to a uid works from that uid only; the access policy refuses another user at accept', async () => {
  const vd = await startVaultDaemon({ transport: 'unix' });
  const user = createTestUser('cv-http');
  try {
    const mine = await vd.addClient('mine', process.getuid!());
    const theirs = await vd.addClient('theirs', user.uid);
    assert.equal((await call(vd, 'GET', '/v1/auth/token/lookup-self', mine)).status, 200);
    const wrongUid = await call(vd, 'GET', '/v1/auth/token/lookup-self', theirs);
    assert.equal(wrongUid.status, 403);
    assert.match(wrongUid.body!.errors![0]!, /restricted to a uid/);
    // The other user reaches the socket (its directory and file opened up for the test) and is refused at accept.
    execFileSync('chmod', ['0755', join(vd.dir), join(vd.dir, 'http')]);
    execFileSync('chmod', ['0666', vd.socketPath!]);
    const script = `const h=require('node:http');const r=h.request({socketPath:${JSON.stringify(vd.socketPath)},path:'/v1/auth/token/lookup-self',headers:{'X-Vault-Token':${JSON.stringify(theirs)}}},(res)=>{let t='';res.on('data',c=>t+=c);res.on('end',()=>{console.log(res.statusCode+' '+t)})});r.on('error',e=>console.log('error '+e.message));r.end();`;
    const out = await new Promise<string>((resolve) => {
      const p = spawn(process.execPath, ['-e', script], { uid: user.uid, gid: user.gid, stdio: ['ignore', 'pipe', 'inherit'] });
      let text = '';
      p.stdout.on('data', (c: Buffer) => (text += c.toString()));
      p.on('exit', () => resolve(text));
    });
    assert.match(out, /^403 .*not admitted by this daemon's access policy/, out);
    assert.equal((await call(vd, 'GET', '/v1/sys/health', null)).status, 200);
  } finally {
    user.remove();
    await vd.stop();
  }
});

test('configuration: YAML http and adminClients; non-loopback TCP parses (TLS decides at start); --http without the front door is refused by createDaemon', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cv-conf-'));
  try {
    const file = join(dir, 'cryptod.yaml');
    writeFileSync(file, 'http: { listen: "tcp://127.0.0.1:8200", mount: crypto/transit }\nadminClients: [deployer]\n', { mode: 0o600 });
    const config = daemonConfig(loadConfig(file), { dataDir: join(dir, 'data') });
    assert.deepEqual(config.http, { url: 'tcp://127.0.0.1:8200', mount: 'crypto/transit' });
    assert.deepEqual(config.adminClients, ['deployer']);
    writeFileSync(file, 'http: { listen: 8200 }\nadminClients: ["bad name"]\n', { mode: 0o600 });
    assert.throws(() => loadConfig(file), /http\.listen|expected a non-empty string[\s\S]*adminClients|adminClients[\s\S]*http/);
    // A non-loopback address parses; start() refuses it without the TLS files (test/vault-tls.test.ts).
    assert.deepEqual(parseHttpUrl('tcp://0.0.0.0:8200'), { host: '0.0.0.0', port: 8200, loopback: false });
    assert.throws(() => parseHttpUrl('http://127.0.0.1:8200'), /expected unix:\/path\/http\.sock or tcp:\/\/127\.0\.0\.1:PORT/);
    assert.deepEqual(parseHttpUrl('tcp://[::1]:0'), { host: '::1', port: 0, loopback: true });
    assert.throws(() => new VaultFrontDoor({ url: 'unix:/tmp/x.sock', mount: '../etc' }), /--http-mount/);
    assert.throws(() => createDaemon(config), /frontDoors/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('limits: maxHttpInflight answers 429 beyond it, maxHttpBody 413; both leave the daemon serving', async () => {
  const vd = await startVaultDaemon({ transport: 'tcp', limits: { maxHttpInflight: 1, maxHttpBody: 2048, maxConnections: 2, maxConnectionsPerUid: 1 } });
  try {
    const token = await vd.addClient('limited');
    const port = Number(new URL(vd.url!).port);
    // A request in flight: its headers are in, its body is not finished.
    const { connect } = await import('node:net');
    const held = connect(port, '127.0.0.1');
    let heldReply = '';
    held.on('data', (c: Buffer) => (heldReply += c.toString()));
    await new Promise((r) => held.once('connect', r));
    const body = JSON.stringify({ input: b64('abc') });
    held.write(`POST /v1/transit/hash HTTP/1.1\r\nHost: x\r\nX-Vault-Token: ${token}\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 3)}`);
    await until('the held request counted', async () => (await call(vd, 'GET', '/v1/auth/token/lookup-self', token)).status === 429);
    const refused = await call(vd, 'GET', '/v1/auth/token/lookup-self', token);
    assert.equal(refused.status, 429);
    assert.match(refused.body!.errors![0]!, /maxHttpInflight 1/);
    held.write(body.slice(3));
    await until('the held request answered', () => heldReply.includes('"sum":"ba7816bf'));
    held.destroy();
    await until('serving again', async () => (await call(vd, 'GET', '/v1/auth/token/lookup-self', token)).status === 200);
    // maxConnections (2 here) bounds the HTTP connections too: a third is closed at accept.
    const open1 = connect(port, '127.0.0.1');
    const open2 = connect(port, '127.0.0.1');
    await Promise.all([open1, open2].map((s) => new Promise((r) => s.once('connect', r))));
    const third = connect(port, '127.0.0.1');
    await new Promise((r) => third.once('close', r));
    open1.destroy();
    open2.destroy();
    await until('connections free again', async () => (await call(vd, 'GET', '/v1/auth/token/lookup-self', token)).status === 200);
    const big = await call(vd, 'POST', '/v1/transit/hash', token, { input: b64('x'.repeat(3000)) });
    assert.equal(big.status, 413);
    assert.match(big.body!.errors![0]!, /2048 bytes/);
    assert.equal((await call(vd, 'POST', '/v1/transit/hash', token, { input: b64('abc') })).status, 200);
  } finally {
    await vd.stop();
  }
});

test('cryptod serve --http unix:… --admin-client: the CLI builds the front door; `client add` issues its token', async () => {
  const { startCliDaemon, runCli } = await import('./helpers/cli-daemon.js');
  const d = await startCliDaemon((dir) => ['--http', `unix:${join(dir, 'run', 'http.sock')}`, '--admin-client', 'deployer']);
  try {
    const added = await runCli(['client', 'add', 'deployer', '--data-dir', join(d.dir, 'data')]);
    assert.equal(added.code, 0, added.stderr.toString());
    const token = /cdt_[A-Za-z0-9_-]{43}/.exec(added.stdout.toString())?.[0];
    assert.ok(token !== undefined, added.stdout.toString());
    const socketPath = join(d.dir, 'run', 'http.sock');
    const vd = { url: null, socketPath } as unknown as VaultDaemon;
    const created = await call(vd, 'POST', '/v1/transit/keys/from-cli', token, { type: 'ed25519' });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    assert.deepEqual((await call(vd, 'LIST', '/v1/transit/keys', token)).body!.data!.keys, ['from-cli']);
    assert.match(d.stderr().toString(), /"frontDoor":"http unix:/);
  } finally {
    await d.stop();
  }
});
