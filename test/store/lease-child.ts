/**
 * One lease contender in a process of its own (test/store/lease.test.ts):
 * `lease-child.ts sqlite DATADIR PERIOD` or `lease-child.ts postgres URL PERIOD`.
 * Prints `held <generation> <now>` and `lost <reason>` lines; runs until killed.
 */
import { randomBytes } from 'node:crypto';
import { Lease, type LeaseStore } from '../../src/store/lease.js';
import { PostgresLeaseStore } from '../../src/store/postgres/fleet-store.js';
import { openPostgresKeystore } from '../../src/store/postgres/pg-store.js';
import { SqliteLeaseStore } from '../../src/store/sqlite/fleet-store.js';

const [backend, where, period] = process.argv.slice(2);
const store: LeaseStore = backend === 'postgres'
  ? new PostgresLeaseStore(await openPostgresKeystore({ url: where!, poolSize: 2 }))
  : new SqliteLeaseStore({ dataDir: where! });
const lease = new Lease({
  store, name: 'fleet', holder: `child:${process.pid}:${randomBytes(4).toString('hex')}`, periodMs: Number(period),
  onChange: (e) => process.stdout.write(e.held ? `held ${e.generation} ${Date.now()}\n` : `lost ${String(e.error.detail?.reason)}\n`),
});
process.stdout.write('started\n');
lease.start();
setInterval(() => undefined, 1 << 30);
