/**
 * Metrics and health on a real daemon (createDaemon: SQLite keystore, local
 * KEK, Unix socket, the metrics listener on loopback TCP):
 *
 * - under load the families of README "Metrics" are present and move as the
 *   load moves; the scrape parses (parse-prometheus-text-format) and
 *   `promtool check metrics` accepts it
 * - no key name appears in a label value unless metrics.keyLabels is true
 * - every query of contrib/grafana/cryptod.json names an exported metric
 * - /healthz, /readyz and `cryptod health`: ready; the keystore file taken
 *   away: not ready (503, exit 1); put back: ready again
 * - a non-loopback address without the TLS files is refused at start
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { connect, type Client } from '../src/client/client.js';
import { daemonConfig, type ConfigOverrides } from '../src/config/daemon-config.js';
import { createDaemon, type AssembledDaemon } from '../src/daemon/assemble.js';
import { silentLogger } from '../src/observe/logger.js';
import { ConfigError, InvalidArgumentError, NotExtractableError } from '../src/protocol/errors.js';
import { runCli } from './helpers/cli-daemon.js';

interface Family {
  name: string;
  type: string;
  metrics: Array<{ labels?: Record<string, string>; value?: string; count?: string; buckets?: Record<string, string> }>;
}

const dirs: string[] = [];
const daemons: AssembledDaemon[] = [];
const clients: Client[] = [];
after(async () => {
  for (const c of clients) c.connection.destroy();
  for (const d of daemons) await d.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function start(overrides: ConfigOverrides, file: { keyLabels?: boolean } = {}): Promise<AssembledDaemon & { dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'mtr-'));
  dirs.push(dir);
  const config = daemonConfig(null, { dataDir: join(dir, 'data'), socket: join(dir, 'cryptod.sock'), ...overrides });
  const withLabels = config.metrics === undefined || file.keyLabels === undefined ? config : { ...config, metrics: { ...config.metrics, keyLabels: file.keyLabels } };
  const d = createDaemon(withLabels, { logger: silentLogger, refreshIntervalMs: 20 });
  daemons.push(d);
  await d.start();
  return Object.assign(d, { dir });
}

async function client(d: AssembledDaemon, name: string): Promise<Client> {
  const c = await connect({ socket: d.config.socket.path, clientName: name });
  clients.push(c);
  return c;
}

function get(url: string, path: string): Promise<{ status: number; body: string; type: string }> {
  const m = /^tcp:\/\/(.+):(\d+)$/.exec(url)!;
  return new Promise((res, rej) => {
    const req = request({ host: m[1], port: Number(m[2]), path, method: 'GET' }, (r) => {
      let body = '';
      r.setEncoding('utf8');
      r.on('data', (s: string) => (body += s));
      r.on('end', () => res({ status: r.statusCode ?? 0, body, type: String(r.headers['content-type']) }));
    });
    req.on('error', rej);
    req.end();
  });
}

async function scrape(d: AssembledDaemon): Promise<{ text: string; families: Map<string, Family> }> {
  const r = await get(d.metricsUrl!, '/metrics');
  assert.equal(r.status, 200);
  assert.match(r.type, /^text\/plain; version=0\.0\.4/);
  const families = new Map((parsePrometheusTextFormat(r.body) as Family[]).map((f) => [f.name, f]));
  return { text: r.body, families };
}

/** The value of the sample of `family` whose labels include `labels` (0 when absent). */
function value(families: Map<string, Family>, family: string, labels: Record<string, string> = {}): number {
  const f = families.get(family);
  assert.ok(f !== undefined, `family ${family} is exported`);
  const m = f.metrics.find((s) => Object.entries(labels).every(([k, v]) => s.labels?.[k] === v));
  if (m === undefined) return 0;
  return Number(m.value ?? m.count);
}

/**
 * A labelled histogram's `_count`, read from the text: the parser flattens
 * histograms into one sample and keeps labels only for unlabelled ones.
 */
function histogramCount(text: string, family: string): number {
  const m = new RegExp(`^cryptod_request_duration_seconds_count\\{family="${family}"\\} (\\d+)$`, 'm').exec(text);
  return m === null ? 0 : Number(m[1]);
}

