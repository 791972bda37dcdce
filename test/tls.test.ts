/**
 * TCP with mutual TLS, on 127.0.0.1 only. A throwaway CA, server and client
 * certificates (and a second, foreign CA) are made in the test with the
 * `openssl` command line. Checked: a digest and a key operation end to end
 * with ClientId cert:<CN>; a token on top of the certificate; a client with
 * no certificate, with one from another CA, or with an unusable CN is
 * refused (and reported to onRefused); TLS below 1.2 is refused; a TCP
 * listener without TLS material fails at start, from startDaemon and from
 * `cryptod serve`; a CRL refuses revoked certificates, and a reload with a
 * new CRL closes the live connections it revokes (made with `openssl ca`).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { before, test } from 'node:test';
import { connect, type ConnectOptions } from '../src/client/client.js';
import type { RefusedConnection } from '../src/daemon/access.js';
import { createServerPki, type TestPki } from './helpers/test-pki.js';
import { silentLogger } from '../src/observe/logger.js';
import { startDaemon, type Daemon, type DaemonOptions } from '../src/daemon/server.js';
import { ConfigError, ConnectionClosedError, InvalidArgumentError } from '../src/protocol/errors.js';
import { crlSerials, pemBlocks } from '../src/protocol/der.js';
import { copyFileSync } from 'node:fs';
import { openSqliteClientRegistry } from '../src/store/sqlite/client-registry.js';
import { runCli, startCliDaemon } from './helpers/cli-daemon.js';
import { tempDirs } from './helpers/temp-dirs.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
let pki: TestPki;
const tempDir = tempDirs('ctl-');


before(() => {
  pki = createServerPki(tempDir(), {
    client: { cn: 'billing-svc' }, foreign: { cn: 'billing-svc', ca: 'other-ca' }, badname: { cn: 'two words' }, victim: { cn: 'victim-svc' },
  });
});

/** The serial of a certificate as node:tls reports it (uppercase hex). */
function serialOf(name: string): string {
  return execFileSync('openssl', ['x509', '-in', pki.file(`${name}.crt`), '-noout', '-serial'], { encoding: 'utf8' }).trim().replace(/^serial=/, '').replace(/^(00)+(?=.)/, '');
}


async function tlsDaemon(extra: Partial<DaemonOptions> = {}): Promise<{ daemon: Daemon; url: string; refused: RefusedConnection[] }> {
  const refused: RefusedConnection[] = [];
  const daemon = await startDaemon({
    socketPath: join(tempDir(), 'run', 's.sock'),
    logger: silentLogger,
    tcp: { url: 'tcp://127.0.0.1:0', certFile: pki.file('server.crt'), keyFile: pki.file('server.key'), clientCaFile: pki.file('ca.crt') },
    onRefused: (e) => refused.push(e),
    ...extra,
  });
  assert.equal(daemon.tcpAddress?.host, '127.0.0.1');
  return { daemon, url: `tls://127.0.0.1:${daemon.tcpAddress!.port}`, refused };
}

function clientTls(name: string): NonNullable<ConnectOptions['tls']> {
  return { cert: pki.pem(`${name}.crt`), key: pki.pem(`${name}.key`), ca: pki.pem('ca.crt') };
}

