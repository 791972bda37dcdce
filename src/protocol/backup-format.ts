/**
 * The key backup file (docs/formats.md "Key backups"): one managed key, every
 * version, encrypted to the receiving daemon's X25519 transfer key and signed
 * by an Ed25519 managed key of the sending daemon. Pure: encodes and parses
 * the framing; the cryptography is src/keys/backup.ts.
 *
 *   offset      size  field
 *   0           4     magic "cmbk" (0x63 0x6d 0x62 0x6b)
 *   4           1     format version (1)
 *   5           1     suite (1: X25519, HKDF-SHA256, AES-256-GCM, Ed25519)
 *   6           8     created at, epoch ms (u64 big-endian)
 *   14          2     key name length n (u16 big-endian, 1..256)
 *   16          n     key name (UTF-8)
 *   16+n        32    recipient: SHA-256 of the transfer key's SubjectPublicKeyInfo DER
 *   48+n        32    ephemeral X25519 public key (RFC 7748 u-coordinate)
 *   80+n        32    signer's Ed25519 public key (RFC 8032 encoding)
 *   112+n       2     signing key name length m (1..256)
 *   114+n       m     signing key name (UTF-8)
 *   114+n+m     4     signing key version (u32 big-endian)
 *   118+n+m     4     ciphertext length c (u32 big-endian, tag included)
 *   ─── header ends (the AEAD's additional data) ───
 *   122+n+m     c     AES-256-GCM ciphertext ‖ 16-byte tag
 *   122+n+m+c   64    Ed25519 signature over every byte before it
 *
 * Every length is checked against the bytes there: a file with a byte more
 * or less is refused before any cryptography runs.
 */
import { BackupInvalidError } from './errors.js';

export const BACKUP_MAGIC = Buffer.from('cmbk', 'ascii');
export const BACKUP_FORMAT_VERSION = 1;
export const BACKUP_SUITE_X25519_AES256GCM_ED25519 = 1;
export const BACKUP_SIGNATURE_BYTES = 64;
export const BACKUP_TAG_BYTES = 16;
const MAX_NAME = 256;
const RAW_KEY = 32;

export interface BackupHeader {
  readonly createdAt: number;
  readonly key: string;
  /** SHA-256 of the recipient transfer key's SPKI DER. */
  readonly recipient: Buffer;
  readonly ephemeral: Buffer;
  readonly signer: Buffer;
  readonly signingKey: string;
  readonly signingVersion: number;
}

export interface ParsedBackup {
  readonly header: BackupHeader;
  /** The header's bytes: the AEAD's additional data. */
  readonly headerBytes: Buffer;
  readonly ciphertext: Buffer;
  /** Everything the signature covers. */
  readonly signed: Buffer;
  readonly signature: Buffer;
}

/** The header for `h` and a ciphertext of `ciphertextLength` bytes. */
export function encodeBackupHeader(h: BackupHeader, ciphertextLength: number): Buffer {
  const name = Buffer.from(h.key, 'utf8');
  const signing = Buffer.from(h.signingKey, 'utf8');
  if (name.length === 0 || name.length > MAX_NAME || signing.length === 0 || signing.length > MAX_NAME) throw new RangeError('backup: name length out of range');
  const out = Buffer.alloc(122 + name.length + signing.length);
  let at = BACKUP_MAGIC.copy(out, 0);
  out[at++] = BACKUP_FORMAT_VERSION;
  out[at++] = BACKUP_SUITE_X25519_AES256GCM_ED25519;
  out.writeBigUInt64BE(BigInt(h.createdAt), at);
  at += 8;
  at = out.writeUInt16BE(name.length, at);
  at += name.copy(out, at);
  for (const raw of [h.recipient, h.ephemeral, h.signer]) {
    if (raw.length !== RAW_KEY) throw new RangeError('backup: expected 32-byte fields');
    at += raw.copy(out, at);
  }
  at = out.writeUInt16BE(signing.length, at);
  at += signing.copy(out, at);
  at = out.writeUInt32BE(h.signingVersion, at);
  out.writeUInt32BE(ciphertextLength, at);
  return out;
}

/** Split a backup file into its parts; anything malformed is CRYPTOD_ERR_BACKUP_INVALID naming what. */
export function parseBackup(file: Uint8Array): ParsedBackup {
  const buf = Buffer.from(file.buffer, file.byteOffset, file.byteLength);
  const fail = (why: string): never => {
    throw new BackupInvalidError(`expected a cryptod key backup (docs/formats.md "Key backups"): ${why}`);
  };
  let at = 0;
  const need = (n: number, what: string): number => {
    if (buf.length - at < n) fail(`the file ends inside the ${what}`);
    const start = at;
    at += n;
    return start;
  };
  need(6, 'fixed header');
  if (!buf.subarray(0, 4).equals(BACKUP_MAGIC)) fail('it does not start with the magic "cmbk"');
  if (buf[4] !== BACKUP_FORMAT_VERSION) fail(`format version ${buf[4]!} is not supported (this daemon reads version ${BACKUP_FORMAT_VERSION})`);
  if (buf[5] !== BACKUP_SUITE_X25519_AES256GCM_ED25519) fail(`suite ${buf[5]!} is not supported (this daemon reads suite 1)`);
  const createdAt = Number(buf.readBigUInt64BE(need(8, 'creation time')));
  if (!Number.isSafeInteger(createdAt)) fail('the creation time is out of range');
  const n = buf.readUInt16BE(need(2, 'key name length'));
  if (n === 0 || n > MAX_NAME) fail(`key name length ${n} is not in 1..${MAX_NAME}`);
  const key = text(buf.subarray(need(n, 'key name'), at), fail);
  const recipient = Buffer.from(buf.subarray(need(RAW_KEY, 'recipient'), at));
  const ephemeral = Buffer.from(buf.subarray(need(RAW_KEY, 'ephemeral key'), at));
  const signer = Buffer.from(buf.subarray(need(RAW_KEY, 'signer key'), at));
  const m = buf.readUInt16BE(need(2, 'signing key name length'));
  if (m === 0 || m > MAX_NAME) fail(`signing key name length ${m} is not in 1..${MAX_NAME}`);
  const signingKey = text(buf.subarray(need(m, 'signing key name'), at), fail);
  const signingVersion = buf.readUInt32BE(need(4, 'signing key version'));
  const c = buf.readUInt32BE(need(4, 'ciphertext length'));
  const headerEnd = at;
  if (c < BACKUP_TAG_BYTES) fail(`ciphertext length ${c} is shorter than the tag`);
  need(c, 'ciphertext');
  need(BACKUP_SIGNATURE_BYTES, 'signature');
  if (at !== buf.length) fail(`${buf.length - at} bytes follow the signature`);
  return {
    header: { createdAt, key, recipient, ephemeral, signer, signingKey, signingVersion },
    headerBytes: buf.subarray(0, headerEnd),
    ciphertext: buf.subarray(headerEnd, headerEnd + c),
    signed: buf.subarray(0, headerEnd + c),
    signature: buf.subarray(headerEnd + c),
  };
}

const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function text(b: Buffer, fail: (why: string) => never): string {
  try {
    return decoder.decode(b);
  } catch {
    return fail('a name is not valid UTF-8');
  }
}
