/**
 * node-vault (npm, generic read/write/list/delete) against the Vault HTTP
 * API of a real daemon, on TCP loopback and on a Unix socket (an http.Agent
 * whose connections go to the socket); then bad input over raw HTTP: every
 * refusal has Vault's status and `{ errors }` body with Content-Type
 * application/json, and the daemon keeps serving.
 */
import assert from 'node:assert/strict';
import { Agent, request, type RequestOptions } from 'node:http';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { createRequire } from 'node:module';
import { createDecipheriv } from 'node:crypto';
import { connect as connectNative } from '../src/client/client.js';
import { startVaultDaemon, type VaultDaemon } from './helpers/vault-daemon.js';

const require = createRequire(import.meta.url);
// eslint-disable-next-line @typescript-eslint/no-require-imports
const nodeVault = require('node-vault') as (o: Record<string, unknown>) => VaultClient;
interface VaultClient {
  read(path: string): Promise<{ data: Record<string, unknown> }>;
  write(path: string, data: Record<string, unknown>): Promise<{ data: Record<string, unknown> } | undefined>;
  list(path: string): Promise<{ data: { keys: string[] } }>;
  delete(path: string): Promise<unknown>;
}

const b64 = (s: string): string => Buffer.from(s).toString('base64');

function unixAgent(path: string): Agent {
  const agent = new Agent({ keepAlive: true });
  (agent as unknown as { createConnection: () => unknown }).createConnection = () => connect(path);
  return agent;
}

/** A client of `vd` for `token`, on its transport. */
function client(vd: VaultDaemon, token: string): VaultClient {
  if (vd.url !== null) return nodeVault({ endpoint: vd.url, token });
  return nodeVault({ endpoint: 'http://localhost', token, requestOptions: { httpAgent: unixAgent(vd.socketPath!) } });
}

/** One raw HTTP request (status, content type, parsed body). */
function raw(vd: VaultDaemon, method: string, path: string, headers: Record<string, string>, body?: string | Buffer): Promise<{ status: number; type: string | undefined; body: { errors?: string[]; data?: Record<string, unknown> } | null }> {
  const opts: RequestOptions = vd.url !== null ? { method, headers } : { method, headers, socketPath: vd.socketPath! };
  const url = vd.url !== null ? `${vd.url}${path}` : `http://localhost${path}`;
  return new Promise((resolve, reject) => {
    const r = request(url, opts, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        resolve({ status: res.statusCode!, type: res.headers['content-type'], body: text === '' ? null : (JSON.parse(text) as never) });
      });
    });
    r.on('error', reject);
    if (body !== undefined) r.write(body);
    r.end();
  });
}

