/**
 * Wrapped data keys and data-key ciphertexts (docs/formats.md "Data keys").
 * Pure: encoding and parsing only; the wrap itself is the KEK's
 * (src/kek/data-key-kek.ts).
 *
 * A wrapped data key names the KEK and the KEK version that wrapped it, so
 * any daemon sharing the keystore can unwrap it and rotation never strands
 * it. Everything before the wrapped bytes is the header, and the header is
 * the AAD of the wrap: altering the KEK name, version, key length or context
 * makes the unwrap fail.
 *
 *   offset    size  field
 *   0         2     magic "dk" (0x64 0x6b)
 *   2         1     format version (1)
 *   3         1     KEK algorithm id (9: aes256-kwp; the ids of managed-format.ts)
 *   4         1     data key length L in bytes (16, 24 or 32)
 *   5         2     KEK name length n (u16 big-endian, 1..256)
 *   7         n     KEK name (UTF-8)
 *   7+n       4     KEK version (u32 big-endian)
 *   11+n      2     context length c (u16 big-endian, 0..1024)
 *   13+n      c     context: the `aad` given to DATAKEY_GENERATE, kept and authenticated
 *   13+n+c    w     the data key wrapped by that KEK version (aes256-kwp: RFC 5649, w = L + 8)
 *
 * A data-key ciphertext (DATAKEY_ENCRYPT):
 *
 *   0         1     format version (1)
 *   1         12    nonce (random)
 *   13        m     AES-GCM ciphertext of the m plaintext bytes (AES-128/192/256 by L)
 *   13+m      16    tag; GCM additional data = format byte ‖ caller's aad
 */
import { DataError, DecryptError } from './errors.js';
import { ALG_IDS } from './managed-format.js';
import type { ManagedKeyType } from './messages/managed.js';

export const DATAKEY_MAGIC = Buffer.from([0x64, 0x6b]);
export const DATAKEY_FORMAT = 1;
export const DATAKEY_LENGTHS = [16, 24, 32] as const;
export const DEFAULT_DATAKEY_LENGTH = 32;
export const MAX_CONTEXT = 1024;
const MAX_NAME = 256;
const FIXED = 2 + 1 + 1 + 1 + 2 + 4 + 2;

export const DATA_FORMAT = 1;
export const DATA_NONCE = 12;
export const DATA_TAG = 16;
export const DATA_OVERHEAD = 1 + DATA_NONCE + DATA_TAG;

export interface WrappedKeyHeader {
  readonly kekType: ManagedKeyType;
  readonly kek: string;
  readonly kekVersion: number;
  readonly length: number;
  readonly context: Buffer;
  /** The header's bytes: the AAD of the wrap. */
  readonly bytes: Buffer;
}

export function isDataKeyLength(n: unknown): n is (typeof DATAKEY_LENGTHS)[number] {
  return (DATAKEY_LENGTHS as readonly unknown[]).includes(n);
}

export function encodeWrappedKeyHeader(kekType: ManagedKeyType, kek: string, kekVersion: number, length: number, context: Uint8Array): Buffer {
  const name = Buffer.from(kek, 'utf8');
  if (name.length === 0 || name.length > MAX_NAME) throw new DataError(`expected a KEK name of 1..${MAX_NAME} bytes, got ${name.length}`);
  if (context.length > MAX_CONTEXT) throw new DataError(`expected a data-key context (aad) of at most ${MAX_CONTEXT} bytes, got ${context.length}`, { detail: { field: 'aad' } });
  const out = Buffer.alloc(FIXED + name.length + context.length);
  DATAKEY_MAGIC.copy(out, 0);
  out[2] = DATAKEY_FORMAT;
  out[3] = ALG_IDS[kekType];
  out[4] = length;
  out.writeUInt16BE(name.length, 5);
  name.copy(out, 7);
  out.writeUInt32BE(kekVersion, 7 + name.length);
  out.writeUInt16BE(context.length, 11 + name.length);
  out.set(context, 13 + name.length);
  return out;
}

const BY_ID = new Map<number, ManagedKeyType>(Object.entries(ALG_IDS).map(([t, id]) => [id, t as ManagedKeyType]));

/** Header and wrapped body of a wrapped data key; anything malformed is CRYPTOD_ERR_DATA naming what was expected. */
export function parseWrappedKey(data: Uint8Array): { header: WrappedKeyHeader; body: Buffer } {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const fail = (why: string): never => {
    throw new DataError(`expected a wrapped data key (docs/formats.md "Data keys"): ${why}`, { detail: { field: 'wrappedKey' } });
  };
  if (buf.length < FIXED + 1) fail(`${buf.length} bytes is shorter than the smallest header`);
  if (buf[0] !== DATAKEY_MAGIC[0] || buf[1] !== DATAKEY_MAGIC[1]) fail('it does not start with the magic "dk"');
  if (buf[2] !== DATAKEY_FORMAT) fail(`format version ${buf[2]!} is not supported (this daemon reads version ${DATAKEY_FORMAT})`);
  const kekType = BY_ID.get(buf[3]!);
  if (kekType === undefined) fail(`KEK algorithm id ${buf[3]!} is unknown`);
  const length = buf[4]!;
  if (!isDataKeyLength(length)) fail(`data key length ${length} is not 16, 24 or 32`);
  const n = buf.readUInt16BE(5);
  if (n === 0 || n > MAX_NAME || buf.length < FIXED + n) fail(`the KEK name length ${n} does not fit`);
  const kek = buf.toString('utf8', 7, 7 + n);
  const kekVersion = buf.readUInt32BE(7 + n);
  const c = buf.readUInt16BE(11 + n);
  if (c > MAX_CONTEXT || buf.length < FIXED + n + c + 1) fail(`the context length ${c} does not fit`);
  const end = FIXED + n + c;
  const header: WrappedKeyHeader = { kekType: kekType!, kek, kekVersion, length, context: buf.subarray(13 + n, end), bytes: buf.subarray(0, end) };
  return { header, body: buf.subarray(end) };
}

/** The three parts of a data-key ciphertext, or DecryptError (as for any inauthentic ciphertext). */
export function parseDataCiphertext(data: Uint8Array): { nonce: Buffer; body: Buffer; tag: Buffer } {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (buf.length < DATA_OVERHEAD) throw new DecryptError(`expected a data-key ciphertext of at least ${DATA_OVERHEAD} bytes, got ${buf.length}`);
  if (buf[0] !== DATA_FORMAT) throw new DecryptError(`expected a data-key ciphertext (format ${DATA_FORMAT}), got format byte ${buf[0]!}`);
  return { nonce: buf.subarray(1, 1 + DATA_NONCE), body: buf.subarray(1 + DATA_NONCE, buf.length - DATA_TAG), tag: buf.subarray(buf.length - DATA_TAG) };
}
