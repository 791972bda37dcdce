/**
 * The fleet lease (src/store/lease.ts) on both backends: the row's rules,
 * loss seen by the holder (clock jump, a long pause, taken), and two
 * contender processes with the holder SIGKILLed.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { LeaseLostError } from '../../src/protocol/errors.js';
import { Lease, type LeaseStore } from '../../src/store/lease.js';
import { PostgresLeaseStore } from '../../src/store/postgres/fleet-store.js';
import { openPostgresKeystore } from '../../src/store/postgres/pg-store.js';
import { SqliteLeaseStore } from '../../src/store/sqlite/fleet-store.js';
import { postgresForTests } from '../helpers/postgres.js';
import { makeTempDir } from './tmpdir.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const server = await postgresForTests();
const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
  await server?.shutdown();
});

interface Backend {
  /** A fresh place for leases: two stores on it act as two processes. */
  open(): Promise<{ store(): Promise<LeaseStore>; childArgs: [string, string] }>;
}

const sqlite: Backend = {
  async open() {
    const tmp = makeTempDir('cd-lease-');
    cleanups.push(tmp.cleanup);
    const dataDir = path.join(tmp.path, 'data');
    return {
      async store() {
        const s = new SqliteLeaseStore({ dataDir });
        cleanups.push(async () => s.close());
        return s;
      },
      childArgs: ['sqlite', dataDir],
    };
  },
};

const postgres: Backend | null = server === null ? null : {
  async open() {
    const db = await server.freshDatabase();
    cleanups.push(() => db.drop());
    return {
      async store() {
        const ks = await openPostgresKeystore({ url: db.url, poolSize: 2 });
        cleanups.unshift(() => ks.close()); // closed before the database is dropped
        return new PostgresLeaseStore(ks);
      },
      childArgs: ['postgres', db.url],
    };
  },
};

