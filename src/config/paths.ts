/**
 * Default locations: everything under ./.cryptod/ in the current directory,
 * so `npm start` in a checkout runs with no configuration at all.
 */
import { join, resolve } from 'node:path';

export const DEFAULT_DATA_DIR = '.cryptod';
export const SOCKET_FILE = 'cryptod.sock';

export function defaultDataDir(): string {
  return resolve(DEFAULT_DATA_DIR);
}

/** The socket a client or CLI command uses: explicit, else CRYPTOD_SOCKET, else the default. */
export function resolveSocketPath(explicit?: string, dataDir?: string): string {
  if (explicit !== undefined && explicit !== '') return resolve(explicit);
  const env = process.env.CRYPTOD_SOCKET;
  if (env !== undefined && env !== '') return resolve(env);
  return join(dataDir ?? defaultDataDir(), SOCKET_FILE);
}
