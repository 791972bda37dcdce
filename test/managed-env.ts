/**
 * A real daemon serving managed keys from a temporary data directory (SQLite
 * keystore + local KEK), with an optional ManualClock, and token clients
 * from the data directory's client registry for per-client policy tests.
 */
import { connect, type Client } from '../src/client/client.js';
import { openManagedKeys, type OpenedManagedKeys } from '../src/daemon/managed-keys.js';
import type { DaemonOptions } from '../src/daemon/server.js';
import type { Clock } from '../src/keys/clock.js';
import { openSqliteClientRegistry, type SqliteClientRegistry } from '../src/store/sqlite/client-registry.js';
import { startTestDaemon, type TestDaemon } from './helpers/daemon.js';
import { makeTempDir, type TempDir } from './store/tmpdir.js';

export interface ManagedEnv {
  td: TestDaemon;
  keys: OpenedManagedKeys;
  data: TempDir;
  registry: SqliteClientRegistry;
  /** A `local/<name>` client: an administrator (no peer credentials in tests; managed-keys.ts). */
  admin(name?: string): Promise<Client>;
  /** A `token:<name>` client: no administrator rights. */
  token(name: string): Promise<Client>;
  stop(): Promise<void>;
}

export async function startManagedDaemon(options: { clock?: Clock; daemon?: Partial<DaemonOptions> } = {}): Promise<ManagedEnv> {
  const data = makeTempDir('cd-mk-');
  const keys = await openManagedKeys({ dataDir: data.path, ...(options.clock === undefined ? {} : { clock: options.clock }) });
  const registry = openSqliteClientRegistry({ dataDir: data.path });
  const td = await startTestDaemon({ keys, clients: registry, ...options.daemon });
  const extra: Client[] = [];
  return {
    td, keys, data, registry,
    admin: (name = 'admin') => td.connect(name),
    async token(name) {
      const { token } = await registry.add(name);
      const c = await connect({ socket: td.socketPath, token });
      extra.push(c);
      return c;
    },
    async stop() {
      for (const c of extra) c.connection.destroy();
      await td.stop();
      await keys.close();
      await registry.close();
      await data.cleanup();
    },
  };
}
