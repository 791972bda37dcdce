/**
 * `cryptod serve --workers 2 --http …` (src/cli/workers.ts), started as an
 * operator would: the HTTP listener — a Unix socket or TCP loopback — is
 * shared by both workers as the native socket is. Requests on several
 * connections land on both (each worker's HTTP counts in STATUS), node-vault
 * and plain requests work, a killed worker is replaced while HTTP keeps
 * serving (a request caught by the death is cut off, never left hanging),
 * a revoked token is refused by every worker, and the Unix HTTP
 * socket keeps its 0600 mode. On HTTPS (a non-loopback address with the
 * --listen TLS files), SIGHUP with a CRL revoking a certificate reaches every
 * worker: each closes its live connection of that certificate and refuses new
 * ones.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { connect } from '../src/client/client.js';
import { logLines, runCli, startCliDaemon, type CliDaemon } from './helpers/cli-daemon.js';
import { eventually } from './helpers/daemon.js';
import { createServerPki } from './helpers/test-pki.js';

const require = createRequire(import.meta.url);
// eslint-disable-next-line @typescript-eslint/no-require-imports
const nodeVault = require('node-vault') as (o: Record<string, unknown>) => { write(path: string, data: Record<string, unknown>): Promise<{ data: Record<string, unknown> }> };

const cleanups: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

interface Line {
  msg?: string;
  pid?: number;
  workers?: number[];
  frontDoor?: string;
}

const lines = (d: CliDaemon): Line[] => logLines<Line>(d);

interface HttpCounts {
  connections: number;
  inflight: number;
  requests: number;
}

interface Status {
  http: HttpCounts & { maxInflight: number; maxInflightScope: string };
  workers: Array<{ pid: number; answered: boolean; http?: HttpCounts }>;
}

/** Where the HTTP requests go: a Unix socket path or a TCP base URL. */
type Target = { socketPath: string } | { url: string };

/** One request on a connection of its own (no keep-alive: the primary hands each new connection to the next worker). */
function call(t: Target, method: string, path: string, token: string, body?: unknown): Promise<{ status: number; body: { data?: Record<string, unknown>; errors?: string[] } }> {
  const text = body === undefined ? undefined : JSON.stringify(body);
  const headers: Record<string, string> = { 'X-Vault-Token': token, ...(text === undefined ? {} : { 'Content-Type': 'application/json' }) };
  const url = 'url' in t ? `${t.url}${path}` : `http://localhost${path}`;
  return new Promise((resolve, reject) => {
    const r = request(url, { method, headers, agent: false, ...('socketPath' in t ? { socketPath: t.socketPath } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const s = Buffer.concat(chunks).toString();
        resolve({ status: res.statusCode!, body: s === '' ? {} : (JSON.parse(s) as { data?: Record<string, unknown>; errors?: string[] }) });
      });
      res.on('error', reject);
    });
    r.on('error', reject);
    r.end(text);
  });
}

const b64 = (s: string): string => Buffer.from(s).toString('base64');

/** STATUS over a connection of its own (a connection dies with its worker). */
async function statusOf(d: CliDaemon): Promise<Status> {
  const c = await connect({ socket: d.socketPath, clientName: 'observer' });
  try {
    return (await c.status()) as unknown as Status;
  } finally {
    await c.close();
  }
}

/** Each worker's HTTP request count, by pid. */
async function requestsByWorker(d: CliDaemon): Promise<Map<number, number>> {
  const s = await statusOf(d);
  assert.ok(s.workers.every((w) => w.answered), JSON.stringify(s.workers));
  return new Map(s.workers.map((w) => [w.pid, w.http!.requests]));
}

