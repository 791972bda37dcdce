/**
 * Reading and writing Vault's field values: base64 inputs, the
 * `vault:v<N>:<base64>` outputs, key types, hash names, and ECDSA signature
 * encodings (Vault's `asn1` is DER, `jws` is r‖s; cryptod's managed
 * signatures carry r‖s, IEEE P1363).
 */
import type { ManagedKeyType } from '../protocol/messages/managed.js';
import { badRequest } from './vault-reply.js';

/** Vault's type names for cryptod's managed key types, and back. */
export const VAULT_TYPES: Readonly<Record<string, ManagedKeyType>> = {
  'aes256-gcm96': 'aes256-gcm',
  'chacha20-poly1305': 'chacha20-poly1305',
  ed25519: 'ed25519',
  'ecdsa-p256': 'ecdsa-p256',
  'ecdsa-p384': 'ecdsa-p384',
  'rsa-3072': 'rsa-pss-3072',
  hmac: 'hmac-sha256',
};

export function vaultTypeOf(type: ManagedKeyType): string {
  switch (type) {
    case 'aes256-gcm':
      return 'aes256-gcm96';
    case 'rsa-pss-3072':
      return 'rsa-3072';
    case 'hmac-sha256':
    case 'hmac-sha512':
      return 'hmac';
    default:
      return type;
  }
}

/** Vault's hash names → the DIGEST algorithm name and the managed types that use it. */
export const HASHES: Readonly<Record<string, string>> = {
  sha1: 'SHA-1',
  'sha2-256': 'SHA-256',
  'sha2-384': 'SHA-384',
  'sha2-512': 'SHA-512',
};

/** The hash each signing or MAC type signs with (fixed per type in cryptod). */
export function hashOfType(type: ManagedKeyType): string | null {
  switch (type) {
    case 'ecdsa-p256':
    case 'rsa-pss-3072':
    case 'hmac-sha256':
      return 'sha2-256';
    case 'ecdsa-p384':
      return 'sha2-384';
    case 'hmac-sha512':
      return 'sha2-512';
    default:
      return null;
  }
}

/** A JSON field that must be a string, or absent. */
export function optString(body: Record<string, unknown>, field: string): string | undefined {
  const v = body[field];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw badRequest(`'${field}' must be a string, got ${kindOf(v)}`);
  return v;
}

export function reqString(body: Record<string, unknown>, field: string, what: string): string {
  const v = optString(body, field);
  if (v === undefined) throw badRequest(`missing '${field}': ${what}`);
  return v;
}

/** A boolean field: JSON true/false, or the strings Vault's field parser accepts. */
export function optBool(body: Record<string, unknown>, field: string): boolean | undefined {
  const v = body[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'boolean') return v;
  if (v === 'true' || v === '1' || v === 1) return true;
  if (v === 'false' || v === '0' || v === 0) return false;
  throw badRequest(`'${field}' must be a boolean, got ${kindOf(v)}`);
}

/** A non-negative integer field (a number or a numeric string, as Vault accepts). */
export function optInt(body: Record<string, unknown>, field: string): number | undefined {
  const v = body[field];
  if (v === undefined || v === null || v === '') return undefined;
  const n = typeof v === 'string' && /^[0-9]+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw badRequest(`'${field}' must be a non-negative integer, got ${kindOf(v)}`);
  return n;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Standard base64 (Vault's encoding of every byte field). */
export function fromBase64(value: string, field: string): Buffer {
  const s = value.trim();
  if (s.length % 4 !== 0 || !BASE64.test(s)) throw badRequest(`'${field}' must be standard base64 (A-Z a-z 0-9 + /, padded with =), got ${s.length} characters that are not`);
  return Buffer.from(s, 'base64');
}

/** `vault:v<N>:<payload>` → N and the payload. */
export function parseVaultValue(value: string, field: string): { version: number; payload: string } {
  const m = /^vault:v([1-9][0-9]{0,9}):(.*)$/s.exec(value);
  if (m === null) throw badRequest(`'${field}' must look like vault:v<N>:<base64>, as encrypt, sign and hmac return it`);
  return { version: Number(m[1]), payload: m[2]! };
}

export function vaultValue(version: number, payload: Buffer, encoding: 'base64' | 'base64url' = 'base64'): string {
  return `vault:v${version}:${payload.toString(encoding)}`;
}

export function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return v.length > 40 ? `a ${v.length}-character string` : JSON.stringify(v);
  return typeof v === 'object' ? 'an object' : `${typeof v} ${String(v)}`;
}

// ── ECDSA signature encodings ──────────────────────────────────────────────

/** r‖s (IEEE P1363) → DER SEQUENCE { INTEGER r, INTEGER s } (RFC 3279 §2.2.3). */
export function p1363ToDer(sig: Uint8Array): Buffer {
  const half = sig.length / 2;
  const int = (b: Uint8Array): Buffer => {
    let i = 0;
    while (i < b.length - 1 && b[i] === 0) i++;
    const v = Buffer.from(b.subarray(i));
    return (v[0]! & 0x80) !== 0 ? Buffer.concat([Buffer.from([0x02, v.length + 1, 0]), v]) : Buffer.concat([Buffer.from([0x02, v.length]), v]);
  };
  const body = Buffer.concat([int(sig.subarray(0, half)), int(sig.subarray(half))]);
  const len = body.length < 0x80 ? Buffer.from([body.length]) : Buffer.from([0x81, body.length]);
  return Buffer.concat([Buffer.from([0x30]), len, body]);
}

/** DER → r‖s with each half `size` bytes; null when it is not such a DER signature. */
export function derToP1363(der: Uint8Array, size: number): Buffer | null {
  let at = 0;
  const byte = (): number => {
    if (at >= der.length) throw new RangeError('short');
    return der[at++]!;
  };
  try {
    if (byte() !== 0x30) return null;
    let len = byte();
    if (len === 0x81) len = byte();
    if (at + len !== der.length) return null;
    const out = Buffer.alloc(size * 2);
    for (let k = 0; k < 2; k++) {
      if (byte() !== 0x02) return null;
      const n = byte();
      if (n === 0 || at + n > der.length) return null;
      let v = der.subarray(at, at + n);
      at += n;
      while (v.length > 1 && v[0] === 0) v = v.subarray(1);
      if (v.length > size) return null;
      out.set(v, k * size + size - v.length);
    }
    return at === der.length ? out : null;
  } catch {
    return null;
  }
}