for (const transport of ['tcp', 'unix'] as const) {
  describe(`node-vault over ${transport === 'tcp' ? 'TCP loopback' : 'a Unix socket'}`, () => {
    let vd: VaultDaemon;
    let admin: VaultClient;
    let adminToken: string;
    let otherToken: string;
    before(async () => {
      vd = await startVaultDaemon({ transport, adminClients: ['ops'] });
      adminToken = await vd.addClient('ops');
      otherToken = await vd.addClient('stranger');
      admin = client(vd, adminToken);
    });
    after(() => vd.stop());

    test('create, list (LIST), rotate, encrypt/decrypt/rewrap with batch and associated_data, trim, config, delete', async () => {
      await admin.write('transit/keys/orders', { type: 'chacha20-poly1305' });
      assert.deepEqual((await admin.list('transit/keys')).data.keys, ['orders']);
      const aad = b64('order-42');
      const one = (await admin.write('transit/encrypt/orders', { plaintext: b64('card'), associated_data: aad }))!.data;
      assert.match(String(one.ciphertext), /^vault:v1:/);
      await assert.rejects(admin.write('transit/decrypt/orders', { ciphertext: one.ciphertext }), /400|DECRYPT/);
      assert.equal((await admin.write('transit/decrypt/orders', { ciphertext: one.ciphertext, associated_data: aad }))!.data.plaintext, b64('card'));
      await admin.write('transit/keys/orders/rotate', {});
      const batch = (await admin.write('transit/encrypt/orders', { batch_input: [{ plaintext: b64('a'), reference: 'x' }, { plaintext: b64('b'), associated_data: aad, reference: 'y' }] }))!.data.batch_results as Array<Record<string, unknown>>;
      assert.deepEqual(batch.map((r) => [String(r.ciphertext).slice(0, 9), r.reference]), [['vault:v2:', 'x'], ['vault:v2:', 'y']]);
      const rewrapped = (await admin.write('transit/rewrap/orders', { ciphertext: one.ciphertext, associated_data: aad }))!.data;
      assert.match(String(rewrapped.ciphertext), /^vault:v2:/);
      assert.equal(rewrapped.key_version, 2);
      await admin.write('transit/keys/orders/trim', { min_available_version: 2 });
      await assert.rejects(admin.write('transit/decrypt/orders', { ciphertext: one.ciphertext, associated_data: aad }));
      assert.equal((await admin.write('transit/decrypt/orders', { ciphertext: rewrapped.ciphertext, associated_data: aad }))!.data.plaintext, b64('card'));
      const config = (await admin.write('transit/keys/orders/config', { deletion_allowed: true, auto_rotate_period: '24h' }))!.data;
      assert.equal(config.deletion_allowed, true);
      assert.equal(config.auto_rotate_period, 86400);
      await admin.delete('transit/keys/orders');
      await assert.rejects(admin.read('transit/keys/orders'), /404|deleted/);
    });

    test('sign/verify, hmac/verify, hash, random, lookup-self, sys/mounts', async () => {
      await admin.write('transit/keys/signer', { type: 'ed25519' });
      const sig = (await admin.write('transit/sign/signer', { input: b64('m') }))!.data.signature;
      assert.equal((await admin.write('transit/verify/signer', { input: b64('m'), signature: sig }))!.data.valid, true);
      await admin.write('transit/keys/mac', { type: 'hmac', key_size: 64 });
      const h = (await admin.write('transit/hmac/mac/sha2-512', { input: b64('m') }))!.data.hmac;
      assert.equal((await admin.write('transit/verify/mac/sha2-512', { input: b64('m'), hmac: h }))!.data.valid, true);
      assert.equal((await admin.write('transit/verify/mac', { input: b64('n'), hmac: h }))!.data.valid, false);
      assert.equal((await admin.write('transit/hash/sha2-512', { input: b64('abc'), format: 'base64' }))!.data.sum, '3a81oZNherrMQXNJriBBMRLm+k6JqX6iCp7u5ktV05ohkpkqJ0/BqDa6PCOj/uu9RU1EI2Q86A4qmslPpUyknw==');
      assert.equal(String((await admin.write('transit/random/16', { format: 'hex' }))!.data.random_bytes).length, 32);
      const signed = (await admin.write('transit/keys/p384', { type: 'ecdsa-p384', exportable: true }))!.data;
      assert.match(String((signed.keys as Record<string, { public_key: string }>)['1']!.public_key), /BEGIN PUBLIC KEY/);
      const sigs = (await admin.write('transit/sign/p384', { batch_input: [{ input: b64('a'), reference: 'one' }, { input: b64('b'), reference: 'two' }] }))!.data.batch_results as Array<{ signature: string; reference: string }>;
      assert.deepEqual(sigs.map((r) => r.reference), ['one', 'two']);
      const checks = (await admin.write('transit/verify/p384', { batch_input: [{ input: b64('a'), signature: sigs[0]!.signature }, { input: b64('a'), signature: sigs[1]!.signature }] }))!.data.batch_results as Array<{ valid: boolean }>;
      assert.deepEqual(checks.map((r) => r.valid), [true, false]);
      const wrongHash = await admin.write('transit/sign/p384/sha2-256', { input: b64('a') }).then(() => null, (e: Error) => e.message);
      assert.match(String(wrongHash), /sha2-384/);
      const exported = (await admin.read('transit/export/signing-key/p384/1')).data.keys as Record<string, string>;
      assert.match(exported['1']!, /BEGIN PRIVATE KEY/);
      const macs = (await admin.write('transit/hmac/mac', { batch_input: [{ input: b64('x'), reference: 'r' }] }))!.data.batch_results as Array<{ hmac: string; reference: string }>;
      assert.equal(macs[0]!.reference, 'r');
      const macChecks = (await admin.write('transit/verify/mac', { batch_input: [{ input: b64('x'), hmac: macs[0]!.hmac }, { input: b64('y'), hmac: macs[0]!.hmac }] }))!.data.batch_results as Array<{ valid: boolean }>;
      assert.deepEqual(macChecks.map((r) => r.valid), [true, false]);
      assert.equal((await admin.read('auth/token/lookup-self')).data.display_name, 'ops');
      assert.ok('transit/' in (await admin.read('sys/mounts')).data);
    });

    test('bad input: right status, Vault error body, application/json; the daemon keeps serving', async () => {
      const auth = { 'X-Vault-Token': adminToken, 'Content-Type': 'application/json' };
      await raw(vd, 'POST', '/v1/transit/keys/k', auth, JSON.stringify({ type: 'aes256-gcm96' }));
      const cases: Array<[string, string, Record<string, string>, string | Buffer | undefined, number, RegExp]> = [
        ['malformed JSON', '/v1/transit/encrypt/k', auth, '{"plaintext": ', 400, /parse JSON/],
        ['body not an object', '/v1/transit/encrypt/k', auth, '[1,2]', 400, /JSON object/],
        ['wrong type', '/v1/transit/encrypt/k', auth, JSON.stringify({ plaintext: 42 }), 400, /'plaintext' must be a string/],
        ['not base64', '/v1/transit/encrypt/k', auth, JSON.stringify({ plaintext: 'not base64!' }), 400, /base64/],
        ['unknown key', '/v1/transit/encrypt/nope', auth, JSON.stringify({ plaintext: b64('x') }), 404, /NOT_FOUND/],
        ['missing token', '/v1/transit/encrypt/k', { 'Content-Type': 'application/json' }, JSON.stringify({ plaintext: b64('x') }), 403, /permission denied/],
        ['bad token', '/v1/transit/encrypt/k', { 'X-Vault-Token': 'cdt_' + 'A'.repeat(43) }, JSON.stringify({ plaintext: b64('x') }), 403, /AUTH_FAILED/],
        ["another client's key", '/v1/transit/encrypt/k', { Authorization: `Bearer ${otherToken}` }, JSON.stringify({ plaintext: b64('x') }), 404, /no managed key/],
        ['huge body', '/v1/transit/encrypt/k', auth, Buffer.alloc(9 * 1024 * 1024, 0x20), 413, /too large/],
        ['unsupported type', '/v1/transit/keys/k2', auth, JSON.stringify({ type: 'aes128-gcm96' }), 400, /supported: aes256-gcm96/],
        ['datakey on a key that is no KEK', '/v1/transit/datakey/plaintext/k', auth, '{}', 400, /aes256-gcm96 key.*type=aes256-kwp/],
        ['datakey bits 512', '/v1/transit/datakey/wrapped/k', auth, JSON.stringify({ bits: 512 }), 400, /128 or 256/],
        ['datakey of an unknown type', '/v1/transit/datakey/derived/k', auth, '{}', 404, /plaintext or wrapped/],
        ['datakey nonce', '/v1/transit/datakey/wrapped/k', auth, JSON.stringify({ nonce: b64('123456789012') }), 400, /nonce is not supported/],
        ['datakey context not base64', '/v1/transit/datakey/wrapped/k', auth, JSON.stringify({ context: 'tenant 7' }), 400, /'context' must be standard base64/],
        ['unknown endpoint', '/v1/transit/frobnicate/k', auth, '{}', 404, /cryptod serves keys/],
        ['nonce', '/v1/transit/encrypt/k', auth, JSON.stringify({ plaintext: b64('x'), nonce: b64('123456789012') }), 400, /nonce is not supported/],
      ];
      for (const [what, path, headers, body, status, message] of cases) {
        const r = await raw(vd, 'POST', path, headers, body);
        assert.equal(r.status, status, `${what}: ${JSON.stringify(r.body)}`);
        assert.equal(r.type, 'application/json', what);
        assert.ok(Array.isArray(r.body?.errors) && r.body.errors.length === 1, what);
        assert.match(r.body!.errors![0]!, message, what);
      }
      const wrongMethod = await raw(vd, 'PATCH', '/v1/transit/encrypt/k', auth, '{}');
      assert.equal(wrongMethod.status, 405);
      const ok = await raw(vd, 'POST', '/v1/transit/encrypt/k', auth, JSON.stringify({ plaintext: b64('still here') }));
      assert.equal(ok.status, 200);
      const batchBad = await raw(vd, 'POST', '/v1/transit/decrypt/k', auth, JSON.stringify({ batch_input: [{ ciphertext: ok.body!.data!.ciphertext, reference: 'good' }, { ciphertext: 'vault:v1:AAAA', reference: 'bad' }] }));
      assert.equal(batchBad.status, 400);
      const results = batchBad.body!.data!.batch_results as Array<Record<string, unknown>>;
      assert.equal(results[0]!.plaintext, b64('still here'));
      assert.equal(results[1]!.reference, 'bad');
      assert.match(String(results[1]!.error), /ciphertext/);
    });

    test('datakey plaintext|wrapped; decrypt gives the data key, rewrap moves it to the new KEK version; datakey-plaintext is a separate right', async () => {
      await admin.write('transit/keys/tenants', { type: 'aes256-kwp' });
      const wrapped = (await admin.write('transit/datakey/wrapped/tenants', { bits: 128, context: b64('tenant-7') }))!.data;
      assert.match(String(wrapped.ciphertext), /^vault:v1:ZGs/);
      assert.equal(wrapped.key_version, 1);
      assert.equal(wrapped.plaintext, undefined);
      const plain = (await admin.write('transit/datakey/plaintext/tenants', {}))!.data;
      assert.equal(Buffer.from(String(plain.plaintext), 'base64').length, 32);
      assert.equal((await admin.write('transit/decrypt/tenants', { ciphertext: plain.ciphertext }))!.data.plaintext, plain.plaintext);
      const key128 = Buffer.from(String((await admin.write('transit/decrypt/tenants', { ciphertext: wrapped.ciphertext, context: b64('tenant-7') }))!.data.plaintext), 'base64');
      assert.equal(key128.length, 16);
      await assert.rejects(admin.write('transit/decrypt/tenants', { ciphertext: wrapped.ciphertext, context: b64('tenant-8') }), /context/);

      // The ciphertext is cryptod's wrapped key: the native data-key operations take it, and the key HTTP gave back is that key.
      const native = await connectNative({ socket: vd.daemon.config.socket.path, token: adminToken });
      try {
        const wrappedKey = Buffer.from(String(wrapped.ciphertext).slice('vault:v1:'.length), 'base64');
        const ct = Buffer.from(await native.dataKeys.encrypt(wrappedKey, Buffer.from('row 1')));
        const d = createDecipheriv('aes-128-gcm', key128, ct.subarray(1, 13));
        d.setAAD(Buffer.from([1]));
        d.setAuthTag(ct.subarray(ct.length - 16));
        assert.equal(Buffer.concat([d.update(ct.subarray(13, ct.length - 16)), d.final()]).toString(), 'row 1');
        // …and so is the key datakey/plaintext returned beside its ciphertext.
        const ct2 = Buffer.from(await native.dataKeys.encrypt(Buffer.from(String(plain.ciphertext).slice('vault:v1:'.length), 'base64'), Buffer.from('row 2')));
        const d2 = createDecipheriv('aes-256-gcm', Buffer.from(String(plain.plaintext), 'base64'), ct2.subarray(1, 13));
        d2.setAAD(Buffer.from([1]));
        d2.setAuthTag(ct2.subarray(ct2.length - 16));
        assert.equal(Buffer.concat([d2.update(ct2.subarray(13, ct2.length - 16)), d2.final()]).toString(), 'row 2');

        await admin.write('transit/keys/tenants/rotate', {});
        const moved = (await admin.write('transit/rewrap/tenants', { ciphertext: plain.ciphertext }))!.data;
        assert.match(String(moved.ciphertext), /^vault:v2:/);
        assert.equal(moved.key_version, 2);
        assert.equal((await admin.write('transit/decrypt/tenants', { ciphertext: moved.ciphertext }))!.data.plaintext, plain.plaintext);
        const next = (await admin.write('transit/datakey/wrapped/tenants', {}))!.data;
        assert.equal(next.key_version, 2);

        // A client with `datakey` only: wrapped keys and rewrap, never a plaintext key (403); a stranger sees no key (404).
        await native.keys.setPolicy('tenants', { clients: { 'token:ops': ['datakey', 'datakey-plaintext', 'admin'], 'token:stranger': ['datakey'] } });
        const stranger = client(vd, otherToken);
        assert.match(String((await stranger.write('transit/datakey/wrapped/tenants', {}))!.data.ciphertext), /^vault:v2:/);
        assert.match(String((await stranger.write('transit/rewrap/tenants', { ciphertext: wrapped.ciphertext }))!.data.ciphertext), /^vault:v2:/);
        const headers = { 'X-Vault-Token': otherToken };
        for (const [path, body] of [['/v1/transit/datakey/plaintext/tenants', {}], ['/v1/transit/decrypt/tenants', { ciphertext: plain.ciphertext }]] as const) {
          const r = await raw(vd, 'POST', path, headers, JSON.stringify(body));
          assert.equal(r.status, 403, `${path}: ${JSON.stringify(r.body)}`);
          assert.match(r.body!.errors![0]!, /FORBIDDEN.*datakey-plaintext/);
        }
        await native.keys.setPolicy('tenants', { clients: { 'token:ops': ['datakey', 'datakey-plaintext', 'admin'] } });
        const hidden = await raw(vd, 'POST', '/v1/transit/datakey/wrapped/tenants', headers, '{}');
        assert.equal(hidden.status, 404, JSON.stringify(hidden.body));
      } finally {
        await native.close();
      }
      // A data key in a batch, and one presented to another key: 400s that say why.
      await admin.write('transit/keys/other-kek', { type: 'aes256-kwp' });
      await assert.rejects(admin.write('transit/decrypt/other-kek', { ciphertext: plain.ciphertext }), /wrapped by key 'tenants'/);
      const batch = await raw(vd, 'POST', '/v1/transit/decrypt/tenants', { 'X-Vault-Token': adminToken }, JSON.stringify({ batch_input: [{ ciphertext: plain.ciphertext }] }));
      assert.equal(batch.status, 400);
      assert.match(String((batch.body!.data!.batch_results as Array<{ error: string }>)[0]!.error), /request of its own/);
    });

    test('LIST on a keep-alive connection, pipelined behind a POST with a body, split at every byte', async () => {
      const list = `LIST /v1/transit/keys HTTP/1.1\r\nHost: x\r\nX-Vault-Token: ${adminToken}\r\n\r\n`;
      const body = JSON.stringify({ plaintext: b64('LIST /v1/ inside a body') });
      const post = `POST /v1/transit/encrypt/k HTTP/1.1\r\nHost: x\r\nX-Vault-Token: ${adminToken}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
      const chunked = `POST /v1/transit/hash HTTP/1.1\r\nHost: x\r\nX-Vault-Token: ${adminToken}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"inp\r\n${(JSON.stringify({ input: b64('abc') }).length - 5).toString(16)}\r\n${JSON.stringify({ input: b64('abc') }).slice(5)}\r\n0\r\n\r\n`;
      // LIST first, and LIST after requests the connection's own parser served (the connection moves to the rewriter there).
      for (const [all, requests, step] of [[list + post + chunked + list, 4], [post + post + list + chunked + list, 5]].flatMap(([text, n]) => [Buffer.from(text as string)].flatMap((b) => [b.length, 1, 7].map((step) => [b, n as number, step] as const)))) {
        const replies = await new Promise<string>((resolve, reject) => {
          const s = vd.url !== null ? connect(Number(new URL(vd.url).port), '127.0.0.1') : connect(vd.socketPath!);
          let got = '';
          s.on('data', (c: Buffer) => {
            got += c.toString();
            if ((got.match(/HTTP\/1\.1 /g) ?? []).length === requests) {
              s.end();
              resolve(got);
            }
          });
          s.on('error', reject);
          // Closed early (a refused LIST is a 400 and a close): the statuses say which.
          s.on('close', () => resolve(got));
          s.on('connect', async () => {
            for (let i = 0; i < all.length && !s.destroyed; i += step) {
              s.write(all.subarray(i, i + step));
              if (step < all.length) await new Promise((r) => setImmediate(r));
            }
          });
        });
        const statuses = [...replies.matchAll(/HTTP\/1\.1 (\d+)/g)].map((m) => m[1]);
        assert.deepEqual(statuses, Array(requests).fill('200'), `step ${step}: ${replies}`);
        assert.equal((replies.match(/"keys":\["k"/g) ?? []).length >= 2, true, replies);
      }
      for (const q of ['true', 'True', '1']) {
        const r = await raw(vd, 'GET', `/v1/transit/keys?list=${q}`, { 'X-Vault-Token': adminToken });
        assert.equal(r.status, 200, q);
      }
    });
  });
}