/** Start `--workers 2 --http <http(dir)>` with a token client `app` that administers keys; resolves once both workers serve. */
async function startFleet(http: (dir: string) => string): Promise<{ d: CliDaemon; token: string; workers: number[] }> {
  const d = await startCliDaemon((dir) => ['--workers', '2', '--http', http(dir), '--admin-client', 'app', '--audit-log', join(dir, 'audit.log')], 90_000);
  cleanups.push(() => d.stop());
  await eventually(() => lines(d).some((l) => l.msg === 'workers started'), 90_000, 'both workers to start');
  const workers = lines(d).find((l) => l.msg === 'workers started')!.workers!;
  assert.equal(workers.length, 2);
  const added = await runCli(['client', 'add', 'app', '--data-dir', join(d.dir, 'data')]);
  assert.equal(added.code, 0, added.stderr.toString());
  const token = added.stdout.toString().trim().split('\n').at(-1)!.trim();
  return { d, token, workers };
}

test('--workers 2 --http unix:…: both workers serve HTTP, 0600 socket, a killed worker is replaced, a revoked token is refused by every worker', { timeout: 240_000 }, async () => {
  let httpSock = '';
  const { d, token, workers } = await startFleet((dir) => `unix:${(httpSock = join(dir, 'http', 'http.sock'))}`);
  const t: Target = { socketPath: httpSock };
  assert.equal(statSync(httpSock).mode & 0o777, 0o600, 'the HTTP socket is private, as in a single daemon');

  assert.equal((await call(t, 'POST', '/v1/transit/keys/shared', token, { type: 'aes256-gcm96' })).status, 200);
  const before = await requestsByWorker(d);
  const cts: string[] = [];
  for (let i = 0; i < 6; i++) {
    const r = await call(t, 'POST', '/v1/transit/encrypt/shared', token, { plaintext: b64(`m${i}`) });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    cts.push(r.body.data!.ciphertext as string);
  }
  const afterSix = await requestsByWorker(d);
  for (const pid of workers) assert.ok(afterSix.get(pid)! - (before.get(pid) ?? 0) >= 2, `worker ${pid} served HTTP requests: ${JSON.stringify([...afterSix])}`);
  const s = await statusOf(d);
  assert.equal(s.http.maxInflightScope, 'worker', 'STATUS says maxHttpInflight is per worker');
  assert.equal(s.http.requests, [...afterSix.values()].reduce((a, b) => a + b, 0), 'the total sums the workers');
  // A ciphertext made in one worker decrypts in the other (one keystore).
  for (let i = 0; i < cts.length; i++) {
    const r = await call(t, 'POST', '/v1/transit/decrypt/shared', token, { ciphertext: cts[i] });
    assert.equal(Buffer.from(r.body.data!.plaintext as string, 'base64').toString(), `m${i}`);
  }

  // A killed worker: a new one takes its place, and HTTP keeps serving meanwhile and after.
  const [victim, survivor] = workers as [number, number];
  process.kill(victim, 'SIGKILL');
  // A connection the primary handed to the victim as it died is closed (src/cli/lost-handoffs.ts), not left hanging: a client retries it, as after any disconnect.
  let cutOff = 0;
  for (let i = 0; i < 4; i++) {
    const r: { status: number } = await call(t, 'POST', '/v1/transit/encrypt/shared', token, { plaintext: b64('during') }).catch(async (err: NodeJS.ErrnoException) => {
      assert.match(`${err.code} ${err.message}`, /ECONNRESET|socket hang up|EPIPE/);
      cutOff++;
      return call(t, 'POST', '/v1/transit/encrypt/shared', token, { plaintext: b64('during, again') });
    });
    assert.equal(r.status, 200);
  }
  assert.ok(cutOff <= 1, `at most the connection handed over as the worker died is cut off (${cutOff})`);
  await eventually(() => lines(d).some((l) => l.msg === 'worker replaced'), 90_000, 'the killed worker to be replaced');
  const replacement = lines(d).find((l) => l.msg === 'worker replaced')!.pid!;
  for (let i = 0; i < 6; i++) assert.equal((await call(t, 'POST', '/v1/transit/encrypt/shared', token, { plaintext: b64('after') })).status, 200);
  const afterKill = await requestsByWorker(d);
  assert.deepEqual(new Set(afterKill.keys()), new Set([survivor, replacement]));
  assert.ok(afterKill.get(replacement)! > 0, 'the replacement serves HTTP');

  // One audit file: keys created over HTTP, on connections spread over both live workers, audited by each.
  for (let i = 0; i < 4; i++) assert.equal((await call(t, 'POST', `/v1/transit/keys/audited-${i}`, token, { type: 'aes256-gcm96' })).status, 200);
  const audit = readFileSync(join(d.dir, 'audit.log'), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as { worker: number; event: string; key?: string; by?: string });
  const created = audit.filter((e) => e.event === 'key.created' && e.key?.startsWith('audited-') === true);
  assert.equal(created.length, 4);
  assert.ok(created.every((e) => e.by === 'token:app'), JSON.stringify(created));
  assert.deepEqual(new Set(created.map((e) => e.worker)), new Set([survivor, replacement]), 'both live workers audit their HTTP requests');

  // Revoked: every worker refuses the token (each remembers a verified token for at most the revocation check interval).
  const revoked = await runCli(['client', 'revoke', 'app', '--data-dir', join(d.dir, 'data')]);
  assert.equal(revoked.code, 0, revoked.stderr.toString());
  let refusedRun: Map<number, number> | null = null;
  const deadline = Date.now() + 30_000;
  while (refusedRun === null && Date.now() < deadline) {
    const start = await requestsByWorker(d);
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await call(t, 'POST', '/v1/transit/encrypt/shared', token, { plaintext: b64('x') })).status);
    if (statuses.every((st) => st === 403)) {
      const end = await requestsByWorker(d);
      refusedRun = new Map([...end].map(([pid, n]) => [pid, n - (start.get(pid) ?? 0)]));
    } else {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  assert.ok(refusedRun !== null, 'six requests in a row refused with 403');
  for (const [pid, n] of refusedRun) assert.ok(n >= 2, `worker ${pid} refused the revoked token (${n} requests)`);

  assert.equal(await d.stop(true), 0);
  assert.equal(existsSync(httpSock), false, 'the HTTP socket file goes with the primary');
});

