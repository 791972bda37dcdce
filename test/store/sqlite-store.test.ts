import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { ConfigError, StoreBusyError } from '../../src/protocol/errors.js';
import { APPLICATION_ID, LATEST_SCHEMA_VERSION } from '../../src/store/sqlite/migrations.js';
import { openSqliteKeystore } from '../../src/store/sqlite/sqlite-store.js';
import { openSqliteClientRegistry } from '../../src/store/sqlite/client-registry.js';
import { clientRegistrySuite } from './client-registry-suite.js';
import { keyRecord, keystoreSuite, versionRecord } from './keystore-suite.js';
import { makeTempDir } from './tmpdir.js';

keystoreSuite('sqlite', async () => {
  const tmp = makeTempDir();
  const store = await openSqliteKeystore({ dataDir: path.join(tmp.path, 'data') });
  return { store, cleanup: tmp.cleanup };
});

clientRegistrySuite('sqlite', async () => {
  const tmp = makeTempDir();
  const dataDir = path.join(tmp.path, 'data');
  return {
    registry: openSqliteClientRegistry({ dataDir }),
    reopen: async () => openSqliteClientRegistry({ dataDir }),
    cleanup: tmp.cleanup,
  };
});

function mode(p: string): number {
  return fs.statSync(p).mode & 0o777;
}

