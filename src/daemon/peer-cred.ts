/**
 * Kernel-verified identity of the process at the other end of a Unix socket.
 *
 * Access control in the daemon must not rest on anything the client says about
 * itself: the kernel records the peer's uid, gid and pid when it calls
 * `connect()`, and `getsockopt(SO_PEERCRED)` is the only way to read that
 * record. Node has no API for it, so a small N-API addon
 * (`native/peercred.c`, built by `node-gyp` from `binding.gyp` during
 * `npm install`) does the system call and this module finds the socket's fd.
 */

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { ConnectionClosedError, InvalidArgumentError, UnsupportedError } from '../protocol/errors.js';

/**
 * Who is on the other end of a connection, as recorded by the kernel at
 * `connect()` time. The ids are the peer's *effective* ids then; a later
 * `setuid()` in the peer does not change them, and `pid` may be reused once
 * that process exits, so authorise on `uid`/`gid` and use `pid` for logs.
 */
export interface PeerCred {
  uid: number;
  gid: number;
  pid: number;
}

/** The shape `build/Release/peercred.node` exports (see native/peercred.c). */
interface PeerCredAddon {
  getPeerCred(fd: number): PeerCred;
  /** False where the addon was compiled without SO_PEERCRED. */
  supported: boolean;
}

/** Loaded addon, or why it could not be loaded; `undefined` until first use. */
let loaded: { addon: PeerCredAddon } | { error: unknown } | undefined;

const PACKAGE_NAME = 'cryptod';
const BUILD_HINT = 'run `npm install` to build the native addon (needs python3, make and a C compiler)';
const PLATFORM_HINT = 'peer credentials need Linux SO_PEERCRED';

/**
 * The package root, found by walking up to our own package.json: this module
 * runs both as `src/daemon/peer-cred.ts` (tsx) and as
 * `dist/src/daemon/peer-cred.js` (after tsc), at different depths, and
 * node-gyp always writes the addon to `<root>/build/Release`.
 */
function findPackageRoot(): string {
  const start = dirname(fileURLToPath(import.meta.url));
  for (let dir = start; ; ) {
    if (isOurPackageJson(join(dir, 'package.json'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) {
      throw new Error(`no package.json with "name": "${PACKAGE_NAME}" above ${start}`);
    }
    dir = parent;
  }
}

function isOurPackageJson(path: string): boolean {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return false; // absent or unreadable: keep walking up
  }
  try {
    const parsed: unknown = JSON.parse(text);
    return typeof parsed === 'object' && parsed !== null && (parsed as { name?: unknown }).name === PACKAGE_NAME;
  } catch {
    return false;
  }
}

function isAddon(value: unknown): value is PeerCredAddon {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { getPeerCred?: unknown }).getPeerCred === 'function' &&
    typeof (value as { supported?: unknown }).supported === 'boolean'
  );
}

/** Load the addon once; failures are remembered so each call does not retry the disk. */
function load(): { addon: PeerCredAddon } | { error: unknown } {
  if (loaded !== undefined) return loaded;
  try {
    const path = join(findPackageRoot(), 'build', 'Release', 'peercred.node');
    const mod: unknown = createRequire(import.meta.url)(path);
    if (!isAddon(mod)) throw new Error(`${path} does not export getPeerCred/supported; rebuild it`);
    loaded = { addon: mod };
  } catch (error) {
    loaded = { error };
  }
  return loaded;
}

function addonOrThrow(): PeerCredAddon {
  const result = load();
  if ('error' in result) {
    throw new UnsupportedError(`peer credentials are unavailable: the native addon did not load; ${BUILD_HINT}`, {
      cause: result.error,
    });
  }
  if (!result.addon.supported) {
    throw new UnsupportedError(`peer credentials are unavailable on ${process.platform}: ${PLATFORM_HINT}`);
  }
  return result.addon;
}

/**
 * Whether {@link peerCred} can work here, so the daemon can decide at startup
 * (refuse to start, or fall back to filesystem permissions on the socket)
 * rather than fail on the first connection. Never throws.
 */
export function peerCredAvailable(): boolean {
  const result = load();
  return 'addon' in result && result.addon.supported;
}

