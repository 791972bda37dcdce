/**
 * Data keys end to end (src/ops/datakeys.ts) against a real daemon on a real
 * socket, SQLite keystore and local root KEK: generate, encrypt, decrypt,
 * batches, rewrap and open across a KEK rotation, the `datakey` and
 * `datakey-plaintext` rights, the cache in `status`, eviction when a KEK
 * version is destroyed, single flight and the timeout through the daemon,
 * and a slow KEK that must not delay other clients.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { managedKeks } from '../src/ops/managed-kek.js';
import type { DataKeyKek, DataKeyKeks } from '../src/kek/data-key-kek.js';
import { parseWrappedKey } from '../src/protocol/datakey-format.js';
import {
  DataError, DecryptError, ForbiddenError, KeyDisabledError, KekTimeoutError, KeyVersionError, NotFoundError, InvalidKeyError, InvalidArgumentError,
} from '../src/protocol/errors.js';
import { startManagedDaemon, type ManagedEnv } from './managed-env.js';
import { openManagedKeys } from '../src/daemon/managed-keys.js';

const te = new TextEncoder();
const td = new TextDecoder();

type CacheStatus = { hits: number; misses: number; unwraps: number; coalesced: number; size: number; bytes: number; inflight: number; evictions: Record<string, number> };
async function cacheOf(env: ManagedEnv): Promise<CacheStatus> {
  return (await (await env.admin()).status()).cache as CacheStatus;
}

/** KEKs of `inner` whose unwraps first wait for `before()` (a slow, failing or hanging provider). */
function slowKeks(inner: DataKeyKeks, before: () => Promise<void>, counter: { unwraps: number }): DataKeyKeks {
  const wrapVersion = (k: DataKeyKek): DataKeyKek => ({
    name: k.name, version: k.version, type: k.type,
    wrap: (p, a) => k.wrap(p, a),
    unwrap: async (b, a) => {
      counter.unwraps++;
      await before();
      return k.unwrap(b, a);
    },
  });
  return { current: (n) => wrapVersion(inner.current(n)), version: (n, v) => wrapVersion(inner.version(n, v)), usable: (n, v) => inner.usable(n, v) };
}

