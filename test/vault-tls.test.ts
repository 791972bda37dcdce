/**
 * The Vault-compatible HTTP API on a non-loopback address: refused without
 * the --listen TLS files; with them, HTTPS with client certificates
 * required (the native listener's CA, suites and CRL). A certificate alone
 * is the client cert:<CN>; an X-Vault-Token on top is the token client. A
 * TLS reload with a CRL that revokes a certificate refuses it on new
 * connections and closes its live ones. Real node:https clients, real
 * certificates from the openssl command line (as test/tls.test.ts makes them),
 * and hvac with its own client-certificate options.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { Agent, request } from 'node:https';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { createDaemon, type AssembledDaemon } from '../src/daemon/assemble.js';
import { createServerPki, type TestPki } from './helpers/test-pki.js';
import { daemonConfig } from '../src/config/daemon-config.js';
import { createLogger } from '../src/observe/logger.js';
import { openSqliteClientRegistry } from '../src/store/sqlite/client-registry.js';
import { VaultFrontDoor } from '../src/http/vault-front-door.js';
import { ConfigError } from '../src/protocol/errors.js';
import { connect } from '../src/client/client.js';
import { tempDirs } from './helpers/temp-dirs.js';

let pki: TestPki;
const tempDir = tempDirs('cv-tls-');


before(() => {
  pki = createServerPki(tempDir('cv-tls-pki-'), { client: { cn: 'billing-svc' }, victim: { cn: 'victim-svc' }, foreign: { cn: 'billing-svc', ca: 'other-ca' } });
});


interface HttpsDaemon {
  daemon: AssembledDaemon;
  port: number;
  crl: string;
  addClient(name: string): Promise<string>;
  stop(): Promise<void>;
}

/** A daemon whose HTTP listener binds every IPv4 address (non-loopback); the tests reach it on 127.0.0.1 only. */
async function httpsDaemon(): Promise<HttpsDaemon> {
  const dir = tempDir('cv-tls-');
  const crl = join(dir, 'crl.pem');
  copyFileSync(pki.file('crl-empty.pem'), crl);
  const dataDir = join(dir, 'data');
  const config = daemonConfig(null, {
    dataDir,
    socket: join(dir, 'run', 'cryptod.sock'),
    logLevel: 'error',
    tcp: { url: 'tcp://127.0.0.1:0', certFile: pki.file('server.crt'), keyFile: pki.file('server.key'), clientCaFile: pki.file('ca.crt'), crlFile: crl },
    http: { url: 'tcp://0.0.0.0:0' },
    adminClients: ['admin'],
  });
  const door = new VaultFrontDoor(config.http!);
  const daemon = createDaemon(config, { logger: createLogger({ level: 'error' }), frontDoors: [door], revocationCheckMs: 50 });
  await daemon.start();
  const registry = openSqliteClientRegistry({ dataDir });
  return {
    daemon,
    port: door.port!,
    crl,
    async addClient(name) {
      return (await registry.add(name, {})).token;
    },
    async stop() {
      await daemon.close();
      await registry.close();
    },
  };
}

interface Reply {
  status: number;
  body: { errors?: string[]; data?: Record<string, unknown> } | null;
}

/** One HTTPS request to 127.0.0.1 with the client certificate `cert` (or none). */
function call(port: number, cert: string | null, method: string, path: string, token: string | null, body?: unknown, agent?: Agent): Promise<Reply> {
  const headers: Record<string, string> = token === null ? {} : { 'X-Vault-Token': token };
  return new Promise((resolve, reject) => {
    const r = request(
      {
        host: '127.0.0.1', port, path, method, headers, ca: pki.pem('ca.crt'),
        ...(cert === null ? {} : { cert: pki.pem(`${cert}.crt`), key: pki.pem(`${cert}.key`) }),
        ...(agent === undefined ? { agent: false } : { agent }),
      },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, body: text === '' ? null : (JSON.parse(text) as never) }));
        res.on('error', reject);
      },
    );
    r.on('error', reject);
    if (body !== undefined) r.write(JSON.stringify(body));
    r.end();
  });
}

const b64 = (s: string): string => Buffer.from(s).toString('base64');

