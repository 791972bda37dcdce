/**
 * The KEK side of the binding between a root KEK and its keystore: the file
 * `kek.binding` beside `root.key` in the data directory.
 *
 *   keystore.sqlite meta                    data directory
 *   ─────────────────────────────────       ─────────────────────────────────
 *   store.id   "9f…" (128 random bits) ◀──▶ kek.binding { storeId: "9f…",
 *   kek.local  { kekId, verifier, … }  ◀──▶               kekId, check: verifier }
 *                                           root.key (or the passphrase)
 *
 * Why both sides: the store's `kek.local` verifier already proves that a root
 * key is the one its blobs are wrapped with, but nothing on the KEK side
 * remembered that a store existed. Delete or truncate keystore.sqlite and the
 * next start saw "no record: first start" and began a new, empty store under
 * the old root.key — every managed key gone without a word. With the binding
 * file a missing store is a refusal, and a keystore from somewhere else
 * (another store id) is one too. Format: docs/formats.md "Keystore binding".
 *
 * The check value is the same HMAC as the store's verifier (root-key.ts): it
 * reveals nothing about the root key, and the file sits beside root.key
 * anyway. It ties the binding to one KEK, so a binding copied in from another
 * directory is noticed.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../protocol/errors.js';
import { checkPrivateFile, fsyncDir, PRIVATE_FILE_MODE } from '../store/private-files.js';

export const BINDING_FILE = 'kek.binding';
/** Keystore meta entry holding the store id. */
export const STORE_ID_META_KEY = 'store.id';

const STORE_ID_PATTERN = /^[0-9a-f]{32}$/;
const MAX_BINDING_BYTES = 4096;

export interface KekBinding {
  /** The keystore this KEK is bound to (its `store.id` meta entry). */
  storeId: string;
  /** Public id of the KEK (`local:…`), for messages. */
  kekId: string;
  source: 'file' | 'passphrase';
  /** The KEK's verifier (root-key.ts rootKeyVerifier), 32 bytes. */
  check: Buffer;
}

/** A fresh random store id: 128 bits, lower-case hex. */
export function newStoreId(): string {
  return randomBytes(16).toString('hex');
}

export function isStoreId(value: unknown): value is string {
  return typeof value === 'string' && STORE_ID_PATTERN.test(value);
}

/** Read `file`; undefined when it does not exist. A damaged file is a ConfigError naming it. */
export function readBindingFile(file: string): KekBinding | undefined {
  if (!fs.existsSync(file)) return undefined;
  const st = checkPrivateFile(file);
  const bad = (why: string): never => {
    throw new ConfigError(
      `${file} is damaged (${why}); restore it from the backup taken with root.key and keystore.sqlite, or remove it to bind the keystore again`,
      { detail: { path: file } },
    );
  };
  if (st.size > MAX_BINDING_BYTES) return bad(`${st.size} bytes, expected at most ${MAX_BINDING_BYTES}`);
  let raw: { v?: unknown; storeId?: unknown; kekId?: unknown; source?: unknown; check?: unknown };
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8')) as typeof raw;
  } catch {
    return bad('not JSON');
  }
  if (raw === null || typeof raw !== 'object') return bad('not a JSON object');
  if (raw.v !== 1) return bad(`unknown version ${String(raw.v)}`);
  if (!isStoreId(raw.storeId)) return bad('storeId is not 32 hex digits');
  if (typeof raw.kekId !== 'string') return bad('missing kekId');
  if (raw.source !== 'file' && raw.source !== 'passphrase') return bad('unknown source');
  const check = typeof raw.check === 'string' ? Buffer.from(raw.check, 'base64') : Buffer.alloc(0);
  if (check.length !== 32) return bad('check is not 32 bytes');
  return { storeId: raw.storeId, kekId: raw.kekId, source: raw.source, check };
}

/**
 * Write `file` atomically (temporary file, fsync, rename, fsync of the
 * directory): a crash leaves the old binding or the new one, never half.
 * Several daemons binding the same store write the same content, so the last
 * rename winning is harmless.
 */
export function writeBindingFile(file: string, b: KekBinding): void {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${BINDING_FILE}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const text = `${JSON.stringify({ v: 1, storeId: b.storeId, kekId: b.kekId, source: b.source, check: b.check.toString('base64') })}\n`;
  try {
    const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, PRIVATE_FILE_MODE);
    try {
      fs.fchmodSync(fd, PRIVATE_FILE_MODE);
      fs.writeSync(fd, text);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
    fsyncDir(dir);
  } catch (cause) {
    fs.rmSync(tmp, { force: true });
    throw new ConfigError(`cannot write the keystore binding ${file}: ${(cause as Error).message}`, { cause, detail: { path: file } });
  }
}