test('generate, encrypt, decrypt, batches; the wrapped key names its KEK and version; no plaintext without the right', async () => {
  const env = await startManagedDaemon();
  try {
    const admin = await env.admin();
    await admin.keys.create('tenants', { type: 'aes256-kwp', clients: { 'token:app': ['datakey'], 'token:ops': ['datakey', 'datakey-plaintext'] } });
    const app = await env.token('app');
    const g = await app.dataKeys.generate({ kek: 'tenants', aad: te.encode('tenant 42') });
    assert.equal(g.plaintext, undefined);
    assert.equal(g.kekVersion, 1);
    const { header } = parseWrappedKey(g.wrappedKey);
    assert.deepEqual([header.kek, header.kekVersion, header.length, td.decode(header.context)], ['tenants', 1, 32, 'tenant 42']);

    const ct = await app.dataKeys.encrypt(g.wrappedKey, te.encode('hello'), { aad: te.encode('row 1') });
    assert.equal(td.decode(await app.dataKeys.decrypt(g.wrappedKey, ct, { aad: te.encode('row 1') })), 'hello');
    await assert.rejects(app.dataKeys.decrypt(g.wrappedKey, ct, { aad: te.encode('row 2') }), DecryptError);
    const batch = await app.dataKeys.encryptBatch(g.wrappedKey, [{ data: te.encode('a') }, { data: te.encode('b'), aad: te.encode('x') }]);
    const back = await app.dataKeys.decryptBatch(g.wrappedKey, [
      { data: batch[0] as Uint8Array }, { data: batch[1] as Uint8Array, aad: te.encode('x') }, { data: batch[1] as Uint8Array },
    ]);
    assert.equal(td.decode(back[0] as Uint8Array), 'a');
    assert.equal(td.decode(back[1] as Uint8Array), 'b');
    assert.ok(back[2] instanceof DecryptError, 'a failed item is its error; the others are served');

    // plaintext: a separate right
    await assert.rejects(app.dataKeys.generate({ kek: 'tenants', plaintext: true }), ForbiddenError);
    const ops = await env.token('ops');
    const withPlain = await ops.dataKeys.generate({ kek: 'tenants', plaintext: true, length: 16 });
    assert.equal(withPlain.plaintext!.length, 16);
    const ct16 = await ops.dataKeys.encrypt(withPlain.wrappedKey, te.encode('x'));
    // the plaintext key really is the key: decrypt locally
    const { createDecipheriv } = await import('node:crypto');
    const d = createDecipheriv('aes-128-gcm', withPlain.plaintext!, ct16.subarray(1, 13));
    d.setAAD(Buffer.from([1]));
    d.setAuthTag(ct16.subarray(ct16.length - 16));
    assert.equal(td.decode(Buffer.concat([d.update(ct16.subarray(13, ct16.length - 16)), d.final()])), 'x');
    // unwrap: the plaintext of an existing wrapped key, under the same separate right
    assert.deepEqual(Buffer.from(await ops.dataKeys.unwrap(withPlain.wrappedKey)), Buffer.from(withPlain.plaintext!));
    const unwrapped = await ops.dataKeys.unwrap(g.wrappedKey);
    assert.equal(unwrapped.length, 32);
    assert.equal(td.decode(Buffer.from(await ops.dataKeys.decrypt(g.wrappedKey, ct, { aad: te.encode('row 1') }))), 'hello');
    const d32 = createDecipheriv('aes-256-gcm', unwrapped, ct.subarray(1, 13));
    d32.setAAD(Buffer.concat([Buffer.from([1]), te.encode('row 1')]));
    d32.setAuthTag(ct.subarray(ct.length - 16));
    assert.equal(td.decode(Buffer.concat([d32.update(ct.subarray(13, ct.length - 16)), d32.final()])), 'hello');
    await assert.rejects(app.dataKeys.unwrap(g.wrappedKey), ForbiddenError);

    // a client without a right on the KEK does not learn it exists
    const stranger = await env.token('stranger');
    await assert.rejects(stranger.dataKeys.encrypt(g.wrappedKey, te.encode('x')), NotFoundError);
    await assert.rejects(stranger.dataKeys.generate({ kek: 'tenants' }), NotFoundError);
    await assert.rejects(stranger.dataKeys.unwrap(g.wrappedKey), NotFoundError);

    // bad input: typed errors, the connection survives
    await assert.rejects(app.dataKeys.encrypt(te.encode('not a wrapped key'), te.encode('x')), DataError);
    const altered = Buffer.from(g.wrappedKey);
    altered[altered.length - 1]! ^= 1;
    await assert.rejects(app.dataKeys.encrypt(altered, te.encode('x')), DecryptError);
    const context = Buffer.from(g.wrappedKey);
    context[parseWrappedKey(g.wrappedKey).header.bytes.length - 1]! ^= 1; // the context is authenticated
    await assert.rejects(app.dataKeys.encrypt(context, te.encode('x')), DecryptError);
    await assert.rejects(app.dataKeys.generate({ kek: 'tenants', length: 20 }), InvalidArgumentError);
    await admin.keys.create('not-a-kek', { type: 'aes256-gcm' });
    await assert.rejects(admin.dataKeys.generate({ kek: 'not-a-kek' }), InvalidKeyError);
    assert.equal(td.decode(await app.dataKeys.decrypt(g.wrappedKey, ct, { aad: te.encode('row 1') })), 'hello');
  } finally {
    await env.stop();
  }
});

