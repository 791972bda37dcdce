import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { ConfigError, StoreBusyError } from '../../src/protocol/errors.js';
import { PG_LATEST_SCHEMA_VERSION } from '../../src/store/postgres/migrations.js';
import { openPostgresKeystore, type PostgresKeystore } from '../../src/store/postgres/pg-store.js';
import { postgresForTests, type PgServer } from '../helpers/postgres.js';
import { openPostgresClientRegistry } from '../../src/store/postgres/client-registry.js';
import { clientRegistrySuite } from './client-registry-suite.js';
import { keyRecord, keystoreSuite, versionRecord } from './keystore-suite.js';

const server = await postgresForTests();

after(async () => {
  await server?.shutdown();
});

if (server !== null) {
  const pgServer: PgServer = server;
  keystoreSuite('postgres', async () => {
    const db = await pgServer.freshDatabase();
    const store = await openPostgresKeystore({ url: db.url, poolSize: 4 });
    return { store, cleanup: () => db.drop() };
  });

  describe('postgres keystore', () => {
    let db: Awaited<ReturnType<PgServer['freshDatabase']>>;
    before(async () => {
      db = await pgServer.freshDatabase();
    });
    after(async () => {
      await db.drop();
    });

    it('applies its migrations exactly once when several processes start together', async () => {
      const fresh = await pgServer.freshDatabase();
      try {
        const stores = await Promise.all(Array.from({ length: 6 }, () => openPostgresKeystore({ url: fresh.url, poolSize: 2 })));
        const c = new pg.Client({ connectionString: fresh.url });
        await c.connect();
        const { rows } = await c.query<{ version: number }>('SELECT version FROM cryptod_schema ORDER BY version');
        await c.end();
        assert.deepEqual(rows.map((r) => r.version), Array.from({ length: PG_LATEST_SCHEMA_VERSION }, (_, i) => i + 1));
        await stores[0]!.transaction((tx) => tx.putKey(keyRecord('k')));
        assert.equal(await stores[5]!.generation(), 1);
        await Promise.all(stores.map((s) => s.close()));
      } finally {
        await fresh.drop();
      }
    });

    it('refuses a database from a newer schema and one with foreign keystore-like tables', async () => {
      const fresh = await pgServer.freshDatabase();
      try {
        const s = await openPostgresKeystore({ url: fresh.url });
        await s.close();
        const c = new pg.Client({ connectionString: fresh.url });
        await c.connect();
        await c.query("INSERT INTO cryptod_schema (version, description) VALUES ($1, 'future')", [PG_LATEST_SCHEMA_VERSION + 1]);
        await c.end();
        await assert.rejects(openPostgresKeystore({ url: fresh.url }), (err: unknown) =>
          err instanceof ConfigError && err.message.includes(`schema version ${PG_LATEST_SCHEMA_VERSION + 1}, newer than this cryptod supports`));
      } finally {
        await fresh.drop();
      }
      const foreign = await pgServer.freshDatabase();
      try {
        const c = new pg.Client({ connectionString: foreign.url });
        await c.connect();
        await c.query('CREATE TABLE keys (x int)');
        await c.end();
        await assert.rejects(openPostgresKeystore({ url: foreign.url }), /keystore-like tables but no cryptod schema record/);
      } finally {
        await foreign.drop();
      }
    });

    it('never shows the password in errors', async () => {
      const u = new URL(db.url);
      const password = decodeURIComponent(u.password);
      assert.ok(password.length >= 8, 'the test server has a password');
      u.password = 'wrong-' + password;
      const err = await openPostgresKeystore({ url: u.toString(), connectTimeoutMs: 2_000 }).then(() => null, (e: unknown) => e as Error);
      assert.ok(err !== null);
      const text = `${err.message} ${JSON.stringify(err)}`;
      assert.ok(!text.includes(password), text);
      assert.ok(text.includes('***'), `names the store redacted: ${text}`);
      const down = new URL(db.url);
      down.port = '1';
      const unreachable = await openPostgresKeystore({ url: down.toString(), connectTimeoutMs: 1_000 }).then(() => null, (e: unknown) => e as Error & { code?: string });
      assert.equal(unreachable?.code, 'CRYPTOD_ERR_STORE_UNAVAILABLE');
      assert.ok(!unreachable.message.includes(password), unreachable.message);
    });

    it('refuses options that cannot work', async () => {
      await assert.rejects(openPostgresKeystore({ url: db.url, poolSize: 1 }), (e: unknown) => e instanceof ConfigError && /poolSize to be an integer >= 2/.test(e.message));
      await assert.rejects(openPostgresKeystore({ url: db.url, queryTimeoutMs: 0 }), ConfigError);
    });

    it('two stores (as two processes) see each other, and waiting for the write lock gives up after lockTimeoutMs', async () => {
      const a = await openPostgresKeystore({ url: db.url, poolSize: 3 });
      const b = await openPostgresKeystore({ url: db.url, poolSize: 3, lockTimeoutMs: 100 });
      try {
        const seen = await b.generation();
        await a.transaction(async (tx) => {
          await tx.putKey(keyRecord('shared'));
          await tx.putVersion(versionRecord('shared', 1));
        });
        assert.deepEqual(await b.changesSince(seen), { generation: seen + 1, names: ['shared'], metaKeys: [], truncated: false });
        let release!: () => void;
        const gate = new Promise<void>((resolve) => { release = resolve; });
        let locked!: () => void;
        const holding = new Promise<void>((resolve) => { locked = resolve; });
        const holder = a.transaction(async (tx) => { await tx.putKey(keyRecord('a')); locked(); await gate; });
        await holding;
        await assert.rejects(b.transaction((tx) => tx.putKey(keyRecord('b'))), (err: unknown) => err instanceof StoreBusyError);
        release();
        await holder;
        await b.transaction((tx) => tx.putKey(keyRecord('b')));
        assert.deepEqual((await a.read((r) => r.listKeys())).map((k) => k.name), ['a', 'b', 'shared']);
      } finally {
        await a.close();
        await b.close();
      }
    });

    it('orders key names by UTF-8 bytes, as SQLite does', async () => {
      const fresh = await pgServer.freshDatabase();
      const s: PostgresKeystore = await openPostgresKeystore({ url: fresh.url });
      try {
        const names = ['b', 'B', 'a', 'é', 'Z', '_x', '10', '9'];
        await s.transaction(async (tx) => { for (const n of names) await tx.putKey(keyRecord(n)); });
        const expected = [...names].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
        assert.deepEqual((await s.read((r) => r.listKeys())).map((k) => k.name), expected);
      } finally {
        await s.close();
        await fresh.drop();
      }
    });
  });
}