async function until<T>(f: () => T | undefined | null | false, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = f();
    if (v !== undefined && v !== null && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function leaseSuite(name: string, backend: Backend): void {
  describe(`fleet lease: ${name}`, () => {
    it('same holder renews without a new generation; another takes it only after expiry, with generation + 1', async () => {
      const place = await backend.open();
      const a = await place.store();
      const b = await place.store();
      const t = 1_700_000_000_000;
      assert.deepEqual(await a.tryAcquire('fleet', 'A', t, 1000), { acquired: true, row: { name: 'fleet', holder: 'A', expiresAt: t + 1000, generation: 1 } });
      assert.deepEqual((await a.tryAcquire('fleet', 'A', t + 300, 1000)).row, { name: 'fleet', holder: 'A', expiresAt: t + 1300, generation: 1 });
      const refused = await b.tryAcquire('fleet', 'B', t + 1299, 1000);
      assert.equal(refused.acquired, false);
      assert.equal(refused.row.holder, 'A');
      assert.deepEqual(await b.tryAcquire('fleet', 'B', t + 1300, 1000), { acquired: true, row: { name: 'fleet', holder: 'B', expiresAt: t + 2300, generation: 2 } });
      assert.equal((await a.tryAcquire('fleet', 'A', t + 1400, 1000)).acquired, false, 'the old holder cannot renew');
      // A holder that let its own lease lapse starts a new tenure: a new generation.
      assert.equal((await b.tryAcquire('fleet', 'B', t + 5000, 1000)).row.generation, 3);
      await b.release('fleet', 'B');
      assert.deepEqual(await a.tryAcquire('fleet', 'A', t + 5001, 1000), { acquired: true, row: { name: 'fleet', holder: 'A', expiresAt: t + 6001, generation: 4 } });
      assert.equal((await a.read('fleet'))?.generation, 4);
    });

    it('a holder whose clock jumps past its expiry, or whose lease is taken during a long pause, sees a LeaseLostError', async () => {
      const place = await backend.open();
      let skewA = 0;
      const lost: string[] = [];
      const a = new Lease({ store: await place.store(), name: 'fleet', holder: 'A', periodMs: 600, now: () => Date.now() + skewA, onChange: (e) => { if (!e.held) lost.push(String(e.error.detail?.reason)); } });
      a.start();
      const first = await until(() => a.current(), 'A to take the lease');
      assert.equal(first.signal.aborted, false);
      // Clock jump: A's clock passes the expiry it wrote. It stops at once, before anyone else can take it.
      skewA = 10_000;
      assert.equal(a.current(), null);
      assert.ok(first.signal.aborted);
      assert.ok(first.signal.reason instanceof LeaseLostError);
      assert.equal((await first.lost).detail?.reason, 'expired');
      assert.throws(() => first.signal.throwIfAborted(), LeaseLostError);
      skewA = 0;
      const second = await until(() => a.current(), 'A to take it again');
      assert.ok(second.generation > first.generation, 'a new tenure, a new generation');

      // A long pause: B (whose clock runs ahead) takes the lease while A sleeps; A's next renewal finds B.
      const b = new Lease({ store: await place.store(), name: 'fleet', holder: 'B', periodMs: 600, now: () => Date.now() + 5_000 });
      b.start();
      const taken = await until(() => b.current(), 'B to take the expired-looking lease');
      assert.ok(taken.generation > second.generation);
      // (until() keeps the event loop alive: the lease's own timers are unref'd, as in the daemon.)
      await until(() => second.signal.aborted, 'A to see that it lost the lease');
      const err = await second.lost;
      assert.ok(err instanceof LeaseLostError);
      assert.ok(second.signal.aborted);
      assert.ok(lost.length >= 2, lost.join(','));
      await b.stop();
      await a.stop();
    });

    it('two contender processes: the holder SIGKILLed, the other takes over within one lease period, with a higher generation', async () => {
      const place = await backend.open();
      const period = 1_500;
      const children: Array<{ proc: ChildProcess; out: string }> = [];
      for (let i = 0; i < 2; i++) {
        const proc = spawn(process.execPath, ['--import', 'tsx', 'test/store/lease-child.ts', ...place.childArgs, String(period)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
        const child = { proc, out: '' };
        proc.stdout!.on('data', (b: Buffer) => { child.out += b.toString(); });
        children.push(child);
        cleanups.push(async () => { proc.kill('SIGKILL'); });
      }
      // Both contend before the holder dies (a process starting under load can take many seconds).
      await until(() => children.every((c) => c.out.includes('started\n')), 'both contenders to start', 120_000);
      const held = (c: { out: string }): RegExpMatchArray[] => [...c.out.matchAll(/^held (\d+) (\d+)$/gm)];
      const holder = await until(() => children.find((c) => held(c).length > 0), 'one contender to hold the lease');
      const other = children.find((c) => c !== holder)!;
      const firstGen = Number(held(holder)[0]![1]);
      holder.proc.kill('SIGKILL');
      await new Promise((r) => holder.proc.once('exit', r));
      const reader = await place.store();
      const dead = (await reader.read('fleet'))!;
      // The deadline only bounds the wait; the assertions below measure the takeover.
      const takeover = await until(() => held(other)[0], 'the other contender to take over', 60_000);
      const gen = Number(takeover[1]);
      const at = Number(takeover[2]);
      assert.ok(gen > firstGen, `generation ${gen} > ${firstGen}`);
      assert.ok(at >= dead.expiresAt, 'never before the dead holder\'s lease expired');
      // The contender retries just after the expiry it saw, so the takeover comes within one period of the holder's death.
      assert.ok(at - dead.expiresAt < period, `taken ${at - dead.expiresAt} ms after the expiry`);
      other.proc.kill('SIGKILL');
    });
  });
}

leaseSuite('sqlite', sqlite);
if (postgres !== null) leaseSuite('postgres', postgres);