test('--workers 2 --http tcp://127.0.0.1:0: one port for both workers, node-vault works, requests spread', { timeout: 180_000 }, async () => {
  const { d, token, workers } = await startFleet(() => 'tcp://127.0.0.1:0');
  const doors = lines(d).filter((l) => l.frontDoor !== undefined).map((l) => /tcp:\/\/127\.0\.0\.1:(\d+)/.exec(l.frontDoor!)![1]);
  assert.equal(doors.length, 2, 'each worker listens');
  assert.equal(new Set(doors).size, 1, `both workers share one port (port 0 picked once): ${doors.join(', ')}`);
  const url = `http://127.0.0.1:${doors[0]}`;

  const vault = nodeVault({ endpoint: url, token });
  await vault.write('transit/keys/tcp-key', { type: 'aes256-gcm96' });
  const enc = await vault.write('transit/encrypt/tcp-key', { plaintext: b64('over tcp') });
  assert.match(enc.data.ciphertext as string, /^vault:v1:/);
  const dec = await vault.write('transit/decrypt/tcp-key', { ciphertext: enc.data.ciphertext });
  assert.equal(Buffer.from(dec.data.plaintext as string, 'base64').toString(), 'over tcp');

  const before = await requestsByWorker(d);
  const replies = await Promise.all(Array.from({ length: 8 }, (_, i) => call({ url }, 'POST', '/v1/transit/encrypt/tcp-key', token, { plaintext: b64(`c${i}`) })));
  assert.ok(replies.every((r) => r.status === 200), JSON.stringify(replies.map((r) => r.status)));
  const after = await requestsByWorker(d);
  for (const pid of workers) assert.ok(after.get(pid)! > before.get(pid)!, `worker ${pid} served some of the 8 connections`);
  assert.equal(await d.stop(), 0);
});

