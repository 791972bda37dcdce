/**
 * The managed key model: key types, the operations each type serves, and
 * the direction of every operation.
 *
 *   key "orders" (aes256-gcm, policy)
 *     ├─ version 1  decrypt-only  [notBefore, notAfter)   wrapped material
 *     ├─ version 2  active        [notBefore, notAfter)   wrapped material
 *     └─ version 3  active        [notAfter(2), …)        (prefetched: starts later)
 *
 * Direction (design note 4): outbound use (encrypt, sign, mac) produces data
 * and takes the current version; inbound use (decrypt, verify, verify-mac)
 * consumes data that names the version that made it.
 */
import type { KeyVersionState } from '../store/keystore.js';

export type { KeyVersionState } from '../store/keystore.js';

import type { ManagedKeyType } from '../protocol/messages/managed.js';

// The list is part of the protocol (clients name types); what each type does is the key manager's.
export { KEY_TYPES, type ManagedKeyType } from '../protocol/messages/managed.js';

export const KEY_OPS = ['encrypt', 'decrypt', 'sign', 'verify', 'mac', 'verify-mac', 'rewrap', 'export', 'admin', 'datakey', 'datakey-plaintext'] as const;
export type KeyOp = (typeof KEY_OPS)[number];

export type OutboundOp = 'encrypt' | 'sign' | 'mac';
export type InboundOp = 'decrypt' | 'verify' | 'verify-mac';
export const OUTBOUND_OPS: readonly OutboundOp[] = ['encrypt', 'sign', 'mac'];
export const INBOUND_OPS: readonly InboundOp[] = ['decrypt', 'verify', 'verify-mac'];

export type MaterialKind = 'secret' | 'asymmetric';

export interface KeyTypeInfo {
  readonly type: ManagedKeyType;
  readonly kind: MaterialKind;
  /** Length of the secret for secret types. */
  readonly secretBytes: number;
  /** Data operations the type serves (every type also allows `export` and `admin`). */
  readonly ops: readonly KeyOp[];
  /**
   * Outbound uses allowed per version, when the algorithm has a hard bound.
   * AES-GCM with random 96-bit nonces: at most 2^32 invocations per key
   * (NIST SP 800-38D §8.3), so that the probability of a repeated nonce
   * stays below 2^-32; ChaCha20-Poly1305 with random 96-bit nonces alike.
   */
  readonly invocationLimit: number | null;
  /** Whether a derived (epoch) key of this type is allowed; see epoch.ts. */
  readonly derivable: boolean;
}

const CIPHER: readonly KeyOp[] = ['encrypt', 'decrypt', 'rewrap'];
const MAC: readonly KeyOp[] = ['mac', 'verify-mac'];
const SIGN: readonly KeyOp[] = ['sign', 'verify'];

export const GCM_INVOCATION_LIMIT = 2 ** 32;

function info(type: ManagedKeyType, kind: MaterialKind, secretBytes: number, ops: readonly KeyOp[], extra: Partial<KeyTypeInfo> = {}): KeyTypeInfo {
  return Object.freeze({ type, kind, secretBytes, ops, invocationLimit: null, derivable: kind === 'secret', ...extra });
}

const TYPES: ReadonlyMap<ManagedKeyType, KeyTypeInfo> = new Map([
  // Derived epoch keys cannot be AES-GCM: nothing stores a per-epoch counter
  // that could hold the 2^32 bound across daemons.
  ['aes256-gcm', info('aes256-gcm', 'secret', 32, CIPHER, { invocationLimit: GCM_INVOCATION_LIMIT, derivable: false })],
  // The same random 96-bit nonces as AES-GCM, so the same 2^32 bound: a
  // repeated nonce leaks the XOR of two plaintexts and the Poly1305 key
  // (forgeries). Stored versions are counted like AES-GCM; derived epoch
  // versions, which have no stored counter, use per-message keys instead
  // (managed-crypto.ts, docs/formats.md).
  ['chacha20-poly1305', info('chacha20-poly1305', 'secret', 32, CIPHER, { invocationLimit: GCM_INVOCATION_LIMIT })],
  // RFC 2104 §3: keys shorter than the hash output weaken the MAC; longer
  // ones add nothing. So one output length each.
  ['hmac-sha256', info('hmac-sha256', 'secret', 32, MAC)],
  ['hmac-sha512', info('hmac-sha512', 'secret', 64, MAC)],
  ['ed25519', info('ed25519', 'asymmetric', 0, SIGN)],
  ['ecdsa-p256', info('ecdsa-p256', 'asymmetric', 0, SIGN)],
  ['ecdsa-p384', info('ecdsa-p384', 'asymmetric', 0, SIGN)],
  ['rsa-pss-3072', info('rsa-pss-3072', 'asymmetric', 0, SIGN)],
  // RFC 5649 key wrap with padding: "encrypt" wraps a key, "decrypt" unwraps it.
  // As a KEK it also wraps data keys (src/ops/datakeys.ts): `datakey` to generate, use and
  // rewrap them wrapped, `datakey-plaintext` besides to receive a new one in plaintext.
  ['aes256-kwp', info('aes256-kwp', 'secret', 32, [...CIPHER, 'datakey', 'datakey-plaintext'])],
  ['ecdsa-p521', info('ecdsa-p521', 'asymmetric', 0, SIGN)],
  // RSASSA-PKCS1-v1_5 with SHA-256: JWT's RS256, for verifiers that know nothing newer.
  ['rsa-pkcs1-3072', info('rsa-pkcs1-3072', 'asymmetric', 0, SIGN)],
  // The transfer key of key backups (src/keys/backup.ts): another daemon
  // encrypts a backup to its public key; only RESTORE, an administrator's
  // operation, uses the private half. No client data operation applies.
  ['x25519', info('x25519', 'asymmetric', 0, [])],
]);

export function isKeyType(t: unknown): t is ManagedKeyType {
  return typeof t === 'string' && TYPES.has(t as ManagedKeyType);
}

export function keyTypeInfo(t: ManagedKeyType): KeyTypeInfo {
  const i = TYPES.get(t);
  if (i === undefined) throw new TypeError(`unknown key type ${t}`);
  return i;
}

export function isKeyOp(op: unknown): op is KeyOp {
  return typeof op === 'string' && (KEY_OPS as readonly string[]).includes(op);
}

/** Whether `op` makes sense for a key of type `t` at all (independent of policy). */
export function typeAllows(t: ManagedKeyType, op: KeyOp): boolean {
  return op === 'export' || op === 'admin' || keyTypeInfo(t).ops.includes(op);
}

export function isOutbound(op: KeyOp): op is OutboundOp {
  return (OUTBOUND_OPS as readonly string[]).includes(op);
}

export function isInbound(op: KeyOp): op is InboundOp {
  return (INBOUND_OPS as readonly string[]).includes(op);
}

/**
 * What selection needs to know about a version: its number, state and
 * validity window (epoch milliseconds, `notAfter` exclusive, `null` = open).
 * Both `KeyVersionRecord` (stored) and derived epoch versions have this shape.
 */
export interface VersionInfo {
  readonly version: number;
  readonly state: KeyVersionState;
  readonly notBefore: number;
  readonly notAfter: number | null;
}

/** ISO-8601 for messages; windows are shown to people, not compared as text. */
export function iso(t: number): string {
  return new Date(t).toISOString();
}
