/**
 * `cryptod/daemon`: embed the daemon in a process of your own (tests, a
 * supervisor). Applications that only talk to a daemon import `cryptod`,
 * which loads the client alone.
 *
 * A daemon is assembled from a configuration (the same one `cryptod serve`
 * builds from its flags and --config file) and closed in one call, which
 * releases every part in the reverse order of opening:
 *
 * @example
 *   import { createDaemon, daemonConfig } from 'cryptod/daemon';
 *   const daemon = createDaemon(daemonConfig(null, { dataDir: '/var/lib/cryptod', socket: '/run/cryptod/cryptod.sock' }));
 *   await daemon.start();
 *   // …
 *   await daemon.close();
 *
 * openManagedKeys and startDaemon are the lower-level parts it is built from,
 * for tests that need one part alone.
 */
export { createDaemon, type AssembledDaemon, type CreateDaemonOptions, type ReloadOutcome } from './assemble.js';
export { daemonConfig, type ConfigOverrides, type DaemonConfig } from '../config/daemon-config.js';
export { loadConfig, type LoadedConfig } from '../config/load.js';
export { openManagedKeys, type ManagedKeys, type OpenedManagedKeys, type OpenManagedKeysOptions } from './managed-keys.js';
export { startDaemon, type Daemon, type DaemonOptions, type DaemonStatus } from './server.js';
export * from '../protocol/errors.js';