test('--workers 2 --http on HTTPS: both workers serve client certificates; SIGHUP with a new CRL closes and refuses a revoked certificate in every worker', { timeout: 180_000 }, async () => {
  const pkiDir = mkdtempSync(join(tmpdir(), 'cd-hw-pki-'));
  cleanups.push(async () => rmSync(pkiDir, { recursive: true, force: true }));
  const pki = createServerPki(pkiDir, { keeper: { cn: 'keeper-svc' }, victim: { cn: 'victim-svc' } });
  const crl = join(pkiDir, 'crl.pem');
  copyFileSync(pki.file('crl-empty.pem'), crl);

  const d = await startCliDaemon(['--workers', '2', '--listen', 'tcp://127.0.0.1:0', '--tls-cert', pki.file('server.crt'), '--tls-key', pki.file('server.key'),
    '--tls-client-ca', pki.file('ca.crt'), '--tls-crl', crl, '--http', 'tcp://0.0.0.0:0'], 90_000);
  cleanups.push(() => d.stop());
  await eventually(() => lines(d).some((l) => l.msg === 'workers started'), 90_000, 'both workers to start');
  const workers = lines(d).find((l) => l.msg === 'workers started')!.workers!;
  const port = Number(/https \(client certificates\) tcp:\/\/0\.0\.0\.0:(\d+)/.exec(lines(d).find((l) => l.frontDoor?.startsWith('https') === true)!.frontDoor!)![1]);

  /** GET sys/health with `cert` on a connection of its own. */
  const health = (cert: string): Promise<number> => new Promise((resolve, reject) => {
    const r = httpsRequest({ host: '127.0.0.1', port, path: '/v1/sys/health', method: 'GET', ca: pki.pem('ca.crt'), cert: pki.pem(`${cert}.crt`), key: pki.pem(`${cert}.key`), agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    r.on('error', reject);
    r.end();
  });
  /** A keep-alive HTTPS connection with `cert` that has answered one request; resolves once it is open. */
  const liveConnection = (cert: string): Promise<{ closed: Promise<void> }> => new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ca: pki.pem('ca.crt'), cert: pki.pem(`${cert}.crt`), key: pki.pem(`${cert}.key`) }, () => {
      socket.write('GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n\r\n');
    });
    const closed = new Promise<void>((res) => socket.once('close', () => res()));
    socket.once('data', () => resolve({ closed }));
    socket.once('error', reject);
  });

  const before = await requestsByWorker(d);
  for (let i = 0; i < 6; i++) assert.equal(await health(i % 2 === 0 ? 'keeper' : 'victim'), 200);
  const after1 = await requestsByWorker(d);
  for (const pid of workers) assert.ok(after1.get(pid)! > before.get(pid)!, `worker ${pid} served HTTPS`);

  // Live connections of the certificate about to be revoked, on both workers (the primary hands them out in turn).
  const live = [];
  for (let i = 0; i < 4; i++) live.push(await liveConnection('victim'));
  const victimCounts = await requestsByWorker(d);
  for (const pid of workers) assert.ok(victimCounts.get(pid)! > after1.get(pid)!, `worker ${pid} holds a live connection of the victim`);

  // A revoked certificate: the new CRL, SIGHUP on the primary, every worker reloads its TLS material.
  const reloads = (): number => d.stderr().toString().split('\n').filter((l) => l.includes('"msg":"TLS material reloaded"')).length;
  const reloadsBefore = reloads();
  pki.revoke('victim');
  pki.gencrl('crl-victim.pem');
  copyFileSync(pki.file('crl-victim.pem'), crl);
  d.proc.kill('SIGHUP');
  await eventually(() => reloads() >= reloadsBefore + 2, 30_000, 'both workers to reload their TLS material');
  // Every worker closed the live connections it held of the revoked certificate.
  await Promise.all(live.map((c) => c.closed));
  const refusedBefore = await requestsByWorker(d);
  for (let i = 0; i < 4; i++) await assert.rejects(health('victim'), 'the revoked certificate is refused at the handshake');
  for (let i = 0; i < 6; i++) assert.equal(await health('keeper'), 200);
  const after2 = await requestsByWorker(d);
  for (const pid of workers) assert.ok(after2.get(pid)! > refusedBefore.get(pid)!, `worker ${pid} still serves the other certificate`);
  assert.equal(await d.stop(), 0);
});
