/**
 * The Unix socket's file: its directory (0700 when the daemon creates it), a
 * stale socket left by a daemon that crashed, and the bind with its mode set
 * from the first moment. A live daemon already on the path is never disturbed.
 */
import { chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { createConnection, type Server } from 'node:net';
import { dirname } from 'node:path';
import { ConfigError, DaemonRunningError } from '../protocol/errors.js';

/** The socket's directory: created 0700 when missing, left as it is otherwise. */
export function prepareSocketDirectory(socketPath: string): void {
  const dir = dirname(socketPath);
  let created: string | undefined;
  try {
    created = mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new ConfigError(`cannot create the socket directory ${dir}: ${(err as Error).message}`, { cause: err });
  }
  // Tighten only a directory we created; never chmod a shared one like /tmp.
  if (created !== undefined) chmodSync(dir, 0o700);
}

/**
 * Clear the path for the bind. @throws ConfigError when a file that is not a
 * socket is there, DaemonRunningError when a daemon answers on it.
 */
export async function removeStaleSocket(socketPath: string): Promise<void> {
  let stat;
  try {
    stat = lstatSync(socketPath);
  } catch {
    return; // nothing there
  }
  if (!stat.isSocket()) {
    throw new ConfigError(`${socketPath} exists and is not a socket; remove it or choose another --socket`);
  }
  const alive = await new Promise<boolean>((res) => {
    const probe = createConnection(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      res(true);
    });
    probe.once('error', () => res(false));
  });
  if (alive) {
    throw new DaemonRunningError(`another cryptod is already listening on ${socketPath}; stop it first or choose another --socket`, {
      detail: { socket: socketPath },
    });
  }
  // A socket file nobody listens on: left by a daemon that crashed.
  unlinkSync(socketPath);
}

/** Listen on `socketPath`, the socket file created with `mode`. */
export function listenOnSocket(server: Server, socketPath: string, mode: number): Promise<void> {
  return new Promise((res, rej) => {
    server.once('error', (err) => rej(new ConfigError(`cannot listen on ${socketPath}: ${err.message}`, { cause: err })));
    // The bind happens synchronously inside listen(): a umask around it
    // creates the socket with the right mode, with no window where it is wider.
    const old = process.umask(0o777 & ~mode);
    try {
      server.listen(socketPath, () => {
        chmodSync(socketPath, mode);
        res();
      });
    } finally {
      process.umask(old);
    }
  });
}