test('KEK rotation: old versions still unwrap; open() rewraps only stale keys; trim evicts what the destroyed version wrapped', async () => {
  const events: Array<Record<string, unknown>> = [];
  const audit = { enabled: true, emit: (e: object) => void events.push({ ...e }), close() {} };
  const env = await startManagedDaemon({ daemon: { audit } });
  try {
    const admin = await env.admin();
    await admin.keys.create('orders', { type: 'aes256-kwp' });
    const v1 = await admin.dataKeys.generate({ kek: 'orders' });
    const ct = await admin.dataKeys.encrypt(v1.wrappedKey, te.encode('order 1'));
    const same = await admin.dataKeys.open(v1.wrappedKey);
    assert.equal(same.rewrapped, false);
    assert.deepEqual(Buffer.from(same.wrappedKey), Buffer.from(v1.wrappedKey));

    assert.equal(await admin.keys.rotate('orders'), 2);
    assert.equal(td.decode(await admin.dataKeys.decrypt(v1.wrappedKey, ct)), 'order 1', 'version 1 still unwraps');
    const opened = await admin.dataKeys.open(v1.wrappedKey);
    assert.equal(opened.rewrapped, true);
    assert.equal(parseWrappedKey(opened.wrappedKey).header.kekVersion, 2);
    assert.equal(td.decode(await admin.dataKeys.decrypt(opened.wrappedKey, ct)), 'order 1', 'the same data key under version 2');
    const rewrapped = await admin.dataKeys.rewrap(v1.wrappedKey);
    assert.equal(parseWrappedKey(rewrapped).header.kekVersion, 2);

    assert.equal((await admin.dataKeys.unwrap(opened.wrappedKey)).length, 32);
    const before = await cacheOf(env);
    assert.ok(before.size >= 2);
    await admin.keys.trim('orders', 2); // destroys version 1
    const after = await cacheOf(env);
    assert.ok((after.evictions.kek ?? 0) >= 1, 'entries of the destroyed version are dropped at once');
    await assert.rejects(admin.dataKeys.decrypt(v1.wrappedKey, ct), KeyVersionError);
    assert.equal(td.decode(await admin.dataKeys.decrypt(opened.wrappedKey, ct)), 'order 1');

    await admin.keys.destroy('orders');
    assert.equal((await cacheOf(env)).size, 0, 'a destroyed KEK leaves nothing in the cache');
    await assert.rejects(admin.dataKeys.decrypt(opened.wrappedKey, ct), KeyDisabledError);

    const kinds = events.map((e) => e.event);
    for (const k of ['datakey.generated', 'datakey.opened', 'datakey.rewrapped', 'datakey.unwrapped']) assert.ok(kinds.includes(k), `missing ${k}`);
    const unwrapped = events.find((e) => e.event === 'datakey.unwrapped')!;
    assert.deepEqual([unwrapped.kek, unwrapped.kekVersion], ['orders', 2]);
    const gen = events.find((e) => e.event === 'datakey.generated')!;
    assert.deepEqual([gen.kek, gen.kekVersion, gen.plaintext], ['orders', 1, false]);
  } finally {
    await env.stop();
  }
});

test('through the daemon: 1,000 concurrent requests on one cold wrapped key make one unwrap; status shows the cache', async () => {
  const data = await startManagedDaemon();
  // A second daemon on the same data directory: its cache is cold for keys the first generated.
  const keys2 = await openManagedKeys({ dataDir: data.data.path });
  const counter = { unwraps: 0 };
  const { startTestDaemon } = await import('./helpers/daemon.js');
  // The unwrap is held until all 1,000 requests have asked for the key (watched through STATUS on another connection).
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  const d2 = await startTestDaemon({ keys: keys2, dataKeyKeks: slowKeks(managedKeks(keys2.manager), () => gate, counter) });
  try {
    const admin = await data.admin();
    await admin.keys.create('cold', { type: 'aes256-kwp' });
    const { wrappedKey } = await admin.dataKeys.generate({ kek: 'cold' });
    const c2 = await d2.connect('admin');
    const watcher = await d2.connect('watcher');
    const msgs = Array.from({ length: 1000 }, (_, i) => te.encode(`message ${i}`));
    const pending = Promise.all(msgs.map((m) => c2.dataKeys.encrypt(wrappedKey, m)));
    while (((await watcher.status()).cache as CacheStatus).misses < 1000) await new Promise((r) => setImmediate(r));
    open();
    const cts = await pending;
    assert.equal(counter.unwraps, 1);
    const pts = await Promise.all(cts.map((c) => admin.dataKeys.decrypt(wrappedKey, c)));
    pts.forEach((p, i) => assert.equal(td.decode(p), `message ${i}`));
    const s = (await c2.status()).cache as CacheStatus;
    assert.equal(s.unwraps, 1);
    assert.equal(s.misses, 1000);
    assert.equal(s.coalesced, 999);
    assert.deepEqual([s.size, s.bytes, s.inflight], [1, 32, 0]);
  } finally {
    await d2.stop();
    await keys2.close();
    await data.stop();
  }
});

