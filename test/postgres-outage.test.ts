/**
 * PostgreSQL stopped and restarted under load, on a server of this test's
 * own: writes keep being attempted, cached operations keep being served.
 * During the outage writes fail with CRYPTOD_ERR_STORE_UNAVAILABLE within the
 * store timeouts (never a hang, never a crash); afterwards the daemon
 * reconnects by itself; every acknowledged write is in the store (counted).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { openManagedKeys } from '../src/daemon/managed-keys.js';
import { CryptodError } from '../src/protocol/errors.js';
import { openPostgresKeystore } from '../src/store/postgres/pg-store.js';
import { startTestDaemon } from './helpers/daemon.js';
import { privatePostgres } from './helpers/postgres.js';

const server = await privatePostgres();
const dir = mkdtempSync(join(tmpdir(), 'cd-pgout-'));
after(async () => {
  await server?.shutdown();
  rmSync(dir, { recursive: true, force: true });
});

const te = new TextEncoder();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

if (server !== null) {
  it('PostgreSQL stopped and restarted under load: typed errors, cached operations throughout, no acknowledged write lost', async () => {
    const db = await server.freshDatabase();
    const timeouts = { connectTimeoutMs: 1_000, queryTimeoutMs: 2_000 };
    const keys = await openManagedKeys({ dataDir: join(dir, 'data'), refreshIntervalMs: 200, postgres: { url: db.url, poolSize: 4, ...timeouts } });
    const td = await startTestDaemon({ keys });
    const c = await td.connect('admin');
    try {
      await c.keys.create('cached-mac', { type: 'hmac-sha256' });
      await c.keys.create('cached-aead', { type: 'aes256-gcm' });

      let phase: 'before' | 'down' | 'after' = 'before';
      let running = true;
      const acked: string[] = [];
      const unknown: string[] = [];
      const failures = { before: 0, down: 0, after: 0 };
      const otherErrors: string[] = [];
      let slowest = 0;
      const writer = (async () => {
        for (let i = 0; running; i++) {
          const name = `w${i}`;
          const t0 = Date.now();
          try {
            await c.keys.create(name, { type: 'hmac-sha256' });
            acked.push(name);
          } catch (err) {
            failures[phase] += 1;
            const e = err as CryptodError;
            if (e.code !== 'CRYPTOD_ERR_STORE_UNAVAILABLE') otherErrors.push(`${e.code}: ${e.message}`);
            if (e.detail?.commitUnknown === true) unknown.push(name);
            await sleep(20);
          }
          slowest = Math.max(slowest, Date.now() - t0);
        }
      })();
      let served = 0;
      const cachedFailures: string[] = [];
      const reader = (async () => {
        while (running) {
          try {
            const tag = await c.mac('cached-mac', te.encode('m'));
            const sealed = await c.encrypt('cached-aead', te.encode('p'));
            assert.equal(Buffer.from(await c.decrypt('cached-aead', sealed)).toString(), 'p');
            assert.ok(tag.length > 0);
            served += 1;
          } catch (err) {
            cachedFailures.push(`${phase}: ${(err as Error).message}`);
          }
          await sleep(2);
        }
      })();

      while (acked.length < 10) await sleep(10);
      server.stop();
      phase = 'down';
      const servedBefore = served;
      await sleep(3_000);
      const servedDown = served - servedBefore;
      server.start();
      phase = 'after';
      const ackedAtRestart = acked.length;
      const deadline = Date.now() + 30_000;
      while (acked.length < ackedAtRestart + 10 && Date.now() < deadline) await sleep(20);
      running = false;
      await Promise.all([writer, reader]);

      assert.deepEqual(otherErrors, [], 'every failed write is CRYPTOD_ERR_STORE_UNAVAILABLE');
      assert.ok(failures.down > 0, 'writes failed while the server was down');
      assert.ok(acked.length >= ackedAtRestart + 10, `the daemon reconnected by itself (${acked.length - ackedAtRestart} writes after the restart)`);
      assert.deepEqual(cachedFailures, [], 'cached operations never failed');
      assert.ok(servedDown > 0, `cached operations were served during the outage (${servedDown})`);
      // Bounded by the store timeouts (connect 1 s, query 2 s, plus a retry), not a hang.
      assert.ok(slowest < 15_000, `no write waited past the timeouts (${slowest} ms)`);

      // Counted in the store itself: every acknowledged write is there; anything else there is a write whose commit was cut.
      const check = await openPostgresKeystore({ url: db.url });
      const stored = new Set((await check.read((r) => r.listKeys())).map((k) => k.name).filter((n) => /^w\d+$/.test(n)));
      await check.close();
      for (const name of acked) assert.ok(stored.has(name), `acknowledged ${name} is in the store`);
      for (const name of stored) assert.ok(acked.includes(name) || unknown.includes(name), `${name} in the store was acknowledged (or reported commitUnknown)`);
      process.stderr.write(`outage: ${acked.length} writes acknowledged (${ackedAtRestart} before the restart), ${failures.down} failed during the outage, ${unknown.length} commitUnknown; ${servedDown} cached rounds during the outage\n`);
    } finally {
      c.connection.destroy();
      await td.stop();
      await keys.close();
      await db.drop();
    }
  });
}

if (server !== null) {
  it('a daemon whose heartbeat lapses stops serving managed keys, and serves again once it has caught up', async () => {
    const db = await server.freshDatabase();
    const keys = await openManagedKeys({
      dataDir: join(dir, 'data-hb'), refreshIntervalMs: 200, heartbeatPeriodMs: 600,
      postgres: { url: db.url, poolSize: 3, connectTimeoutMs: 500, queryTimeoutMs: 1_000 },
    });
    const td = await startTestDaemon({ keys });
    const c = await td.connect('admin');
    try {
      await c.keys.create('m', { type: 'hmac-sha256' });
      await c.mac('m', te.encode('x'));
      server.stop();
      // Within the heartbeat period cached keys still serve; past it (the row has lapsed, so a destroy elsewhere no longer waits for us) they must not.
      let refusal: CryptodError | null = null;
      const deadline = Date.now() + 20_000;
      while (refusal === null && Date.now() < deadline) {
        try {
          await c.mac('m', te.encode('x'));
          await sleep(50);
        } catch (err) {
          refusal = err as CryptodError;
        }
      }
      assert.equal(refusal?.code, 'CRYPTOD_ERR_STORE_UNAVAILABLE');
      assert.equal(refusal?.detail?.reason, 'heartbeat');
      server.start();
      let served = false;
      while (!served && Date.now() < deadline + 30_000) {
        try {
          await c.mac('m', te.encode('x'));
          served = true;
        } catch {
          await sleep(100);
        }
      }
      assert.ok(served, 'serves again after the store is back and it has caught up');
    } finally {
      c.connection.destroy();
      await td.stop();
      await keys.close();
      await db.drop();
    }
  });
}
