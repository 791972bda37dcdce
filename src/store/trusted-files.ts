/**
 * Files the daemon trusts: its configuration, the KEK passphrase, the TLS
 * files, the audit log, and everything in the data directory. Whoever can
 * write one of them, or replace it, controls the daemon's keys; so before
 * one is used it is checked the way OpenSSH's StrictModes checks
 * ~/.ssh/authorized_keys:
 *
 *   every directory from / down to the file ─▶ owned by root or the daemon's
 *        │                                      user, not writable by group
 *        │                                      or others (a sticky directory
 *        │                                      such as /tmp is accepted: no
 *        │                                      one may rename or remove what
 *        ▼                                      another user owns in it)
 *   a symlink on the way ─▶ owned by root or the daemon's user; its target's
 *        │                  directories are checked the same way
 *        ▼
 *   the file itself (fstat of the open descriptor, so what is checked is what
 *   is read) ─▶ a regular file, same owner rule, not writable by group or
 *               others; a secret (passphrase, private key, root key) not
 *               readable by them either; no larger than its limit
 *
 * Reading never waits on the file: it is opened with O_NONBLOCK (a FIFO opens
 * at once, and is then refused as not a regular file), and the size is
 * checked on the descriptor before a byte is read, so /dev/zero, a FIFO or a
 * 1.5 GB file cost nothing. At start the read is synchronous (bounded and
 * from a regular file); {@link readTrustedFile} reads through a FileHandle so
 * a reload in a running daemon never stalls its event loop.
 *
 * Every refusal is a ConfigError naming the path and the command that fixes it.
 */
import fs from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../protocol/errors.js';

/** What a file is, in messages ("the configuration file", "--tls-key"), and how much of it may be read. */
export interface TrustedFileSpec {
  readonly what: string;
  readonly maxBytes: number;
  /** Key material: group and others may not read it either (mode 600 or stricter). */
  readonly secret?: boolean;
}

const READ_FLAGS = fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK;
const STICKY = 0o1000;

/** The daemon's effective uid; root is trusted besides it, as by sshd. */
function daemonUid(): number {
  return process.geteuid?.() ?? process.getuid?.() ?? 0;
}

function trustedOwner(uid: number): boolean {
  return uid === 0 || uid === daemonUid();
}

function octal(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(3, '0');
}

/** Refuse `p` (already lstat'ed or fstat'ed as `st`) unless root or the daemon's user owns it. */
export function assertTrustedOwner(p: string, st: fs.Stats, what: string): void {
  if (trustedOwner(st.uid)) return;
  const uid = daemonUid();
  throw new ConfigError(
    `${what} ${p} is owned by uid ${st.uid}; the daemon runs as uid ${uid} and trusts only what it or root owns, since the owner can change it: run chown ${uid} ${p}`,
    { detail: { path: p, uid: st.uid } },
  );
}

/**
 * Refuse a directory others may write (they could replace what is in it),
 * unless it is sticky: in /tmp (mode 1777) another user may add names but
 * not rename or remove ours, and whatever they add is refused by owner.
 */
function assertDirNotShared(dir: string, st: fs.Stats): void {
  if ((st.mode & 0o022) === 0 || (st.mode & STICKY) !== 0) return;
  throw new ConfigError(
    `the directory ${dir} has mode ${octal(st.mode)}: group or others may write it and so replace the files the daemon trusts in it: run chmod go-w ${dir}`,
    { detail: { path: dir, mode: octal(st.mode) } },
  );
}

/** The mode rule for a file: never writable by others; a secret not readable by them either. */
export function assertTrustedMode(p: string, st: fs.Stats, what: string, secret: boolean): void {
  const mask = secret ? 0o077 : 0o022;
  if ((st.mode & mask) === 0) return;
  const fix = secret ? `chmod 600 ${p}` : `chmod go-w ${p}`;
  const why = secret ? 'group or others may access it' : 'group or others may write it';
  throw new ConfigError(`${what} ${p} has mode ${octal(st.mode)}: ${why}: run ${fix}`, { detail: { path: p, mode: octal(st.mode) } });
}

function lstat(p: string, what: string): fs.Stats {
  try {
    return fs.lstatSync(p);
  } catch (cause) {
    throw new ConfigError(`cannot access ${what} ${p}: ${(cause as Error).message}`, { cause, detail: { path: p } });
  }
}

/**
 * Check every directory above `p` (not `p` itself), from its parent up to /,
 * then, if a symlink is on the way, the directories of the real path too.
 * Returns the real path of `p`'s parent joined with its last component, which
 * is what the caller opens (with O_NOFOLLOW when `p` must not be a symlink).
 */
export function checkAncestors(p: string): string {
  const abs = path.resolve(p);
  let symlinked = false;
  for (let dir = path.dirname(abs); ; dir = path.dirname(dir)) {
    const st = lstat(dir, 'the directory');
    assertTrustedOwner(dir, st, st.isSymbolicLink() ? 'the symlink' : 'the directory');
    if (st.isSymbolicLink()) symlinked = true;
    else assertDirNotShared(dir, st);
    if (dir === path.dirname(dir)) break;
  }
  if (!symlinked) return abs;
  const realParent = fs.realpathSync(path.dirname(abs));
  if (realParent !== path.dirname(abs)) checkAncestors(path.join(realParent, 'x'));
  return path.join(realParent, path.basename(abs));
}