test('a failing KEK rejects every waiter with its typed error and the next request succeeds; a hanging one times out with nothing left', async () => {
  const data = await startManagedDaemon();
  const keys2 = await openManagedKeys({ dataDir: data.data.path });
  let mode: 'fail' | 'hang' | 'ok' = 'fail';
  const counter = { unwraps: 0 };
  const hung: Array<() => void> = [];
  // The failure is held until every request has joined the unwrap, so that
  // the count below does not depend on how fast the requests arrive.
  let refuse = (): void => {};
  const failure = new Promise<void>((_, reject) => { refuse = () => reject(new DecryptError('the token refused the unwrap')); });
  failure.catch(() => {});
  const before = (): Promise<void> => {
    if (mode === 'fail') return failure;
    if (mode === 'hang') return new Promise<void>((r) => hung.push(r));
    return Promise.resolve();
  };
  const { startTestDaemon } = await import('./helpers/daemon.js');
  const d2 = await startTestDaemon({ keys: keys2, limits: { dataKeyUnwrapTimeoutMs: 100 }, dataKeyKeks: slowKeks(managedKeks(keys2.manager), before, counter) });
  try {
    const admin = await data.admin();
    await admin.keys.create('flaky', { type: 'aes256-kwp' });
    const { wrappedKey } = await admin.dataKeys.generate({ kek: 'flaky' });
    const c2 = await d2.connect('admin');
    const failing = Promise.allSettled(Array.from({ length: 50 }, () => c2.dataKeys.encrypt(wrappedKey, te.encode('x'))));
    while (((await c2.status()).cache as CacheStatus).misses < 50) await new Promise((r) => setImmediate(r));
    refuse();
    const failed = await failing;
    assert.ok(failed.every((r) => r.status === 'rejected' && r.reason instanceof DecryptError));
    assert.equal(counter.unwraps, 1);

    mode = 'hang';
    const timedOut = await Promise.allSettled(Array.from({ length: 50 }, () => c2.dataKeys.encrypt(wrappedKey, te.encode('x'))));
    assert.ok(timedOut.every((r) => r.status === 'rejected' && r.reason instanceof KekTimeoutError));
    assert.equal(counter.unwraps, 2);
    const s = (await c2.status()) as { cache: CacheStatus; nodes: number };
    assert.deepEqual([s.cache.size, s.cache.inflight, s.cache.bytes, s.nodes], [0, 0, 0, 0]);

    mode = 'ok';
    const ct = await c2.dataKeys.encrypt(wrappedKey, te.encode('finally'));
    assert.equal(td.decode(await admin.dataKeys.decrypt(wrappedKey, ct)), 'finally');
    assert.equal(counter.unwraps, 3);
    for (const r of hung) r(); // the late results are discarded
  } finally {
    await d2.stop();
    await keys2.close();
    await data.stop();
  }
});

