/**
 * `cryptod status` without --json: tables a person can read — the clients,
 * then every further section of the status (data-key cache, lease, keys,
 * workers) when the daemon sends it.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { formatStatus } from '../src/cli/status.js';
import type { DaemonStatus } from '../src/daemon/server.js';
import { runCli } from './helpers/cli-daemon.js';
import { startManagedDaemon, type ManagedEnv } from './managed-env.js';

const base: DaemonStatus = {
  daemon: { version: '0', pid: 1, uptimeMs: 61_000, socket: '/s', shuttingDown: false },
  nodes: 3,
  connections: 2,
  refused: {},
  clients: [
    { clientId: 'uid:1000/web', connections: 1, nodes: 3, busy: 1, byType: { key: 2, hash: 1 } },
    { clientId: 'uid:0/cryptod-cli', connections: 1, nodes: 0, busy: 0, byType: {} },
  ],
  damaged: [],
  process: { cpuUserUs: 1_000, cpuSystemUs: 500, rssBytes: 50_000_000 },
};

test('clients are one aligned row each, counts right-aligned', () => {
  const text = formatStatus(base);
  assert.match(text, /^cryptod 0 {2}pid 1 {2}up 1m1s$/m);
  const rows = text.split('\n').filter((l) => l.startsWith('CLIENT') || l.startsWith('uid:'));
  assert.deepEqual(rows, [
    'CLIENT             CONNS  NODES  BUSY  KEY  HASH  HMAC  CIPHER  WINDOW',
    'uid:0/cryptod-cli      1      0     0    0     0     0       0       0',
    'uid:1000/web           1      3     1    2     1     0       0       0',
  ]);
});

test('the data-key cache, a lease and keys print as tables when present; absent sections print nothing', () => {
  assert.doesNotMatch(formatStatus(base), /CACHE|LEASE|KEYS/);
  const text = formatStatus({
    ...base,
    cache: { hits: 90, misses: 10, unwraps: 9, coalesced: 1, evictions: { age: 2, uses: 0, capacity: 1, bytes: 0, kek: 0, closed: 0 }, size: 7, bytes: 224, inflight: 0, draining: 0 },
    ...({ lease: { holder: 'host-a:4242', generation: 17, expiresInMs: 900 }, keys: [{ name: 'orders', type: 'aes256-gcm', currentVersion: 3 }, { name: 'releases', type: 'ed25519', currentVersion: null }] } as object),
  } as DaemonStatus);
  assert.match(text, /^DATA-KEY CACHE\nFIELD +VALUE\nhits +90\nmisses +10\n/m);
  assert.match(text, /^evictions\.age +2$/m);
  assert.match(text, /^LEASE\nFIELD +VALUE\nholder +host-a:4242\ngeneration +17\n/m);
  assert.match(text, /^KEYS\nNAME +TYPE +CURRENTVERSION\norders +aes256-gcm +3\nreleases +ed25519 +-$/m);
});

let env: ManagedEnv;
before(async () => {
  env = await startManagedDaemon();
});
after(async () => env.stop());

test('a real daemon with managed keys: the table shows the clients and the data-key cache', async () => {
  const held = await env.admin('holder');
  await held.subtle.generateKey({ name: 'AES-GCM', length: 256 }, false, ['encrypt']);
  const r = await runCli(['status', '--socket', env.td.socketPath]);
  assert.equal(r.code, 0, r.stderr.toString());
  const text = r.stdout.toString();
  assert.match(text, /^local\/holder +1 +1 +0 +1 /m);
  assert.match(text, /^DATA-KEY CACHE\nFIELD +VALUE\nhits +0$/m);
});