test('a non-loopback --http address without the --listen TLS files is refused at start, naming the flags', async () => {
  const dir = tempDir('cv-tls-none-');
  const config = daemonConfig(null, { dataDir: join(dir, 'data'), socket: join(dir, 'run', 'cryptod.sock'), logLevel: 'error', http: { url: 'tcp://0.0.0.0:0' } });
  const daemon = createDaemon(config, { logger: createLogger({ level: 'error' }), frontDoors: [new VaultFrontDoor(config.http!)] });
  await assert.rejects(daemon.start(), (e: unknown) => e instanceof ConfigError && /non-loopback address needs mutual TLS/.test(e.message) && /--tls-cert/.test(e.message) && /--tls-client-ca/.test(e.message));
  await daemon.close();
});

test('HTTPS with client certificates: none or another CA refused; a certificate is cert:<CN>, a token on top is the token client; transit encrypt works', async () => {
  const d = await httpsDaemon();
  try {
    await assert.rejects(call(d.port, null, 'GET', '/v1/sys/health', null));
    await assert.rejects(call(d.port, 'foreign', 'GET', '/v1/sys/health', null));
    // Plain HTTP on the TLS port gets no answer from the API.
    await assert.rejects(
      new Promise((resolve, reject) => {
        const r = httpRequest({ host: '127.0.0.1', port: d.port, path: '/v1/sys/health' }, (res) => {
          res.resume();
          res.on('end', () => (res.statusCode === 200 ? resolve(res.statusCode) : reject(new Error(`status ${res.statusCode}`))));
        });
        r.on('error', reject);
        r.end();
      }),
    );

    const who = await call(d.port, 'client', 'GET', '/v1/auth/token/lookup-self', null);
    assert.equal(who.status, 200, JSON.stringify(who.body));
    assert.equal(who.body!.data!.entity_id, 'cert:billing-svc');

    const admin = await d.addClient('admin');
    const asAdmin = await call(d.port, 'client', 'GET', '/v1/auth/token/lookup-self', admin);
    assert.equal(asAdmin.body!.data!.entity_id, 'token:admin');
    assert.equal((await call(d.port, 'client', 'POST', '/v1/transit/keys/orders', admin, { type: 'aes256-gcm96' })).status, 200);
    const viaToken = await call(d.port, 'client', 'POST', '/v1/transit/encrypt/orders', admin, { plaintext: b64('order 1') });
    assert.equal(viaToken.status, 200, JSON.stringify(viaToken.body));
    assert.match(String(viaToken.body!.data!.ciphertext), /^vault:v1:/);

    // The certificate's client may use the key once its policy names cert:billing-svc.
    const denied = await call(d.port, 'client', 'POST', '/v1/transit/encrypt/orders', null, { plaintext: b64('order 2') });
    // A key the client may not see does not exist for it (as on the native protocol): 404, not 403.
    assert.equal(denied.status, 404, JSON.stringify(denied.body));
    const native = await connect({ socket: d.daemon.config.socket.path, token: admin });
    await native.keys.setPolicy('orders', { clients: { 'token:admin': ['encrypt', 'decrypt', 'admin'], 'cert:billing-svc': ['encrypt', 'decrypt'] } });
    await native.close();
    const enc = await call(d.port, 'client', 'POST', '/v1/transit/encrypt/orders', null, { plaintext: b64('order 2') });
    assert.equal(enc.status, 200, JSON.stringify(enc.body));
    const dec = await call(d.port, 'client', 'POST', '/v1/transit/decrypt/orders', null, { ciphertext: enc.body!.data!.ciphertext });
    assert.equal(Buffer.from(String(dec.body!.data!.plaintext), 'base64').toString(), 'order 2');
  } finally {
    await d.stop();
  }
});