/**
 * Resolve the file the daemon is to read: its directories are checked, and
 * a symlink at `p` (certbot's live/ certificates are symlinks) must be owned
 * by root or the daemon's user and is followed to a target checked the same way.
 */
function resolveTrusted(p: string, what: string): string {
  const at = checkAncestors(p);
  const st = lstat(at, what);
  if (!st.isSymbolicLink()) return at;
  assertTrustedOwner(at, st, 'the symlink');
  const target = fs.realpathSync(at);
  checkAncestors(target);
  return target;
}

/** The checks on an open descriptor's stat: the file itself. */
function checkOpened(p: string, st: fs.Stats, spec: TrustedFileSpec): void {
  if (!st.isFile()) {
    throw new ConfigError(`${spec.what} ${p} is not a regular file (${kindOf(st)}); give the path of a regular file`, { detail: { path: p } });
  }
  assertTrustedOwner(p, st, spec.what);
  assertTrustedMode(p, st, spec.what, spec.secret === true);
  assertSize(p, st.size, spec);
}

function assertSize(p: string, size: number, spec: TrustedFileSpec): void {
  if (size <= spec.maxBytes) return;
  throw new ConfigError(`${spec.what} ${p} is ${size} bytes; it may have at most ${spec.maxBytes}: give the right file`, {
    detail: { path: p, size, limit: spec.maxBytes },
  });
}

/** What a non-regular file is, for the message. */
export function kindOf(st: fs.Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  if (st.isSymbolicLink()) return 'a symlink';
  return 'not a regular file';
}

function openError(p: string, what: string, cause: unknown): InstanceType<typeof ConfigError> {
  const code = (cause as NodeJS.ErrnoException).code;
  const why = code === 'ELOOP' ? 'it is a symlink, which is not followed here' : (cause as Error).message;
  return new ConfigError(`cannot open ${what} ${p}: ${why}`, { cause, detail: { path: p } });
}

/**
 * Read a trusted file at start. The buffer is zero-filled memory of its own
 * (not the shared pool), so a secret's bytes can be wiped by the caller.
 * @throws ConfigError naming the path and the fix.
 */
export function readTrustedFileSync(p: string, spec: TrustedFileSpec): Buffer {
  const real = resolveTrusted(p, spec.what);
  let fd: number;
  try {
    fd = fs.openSync(real, READ_FLAGS);
  } catch (cause) {
    throw openError(p, spec.what, cause);
  }
  try {
    const st = fs.fstatSync(fd);
    checkOpened(p, st, spec);
    const buf = Buffer.alloc(st.size);
    let got = 0;
    while (got < buf.length) {
      const n = fs.readSync(fd, buf, got, buf.length - got, got);
      if (n === 0) break;
      got += n;
    }
    return got === buf.length ? buf : shrink(buf, got);
  } finally {
    fs.closeSync(fd);
  }
}

/** {@link readTrustedFileSync} without blocking the event loop: for reloads in a running daemon. */
export async function readTrustedFile(p: string, spec: TrustedFileSpec): Promise<Buffer> {
  const real = resolveTrusted(p, spec.what);
  let h: fs.promises.FileHandle;
  try {
    h = await open(real, READ_FLAGS);
  } catch (cause) {
    throw openError(p, spec.what, cause);
  }
  try {
    const st = await h.stat();
    checkOpened(p, st, spec);
    const buf = Buffer.alloc(st.size);
    let got = 0;
    while (got < buf.length) {
      const { bytesRead } = await h.read(buf, got, buf.length - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return got === buf.length ? buf : shrink(buf, got);
  } finally {
    await h.close();
  }
}

/** A file that shrank while read: copy what was read, wipe the rest. */
function shrink(buf: Buffer, got: number): Buffer {
  const out = Buffer.alloc(got);
  buf.copy(out, 0, 0, got);
  buf.fill(0);
  return out;
}

/**
 * A file named on the command line of a client command (`--material-file`,
 * `--in`): the user's own file, so no ownership rule, but it must be a
 * regular file within `maxBytes`, checked before reading — /dev/zero or a
 * FIFO would otherwise fill memory or wait forever (stdin, `-`, is the way to
 * pipe data in).
 */
export async function readRegularFile(p: string, spec: TrustedFileSpec): Promise<Buffer> {
  let h: fs.promises.FileHandle;
  try {
    h = await open(p, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch (cause) {
    throw new ConfigError(`cannot open ${spec.what} ${p}: ${(cause as Error).message}`, { cause, detail: { path: p } });
  }
  try {
    const st = await h.stat();
    if (!st.isFile()) {
      throw new ConfigError(`${spec.what} ${p} is not a regular file (${kindOf(st)}); give a regular file, or - to read standard input`, { detail: { path: p } });
    }
    assertSize(p, st.size, spec);
    const buf = Buffer.alloc(st.size);
    let got = 0;
    while (got < buf.length) {
      const { bytesRead } = await h.read(buf, got, buf.length - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return got === buf.length ? buf : shrink(buf, got);
  } finally {
    await h.close();
  }
}
