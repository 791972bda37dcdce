/**
 * The metrics listener on a non-loopback address serves mutual TLS only, with
 * the --listen files, and follows them on reload as --listen does: a CRL
 * that revokes a certificate closes its live (keep-alive) metrics connection
 * and refuses new ones, while other certificates keep scraping. A
 * certificate of another CA, or none, never gets in.
 */
import assert from 'node:assert/strict';
import { copyFileSync } from 'node:fs';
import { once } from 'node:events';
import { request } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { createDaemon } from '../src/daemon/assemble.js';
import { daemonConfig } from '../src/config/daemon-config.js';
import { createLogger } from '../src/observe/logger.js';
import { createServerPki, type TestPki } from './helpers/test-pki.js';
import { tempDirs } from './helpers/temp-dirs.js';

let pki: TestPki;
const tempDir = tempDirs('cm-tls-');

before(() => {
  pki = createServerPki(tempDir('cm-tls-pki-'), { prometheus: { cn: 'prometheus' }, victim: { cn: 'old-scraper' }, foreign: { cn: 'prometheus', ca: 'other-ca' } });
});


/** GET `path` on 127.0.0.1:`port` with client certificate `cert` (or none). */
function get(port: number, cert: string | null, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const r = request(
      {
        host: '127.0.0.1', port, path, method: 'GET', ca: pki.pem('ca.crt'),
        ...(cert === null ? {} : { cert: pki.pem(`${cert}.crt`), key: pki.pem(`${cert}.key`) }),
        agent: false,
      },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
        res.on('error', reject);
      },
    );
    r.on('error', reject);
    r.end();
  });
}

test('metrics over mutual TLS: reload with a CRL closes the revoked scraper\'s live connection and refuses it; others scrape on', async () => {
  const dir = tempDir('cm-tls-');
  const crl = join(dir, 'crl.pem');
  copyFileSync(pki.file('crl-empty.pem'), crl);
  const config = daemonConfig(null, {
    dataDir: join(dir, 'data'),
    socket: join(dir, 'run', 'cryptod.sock'),
    logLevel: 'error',
    tcp: { url: 'tcp://127.0.0.1:0', certFile: pki.file('server.crt'), keyFile: pki.file('server.key'), clientCaFile: pki.file('ca.crt'), crlFile: crl },
    // Every IPv4 address: not loopback, so mutual TLS; the test reaches it on 127.0.0.1.
    metrics: 'tcp://0.0.0.0:0',
  });
  const daemon = createDaemon(config, { logger: createLogger({ level: 'error' }) });
  await daemon.start();
  const port = Number(/:(\d+)$/.exec(daemon.metricsUrl!)![1]);
  try {
    const scrape = await get(port, 'prometheus', '/metrics');
    assert.equal(scrape.status, 200);
    assert.match(scrape.body, /# TYPE cryptod_/);
    await assert.rejects(get(port, null, '/healthz'), 'no client certificate: refused');
    await assert.rejects(get(port, 'foreign', '/healthz'), "another CA's certificate: refused");

    // A scraper's connection mid-request (headers not finished): open until the server's header timeout,
    // so only the CRL reload can close it now (an idle keep-alive one would close by itself within 1 s).
    assert.equal((await get(port, 'victim', '/healthz')).status, 200, 'the victim scrapes before the revocation');
    const live = tlsConnect({ host: '127.0.0.1', port, ca: pki.pem('ca.crt'), cert: pki.pem('victim.crt'), key: pki.pem('victim.key'), servername: 'localhost' });
    live.on('error', () => undefined);
    // One whole request answered first: the server has taken the connection in.
    live.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const [first] = (await once(live, 'data')) as [Buffer];
    assert.match(first.toString(), /^HTTP\/1\.1 200/);
    live.write('GET /metrics HTTP/1.1\r\nHost: localhost\r\n');
    const closedLive = new Promise<void>((res) => live.once('close', () => res()));

    pki.revoke('victim');
    pki.gencrl('crl-victim.pem');
    copyFileSync(pki.file('crl-victim.pem'), crl);
    const outcome = await daemon.reload('RELOAD');
    assert.deepEqual(outcome, { tls: { revokedSerials: 1, closed: 1 } }, 'the metrics connection counts among those closed');
    await closedLive;
    await assert.rejects(get(port, 'victim', '/healthz'), 'the revoked certificate: refused at the handshake');
    assert.equal((await get(port, 'prometheus', '/metrics')).status, 200);
  } finally {
    await daemon.close();
  }
});
