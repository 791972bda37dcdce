/**
 * One catch-up per committed change on PostgreSQL: a NOTIFY wakes the key
 * manager's freshness check, which is the daemon's only subscriber (the
 * fleet heartbeat follows the catch-up instead of running one of its own).
 * Neither daemon polls, and the heartbeat's own catch-ups are a minute
 * apart, so every catch-up counted here is a notification's.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { openManagedKeys, type OpenedManagedKeys } from '../src/daemon/managed-keys.js';
import { eventually } from './helpers/daemon.js';
import { postgresForTests } from './helpers/postgres.js';
import { tempDirs } from './helpers/temp-dirs.js';

const server = await postgresForTests();
const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
  await server?.shutdown();
});

const tempDir = tempDirs('cd-pgcu-', (remove) => cleanups.push(remove));

async function open(url: string, dataDir: string): Promise<OpenedManagedKeys> {
  const keys = await openManagedKeys({ dataDir, refreshIntervalMs: 0, heartbeatPeriodMs: 180_000, ackTimeoutMs: 180_000, postgres: { url, poolSize: 2 } });
  cleanups.push(() => keys.close());
  return keys;
}

if (server !== null) {
  const pg = server;
  describe('catch-ups on PostgreSQL', () => {
    it('one committed change costs the other daemon one catch-up', async () => {
      const db = await pg.freshDatabase();
      cleanups.push(() => db.drop());
      const hostA = tempDir();
      const hostB = tempDir();
      const a = await open(db.url, join(hostA, 'data'));
      mkdirSync(join(hostB, 'data'), { mode: 0o700 });
      copyFileSync(join(hostA, 'data', 'root.key'), join(hostB, 'data', 'root.key'));
      const b = await open(db.url, join(hostB, 'data'));

      await a.manager.create('counted', { type: 'hmac-sha256', gracePeriod: '1h' });
      const created = await a.store.generation();
      await eventually(() => b.manager.seenGeneration() >= created, 10_000, 'B to hear of the new key');
      await b.manager.settle();
      const refreshes = b.manager.keystoreStats().refreshes;
      const catchUps = b.manager.catchUps;
      const changes = 5;
      for (let i = 0; i < changes; i++) {
        const version = await a.manager.rotate('counted');
        await eventually(() => b.manager.entry('counted')?.versions.some((v) => v.version === version) === true, 10_000, `B to hear of version ${version}`);
        // Whatever else the notification started is queued by now; let it run before counting.
        await b.manager.settle();
      }
      assert.equal(b.manager.keystoreStats().refreshes - refreshes, changes, `one keystore catch-up per committed change (stats ${JSON.stringify(b.manager.keystoreStats())}, catch-ups ${b.manager.catchUps - catchUps})`);
      assert.equal(b.manager.catchUps - catchUps, changes, 'each started by its notification');
    });
  });
}
