/**
 * Freshness on one host (keys/freshness.ts): two daemons on one SQLite file,
 * each on its own socket, neither polling. What one commits — a key created,
 * rotated, trimmed, disabled, destroyed — the other uses on its very next
 * operation: no sleeps, no waiting for a poll. Then catch-ups and full
 * reloads injected at random moments under load: no operation fails because
 * of them.
 */
import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { after, test } from 'node:test';
import type { Client } from '../src/client/client.js';
import { openManagedKeys, type OpenedManagedKeys } from '../src/daemon/managed-keys.js';
import { parseHeader } from '../src/protocol/managed-format.js';
import { CryptodError, KeyVersionError } from '../src/protocol/errors.js';
import { SqliteMemberStore } from '../src/store/sqlite/fleet-store.js';
import { startTestDaemon, type TestDaemon } from './helpers/daemon.js';
import { makeTempDir } from './store/tmpdir.js';

const te = new TextEncoder();
const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

interface Side {
  keys: OpenedManagedKeys;
  td: TestDaemon;
  c: Client;
}

async function side(dataDir: string): Promise<Side> {
  // refreshIntervalMs 0: no polling, so whatever B sees it saw at the start of an operation.
  const keys = await openManagedKeys({ dataDir, refreshIntervalMs: 0 });
  const td = await startTestDaemon({ keys });
  const c = await td.connect('admin');
  cleanups.push(async () => {
    await td.stop();
    await keys.close();
  });
  return { keys, td, c };
}

async function pair(): Promise<{ a: Side; b: Side }> {
  const data = makeTempDir('cd-fresh-');
  cleanups.push(() => data.cleanup());
  return { a: await side(data.path), b: await side(data.path) };
}

const versionOf = (ct: Uint8Array): number => parseHeader(ct, 'ciphertext').header.version;

test('a change committed through one daemon is used by the next operation on the other', async () => {
  const { a, b } = await pair();

  // Created: B's next request sees it, through the start-of-operation check.
  const before = b.keys.manager.catchUps;
  await a.c.keys.create('orders', { type: 'aes256-gcm' });
  const v1 = await b.c.encrypt('orders', te.encode('one'));
  assert.equal(versionOf(v1), 1);
  assert.ok(b.keys.manager.catchUps > before, 'B caught up at the start of the operation');

  // Rotated: B encrypts with version 2 at once (no miss, no retry: outbound never misses).
  assert.equal(await a.c.keys.rotate('orders'), 2);
  const v2 = await b.c.encrypt('orders', te.encode('two'));
  assert.equal(versionOf(v2), 2, 'B encrypts with the new version on its very next operation');
  assert.equal((await b.c.keys.describe('orders')).currentVersion, 2);
  for (let i = 3; i <= 5; i++) {
    assert.equal(await a.c.keys.rotate('orders'), i);
    assert.equal(versionOf(await b.c.encrypt('orders', te.encode('x'))), i, `rotation ${i}`);
  }

  // Trimmed: version 1 is refused on B at once.
  assert.deepEqual(await a.c.keys.trim('orders', 2), [1]);
  await assert.rejects(b.c.decrypt('orders', v1), (e: unknown) => e instanceof KeyVersionError && e.detail?.reason === 'destroyed');
  assert.equal(Buffer.from(await b.c.decrypt('orders', v2)).toString(), 'two');

  // Disabled (a configuration reload on A stops declaring the key): B refuses it at once.
  await a.keys.manager.applyConfig({ sessions: { type: 'hmac-sha256' } });
  const mac = await b.c.mac('sessions', te.encode('m'));
  await a.keys.manager.applyConfig({});
  await assert.rejects(b.c.mac('sessions', te.encode('m')), CryptodError);
  await assert.rejects(b.c.verifyMac('sessions', te.encode('m'), mac), CryptodError);

  // Destroyed: B neither decrypts nor encrypts from its next operation on.
  await a.c.keys.destroy('orders');
  await assert.rejects(b.c.decrypt('orders', v2), CryptodError);
  await assert.rejects(b.c.encrypt('orders', te.encode('x')), CryptodError);

  // And the other way round, B writing and A using.
  await b.c.keys.create('back', { type: 'hmac-sha256' });
  await b.c.keys.rotate('back');
  const m = await a.c.mac('back', te.encode('m'));
  assert.equal(parseHeader(m, 'mac').header.version, 2);
});

test('own writes and idle checks cost no catch-up', async () => {
  const { a, b } = await pair();
  await a.c.keys.create('own', { type: 'hmac-sha256' });
  await a.c.mac('own', te.encode('m')); // B's registry, A's registry… settle
  await b.c.mac('own', te.encode('m'));
  const ca = a.keys.manager.catchUps;
  const cb = b.keys.manager.catchUps;
  await a.c.keys.rotate('own'); // A's own commit: nothing for A to catch up with
  for (let i = 0; i < 50; i++) await a.c.mac('own', te.encode('m'));
  assert.equal(a.keys.manager.catchUps, ca, 'a daemon does not catch up with its own commits');
  for (let i = 0; i < 50; i++) await b.c.mac('own', te.encode('m'));
  assert.equal(b.keys.manager.catchUps, cb + 1, 'one catch-up for one foreign commit, however many operations follow');
});

