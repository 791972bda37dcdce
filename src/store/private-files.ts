/**
 * Directories and files that hold key material (wrapped or not) are private
 * to the daemon's user: directories 0700, files 0600. A directory that already
 * exists with looser permissions is refused rather than silently tightened,
 * the way ssh refuses a readable private key: someone else may already have
 * read it, and the operator should know.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../protocol/errors.js';

export const PRIVATE_DIR_MODE = 0o700;
export const PRIVATE_FILE_MODE = 0o600;

/** Create `dir` (and parents) with mode 0700, or check that the existing one is private. */
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
    return abs;
  }
  if (!st.isDirectory()) throw new ConfigError(`the data directory ${abs} exists and is not a directory`);
  assertPrivateMode(abs, st.mode, 'directory', PRIVATE_DIR_MODE);
  return abs;
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

/** Refuse a file that is not a regular file or that group or others may access. */
export function checkPrivateFile(file: string): fs.Stats {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (cause) {
    throw new ConfigError(`cannot access ${file}`, { cause });
  }
  if (!st.isFile()) throw new ConfigError(`${file} is not a regular file`);
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