if (server !== null) {
  const pgServer: PgServer = server;
  clientRegistrySuite('postgres', async () => {
    const db = await pgServer.freshDatabase();
    return {
      registry: await openPostgresClientRegistry({ url: db.url }),
      reopen: () => openPostgresClientRegistry({ url: db.url }),
      cleanup: () => db.drop(),
    };
  });
}

if (server !== null) {
  const pgServer: PgServer = server;
  describe('postgres change notifications (onCommit)', () => {
    it('pushes other processes\' commits, not its own; after a dropped listener it reconnects and calls once', async () => {
      const db = await pgServer.freshDatabase();
      const a = await openPostgresKeystore({ url: db.url });
      const b = await openPostgresKeystore({ url: db.url });
      try {
        const heard: number[] = [];
        const stop = a.onCommit((g) => heard.push(g));
        // The first connect reports the generation once, so commits made before LISTEN are not missed.
        await waitFor(() => heard.length === 1, 'the first connect');
        assert.deepEqual(heard, [0]);
        await b.transaction((tx) => tx.putKey(keyRecord('from-b')));
        await waitFor(() => heard.length === 2, 'B\'s commit');
        assert.deepEqual(heard, [0, 1]);
        await a.transaction((tx) => tx.putKey(keyRecord('from-a')));
        await b.transaction((tx) => tx.putKey(keyRecord('from-b-2')));
        await waitFor(() => heard.length === 3, 'B\'s second commit');
        assert.deepEqual(heard, [0, 1, 3], 'A\'s own commit (generation 2) is not reported back to it');

        // Cut the listener's connection; a commit while it is gone is not lost: the reconnect reports the generation.
        const admin = new pg.Client({ connectionString: db.url });
        await admin.connect();
        const cut = await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'cryptod-listen' AND datname = current_database()");
        assert.equal(cut.rowCount, 1);
        await b.transaction((tx) => tx.putKey(keyRecord('while-cut')));
        await waitFor(() => heard.includes(4), 'the reconnect to report generation 4');
        await admin.end();
        const before = heard.length;
        await b.transaction((tx) => tx.putKey(keyRecord('after')));
        await waitFor(() => heard.length > before && heard[heard.length - 1] === 5, 'notifications after the reconnect');
        stop();
        await b.transaction((tx) => tx.putKey(keyRecord('unheard')));
        await b.transaction((tx) => tx.putKey(keyRecord('unheard-2')));
        assert.equal(await a.generation(), 7);
        assert.ok(!heard.includes(7), 'nothing after unsubscribing');
      } finally {
        await a.close();
        await b.close();
        await db.drop();
      }
    });
  });
}

async function waitFor(pred: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