describe('sqlite keystore', () => {
  it('creates the data directory 0700 and the database, -wal and -shm 0600', async () => {
    const tmp = makeTempDir();
    const dir = path.join(tmp.path, 'nested', 'data');
    const old = process.umask(0o022);
    try {
      const store = await openSqliteKeystore({ dataDir: dir });
      await store.transaction((tx) => tx.putKey(keyRecord('k')));
      assert.equal(mode(dir), 0o700);
      for (const f of ['keystore.sqlite', 'keystore.sqlite-wal', 'keystore.sqlite-shm']) {
        assert.equal(mode(path.join(dir, f)), 0o600, f);
      }
      await store.close();
    } finally {
      process.umask(old);
      await tmp.cleanup();
    }
  });

  it('refuses a data directory or database file that others can access', async () => {
    const tmp = makeTempDir();
    try {
      const dir = path.join(tmp.path, 'open');
      fs.mkdirSync(dir, { mode: 0o755 });
      fs.chmodSync(dir, 0o755);
      await assert.rejects(openSqliteKeystore({ dataDir: dir }), (err: unknown) => err instanceof ConfigError && /mode 755; expected 700/.test(err.message));
      fs.chmodSync(dir, 0o700);
      fs.writeFileSync(path.join(dir, 'keystore.sqlite'), '', { mode: 0o644 });
      fs.chmodSync(path.join(dir, 'keystore.sqlite'), 0o644);
      await assert.rejects(openSqliteKeystore({ dataDir: dir }), ConfigError);
    } finally {
      await tmp.cleanup();
    }
  });

  it('migrates an empty database to the latest schema, in WAL mode', async () => {
    const tmp = makeTempDir();
    try {
      const store = await openSqliteKeystore({ dataDir: tmp.path });
      const file = store.file;
      await store.close();
      const db = new Database(file, { readonly: true });
      assert.equal(db.pragma('user_version', { simple: true }), LATEST_SCHEMA_VERSION);
      assert.equal(db.pragma('application_id', { simple: true }), APPLICATION_ID);
      assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
      const tables = (db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name").all() as Array<{ name: string }>).map((r) => r.name);
      assert.deepEqual(tables, ['changes', 'clients', 'key_versions', 'keys', 'leases', 'members', 'meta', 'store_state']);
      db.close();
      // Reopening an up-to-date database changes nothing.
      const again = await openSqliteKeystore({ dataDir: tmp.path });
      assert.equal(await again.generation(), 0);
      await again.close();
    } finally {
      await tmp.cleanup();
    }
  });

  it('refuses a database from a newer schema version, and foreign databases', async () => {
    const tmp = makeTempDir();
    try {
      const store = await openSqliteKeystore({ dataDir: tmp.path });
      const file = store.file;
      await store.close();
      const db = new Database(file);
      db.pragma(`user_version = ${LATEST_SCHEMA_VERSION + 1}`);
      db.close();
      await assert.rejects(openSqliteKeystore({ dataDir: tmp.path }), (err: unknown) =>
        err instanceof ConfigError && err.message.includes(`schema version ${LATEST_SCHEMA_VERSION + 1}, newer than this cryptod supports (${LATEST_SCHEMA_VERSION})`));

      const foreign = path.join(tmp.path, 'other.sqlite');
      const f = new Database(foreign);
      f.exec('CREATE TABLE t (x)');
      f.close();
      fs.chmodSync(foreign, 0o600);
      await assert.rejects(openSqliteKeystore({ dataDir: tmp.path, fileName: 'other.sqlite' }), /not a cryptod keystore/);

      const junk = path.join(tmp.path, 'junk.sqlite');
      fs.writeFileSync(junk, Buffer.alloc(4096, 7), { mode: 0o600 });
      await assert.rejects(openSqliteKeystore({ dataDir: tmp.path, fileName: 'junk.sqlite' }), ConfigError);
      await assert.rejects(openSqliteKeystore({ dataDir: tmp.path, fileName: '../x.sqlite' }), ConfigError);
    } finally {
      await tmp.cleanup();
    }
  });

  it('two connections (as two processes) see each other through generation and changesSince', async () => {
    const tmp = makeTempDir();
    try {
      const a = await openSqliteKeystore({ dataDir: tmp.path });
      const b = await openSqliteKeystore({ dataDir: tmp.path });
      const seen = await b.generation();
      await a.transaction(async (tx) => {
        await tx.putKey(keyRecord('shared'));
        await tx.putVersion(versionRecord('shared', 1));
      });
      assert.deepEqual(await b.changesSince(seen), { generation: seen + 1, names: ['shared'], metaKeys: [], truncated: false });
      assert.equal((await b.read((r) => r.getVersions('shared'))).length, 1);
      await b.close();
      await a.close();
    } finally {
      await tmp.cleanup();
    }
  });

  it('waits for another connection\'s write lock without blocking the event loop, and gives up after lockTimeoutMs', async () => {
    const tmp = makeTempDir();
    try {
      const a = await openSqliteKeystore({ dataDir: tmp.path });
      const b = await openSqliteKeystore({ dataDir: tmp.path, lockTimeoutMs: 2_000 });
      const c = await openSqliteKeystore({ dataDir: tmp.path, lockTimeoutMs: 50 });
      let release!: () => void;
      const gate = new Promise<void>((resolve) => { release = resolve; });
      let locked!: () => void;
      const holding = new Promise<void>((resolve) => { locked = resolve; });
      const holder = a.transaction(async (tx) => { await tx.putKey(keyRecord('a')); locked(); await gate; });
      await holding;
      const waiter = b.transaction((tx) => tx.putKey(keyRecord('b')));
      await assert.rejects(c.transaction((tx) => tx.putKey(keyRecord('c'))), (err: unknown) => err instanceof StoreBusyError && /locked by another process/.test(err.message));
      // The event loop keeps turning while b waits.
      let ticks = 0;
      const started = Date.now();
      while (Date.now() - started < 150) { await sleep(5); ticks += 1; }
      assert.ok(ticks >= 10, `expected the event loop to run while waiting, got ${ticks} ticks`);
      release();
      await holder;
      await waiter;
      assert.deepEqual((await c.read((r) => r.listKeys())).map((k) => k.name), ['a', 'b']);
      await Promise.all([a.close(), b.close(), c.close()]);
    } finally {
      await tmp.cleanup();
    }
  });

  it('prunes the change log and then reports truncated', async () => {
    const tmp = makeTempDir();
    try {
      const store = await openSqliteKeystore({ dataDir: tmp.path, changeLogLimit: 3 });
      for (let i = 0; i < 8; i++) await store.transaction((tx) => tx.putKey(keyRecord(`k${i}`)));
      assert.equal((await store.changesSince(0)).truncated, true);
      assert.deepEqual(await store.changesSince(5), { generation: 8, names: ['k5', 'k6', 'k7'], metaKeys: [], truncated: false });
      await store.close();
    } finally {
      await tmp.cleanup();
    }
  });

  it('erases destroyed material from the file', async () => {
    const tmp = makeTempDir();
    try {
      const store = await openSqliteKeystore({ dataDir: tmp.path });
      const v = versionRecord('k', 1);
      const onDisk = (): Buffer => Buffer.concat(fs.readdirSync(tmp.path).map((f) => fs.readFileSync(path.join(tmp.path, f))));
      await store.transaction(async (tx) => { await tx.putKey(keyRecord('k')); await tx.putVersion(v); });
      assert.notEqual(onDisk().indexOf(Buffer.from(v.wrapped!)), -1, 'control: the material is on disk before destroy');
      await store.transaction((tx) => tx.destroyVersionMaterial('k', 1));
      assert.equal(onDisk().indexOf(Buffer.from(v.wrapped!)), -1, 'gone while open (WAL checkpointed and truncated)');
      await store.close();
      assert.equal(onDisk().indexOf(Buffer.from(v.wrapped!)), -1, 'gone after close');
    } finally {
      await tmp.cleanup();
    }
  });
});

describe('sqlite keystore: maybeChanged (PRAGMA data_version)', () => {
  it('is true once after another connection commits, and never for its own commits or reads', async () => {
    const tmp = makeTempDir();
    const dir = path.join(tmp.path, 'data');
    const a = await openSqliteKeystore({ dataDir: dir });
    const b = await openSqliteKeystore({ dataDir: dir });
    try {
      assert.equal(a.maybeChanged(), false, 'nothing happened');
      await a.transaction((tx) => tx.putKey(keyRecord('own')));
      await a.read((r) => r.listKeys());
      assert.equal(a.maybeChanged(), false, 'its own commit and reads do not count');
      assert.equal(b.maybeChanged(), true, 'the other connection sees it');
      assert.equal(b.maybeChanged(), false, 'once');
      await b.transaction((tx) => tx.putKey(keyRecord('theirs')));
      await b.transaction((tx) => tx.putKey(keyRecord('theirs2')));
      assert.equal(a.maybeChanged(), true, 'two commits, one look');
      assert.equal(a.maybeChanged(), false);
      await b.transaction(() => undefined); // commits nothing
      assert.equal(a.maybeChanged(), false, 'an empty transaction changes nothing');
      await a.close();
      assert.equal(a.maybeChanged(), false, 'closed: nothing to report, no throw');
    } finally {
      await a.close();
      await b.close();
      await tmp.cleanup();
    }
  });
});