async function waitFor(pred: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('mutual TLS end to end: ClientId cert:<CN>, a digest and a key operation', async () => {
  const { daemon, url, refused } = await tlsDaemon();
  try {
    const c = await connect({ url, tls: clientTls('client'), clientName: 'ignored' });
    assert.equal(c.info.clientId, 'cert:billing-svc');
    const digest = await c.subtle.digest('SHA-256', Buffer.from('abc'));
    assert.equal(Buffer.from(digest).toString('hex'), createHash('sha256').update('abc').digest('hex'));
    const key = await c.subtle.generateKey({ name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
    const iv = Buffer.alloc(12, 7);
    const ct = await c.subtle.encrypt({ name: 'AES-GCM', iv }, key, Buffer.from('over TLS'));
    const pt = await c.subtle.decrypt({ name: 'AES-GCM', iv }, key, ct);
    assert.equal(Buffer.from(pt).toString(), 'over TLS');
    assert.equal(daemon.status().clients.find((x) => x.clientId === 'cert:billing-svc')?.nodes, 1);
    await c.close();
    await waitFor(() => daemon.dm.liveNodes() === 0, 'the TLS client\'s key to be released');
    assert.deepEqual(refused, []);

    // The Unix socket keeps working beside the TCP listener.
    const local = await connect({ socket: daemon.socketPath });
    assert.equal(local.info.clientId, 'local/anonymous');
    await local.close();
  } finally {
    await daemon.close();
  }
});

test('TLS 1.3 is negotiated; 1.2 is accepted; below 1.2 is refused', async () => {
  const { daemon } = await tlsDaemon();
  const port = daemon.tcpAddress!.port;
  const handshake = (opts: { minVersion?: 'TLSv1' | 'TLSv1.2'; maxVersion?: 'TLSv1.1' | 'TLSv1.2'; ciphers?: string }): Promise<string> =>
    new Promise((res, rej) => {
      const s = tlsConnect({ host: '127.0.0.1', port, ...clientTls('client'), ...opts });
      s.once('secureConnect', () => {
        const v = s.getProtocol() ?? '';
        s.destroy();
        res(v);
      });
      s.once('error', rej);
    });
  try {
    assert.equal(await handshake({}), 'TLSv1.3');
    assert.equal(await handshake({ maxVersion: 'TLSv1.2' }), 'TLSv1.2');
    // SECLEVEL=0 lets this client offer TLS 1.1 at all, so the refusal is the daemon's (a protocol_version alert).
    await assert.rejects(handshake({ minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }), (e: unknown) => {
      assert.match(String((e as { code?: string }).code), /ALERT_PROTOCOL_VERSION/);
      return true;
    });
  } finally {
    await daemon.close();
  }
});

test('a client without a certificate is refused', async () => {
  const { daemon, url, refused } = await tlsDaemon();
  try {
    const tls = { ca: pki.pem('ca.crt') } as unknown as NonNullable<ConnectOptions['tls']>;
    await assert.rejects(connect({ url, tls }), ConnectionClosedError);
    await waitFor(() => refused.length === 1, 'the refusal to be reported');
    assert.equal(refused[0]!.transport, 'tls');
    assert.equal(refused[0]!.remoteAddress, '127.0.0.1');
    assert.match(refused[0]!.reason, /TLS handshake failed/);
    assert.equal(daemon.status().connections, 0);
  } finally {
    await daemon.close();
  }
});

test('a client certificate from another CA is refused, even with the same CN', async () => {
  const { daemon, url, refused } = await tlsDaemon();
  try {
    await assert.rejects(connect({ url, tls: clientTls('foreign') }), ConnectionClosedError);
    await waitFor(() => refused.length === 1, 'the refusal to be reported');
    assert.match(refused[0]!.reason, /TLS handshake failed/);
    assert.equal(daemon.status().connections, 0);
  } finally {
    await daemon.close();
  }
});

test('a certificate whose CN is not a valid client name is refused before any byte is read', async () => {
  const { daemon, url, refused } = await tlsDaemon();
  try {
    await assert.rejects(connect({ url, tls: clientTls('badname') }), ConnectionClosedError);
    await waitFor(() => refused.length === 1, 'the refusal to be reported');
    assert.match(refused[0]!.reason, /subject CN/);
    assert.equal(daemon.status().connections, 0);
  } finally {
    await daemon.close();
  }
});

test('a token on top of the certificate makes the ClientId token:<name>', async () => {
  const registry = openSqliteClientRegistry({ dataDir: join(tempDir(), 'data') });
  const { daemon, url } = await tlsDaemon({ clients: registry });
  try {
    const { token } = await registry.add('reports');
    const c = await connect({ url, tls: clientTls('client'), token });
    assert.equal(c.info.clientId, 'token:reports');
    await c.close();
    // A uid-restricted token proves nothing over TCP: there is no uid.
    const { token: restricted } = await registry.add('local-only', { uid: 0 });
    await assert.rejects(connect({ url, tls: clientTls('client'), token: restricted }), (e: unknown) => (e as { code?: string }).code === 'CRYPTOD_ERR_AUTH_FAILED');
  } finally {
    await daemon.close();
    await registry.close();
  }
});

test('TCP without TLS material, or with a readable key, fails at start and says what is missing', async () => {
  const socketPath = join(tempDir(), 'run', 's.sock');
  await assert.rejects(startDaemon({ socketPath, logger: silentLogger, tcp: { url: 'tcp://127.0.0.1:0' } }), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.match(e.message, /plain TCP is refused/);
    for (const flag of ['--tls-cert', '--tls-key', '--tls-client-ca']) assert.ok(e.message.includes(flag), `${flag} not named: ${e.message}`);
    return true;
  });
  await assert.rejects(
    startDaemon({ socketPath, logger: silentLogger, tcp: { url: 'tcp://127.0.0.1:0', certFile: pki.file('server.crt'), keyFile: pki.file('server.key') } }),
    (e: unknown) => e instanceof ConfigError && e.message.includes('--tls-client-ca') && !e.message.includes('--tls-cert FILE'),
  );
  await assert.rejects(startDaemon({ socketPath, logger: silentLogger, tcp: { url: 'http://127.0.0.1:80' } }), (e: unknown) => e instanceof ConfigError && /tcp:\/\/HOST:PORT/.test(e.message));
  const loose = join(tempDir(), 'server.key');
  writeFileSync(loose, pki.pem('server.key'), { mode: 0o644 });
  chmodSync(loose, 0o644);
  await assert.rejects(
    startDaemon({ socketPath, logger: silentLogger, tcp: { url: 'tcp://127.0.0.1:0', certFile: pki.file('server.crt'), keyFile: loose, clientCaFile: pki.file('ca.crt') } }),
    (e: unknown) => e instanceof ConfigError && /mode 644/.test(e.message),
  );
  // Nothing was left listening on the socket path by the failed starts.
  const d = await startDaemon({ socketPath, logger: silentLogger });
  await d.close();

  // The same through the command line: exit 1 and the message.
  const dataDir = join(tempDir(), 'data');
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--data-dir', dataDir, '--socket', join(tempDir(), 's.sock'), '--listen', 'tcp://127.0.0.1:0'], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const code = await new Promise<number | null>((res) => child.on('close', (c) => res(c)));
  assert.equal(code, 1, stderr);
  assert.match(stderr, /cryptod: --listen tcp:\/\/127\.0\.0\.1:0 needs TLS with client certificates; plain TCP is refused\. Missing: --tls-cert/);
});

test('cryptod serve --listen with TLS files serves mutual TLS', async () => {
  const dataDir = join(tempDir(), 'data');
  const args = ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--data-dir', dataDir, '--socket', join(tempDir(), 's.sock'), '--listen', 'tcp://127.0.0.1:0'];
  args.push('--tls-cert', pki.file('server.crt'), '--tls-key', pki.file('server.key'), '--tls-client-ca', pki.file('ca.crt'));
  const serve = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const port = await new Promise<number>((res, rej) => {
    serve.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
      const m = /"tcp":"127\.0\.0\.1:([0-9]+)"/.exec(stderr);
      if (m !== null) res(Number(m[1]));
    });
    serve.on('exit', () => rej(new Error(`serve exited: ${stderr}`)));
  });
  try {
    const c = await connect({ url: `tls://127.0.0.1:${port}`, tls: clientTls('client') });
    assert.equal(c.info.clientId, 'cert:billing-svc');
    await c.close();
  } finally {
    serve.kill('SIGTERM');
    await new Promise((r) => serve.once('exit', r));
  }
});

