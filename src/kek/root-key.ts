/**
 * Where the local KEK's 256-bit root key comes from: a `root.key` file of 32
 * random bytes, or scrypt over a passphrase. Either way the bytes live in a
 * `Buffer.alloc` buffer that the provider owns and zeroes on close; every
 * intermediate copy here is zeroed before returning.
 *
 * JavaScript cannot promise more than that: a passphrase given as a string
 * cannot be wiped, and the garbage collector may have moved copies of any
 * buffer before it was zeroed.
 */
import { createHmac, randomBytes, randomFillSync, scrypt } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../protocol/errors.js';
import { checkPrivateFile, ensurePrivateDir, fsyncDir, PRIVATE_FILE_MODE } from '../files/private-files.js';
import { KEK_BYTES } from './gcm-blob.js';

export const ROOT_KEY_FILE = 'root.key';

export interface ScryptParams {
  /** CPU/memory cost, a power of two. */
  N: number;
  r: number;
  p: number;
  salt: Buffer;
}

/** 2^17, 8, 1: the OWASP recommendation (128 MiB, a fraction of a second), paid once at start. */
export const DEFAULT_SCRYPT = { N: 2 ** 17, r: 8, p: 1 } as const;
const SALT_BYTES = 32;

/** Bounds, also applied to parameters read back from the store, so a damaged record cannot make start-up hang. */
export function checkScryptParams(params: { N: unknown; r: unknown; p: unknown; salt?: unknown }): void {
  const { N, r, p } = params;
  if (typeof N !== 'number' || !Number.isInteger(N) || N < 2 ** 10 || N > 2 ** 22 || (N & (N - 1)) !== 0) {
    throw new ConfigError(`expected scrypt N to be a power of two in 2^10..2^22, got ${String(N)}`);
  }
  if (typeof r !== 'number' || !Number.isInteger(r) || r < 1 || r > 32) throw new ConfigError(`expected scrypt r in 1..32, got ${String(r)}`);
  if (typeof p !== 'number' || !Number.isInteger(p) || p < 1 || p > 16) throw new ConfigError(`expected scrypt p in 1..16, got ${String(p)}`);
  if (params.salt !== undefined) {
    const salt = params.salt;
    if (!(salt instanceof Uint8Array) || salt.length < 16 || salt.length > 64) {
      throw new ConfigError(`expected a scrypt salt of 16..64 bytes, got ${salt instanceof Uint8Array ? salt.length : typeof salt}`);
    }
  }
}

/** Fresh parameters (new random salt) for a keystore that has none yet. */
export function newScryptParams(cost: Partial<Pick<ScryptParams, 'N' | 'r' | 'p'>> = {}): ScryptParams {
  const params = { ...DEFAULT_SCRYPT, ...cost, salt: randomBytes(SALT_BYTES) };
  checkScryptParams(params);
  return params;
}

/**
 * Derive the 32-byte root key from a passphrase. Deterministic for the same
 * passphrase and parameters. Strings are NFC-normalized first, so the same
 * passphrase typed on systems that compose accents differently derives the
 * same key. Returns a buffer the caller owns and must zero.
 */
export async function deriveRootKey(passphrase: string | Uint8Array, params: ScryptParams): Promise<Buffer> {
  checkScryptParams(params);
  const pw = passphraseBytes(passphrase);
  try {
    const { N, r, p } = params;
    // Node's default maxmem (32 MiB) is below the default cost; allow what the parameters need.
    const maxmem = 256 * N * r + 256 * r * p + 1024 * 1024;
    const derived = await new Promise<Buffer>((resolve, reject) => {
      scrypt(pw, params.salt, KEK_BYTES, { N, r, p, maxmem }, (err, key) => (err ? reject(err) : resolve(key)));
    });
    const root = Buffer.alloc(KEK_BYTES);
    derived.copy(root);
    derived.fill(0);
    return root;
  } finally {
    pw.fill(0);
  }
}

function passphraseBytes(passphrase: string | Uint8Array): Buffer {
  if (typeof passphrase === 'string') {
    const s = passphrase.normalize('NFC');
    if (s.length === 0) throw new ConfigError('expected a non-empty KEK passphrase');
    // Not Buffer.from(s): small results land in the shared allocation pool.
    const out = Buffer.alloc(Buffer.byteLength(s, 'utf8'));
    out.write(s, 'utf8');
    return out;
  }
  if (passphrase instanceof Uint8Array) {
    if (passphrase.length === 0) throw new ConfigError('expected a non-empty KEK passphrase');
    const out = Buffer.alloc(passphrase.length);
    out.set(passphrase);
    return out;
  }
  throw new ConfigError(`expected the KEK passphrase as a string or bytes, got ${typeof passphrase}`);
}

/**
 * Read `dir/root.key`, creating it (32 random bytes, mode 0600, directory
 * 0700) when it does not exist and `mayCreate` is true. Creation is
 * crash- and race-safe: the key is written and fsynced under a temporary
 * name, then hard-linked into place, which fails if another process won the
 * race — everyone then reads the winner's file.
 */
export function loadRootKeyFile(dir: string, mayCreate: boolean, missingHint: string): Buffer {
  const d = ensurePrivateDir(dir);
  const file = path.join(d, ROOT_KEY_FILE);
  if (!fs.existsSync(file)) {
    if (!mayCreate) throw new ConfigError(`${file} is missing; ${missingHint}`, { detail: { path: file } });
    createRootKeyFile(d, file);
  }
  return readRootKeyFile(file);
}

function readRootKeyFile(file: string): Buffer {
  const st = checkPrivateFile(file);
  if (st.size !== KEK_BYTES) {
    throw new ConfigError(`expected a ${KEK_BYTES}-byte root key in ${file}, got ${st.size}`, { detail: { path: file, size: st.size } });
  }
  const key = Buffer.alloc(KEK_BYTES);
  const fd = fs.openSync(file, 'r');
  try {
    const got = fs.readSync(fd, key, 0, KEK_BYTES, 0);
    if (got !== KEK_BYTES) throw new ConfigError(`expected a ${KEK_BYTES}-byte root key in ${file}, got ${got}`);
  } catch (err) {
    key.fill(0);
    throw err;
  } finally {
    fs.closeSync(fd);
  }
  return key;
}

function createRootKeyFile(dir: string, file: string): void {
  const tmp = path.join(dir, `.${ROOT_KEY_FILE}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const key = Buffer.alloc(KEK_BYTES);
  randomFillSync(key);
  try {
    const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, PRIVATE_FILE_MODE);
    try {
      fs.fchmodSync(fd, PRIVATE_FILE_MODE);
      fs.writeSync(fd, key, 0, KEK_BYTES, 0);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    try {
      fs.linkSync(tmp, file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    fsyncDir(dir);
  } catch (cause) {
    if (cause instanceof ConfigError) throw cause;
    throw new ConfigError(`cannot create the root key ${file}`, { cause });
  } finally {
    key.fill(0);
    fs.rmSync(tmp, { force: true });
  }
}

/** Proves knowledge of the root key without revealing it (HMAC is a PRF): stored, compared at start. */
export function rootKeyVerifier(root: Buffer): Buffer {
  return createHmac('sha256', root).update('cryptod/kek/local/verifier/v1').digest();
}

/** The public KEK id: 64 bits of a separate HMAC, so it differs from the verifier. */
export function rootKeyId(root: Buffer): string {
  return `local:${createHmac('sha256', root).update('cryptod/kek/local/id/v1').digest().subarray(0, 8).toString('hex')}`;
}