const KEY = 'metrics-secret-name';

test('under load the families are present and move; promtool accepts the scrape; no key names in labels', async () => {
  const d = await start({ metrics: 'tcp://127.0.0.1:0' });
  assert.match(d.metricsUrl!, /^tcp:\/\/127\.0\.0\.1:\d+$/);
  const before = (await scrape(d)).families;
  for (const name of ['cryptod_requests_total', 'cryptod_request_duration_seconds', 'cryptod_requests_in_flight', 'cryptod_connections', 'cryptod_nodes', 'cryptod_context_memory_bytes', 'cryptod_keystore_generation', 'cryptod_keystore_refreshes_total', 'cryptod_key_rotations_total', 'cryptod_authorization_denials_total', 'cryptod_audit_write_errors_total', 'cryptod_info']) {
    assert.ok(before.has(name), `${name} is exported from the start`);
  }
  // A daemon with managed keys has a data-key cache and takes the fleet lease.
  for (const name of ['cryptod_datakey_cache_hits_total', 'cryptod_datakey_cache_misses_total', 'cryptod_datakey_cache_unwraps_total', 'cryptod_datakey_cache_coalesced_total', 'cryptod_datakey_cache_evictions_total', 'cryptod_datakey_cache_keys', 'cryptod_datakey_cache_bytes', 'cryptod_lease_held', 'cryptod_lease_generation']) {
    assert.ok(before.has(name), `${name} is exported from the start`);
  }
  assert.equal(value(before, 'cryptod_connections', { listener: 'unix' }), 0);

  const admin = await client(d, 'metrics-admin');
  const other = await client(d, 'metrics-other');
  await admin.keys.create(KEY, { type: 'hmac-sha256' });
  const macs = 200;
  await Promise.all(Array.from({ length: macs }, (_, i) => (i % 2 === 0 ? admin : other).mac(KEY, Buffer.from(`message ${i}`))));
  await assert.rejects(admin.request(0x0011, { length: -1 }), InvalidArgumentError);
  const sealed = await admin.subtle.generateKey({ name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
  await assert.rejects(admin.subtle.exportKey('raw', sealed), NotExtractableError);
  await admin.keys.rotate(KEY);
  await admin.keys.create('metrics-kek', { type: 'aes256-kwp' });
  const { wrappedKey } = await admin.dataKeys.generate({ kek: 'metrics-kek' });
  for (let i = 0; i < 3; i++) await admin.dataKeys.encrypt(wrappedKey, Buffer.from(`data ${i}`));
  const h = admin.createHash('SHA-256');
  await h.update(Buffer.from('open context'));
  // Let the keystore poll run a few times.
  await new Promise((r) => setTimeout(r, 200));

  const { text, families: now } = await scrape(d);
  assert.equal(value(now, 'cryptod_requests_total', { op: 'MANAGED_MAC', code: 'OK' }) - value(before, 'cryptod_requests_total', { op: 'MANAGED_MAC', code: 'OK' }), macs);
  assert.equal(value(now, 'cryptod_requests_total', { op: 'RANDOM', code: 'CRYPTOD_ERR_INVALID_ARGUMENT' }), 1);
  assert.equal(value(now, 'cryptod_requests_total', { op: 'EXPORT_KEY', code: 'CRYPTOD_ERR_NOT_EXTRACTABLE' }), 1);
  assert.equal(now.get('cryptod_request_duration_seconds')?.type, 'HISTOGRAM');
  assert.ok(histogramCount(text, 'managed-data') >= macs, 'the latency histogram counted every MAC');
  assert.ok(histogramCount(text, 'session') >= 2, 'HELLOs are timed too');
  assert.equal(value(now, 'cryptod_requests_in_flight'), 0, 'nothing in flight between requests');
  const lookups = (f: Map<string, Family>): number => value(f, 'cryptod_datakey_cache_hits_total') + value(f, 'cryptod_datakey_cache_misses_total');
  assert.equal(lookups(now) - lookups(before), 3, 'each data-key encrypt is a hit or a miss');
  // generate() leaves the new key in the cache: at most one unwrap, and the later encrypts hit.
  assert.ok(value(now, 'cryptod_datakey_cache_unwraps_total') <= 1 && value(now, 'cryptod_datakey_cache_hits_total') >= 2, 'the cached key served the encrypts');
  assert.equal(value(now, 'cryptod_datakey_cache_keys'), 1);
  assert.equal(value(now, 'cryptod_datakey_cache_bytes'), 32);
  assert.equal(value(now, 'cryptod_lease_held'), 1, 'the only daemon holds the fleet lease');
  assert.ok(value(now, 'cryptod_lease_generation') >= 1);
  assert.equal(value(now, 'cryptod_connections', { listener: 'unix' }), 2);
  assert.equal(value(now, 'cryptod_connections', { listener: 'tls' }), 0);
  assert.equal(value(now, 'cryptod_nodes', { kind: 'key' }), 1);
  assert.equal(value(now, 'cryptod_nodes', { kind: 'hash' }), 1);
  assert.ok(value(now, 'cryptod_context_memory_bytes') > 0, 'the open hash context is charged');
  assert.ok(value(now, 'cryptod_keystore_generation') > value(before, 'cryptod_keystore_generation'), 'create and rotate moved the generation');
  assert.ok(value(now, 'cryptod_keystore_refreshes_total', { outcome: 'ok' }) > value(before, 'cryptod_keystore_refreshes_total', { outcome: 'ok' }));
  assert.equal(value(now, 'cryptod_key_rotations_total', { reason: 'manual' }), 1);
  assert.equal(value(now, 'cryptod_authorization_denials_total', { op: 'EXPORT_KEY', code: 'CRYPTOD_ERR_NOT_EXTRACTABLE' }), 1);
  assert.equal(value(now, 'cryptod_audit_write_errors_total'), 0);
  assert.ok(!text.includes(KEY), 'no key name in any label value without metrics.keyLabels');

  // Closing the clients moves the connection and node gauges back.
  admin.connection.destroy();
  other.connection.destroy();
  let after_ = now;
  for (let i = 0; i < 100 && value(after_, 'cryptod_connections', { listener: 'unix' }) !== 0; i++) {
    await new Promise((r) => setTimeout(r, 20));
    after_ = (await scrape(d)).families;
  }
  assert.equal(value(after_, 'cryptod_connections', { listener: 'unix' }), 0);
  assert.equal(value(after_, 'cryptod_nodes', { kind: 'key' }), 0);
  assert.equal(value(after_, 'cryptod_context_memory_bytes'), 0);

  // promtool (Debian's prometheus package) lints the exposition.
  const promtool = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  if (promtool.error !== undefined && process.env.CI === undefined) {
    console.warn(`\n*** promtool is not installed: 'promtool check metrics' SKIPPED (CI installs the prometheus package) ***\n`);
  } else {
    assert.equal(promtool.status, 0, `promtool check metrics: ${promtool.stdout}${promtool.stderr}`);
  }

  // Every query of the dashboard names a metric this scrape exports.
  const dashboard = JSON.parse(readFileSync(new URL('../contrib/grafana/cryptod.json', import.meta.url), 'utf8')) as { panels: Array<{ title: string; targets: Array<{ expr: string }> }> };
  const exported = new Set<string>();
  for (const [name, f] of now) {
    exported.add(name);
    if (f.type === 'HISTOGRAM' || f.type === 'SUMMARY') for (const s of ['_bucket', '_count', '_sum']) exported.add(`${name}${s}`);
  }
  const PROMQL_WORDS = new Set(['sum', 'by', 'rate', 'increase', 'max', 'histogram_quantile', 'le', 'without']);
  let queries = 0;
  for (const panel of dashboard.panels) {
    for (const t of panel.targets) {
      queries++;
      const names = [...t.expr.replace(/\{[^}]*\}/g, '').replace(/\[[^\]]*\]/g, '').matchAll(/[a-z_][a-z0-9_]*/g)].map((m) => m[0]).filter((w) => !PROMQL_WORDS.has(w) && !/^(op|code|family|kind|listener|instance|outcome|reason)$/.test(w));
      assert.ok(names.length > 0, `${panel.title}: a query that names no metric: ${t.expr}`);
      for (const n of names) assert.ok(exported.has(n), `${panel.title}: ${n} is not exported (query: ${t.expr})`);
    }
  }
  assert.ok(queries >= 10);
});

