/**
 * Self-describing outputs of managed keys (docs/formats.md "Managed-key
 * ciphertexts, signatures and MACs"). Every output starts with a header that
 * names the key and the version that made it, so an inbound operation picks
 * the version from the data and rotation never breaks old data.
 *
 *   offset  size  field
 *   0       2     magic "cm" (0x63 0x6d)
 *   2       1     format version (1)
 *   3       1     kind: 1 ciphertext, 2 signature, 3 MAC
 *   4       1     algorithm id (ALG_IDS)
 *   5       2     key name length n (u16 big-endian, 1..256)
 *   7       n     key name (UTF-8)
 *   7+n     4     key version (u32 big-endian)
 *   11+n    …     body: nonce ‖ ciphertext ‖ tag, or the signature, or the MAC tag
 *
 * Why the name and not a short id: the name is what every daemon sharing the
 * keystore agrees on without a mapping table, it survives a restore into
 * another store, and a header read by a person (or by `cryptod decrypt`
 * without --key) says which key to ask for. The cost is n bytes per message.
 *
 * Ciphertexts authenticate the header: the AEAD's additional data is
 * header ‖ caller AAD. The header is self-delimiting (length-prefixed name,
 * fixed-size rest), so the concatenation is unambiguous.
 *
 * Format version 2 (ciphertexts only) marks constructions that derive a key
 * per output (managed-crypto.ts): aes256-kwp, whose RFC 5649 wrap has no
 * additional data, wraps under a key derived from the version key and the
 * header, so the header is bound all the same; derived chacha20-poly1305
 * epoch keys, which have no stored encryption counter, encrypt under a key
 * derived from a random 128-bit salt, so random nonces cannot collide.
 * Version 1 ciphertexts of those types (written before) still decrypt.
 * Everything else is written as version 1. Signatures and MACs
 * cover the message alone (a standard Ed25519/ECDSA/RSA-PSS signature or
 * HMAC that outside verifiers can check after stripping the header); a forged
 * header can only name another version, whose key then fails to verify.
 */
import { DataError, DecryptError } from '../protocol/errors.js';
import type { ManagedKeyType } from './messages/managed.js';

export const FORMAT_MAGIC = Buffer.from([0x63, 0x6d]);
export const FORMAT_VERSION = 1;
/** Per-output keys (see the header); ciphertexts of aes256-kwp and of derived chacha20-poly1305 keys. */
export const FORMAT_VERSION_DERIVED = 2;
export type FormatVersion = typeof FORMAT_VERSION | typeof FORMAT_VERSION_DERIVED;

export type OutputKind = 'ciphertext' | 'signature' | 'mac';
const KIND_IDS: Record<OutputKind, number> = { ciphertext: 1, signature: 2, mac: 3 };

/** Stable algorithm ids; never reused. */
export const ALG_IDS: Readonly<Record<ManagedKeyType, number>> = {
  'aes256-gcm': 1,
  'chacha20-poly1305': 2,
  'hmac-sha256': 3,
  'hmac-sha512': 4,
  ed25519: 5,
  'ecdsa-p256': 6,
  'ecdsa-p384': 7,
  'rsa-pss-3072': 8,
  'aes256-kwp': 9,
  'ecdsa-p521': 10,
  'rsa-pkcs1-3072': 11,
  // A transfer key makes no managed outputs; its id only keeps the table total.
  // 32, not the next number, leaves 10.. to signing and encryption types.
  x25519: 32,
};
const BY_ID = new Map<number, ManagedKeyType>(Object.entries(ALG_IDS).map(([t, id]) => [id, t as ManagedKeyType]));

const FIXED = 2 + 1 + 1 + 1 + 2 + 4;
const MAX_NAME = 256;

export interface Header {
  /** 1, or 2 for a ciphertext under a per-output key (see the header). */
  readonly format: FormatVersion;
  readonly kind: OutputKind;
  readonly type: ManagedKeyType;
  readonly key: string;
  readonly version: number;
  /** The header's bytes, as they appear in the output (the AAD prefix of a ciphertext). */
  readonly bytes: Buffer;
}

export function encodeHeader(kind: OutputKind, type: ManagedKeyType, key: string, version: number, format: FormatVersion = FORMAT_VERSION): Buffer {
  const name = Buffer.from(key, 'utf8');
  const out = Buffer.alloc(FIXED + name.length);
  FORMAT_MAGIC.copy(out, 0);
  out[2] = format;
  out[3] = KIND_IDS[kind];
  out[4] = ALG_IDS[type];
  out.writeUInt16BE(name.length, 5);
  name.copy(out, 7);
  out.writeUInt32BE(version, 7 + name.length);
  return out;
}

/**
 * Parse the header of `data` made for `kind`. Anything malformed is a
 * DecryptError for ciphertexts (as for any inauthentic ciphertext) and a
 * DataError for signatures and MACs (verify answers false only for a
 * well-formed value that does not verify).
 */
export function parseHeader(data: Uint8Array, kind: OutputKind): { header: Header; body: Buffer } {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const what = kind === 'ciphertext' ? 'ciphertext' : kind === 'signature' ? 'signature' : 'MAC';
  const fail = (why: string): never => {
    const msg = `expected a managed-key ${what} (docs/formats.md): ${why}`;
    throw kind === 'ciphertext' ? new DecryptError(msg) : new DataError(msg);
  };
  if (buf.length < FIXED + 1) fail(`${buf.length} bytes is shorter than the smallest header`);
  if (buf[0] !== FORMAT_MAGIC[0] || buf[1] !== FORMAT_MAGIC[1]) fail('it does not start with the magic "cm"');
  const format = buf[2];
  if (format !== FORMAT_VERSION && format !== FORMAT_VERSION_DERIVED) {
    fail(`format version ${format!} is not supported (this daemon reads versions ${FORMAT_VERSION} and ${FORMAT_VERSION_DERIVED})`);
  }
  if (buf[3] !== KIND_IDS[kind]) fail(`it is a ${Object.entries(KIND_IDS).find(([, v]) => v === buf[3])?.[0] ?? `kind ${buf[3]!}`} value`);
  const type = BY_ID.get(buf[4]!);
  if (type === undefined) fail(`algorithm id ${buf[4]!} is unknown`);
  if (format === FORMAT_VERSION_DERIVED && (kind !== 'ciphertext' || (type !== 'aes256-kwp' && type !== 'chacha20-poly1305'))) {
    fail(`format version 2 exists only for aes256-kwp and chacha20-poly1305 ciphertexts`);
  }
  const n = buf.readUInt16BE(5);
  if (n === 0 || n > MAX_NAME || buf.length < FIXED + n) fail(`the key name length ${n} does not fit`);
  const key = buf.toString('utf8', 7, 7 + n);
  const version = buf.readUInt32BE(7 + n);
  const end = FIXED + n;
  return { header: { format: format as FormatVersion, kind, type: type!, key, version, bytes: buf.subarray(0, end) }, body: buf.subarray(end) };
}

/** Nonce and tag sizes of the AEADs (RFC 5116 §5.1 AES-GCM with 96-bit nonces; RFC 8439 §2.8). */
export const AEAD_NONCE = 12;
export const AEAD_TAG = 16;
/** Random salt of a per-message key (format version 2, derived chacha20-poly1305). */
export const MESSAGE_SALT = 16;