test('a KEK that takes 50 ms per unwrap does not delay other clients', async () => {
  const data = await startManagedDaemon();
  const keys2 = await openManagedKeys({ dataDir: data.data.path });
  const counter = { unwraps: 0 };
  const { startTestDaemon } = await import('./helpers/daemon.js');
  const d2 = await startTestDaemon({ keys: keys2, dataKeyKeks: slowKeks(managedKeks(keys2.manager), () => new Promise((r) => setTimeout(r, 50)), counter) });
  try {
    const admin = await data.admin();
    await admin.keys.create('slow', { type: 'aes256-kwp' });
    const wrapped = await Promise.all(Array.from({ length: 20 }, () => admin.dataKeys.generate({ kek: 'slow' })));
    const c2 = await d2.connect('admin');
    const other = await d2.connect('other');
    // 20 cold misses, each 50 ms in the KEK, all in flight while the other client works.
    let coldDone = false;
    const cold = Promise.all(wrapped.map((w) => c2.dataKeys.encrypt(w.wrappedKey, te.encode('x')))).then(() => {
      coldDone = true;
    });
    let served = 0;
    while (counter.unwraps < 20) await other.ping();
    // The unwraps are all in flight now; the other client is served meanwhile, before any of them ends.
    for (let i = 0; i < 20; i++) {
      await other.ping();
      served++;
    }
    assert.equal(coldDone, false, 'the other client was served while every unwrap was still in flight');
    assert.equal(served, 20);
    await cold;
  } finally {
    await d2.stop();
    await keys2.close();
    await data.stop();
  }
});

test('streams of any size under a data key (the segmented AEAD format); the key node goes with the stream', async () => {
  const { pipeline } = await import('node:stream/promises');
  const { Readable, Writable } = await import('node:stream');
  const { randomBytes } = await import('node:crypto');
  const env = await startManagedDaemon();
  try {
    const admin = await env.admin();
    await admin.keys.create('streams', { type: 'aes256-kwp', clients: { 'token:app': ['datakey'] } });
    const app = await env.token('app');
    const { wrappedKey } = await app.dataKeys.generate({ kek: 'streams' });
    const input = randomBytes(3 * 1024 * 1024 + 17);
    const collect = (into: Buffer[]) => new Writable({ write(c: Buffer, _e, cb) { into.push(c); cb(); } });
    const sealed: Buffer[] = [];
    await pipeline(Readable.from([input.subarray(0, 1000), input.subarray(1000)]), await app.dataKeys.createEncryptStream(wrappedKey, { segmentSize: 64 * 1024 }), collect(sealed));
    const opened: Buffer[] = [];
    await pipeline(Readable.from([Buffer.concat(sealed)]), await app.dataKeys.createDecryptStream(wrappedKey), collect(opened));
    assert.deepEqual(Buffer.concat(opened), input);
    // A tampered stream fails; a stream under another data key fails.
    const other = await app.dataKeys.generate({ kek: 'streams' });
    await assert.rejects(pipeline(Readable.from([Buffer.concat(sealed)]), await app.dataKeys.createDecryptStream(other.wrappedKey), collect([])), DecryptError);
    // The key handle is non-extractable.
    const key = await app.dataKeys.key(wrappedKey);
    assert.deepEqual([key.extractable, key.algorithm.name, key.usages], [false, 'AES-GCM', ['encrypt', 'decrypt']]);
    await assert.rejects(app.subtle.exportKey('raw', key), (e: Error & { code?: string }) => e.code === 'CRYPTOD_ERR_NOT_EXTRACTABLE');
    await key[Symbol.asyncDispose]();
    const stranger = await env.token('stranger');
    await assert.rejects(stranger.dataKeys.key(wrappedKey), NotFoundError);
    // Every key node and stream context is released once the streams closed.
    // (The releases travel on the app's connection, the status request on another: wait for them, bounded.)
    let nodes = -1;
    for (let i = 0; i < 200 && nodes !== 0; i++) {
      await app.ping(); // the app's releases are sent before this and answered in order
      nodes = ((await admin.status()) as { nodes: number }).nodes;
    }
    assert.equal(nodes, 0);
  } finally {
    await env.stop();
  }
});