test('metrics.keyLabels: true puts key names in the rotation and denial labels', async () => {
  const d = await start({ metrics: 'tcp://127.0.0.1:0' }, { keyLabels: true });
  const admin = await client(d, 'labels-admin');
  await admin.keys.create(KEY, { type: 'hmac-sha256' });
  await admin.keys.rotate(KEY);
  const { families } = await scrape(d);
  assert.equal(value(families, 'cryptod_key_rotations_total', { reason: 'manual', key: KEY }), 1);
});

test('off by default: no listener, no metrics', async () => {
  const d = await start({});
  assert.equal(d.metricsUrl, null);
  assert.equal(d.config.metrics, undefined);
});

test('/healthz, /readyz and cryptod health: ready; the keystore file gone: not ready; back: ready', async () => {
  const d = await start({ metrics: 'tcp://127.0.0.1:0' });
  const url = d.metricsUrl!;
  const env = { CRYPTOD_SOCKET: d.config.socket.path };
  assert.deepEqual(await get(url, '/healthz').then((r) => [r.status, r.body]), [200, 'ok\n']);
  const ready = await get(url, '/readyz');
  assert.equal(ready.status, 200, ready.body);
  const report = JSON.parse(ready.body) as { ready: boolean; checks: Array<{ name: string; ok: boolean }> };
  assert.deepEqual(report.checks.map((c) => [c.name, c.ok]), [['store', true], ['kek', true], ['keys', true]]);
  const ok = await runCli(['health'], env);
  assert.equal(ok.code, 0, ok.stderr.toString());
  assert.match(ok.stdout.toString(), /^ready\n/);

  const file = join(d.config.dataDir, 'keystore.sqlite');
  renameSync(file, `${file}.away`);
  try {
    const down = await get(url, '/readyz');
    assert.equal(down.status, 503);
    const r = JSON.parse(down.body) as { ready: boolean; checks: Array<{ name: string; ok: boolean; detail: string }> };
    assert.equal(r.ready, false);
    assert.match(r.checks.find((c) => c.name === 'store')!.detail, /keystore file .* cannot be reached: ENOENT/);
    assert.equal(r.checks.find((c) => c.name === 'kek')!.ok, true);
    const bad = await runCli(['health', '--json'], env);
    assert.equal(bad.code, 1);
    assert.equal((JSON.parse(bad.stdout.toString()) as { ready: boolean }).ready, false);
    assert.equal((await get(url, '/healthz')).status, 200, 'alive all the same');
  } finally {
    renameSync(`${file}.away`, file);
  }
  assert.equal((await get(url, '/readyz')).status, 200);
  assert.equal((await runCli(['health', '--socket', d.config.socket.path])).code, 0);
  assert.equal((await get(url, '/nope')).status, 404);
});

test('a non-loopback metrics address without the TLS files is refused at start, naming what to give', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mtr-'));
  dirs.push(dir);
  const d = createDaemon(daemonConfig(null, { dataDir: join(dir, 'data'), socket: join(dir, 'c.sock'), metrics: 'tcp://0.0.0.0:0' }), { logger: silentLogger });
  await assert.rejects(d.start(), (e: unknown) => e instanceof ConfigError && /not a loopback address.*--tls-cert/.test(e.message));
  const bad = createDaemon(daemonConfig(null, { dataDir: join(dir, 'data2'), socket: join(dir, 'd.sock'), metrics: 'http://127.0.0.1:9464' }), { logger: silentLogger });
  await assert.rejects(bad.start(), (e: unknown) => e instanceof ConfigError && /tcp:\/\/HOST:PORT .* or unix:PATH/.test(e.message));
});