test('a TLS reload with a CRL that revokes a certificate closes its live HTTPS connection and refuses new ones; others keep working', async () => {
  const d = await httpsDaemon();
  const victimAgent = new Agent({ keepAlive: true, maxSockets: 1, ca: pki.pem('ca.crt'), cert: pki.pem('victim.crt'), key: pki.pem('victim.key') });
  try {
    assert.equal((await call(d.port, 'victim', 'GET', '/v1/sys/health', null, undefined, victimAgent)).status, 200);
    // A LIST moves the connection onto the LIST rewriter (list-takeover.ts): the revocation still reaches it.
    const listed = await call(d.port, 'victim', 'LIST', '/v1/transit/keys', null, undefined, victimAgent);
    assert.equal(listed.status, 200, JSON.stringify(listed.body));
    const live = Object.values(victimAgent.freeSockets).flat()[0]!;
    assert.ok(live !== undefined, 'the keep-alive connection is pooled');
    const closedLive = new Promise<void>((res) => live.once('close', () => res()));

    pki.revoke('victim');
    pki.gencrl('crl-victim.pem');
    copyFileSync(pki.file('crl-victim.pem'), d.crl);
    const outcome = await d.daemon.reload('RELOAD');
    assert.deepEqual(outcome, { tls: { revokedSerials: 1, closed: 1 } });
    await closedLive;

    await assert.rejects(call(d.port, 'victim', 'GET', '/v1/sys/health', null));
    const who = await call(d.port, 'client', 'GET', '/v1/auth/token/lookup-self', null);
    assert.equal(who.status, 200);
    assert.equal(who.body!.data!.entity_id, 'cert:billing-svc');
  } finally {
    victimAgent.destroy();
    await d.stop();
  }
});

const PYTHON = '/usr/bin/python3';
const hvacMissing = !existsSync(PYTHON) || !existsSync('/usr/lib/python3/dist-packages/hvac');
if (hvacMissing && process.env.CI !== undefined) throw new Error('python3-hvac is required in CI (.ci/run installs it)');
if (hvacMissing) console.warn('\n*** SKIPPING the hvac-over-mTLS test: /usr/bin/python3 with python3-hvac is not installed (apt-get install python3-hvac) ***\n');

/** hvac's own TLS options (cert=(crt, key), verify=CA): create, encrypt and decrypt over HTTPS with a token on top of the certificate. */
const HVAC_SCRIPT = `
import json, os, sys, hvac
c = hvac.Client(url=os.environ['URL'], token=os.environ['TOKEN'], cert=(os.environ['CRT'], os.environ['KEY']), verify=os.environ['CA'])
c.secrets.transit.create_key(name='hvac-tls', key_type='aes256-gcm96')
ct = c.secrets.transit.encrypt_data(name='hvac-tls', plaintext='aGVsbG8=')['data']['ciphertext']
pt = c.secrets.transit.decrypt_data(name='hvac-tls', ciphertext=ct)['data']['plaintext']
keys = c.secrets.transit.list_keys()['data']['keys']
who = c.lookup_token()['data']['entity_id']
try:
    hvac.Client(url=os.environ['URL'], token=os.environ['TOKEN'], verify=os.environ['CA']).sys.read_health_status(method='GET')
    refused = False
except Exception:
    refused = True
print(json.dumps({'ct': ct, 'pt': pt, 'keys': keys, 'who': who, 'refused_without_cert': refused}))
`;

test('hvac over HTTPS with its client-certificate options: a token client creates a key, encrypts and decrypts; without a certificate hvac is refused', { skip: hvacMissing }, async () => {
  const d = await httpsDaemon();
  try {
    const admin = await d.addClient('admin');
    // Asynchronously: the daemon answers from this process's event loop.
    const p = spawn(PYTHON, ['-c', HVAC_SCRIPT], {
      env: { ...process.env, URL: `https://127.0.0.1:${d.port}`, TOKEN: admin, CRT: pki.file('client.crt'), KEY: pki.file('client.key'), CA: pki.file('ca.crt') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    p.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const status = await new Promise<number | null>((res) => p.once('close', (code) => res(code)));
    assert.equal(status, 0, stderr);
    const out = JSON.parse(stdout) as { ct: string; pt: string; keys: string[]; who: string; refused_without_cert: boolean };
    assert.match(out.ct, /^vault:v1:/);
    assert.equal(out.pt, 'aGVsbG8=');
    // LIST on hvac's keep-alive HTTPS connection, and a request after it on the same session.
    assert.deepEqual(out.keys, ['hvac-tls']);
    assert.equal(out.who, 'token:admin');
    assert.equal(out.refused_without_cert, true);
  } finally {
    await d.stop();
  }
});
