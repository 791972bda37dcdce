/**
 * Directories and files that hold key material (wrapped or not) are private
 * to the daemon's user: directories 0700, files 0600, owned by that user (or
 * root), in directories only they control (trusted-files.ts). A directory
 * that already exists with looser permissions or another owner is refused
 * rather than silently tightened, the way ssh refuses a readable private key:
 * someone else may already have read it — or planted a root key of their
 * own in it — and the operator should know.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../protocol/errors.js';
import { assertTrustedMode, assertTrustedOwner, checkAncestors, kindOf } from './trusted-files.js';

export const PRIVATE_DIR_MODE = 0o700;
export const PRIVATE_FILE_MODE = 0o600;

/**
 * Create `dir` (and parents) with mode 0700, or check that the existing one
 * is private: its own mode and owner, every directory above it, and every
 * entry in it ({@link checkDataDirEntries}).
 */
export function ensurePrivateDir(dir: string): string {
  if (typeof dir !== 'string' || dir.length === 0) throw new ConfigError('expected a data directory path, got an empty value');
  const abs = path.resolve(dir);
  let st: fs.Stats;
  try {
    st = fs.statSync(abs);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new ConfigError(`cannot access the data directory ${abs}`, { cause: err });
    }
    try {
      fs.mkdirSync(abs, { recursive: true, mode: PRIVATE_DIR_MODE });
      // mkdir's mode is filtered by the umask; chmod makes it exact.
      fs.chmodSync(abs, PRIVATE_DIR_MODE);
    } catch (cause) {
      throw new ConfigError(`cannot create the data directory ${abs}`, { cause });
    }
    checkAncestors(abs);
    return abs;
  }
  if (!st.isDirectory()) throw new ConfigError(`the data directory ${abs} exists and is not a directory`);
  checkAncestors(abs);
  assertTrustedOwner(abs, st, 'the data directory');
  assertPrivateMode(abs, st.mode, 'directory', PRIVATE_DIR_MODE);
  checkDataDirEntries(abs);
  return abs;
}

/**
 * Every entry of the data directory is the daemon's: a keystore, its -wal or
 * -shm, or a root key that another user owns would let that user read or
 * choose the keys. Regular files must be private, subdirectories not writable
 * by others, a socket (the default socket lives here) only owned right; a
 * symlink or any other kind of file is refused, as nothing the daemon puts
 * here is one.
 */
export function checkDataDirEntries(dir: string): void {
  for (const name of fs.readdirSync(dir)) {
    const p = path.join(dir, name);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(p);
    } catch (err) {
      // Gone between readdir and lstat (a temporary file, a socket being removed).
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw new ConfigError(`cannot access ${p} in the data directory`, { cause: err, detail: { path: p } });
    }
    assertTrustedOwner(p, st, 'the file');
    if (st.isFile()) assertPrivateMode(p, st.mode, 'file', PRIVATE_FILE_MODE);
    else if (st.isDirectory()) assertTrustedMode(p, st, 'the directory', false);
    else if (!st.isSocket()) {
      throw new ConfigError(`${p} in the data directory is ${kindOf(st)}; the daemon keeps only regular files, sockets and directories there: remove it`, {
        detail: { path: p },
      });
    }
  }
}

/**
 * Create `file` empty with mode 0600 if it does not exist (O_CREAT with an
 * explicit mode, so it is never briefly world-readable), or check the
 * existing file's mode. Returns true when the file was created.
 */
export function ensurePrivateFile(file: string): boolean {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL, PRIVATE_FILE_MODE);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new ConfigError(`cannot create ${file}`, { cause: err });
    checkPrivateFile(file);
    return false;
  }
  try {
    fs.fchmodSync(fd, PRIVATE_FILE_MODE);
  } finally {
    fs.closeSync(fd);
  }
  return true;
}

/**
 * Refuse a file that is not a regular file (a symlink is not followed), that
 * another user owns, or that group or others may access.
 */
export function checkPrivateFile(file: string): fs.Stats {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(file);
  } catch (cause) {
    throw new ConfigError(`cannot access ${file}`, { cause });
  }
  if (!st.isFile()) throw new ConfigError(`${file} is not a regular file (${kindOf(st)})`, { detail: { path: file } });
  assertTrustedOwner(file, st, 'the file');
  assertPrivateMode(file, st.mode, 'file', PRIVATE_FILE_MODE);
  return st;
}

function assertPrivateMode(p: string, mode: number, what: 'file' | 'directory', wanted: number): void {
  if ((mode & 0o077) !== 0) {
    const octal = (mode & 0o777).toString(8).padStart(3, '0');
    throw new ConfigError(
      `the ${what} ${p} has mode ${octal}; expected ${wanted.toString(8)} (only the daemon's user may access it): run chmod ${wanted.toString(8)} ${p}`,
      { detail: { path: p, mode: octal } },
    );
  }
}

/** fsync a directory so a newly created or renamed entry in it survives a crash. */
export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
