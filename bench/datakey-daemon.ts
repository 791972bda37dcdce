/**
 * A daemon for bench/datakeys.ts, in its own process as in production:
 * managed keys on DATA_DIR, listening on SOCKET. With SLOW_UNWRAP_MS > 0 every
 * data-key unwrap first waits that long (a slow KEK: a token, a remote KMS);
 * the wait is a timer, so it costs the event loop nothing, like real I/O.
 * Prints "ready" when it listens; SIGTERM stops it.
 */
import { openManagedKeys } from '../src/daemon/managed-keys.js';
import { startDaemon } from '../src/daemon/server.js';
import type { DataKeyKek, DataKeyKeks } from '../src/kek/data-key-kek.js';
import { createLogger } from '../src/observe/logger.js';
import { managedKeks } from '../src/ops/managed-kek.js';

const dataDir = process.env.DATA_DIR!;
const socketPath = process.env.SOCKET!;
const slowMs = Number(process.env.SLOW_UNWRAP_MS ?? 0);

function slow(inner: DataKeyKeks, ms: number): DataKeyKeks {
  const v = (k: DataKeyKek): DataKeyKek => ({
    name: k.name, version: k.version, type: k.type,
    wrap: (p, a) => k.wrap(p, a),
    unwrap: async (b, a) => {
      await new Promise((r) => setTimeout(r, ms));
      return k.unwrap(b, a);
    },
  });
  return { current: (n) => v(inner.current(n)), version: (n, x) => v(inner.version(n, x)), usable: (n, x) => inner.usable(n, x) };
}

const keys = await openManagedKeys({ dataDir, refreshIntervalMs: 200 });
const daemon = await startDaemon({
  socketPath, keys, logger: createLogger({ level: 'warn' }),
  ...(slowMs > 0 ? { dataKeyKeks: slow(managedKeks(keys.manager), slowMs) } : {}),
});
process.stdout.write('ready\n');
process.on('SIGTERM', () => {
  void daemon.close().then(() => keys.close()).then(() => process.exit(0));
});
