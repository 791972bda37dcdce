/**
 * A destroy returns only once every live daemon has acknowledged it
 * (src/store/members.ts), on SQLite (one data directory) and on PostgreSQL
 * (one database, separate data directories): right after `destroy` returns,
 * the other daemon already refuses the key — no waiting, no polling in the
 * test. A live member that never catches up makes the destroy fail with
 * CRYPTOD_ERR_NOT_ACKNOWLEDGED naming it (the destroy itself stays done).
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { Client } from '../src/client/client.js';
import { openManagedKeys, type OpenedManagedKeys, type OpenManagedKeysOptions } from '../src/daemon/managed-keys.js';
import { CryptodError, NotAcknowledgedError } from '../src/protocol/errors.js';
import { PostgresMemberStore } from '../src/store/postgres/fleet-store.js';
import { PostgresKeystore } from '../src/store/postgres/pg-store.js';
import { SqliteMemberStore } from '../src/store/sqlite/fleet-store.js';
import type { MemberStore } from '../src/store/members.js';
import { startTestDaemon } from './helpers/daemon.js';
import { postgresForTests } from './helpers/postgres.js';
import { tempDirs } from './helpers/temp-dirs.js';

const server = await postgresForTests();
const te = new TextEncoder();
const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
  await server?.shutdown();
});

const tempDir = tempDirs('cd-ack-', (remove) => cleanups.push(remove));

async function side(options: OpenManagedKeysOptions): Promise<{ keys: OpenedManagedKeys; c: Client }> {
  const keys = await openManagedKeys(options);
  const td = await startTestDaemon({ keys });
  const c = await td.connect('admin');
  cleanups.push(async () => {
    c.connection.destroy();
    await td.stop();
    await keys.close();
  });
  return { keys, c };
}

interface Fleet { a: OpenManagedKeysOptions; b: OpenManagedKeysOptions; members(keys: OpenedManagedKeys): MemberStore }

async function check(fleet: Fleet): Promise<void> {
  const a = await side({ ...fleet.a, ackTimeoutMs: 10_000 });
  const b = await side(fleet.b);
  await a.c.keys.create('k', { type: 'aes256-gcm' });
  const sealed = await b.c.encrypt('k', te.encode('x')); // B holds the key (found on demand)
  await a.c.keys.destroy('k');
  // No waiting: the destroy returned, so B has already dropped the key.
  assert.equal(b.keys.manager.entry('k')?.disabled, true, 'the other daemon acknowledged the destroy before it returned');
  await assert.rejects(b.c.decrypt('k', sealed), CryptodError);

  // A member that stays live but never catches up: named in a typed error; the destroy is done all the same.
  const ghost = fleet.members(a.keys);
  await ghost.heartbeat({ id: 'ghost', host: 'ghost-host', pid: 4242, seenGeneration: 0, expiresAt: Date.now() + 60_000 });
  const quick = await side({ ...fleet.a, dataDir: fleet.a.dataDir, ackTimeoutMs: 300 });
  await quick.c.keys.create('k2', { type: 'hmac-sha256' });
  await assert.rejects(quick.c.keys.destroy('k2'), (err: unknown) =>
    err instanceof NotAcknowledgedError && /ghost-host:4242/.test(err.message) && err.detail?.laggards === 'ghost-host:4242');
  assert.equal(quick.keys.manager.entry('k2')?.disabled, true);
  await ghost.leave('ghost');
}

describe('destroy is acknowledged by every live daemon', () => {
  it('on SQLite (one data directory)', async () => {
    const dataDir = join(tempDir(), 'data');
    const stores: SqliteMemberStore[] = [];
    cleanups.push(async () => { for (const s of stores) s.close(); });
    await check({
      a: { dataDir, refreshIntervalMs: 100 },
      b: { dataDir, refreshIntervalMs: 100 },
      members: () => {
        const s = new SqliteMemberStore({ dataDir });
        stores.push(s);
        return s;
      },
    });
  });

  if (server !== null) {
    it('on PostgreSQL (separate data directories, NOTIFY only)', async () => {
      const db = await server.freshDatabase();
      cleanups.push(() => db.drop());
      const hostA = join(tempDir(), 'data');
      const hostB = join(tempDir(), 'data');
      const first = await openManagedKeys({ dataDir: hostA, refreshIntervalMs: 0, postgres: { url: db.url } });
      await first.close();
      mkdirSync(hostB, { mode: 0o700 });
      copyFileSync(join(hostA, 'root.key'), join(hostB, 'root.key'));
      await check({
        a: { dataDir: hostA, refreshIntervalMs: 0, postgres: { url: db.url, poolSize: 3 } },
        b: { dataDir: hostB, refreshIntervalMs: 0, postgres: { url: db.url, poolSize: 3 } },
        members: (keys) => new PostgresMemberStore(keys.store as PostgresKeystore),
      });
    });
  }
});
