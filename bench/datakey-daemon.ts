/**
 * A daemon for bench/datakeys.ts, in its own process as in production:
 * managed keys on DATA_DIR, listening on SOCKET. With SLOW_UNWRAP_MS > 0 every
 * data-key unwrap first waits that long (a slow KEK: a token, a remote KMS);
 * the wait is a timer, so it costs the event loop nothing, like real I/O.
 * With TOKEN_LABEL and TOKEN_PIN (and SOFTHSM2_CONF) a `pkcs11` provider
 * `hsm` on that SoftHSM2 token is configured, for KEKs created with
 * `provider: hsm`; with NO_CACHE=1 the data-key cache holds nothing
 * (capacity 0), so every request that does not coincide with another on
 * the same wrapped key unwraps in the KEK.
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

const tokenLabel = process.env.TOKEN_LABEL;
const keys = await openManagedKeys({
  dataDir, refreshIntervalMs: 200,
  ...(tokenLabel === undefined ? {} : {
    env: { BENCH_PIN: process.env.TOKEN_PIN },
    providers: { hsm: { type: 'pkcs11', module: '/usr/lib/softhsm/libsofthsm2.so', token: tokenLabel, pin: 'env:BENCH_PIN', sessions: 4, retryMs: 1000 } },
  }),
});
const daemon = await startDaemon({
  socketPath, keys, logger: createLogger({ level: 'warn' }),
  ...(process.env.NO_CACHE === '1' ? { limits: { dataKeyCacheCapacity: 0 } } : {}),
  ...(slowMs > 0 ? { dataKeyKeks: slow(managedKeks(keys.manager), slowMs) } : {}),
});
process.stdout.write('ready\n');
process.on('SIGTERM', () => {
  void daemon.close().then(() => keys.close()).then(() => process.exit(0));
});