test('connect() checks its url and TLS options', async () => {
  await assert.rejects(connect({ url: 'tcp://127.0.0.1:1', tls: clientTls('client') }), InvalidArgumentError);
  await assert.rejects(connect({ url: 'tls://127.0.0.1:1' }), (e: unknown) => e instanceof InvalidArgumentError && /needs the tls option/.test(e.message));
  await assert.rejects(connect({ url: 'tls://127.0.0.1:0', tls: clientTls('client') }), InvalidArgumentError);
});

test('a CRL refuses revoked certificates; reloading a new CRL closes the live connections it revokes', async () => {
  const crl = join(tempDir(), 'crl.pem');
  copyFileSync(pki.file('crl-empty.pem'), crl);
  const { daemon, url, refused } = await tlsDaemon({
    tcp: { url: 'tcp://127.0.0.1:0', certFile: pki.file('server.crt'), keyFile: pki.file('server.key'), clientCaFile: pki.file('ca.crt'), crlFile: crl },
  });
  try {
    const billing = await connect({ url, tls: clientTls('client') });
    const victim = await connect({ url, tls: clientTls('victim') });
    assert.equal(victim.info.clientId, 'cert:victim-svc');
    assert.deepEqual(daemon.reloadTls(), { revokedSerials: 0, closed: 0 });

    pki.revoke('victim');
    pki.gencrl('crl-victim.pem');
    assert.deepEqual(crlSerials(pemBlocks(pki.pem('crl-victim.pem').toString(), 'X509 CRL')[0]!), [serialOf('victim')]);
    copyFileSync(pki.file('crl-victim.pem'), crl);
    assert.deepEqual(daemon.reloadTls(), { revokedSerials: 1, closed: 1 });
    await assert.rejects(victim.subtle.digest('SHA-256', Buffer.from('x')), ConnectionClosedError);
    // The other client is untouched, and new handshakes check the new CRL.
    assert.equal(Buffer.from(await billing.subtle.digest('SHA-256', Buffer.from('abc'))).length, 32);
    await assert.rejects(connect({ url, tls: clientTls('victim') }));
    await waitFor(() => refused.some((r) => /TLS handshake failed|not verified/.test(r.reason)), 'the revoked certificate to be refused');

    // A CRL file that does not parse is refused, and the running one stays.
    writeFileSync(crl, '-----BEGIN X509 CRL-----\nMAMCAQA=\n-----END X509 CRL-----\n');
    assert.throws(() => daemon.reloadTls(), (e: unknown) => e instanceof ConfigError && /--tls-crl .*CRL 1 is malformed/.test(e.message));
    writeFileSync(crl, 'not a CRL');
    assert.throws(() => daemon.reloadTls(), (e: unknown) => e instanceof ConfigError && /expected PEM "-----BEGIN X509 CRL-----" blocks/.test(e.message));
    await assert.rejects(connect({ url, tls: clientTls('victim') }));
    const again = await connect({ url, tls: clientTls('client') });
    await again.close();
    await billing.close();
  } finally {
    await daemon.close();
  }
  // At start, an unusable CRL fails like any missing TLS file.
  await assert.rejects(
    startDaemon({
      socketPath: join(tempDir(), 'run', 's.sock'),
      logger: silentLogger,
      tcp: { url: 'tcp://127.0.0.1:0', certFile: pki.file('server.crt'), keyFile: pki.file('server.key'), clientCaFile: pki.file('ca.crt'), crlFile: crl },
    }),
    ConfigError,
  );
});

