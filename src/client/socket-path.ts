/**
 * Where the daemon's Unix socket is when nobody says: one rule for the
 * daemon (`cryptod serve`), the CLI and `connect()`, so that a client started
 * from any directory finds a daemon started from any other.
 *
 *   --socket / connect({ socket })            explicit
 *   else $CRYPTOD_SOCKET                      env
 *   else $XDG_RUNTIME_DIR/cryptod/cryptod.sock  runtime-dir  (XDG_RUNTIME_DIR an
 *                                             absolute directory owned by the user)
 *   else /tmp/cryptod-$UID/cryptod.sock       fallback
 *
 * The last two are per-user directories in places other users can write to
 * (/tmp) or could have been given (a stale XDG_RUNTIME_DIR), so they are
 * trusted only when they are the user's own: someone who pre-creates
 * /tmp/cryptod-1000 could otherwise listen there and receive every request
 * (and token) of uid 1000's clients. The daemon creates the directory 0700
 * and refuses one owned by another user or open to others
 * ({@link assertPrivateSocketDirectory}); the client refuses to connect
 * through a directory owned by another user ({@link assertOwnSocketDirectory}).
 * An explicit path is the operator's choice and is not second-guessed: a
 * socket shared with a group lives in a directory the group can reach.
 *
 * This file lives in client/ because the client may import only client/ and
 * protocol/; the daemon's configuration imports it from here.
 */
import { lstatSync, statSync, type Stats } from 'node:fs';
import { userInfo } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { ConfigError } from '../protocol/errors.js';

export const SOCKET_FILE = 'cryptod.sock';

export type SocketSource = 'explicit' | 'env' | 'runtime-dir' | 'fallback';

export interface SocketLocation {
  /** Absolute path of the socket file. */
  readonly path: string;
  readonly source: SocketSource;
}

export interface SocketEnvironment {
  /** The environment to read CRYPTOD_SOCKET and XDG_RUNTIME_DIR from; default `process.env`. */
  readonly env?: NodeJS.ProcessEnv;
  /** Parent of the per-user fallback directory; default `/tmp` (fixed, so that TMPDIR differing between daemon and client does not split them). */
  readonly tmp?: string;
}

/** The calling user's id, or undefined where the platform has none (then the user name keys the fallback). */
function currentUid(): number | undefined {
  return typeof process.getuid === 'function' ? process.getuid() : undefined;
}

/**
 * The socket to use: `explicit` if given, else the default above.
 *
 * @example
 *   resolveSocket().path                 // '/run/user/1000/cryptod/cryptod.sock' in a desktop session
 *   resolveSocket('./s.sock').source     // 'explicit'
 */
export function resolveSocket(explicit?: string, where: SocketEnvironment = {}): SocketLocation {
  if (explicit !== undefined && explicit !== '') return { path: resolve(explicit), source: 'explicit' };
  const env = where.env ?? process.env;
  const fromEnv = env.CRYPTOD_SOCKET;
  if (fromEnv !== undefined && fromEnv !== '') return { path: resolve(fromEnv), source: 'env' };
  const uid = currentUid();
  const runtime = env.XDG_RUNTIME_DIR;
  if (runtime !== undefined && isAbsolute(runtime) && isOwnDirectory(runtime, uid)) {
    return { path: join(runtime, 'cryptod', SOCKET_FILE), source: 'runtime-dir' };
  }
  const who = uid === undefined ? userInfo().username : String(uid);
  return { path: join(where.tmp ?? '/tmp', `cryptod-${who}`, SOCKET_FILE), source: 'fallback' };
}

/** The socket path: explicit, else CRYPTOD_SOCKET, else the per-user default. */
export function resolveSocketPath(explicit?: string): string {
  return resolveSocket(explicit).path;
}

function isOwnDirectory(dir: string, uid: number | undefined): boolean {
  try {
    const st = statSync(dir);
    return st.isDirectory() && (uid === undefined || st.uid === uid);
  } catch {
    return false;
  }
}

/** lstat, or undefined when the path does not exist. */
function lstatOrNothing(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ConfigError(`cannot inspect the socket directory ${path}: ${(err as Error).message}`, { cause: err, detail: { socket: path } });
  }
}

/**
 * Client side: refuse a default socket whose directory belongs to another
 * user (or is a symbolic link). A directory that does not exist is fine: the
 * connection then fails with "no cryptod is listening".
 */
export function assertOwnSocketDirectory(location: SocketLocation): void {
  if (location.source === 'explicit' || location.source === 'env') return;
  const dir = dirname(location.path);
  const st = lstatOrNothing(dir);
  if (st === undefined) return;
  const uid = currentUid();
  if (st.isSymbolicLink() || !st.isDirectory() || (uid !== undefined && st.uid !== uid)) {
    throw new ConfigError(
      `refusing to connect through ${dir}: the default socket directory must be a directory of your own (uid ${uid ?? '?'}), ` +
        `but it ${describeOwner(st)}; another user may have created it to impersonate cryptod. ` +
        'Remove it, or give the socket explicitly (connect({ socket }), --socket or CRYPTOD_SOCKET)',
      { detail: { socket: location.path } },
    );
  }
}

/**
 * Daemon side, before it creates the socket: the default directory exists
 * (the caller created it 0700 if missing), is a real directory of the
 * daemon's user and is not open to group or others.
 */
export function assertPrivateSocketDirectory(location: SocketLocation): void {
  if (location.source === 'explicit' || location.source === 'env') return;
  const dir = dirname(location.path);
  const st = lstatOrNothing(dir);
  const uid = currentUid();
  if (st === undefined) throw new ConfigError(`the socket directory ${dir} does not exist`, { detail: { socket: location.path } });
  if (st.isSymbolicLink() || !st.isDirectory() || (uid !== undefined && st.uid !== uid)) {
    throw new ConfigError(
      `refusing the socket directory ${dir}: it ${describeOwner(st)}, not a directory of the daemon's user (uid ${uid ?? '?'}); ` +
        'another user may have created it to receive your clients\' requests. Remove it, or give --socket PATH',
      { detail: { socket: location.path } },
    );
  }
  if ((st.mode & 0o077) !== 0) {
    throw new ConfigError(
      `refusing the socket directory ${dir}: its mode is ${(st.mode & 0o777).toString(8)}, open to group or others; ` +
        `run \`chmod 700 ${dir}\`, or give --socket PATH`,
      { detail: { socket: location.path } },
    );
  }
}

function describeOwner(st: Stats): string {
  if (st.isSymbolicLink()) return 'is a symbolic link';
  if (!st.isDirectory()) return 'is not a directory';
  return `is owned by uid ${st.uid}`;
}