test('catch-ups and reloads injected at random moments under load fail no operation', async () => {
  const { a, b } = await pair();
  await a.c.keys.create('load', { type: 'aes256-gcm', gracePeriod: '1h' });
  await a.c.keys.create('tags', { type: 'hmac-sha256', gracePeriod: '1h' });
  const clients = [b.c, await b.td.connect('w1'), await b.td.connect('w2'), await b.td.connect('w3')];
  let stop = false;
  let ops = 0;
  const failures: unknown[] = [];
  const worker = async (c: Client, i: number): Promise<void> => {
    while (!stop) {
      try {
        const pt = te.encode(`item ${i} ${ops}`);
        const ct = await c.encrypt('load', pt);
        assert.deepEqual(Buffer.from(await c.decrypt('load', ct)), Buffer.from(pt));
        const tag = await c.mac('tags', pt);
        assert.equal(await c.verifyMac('tags', pt, tag), true);
        const batch = await c.encryptBatch('load', [{ data: pt }, { data: pt }]);
        assert.ok(batch.length === 2 && batch.every((x) => x instanceof Uint8Array), String(batch[0]));
        ops += 5;
      } catch (err) {
        failures.push(err);
      }
    }
  };
  // Injections: rotations committed by A (B catches up on its next operation),
  // and refreshes and full reloads of B's own, at random moments.
  const injector = async (): Promise<number> => {
    let n = 0;
    for (let round = 0; round < 60; round++) {
      const pick = Math.floor(Math.random() * 4);
      if (pick === 0) await a.c.keys.rotate(Math.random() < 0.5 ? 'load' : 'tags');
      else if (pick === 1) void b.keys.manager.refresh();
      else if (pick === 2) void b.keys.manager.reload();
      else void b.keys.manager.reload(['load']);
      n++;
      const pause = Math.floor(Math.random() * 3);
      for (let j = 0; j < pause; j++) await new Promise((r) => setImmediate(r));
    }
    return n;
  };
  const running = clients.map((c, i) => worker(c, i));
  const injected = await injector();
  await b.keys.manager.settle();
  stop = true;
  await Promise.all(running);
  assert.deepEqual(failures, [], `${failures.length} operations failed`);
  assert.equal(injected, 60);
  assert.ok(ops > 100, `only ${ops} operations ran under the injections`);
  // And B ends up exactly where A is.
  assert.equal((await b.c.keys.describe('load')).currentVersion, (await a.c.keys.describe('load')).currentVersion);
});

test('a catch-up holds back only the requests on the keys it reloads', async () => {
  const data = makeTempDir('cd-fresh-only-');
  cleanups.push(() => data.cleanup());
  const a = await side(data.path);
  const b = await side(data.path);
  await a.c.keys.create('changed', { type: 'hmac-sha256', gracePeriod: '1h' });
  await a.c.keys.create('untouched', { type: 'hmac-sha256' });
  await a.c.keys.create('busy', { type: 'hmac-sha256' });
  const other = await b.td.connect('other');
  assert.equal(parseHeader(await b.c.mac('changed', te.encode('m')), 'mac').header.version, 1);
  await other.mac('untouched', te.encode('m'));

  // A commits a rotation of `changed`. Then B's key manager queue is held up:
  // a management step of B's own waits for the file's write lock, which
  // another connection holds, so B's catch-up of `changed` queues behind it.
  assert.equal(await a.c.keys.rotate('changed'), 2);
  const lock = new Database(join(data.path, 'keystore.sqlite'));
  lock.exec('BEGIN IMMEDIATE');
  let released = false;
  const held = b.keys.manager.rotate('busy').then((v) => {
    assert.ok(released, 'the held-up rotation waited for the lock');
    return v;
  });
  try {
    const before = b.keys.manager.catchUps;
    let changedAnswered = false;
    const onChanged = b.c.mac('changed', te.encode('m')).then((tag) => {
      changedAnswered = true;
      return tag;
    });
    // The untouched key is served at once, while the catch-up of `changed` cannot run yet.
    await other.mac('untouched', te.encode('m'));
    assert.equal(b.keys.manager.catchUps, before + 1, 'B saw the commit and queued one catch-up');
    assert.equal(changedAnswered, false, 'the request on the changed key waits for its reload');
    released = true;
    lock.exec('ROLLBACK');
    assert.equal(parseHeader(await onChanged, 'mac').header.version, 2, 'and then runs on the new version');
  } finally {
    if (lock.inTransaction) lock.exec('ROLLBACK');
    lock.close();
  }
  assert.equal(await held, 2);
});

test('a commit that changes no key (another daemon\'s heartbeat) costs no catch-up', async () => {
  const { a, b } = await pair();
  await a.c.keys.create('steady', { type: 'hmac-sha256' });
  await b.c.mac('steady', te.encode('m'));
  const members = new SqliteMemberStore({ dataDir: b.keys.storeFile === undefined ? '' : dirname(b.keys.storeFile) });
  try {
    const before = b.keys.manager.catchUps;
    for (let i = 0; i < 5; i++) {
      await members.heartbeat({ id: `other-${i}`, host: 'h', pid: 1, seenGeneration: 0, expiresAt: 1 });
      await b.c.mac('steady', te.encode('m'));
    }
    assert.equal(b.keys.manager.catchUps, before, 'no catch-up for commits outside the change log');
  } finally {
    members.close();
  }
});