test('cryptod serve --tls-crl, and `cryptod reload` without --config re-reads the TLS files', async () => {
  const crl = join(tempDir(), 'crl.pem');
  copyFileSync(pki.file('crl-empty.pem'), crl);
  const d = await startCliDaemon([
    '--listen', 'tcp://127.0.0.1:0', '--tls-cert', pki.file('server.crt'), '--tls-key', pki.file('server.key'), '--tls-client-ca', pki.file('ca.crt'), '--tls-crl', crl,
  ]);
  try {
    const port = Number(/"tcp":"127\.0\.0\.1:([0-9]+)"/.exec(d.stderr().toString())?.[1]);
    const victim = await connect({ url: `tls://127.0.0.1:${port}`, tls: clientTls('victim') });
    await assert.rejects(connect({ url: `tls://127.0.0.1:${port}`, tls: clientTls('foreign') }));
    // victim.crt is revoked in the CA's database by the previous test; a fresh CRL says so.
    pki.gencrl('crl-cli.pem');
    copyFileSync(pki.file('crl-cli.pem'), crl);
    const r = await runCli(['reload', '--socket', d.socketPath]);
    assert.equal(r.code, 0, r.stderr.toString());
    assert.match(r.stdout.toString(), /reloaded the TLS listener\n  tls: +files re-read; 1 serial\(s\) revoked, 1 connection\(s\) closed/);
    await assert.rejects(victim.subtle.digest('SHA-256', Buffer.from('x')), ConnectionClosedError);
  } finally {
    assert.equal(await d.stop(), 0);
  }
});

test('cryptod serve --workers 2 shares the mutual-TLS port: connections land on both workers', { timeout: 120_000 }, async () => {
  const dataDir = join(tempDir(), 'data');
  const args = ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--data-dir', dataDir, '--socket', join(tempDir(), 's.sock'), '--listen', 'tcp://127.0.0.1:0', '--workers', '2'];
  args.push('--tls-cert', pki.file('server.crt'), '--tls-key', pki.file('server.key'), '--tls-client-ca', pki.file('ca.crt'));
  const serve = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const port = await new Promise<number>((res, rej) => {
    serve.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
      const ports = [...stderr.matchAll(/"tcp":"127\.0\.0\.1:([0-9]+)"/g)].map((m) => Number(m[1]));
      if (/"msg":"workers started"/.test(stderr)) {
        assert.equal(new Set(ports).size, 1, `both workers listen on one port: ${ports.join(', ')}`);
        res(ports[0]!);
      }
    });
    serve.on('exit', () => rej(new Error(`serve exited: ${stderr}`)));
  });
  try {
    const pids = new Set<number>();
    for (let i = 0; i < 6; i++) {
      const c = await connect({ url: `tls://127.0.0.1:${port}`, tls: clientTls('client') });
      assert.equal(c.info.clientId, 'cert:billing-svc');
      const s = (await c.status()) as { daemon: { pid: number }; workers: Array<{ pid: number }> };
      pids.add(s.daemon.pid);
      assert.equal(s.workers.length, 2);
      await c.close();
    }
    assert.equal(pids.size, 2, 'TLS connections are handed to both workers');
  } finally {
    serve.kill('SIGTERM');
    await new Promise((r) => serve.once('exit', r));
  }
});
