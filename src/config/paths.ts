/**
 * Default locations. Data stays under ./.cryptod/ in the current directory,
 * so `npm start` in a checkout runs with no configuration at all; the socket
 * is per user, not per directory (src/client/socket-path.ts), so that a
 * client started anywhere finds it.
 */
import { chmodSync, mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { assertPrivateSocketDirectory, type SocketLocation } from '../client/socket-path.js';
import { ConfigError } from '../protocol/errors.js';

export { resolveSocket, resolveSocketPath, SOCKET_FILE, type SocketLocation } from '../client/socket-path.js';

export const DEFAULT_DATA_DIR = '.cryptod';

export function defaultDataDir(): string {
  return resolve(DEFAULT_DATA_DIR);
}

/**
 * Make the directory of a default socket: created 0700 if missing (only its
 * last component: /tmp or $XDG_RUNTIME_DIR must already exist), then refused
 * unless it is the daemon user's own and closed to others. An explicit
 * socket's directory is left to the server (created 0700 if missing,
 * otherwise used as it is).
 */
export function preparePrivateSocketDirectory(location: SocketLocation): void {
  if (location.source === 'explicit' || location.source === 'env') return;
  const dir = dirname(location.path);
  let created = false;
  try {
    mkdirSync(dir, { mode: 0o700 });
    created = true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw new ConfigError(`cannot create the socket directory ${dir}: ${(err as Error).message}`, { cause: err, detail: { socket: location.path } });
    }
  }
  // mkdir's mode is filtered by the umask; only a directory we made is chmodded.
  if (created) chmodSync(dir, 0o700);
  assertPrivateSocketDirectory(location);
}
