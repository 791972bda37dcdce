/**
 * Daemons on one PostgreSQL keystore, each with its own data directory (as
 * on separate hosts; root.key copied between them): what one creates,
 * rotates or destroys reaches the other through NOTIFY — the second daemon
 * here never polls, so only a notification can tell it; a daemon with
 * another root KEK refuses to start; `cryptod serve --store` never prints the
 * password.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { Client } from '../src/client/client.js';
import { openManagedKeys, type OpenedManagedKeys } from '../src/daemon/managed-keys.js';
import { ConfigError, CryptodError } from '../src/protocol/errors.js';
import { openPostgresClientRegistry } from '../src/store/postgres/client-registry.js';
import { runCli, startCliDaemon } from './helpers/cli-daemon.js';
import { eventually, startTestDaemon, type TestDaemon } from './helpers/daemon.js';
import { postgresForTests } from './helpers/postgres.js';
import { tempDirs } from './helpers/temp-dirs.js';

const server = await postgresForTests();
const te = new TextEncoder();
const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
  await server?.shutdown();
});

const tempDir = tempDirs('cd-pgd-', (remove) => cleanups.push(remove));

async function side(url: string, dataDir: string, refreshIntervalMs: number): Promise<{ keys: OpenedManagedKeys; td: TestDaemon; c: Client }> {
  const keys = await openManagedKeys({ dataDir, refreshIntervalMs, postgres: { url, poolSize: 4 } });
  const registry = await openPostgresClientRegistry({ url });
  const td = await startTestDaemon({ keys, clients: registry });
  const c = await td.connect('admin');
  cleanups.push(async () => {
    await td.stop();
    await keys.close();
    await registry.close();
  });
  return { keys, td, c };
}

if (server !== null) {
  const pg = server;
  describe('daemons on one PostgreSQL keystore', () => {
    it('create, rotate, disable and destroy on one reach the other through NOTIFY', async () => {
      const db = await pg.freshDatabase();
      cleanups.push(() => db.drop());
      const hostA = tempDir();
      const hostB = tempDir();
      const a = await side(db.url, join(hostA, 'data'), 0);
      // Host B gets the fleet's root key, as an operator copies it.
      mkdirSync(join(hostB, 'data'), { mode: 0o700 });
      copyFileSync(join(hostA, 'data', 'root.key'), join(hostB, 'data', 'root.key'));
      const b = await side(db.url, join(hostB, 'data'), 0);

      await a.c.keys.create('shared', { type: 'aes256-gcm' });
      await eventually(() => b.keys.manager.entry('shared') !== undefined, 5000, 'B to hear of the new key');
      const fromB = await b.c.encrypt('shared', te.encode('made on B'));
      assert.equal(Buffer.from(await a.c.decrypt('shared', fromB)).toString(), 'made on B');

      assert.equal(await a.c.keys.rotate('shared'), 2);
      await eventually(() => b.keys.manager.entry('shared')?.versions.some((v) => v.version === 2) === true, 5000, 'B to hear of the rotation');
      const v2 = await b.c.encrypt('shared', te.encode('v2'));
      assert.equal(Buffer.from(v2).readUInt32BE(7 + 'shared'.length), 2, 'B encrypts with version 2 without being asked to refresh');

      await b.c.keys.destroy('shared');
      await eventually(() => a.keys.manager.entry('shared')?.disabled === true, 5000, 'A to hear of the destruction');
      await assert.rejects(a.c.decrypt('shared', v2), CryptodError);
    });

    it('a daemon with another root KEK refuses to start, and one without the root key says what to restore', async () => {
      const db = await pg.freshDatabase();
      cleanups.push(() => db.drop());
      const first = await openManagedKeys({ dataDir: join(tempDir(), 'data'), refreshIntervalMs: 0, postgres: { url: db.url } });
      await first.close();
      // Another host that made its own root.key: refused before serving anything.
      const other = join(tempDir(), 'data');
      const mine = await openManagedKeys({ dataDir: other, refreshIntervalMs: 0 }); // a root.key of its own (SQLite)
      await mine.close();
      rmSync(join(other, 'kek.binding'));
      rmSync(join(other, 'keystore.sqlite'));
      const password = decodeURIComponent(new URL(db.url).password);
      await assert.rejects(openManagedKeys({ dataDir: other, refreshIntervalMs: 0, postgres: { url: db.url } }), (err: unknown) =>
        err instanceof ConfigError && /does not match/.test(err.message) && /\*\*\*/.test(err.message) && !err.message.includes(password));
      await assert.rejects(openManagedKeys({ dataDir: join(tempDir(), 'data'), refreshIntervalMs: 0, postgres: { url: db.url } }), (err: unknown) =>
        err instanceof ConfigError && /restore root\.key/.test(err.message));
    });

    it('cryptod serve --store file:PATH and client add --store: the password is never printed', async () => {
      const db = await pg.freshDatabase();
      cleanups.push(() => db.drop());
      const password = decodeURIComponent(new URL(db.url).password);
      const d = await startCliDaemon((dir) => {
        writeFileSync(join(dir, 'store-url'), db.url + '\n', { mode: 0o600 });
        return ['--store', `file:${join(dir, 'store-url')}`, '--log-level', 'debug'];
      });
      cleanups.push(async () => { await d.stop(); });
      const added = await runCli(['client', 'add', 'svc', '--store', 'env:PGTEST_URL'], { PGTEST_URL: db.url });
      assert.equal(added.code, 0, added.stderr.toString());
      const token = added.stdout.toString().trim();
      const st = await runCli(['status', '--json', '--socket', d.socketPath], { CRYPTOD_TOKEN: token });
      assert.equal(st.code, 0, st.stderr.toString());
      const bad = await runCli(['client', 'list', '--store', 'env:PGTEST_NOPE']);
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr.toString(), /\$PGTEST_NOPE, which is not set/);
      await d.stop(true);
      const printed = [d.stdout(), d.stderr(), added.stderr, st.stdout, st.stderr].map((b) => b.toString()).join('\n');
      assert.match(d.stderr().toString(), /"backend":"postgres"/);
      assert.ok(printed.includes('cryptod:***@'), 'the store is named, redacted');
      assert.ok(!printed.includes(password), 'the password never appears');
      rmSync(d.dir, { recursive: true, force: true });
    });
  });
}
