/**
 * `cryptod/daemon`: embed the daemon in a process of your own (tests, a
 * supervisor). Applications that only talk to a daemon import `cryptod`,
 * which loads the client alone.
 *
 * @example
 *   import { openManagedKeys, startDaemon } from 'cryptod/daemon';
 *   const keys = await openManagedKeys({ dataDir: '/var/lib/cryptod' });
 *   const daemon = await startDaemon({ socketPath: '/run/cryptod/cryptod.sock', keys });
 *   // …
 *   await daemon.close();
 *   await keys.close();
 */
export { openManagedKeys, type ManagedKeys, type OpenedManagedKeys, type OpenManagedKeysOptions } from './managed-keys.js';
export { startDaemon, type Daemon, type DaemonOptions, type DaemonStatus } from './server.js';
export * from '../protocol/errors.js';