/**
 * Make this process non-dumpable (Linux prctl PR_SET_DUMPABLE 0): no core
 * dump with key material in it, no ptrace attach by other processes of the
 * same uid. Returns false when the addon or the platform cannot do it.
 */
export function setNonDumpable(): boolean {
  const result = load();
  if (!('addon' in result)) return false;
  const fn = (result.addon as { setNonDumpable?: () => boolean }).setNonDumpable;
  return typeof fn === 'function' ? fn() : false;
}

/**
 * Send one datagram to a Unix datagram socket (systemd's sd_notify, see
 * src/daemon/systemd.ts): Node has no Unix datagram sockets. A path starting
 * with '@' is in the abstract namespace. @throws when the addon is missing
 * or the send fails.
 */
export function sdNotify(path: string, message: string): void {
  const result = load();
  const fn = 'addon' in result ? (result.addon as { sdNotify?: (p: string, m: string) => void }).sdNotify : undefined;
  if (typeof fn !== 'function') throw new UnsupportedError(`sd_notify needs the native addon's sdNotify; ${BUILD_HINT}`, 'error' in result ? { cause: result.error } : undefined);
  fn(path, message);
}

/** RLIMIT_NOFILE as getrlimit reports it; -1 stands for RLIM_INFINITY. */
export interface FileLimit {
  soft: number;
  hard: number;
}

/**
 * Raise the soft RLIMIT_NOFILE to the hard limit (needs no privilege): every
 * connection costs a file descriptor. Node itself does the same when it
 * starts on Linux, but as an undocumented detail of its start-up; the daemon
 * does not rely on it, and reports both values so the operator sees the
 * limit its --max-connections must fit in. Returns null when the addon is
 * not built or the platform cannot.
 *
 * @throws Error with a Node-style `code` (EPERM, EINVAL) if setrlimit fails.
 */
export function raiseFileLimit(): { before: FileLimit; after: FileLimit } | null {
  const result = load();
  if (!('addon' in result)) return null;
  const fn = (result.addon as { raiseFileLimit?: () => { before: FileLimit; after: FileLimit } }).raiseFileLimit;
  if (typeof fn !== 'function' || !result.addon.supported) return null;
  return fn();
}

/**
 * The kernel's record of who connected `socket` (an accepted or connected
 * Unix-domain socket), the only client identity the daemon can trust.
 *
 * @throws UnsupportedError if the addon is not built or the platform has no
 *   SO_PEERCRED (the message says what to do).
 * @throws ConnectionClosedError if the socket is already closed or has no peer.
 * @throws InvalidArgumentError if `socket` is not backed by a Unix-domain
 *   socket (TCP, TLS, a not-yet-connected socket).
 */
export function peerCred(socket: Socket): PeerCred {
  const addon = addonOrThrow();
  if (socket.destroyed) {
    throw new ConnectionClosedError('the socket is closed: peer credentials exist only while it is connected');
  }
  // Node has no public API for the fd of an accepted socket: the libuv handle
  // behind `net.Socket` (a `Pipe` for Unix sockets) exposes it as `fd`. It is
  // null before connect/after close, and `fd` is -1 on Windows (no POSIX fds).
  const handle = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle;
  if (handle === null || handle === undefined) {
    throw new ConnectionClosedError('the socket has no open handle: peer credentials exist only while it is connected');
  }
  const fd = handle.fd;
  if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0) {
    throw new InvalidArgumentError('the socket has no file descriptor: peer credentials exist only for Unix-domain sockets');
  }
  try {
    return addon.getPeerCred(fd);
  } catch (error) {
    switch ((error as { code?: unknown } | null)?.code) {
      case 'ENOTCONN':
      case 'EBADF':
        throw new ConnectionClosedError(`cannot read peer credentials: ${(error as Error).message}`, { cause: error });
      case 'EAFNOSUPPORT':
      case 'ENOTSOCK':
        throw new InvalidArgumentError(`peer credentials exist only for Unix-domain sockets: ${(error as Error).message}`, {
          cause: error,
        });
      case 'ERR_PEERCRED_UNSUPPORTED':
        throw new UnsupportedError(`peer credentials are unavailable on ${process.platform}: ${PLATFORM_HINT}`, { cause: error });
      default:
        throw error;
    }
  }
}
