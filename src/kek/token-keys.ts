/**
 * Managed keys whose versions live in a token (`provider: NAME` on a key):
 * what the key manager needs of them, and the reference it stores instead of
 * material.
 *
 *   create / rotate ─▶ tokens.generate(provider, name, v) ─▶ the token makes the AES-256 key
 *                        └─▶ ref { provider, CKA_ID } ─▶ encodeTokenRef ─▶ root KEK wrap (AAD: name, v) ─▶ keystore
 *   load            ─▶ root KEK unwrap ─▶ decodeTokenRef ─▶ tokens.key(ref): wrap/unwrap computed by the token
 *   trim / destroy  ─▶ keystore forgets the ref ─▶ tokens.destroy(ref): C_DestroyObject
 *
 * Why the reference is wrapped like material: the loader, `keystore check`
 * and `kek rewrap-all` handle it as any other blob, and the wrap's AAD binds
 * it to its key name and version, so a reference copied onto another key
 * does not make that key use this token object.
 *
 * Reference encoding (the plaintext inside the wrap; docs/formats.md):
 *
 *   offset  size  field
 *   0       1     0x01 (reference format)
 *   1       1     provider name length P (1..32)
 *   2       P     provider name, ASCII (the `providers:` name)
 *   2+P     1     CKA_ID length I (1..64)
 *   3+P     I     CKA_ID
 */
import { createHash, randomBytes } from 'node:crypto';
import { DataError } from '../protocol/errors.js';
import type { KekProvider } from './provider.js';

export const TOKEN_REF_FORMAT = 0x01;

/** Where one version of a token-held key is: the provider's name and the object's CKA_ID (neither is secret). */
export interface TokenKeyRef {
  readonly provider: string;
  readonly ckaId: Buffer;
}

/** The token-held keys of a daemon: one per configured token provider. */
export interface TokenKeys {
  /** Names of the providers that can hold keys. */
  readonly providers: readonly string[];
  /**
   * Generate version `version` of key `name` in the token of `provider`.
   * @throws KekUnavailableError (reason `not-configured` for an unknown provider, or the token's reason).
   */
  generate(provider: string, name: string, version: number): Promise<TokenKeyRef>;
  /** The version's key as a provider: wrap/unwrap run in the token. Looks nothing up until used. @throws KekUnavailableError `not-configured`. */
  key(ref: TokenKeyRef, name: string, version: number): KekProvider;
  /** C_DestroyObject; false when the token no longer held it. @throws KekUnavailableError when the token is away. */
  destroy(ref: TokenKeyRef, name: string, version: number): Promise<boolean>;
}

/**
 * CKA_LABEL of a version's object: readable, so an administrator can find
 * an orphan (a destroy while the token was away) with pkcs11-tool.
 */
export function tokenKeyLabel(storeId: string, name: string, version: number): string {
  return `cryptod-key:${storeId}:${name}:${version}`;
}

/**
 * CKA_ID of a new version's object: 8 bytes derived from the keystore id,
 * key name and version (objects of one version group together), then 8
 * random bytes, so two daemons of a fleet racing to rotate one key make two
 * objects and the loser destroys only its own.
 */
export function newTokenKeyId(storeId: string, name: string, version: number): Buffer {
  const h = createHash('sha256').update('cryptod/token-key/id/v1\0').update(storeId).update('\0').update(name, 'utf8').update('\0').update(String(version)).digest();
  return Buffer.concat([h.subarray(0, 8), randomBytes(8)]);
}

export function encodeTokenRef(ref: TokenKeyRef): Buffer {
  const p = Buffer.from(ref.provider, 'ascii');
  return Buffer.concat([Buffer.from([TOKEN_REF_FORMAT, p.length]), p, Buffer.from([ref.ckaId.length]), ref.ckaId]);
}

/** @throws DataError when the bytes are not a reference (a damaged or foreign blob). */
export function decodeTokenRef(bytes: Uint8Array, key: string, version: number): TokenKeyRef {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const bad = (): never => {
    throw new DataError(`version ${version} of key '${key}' is held in a token, but its stored reference is not readable (format ${String(b[0])})`, { detail: { key, version } });
  };
  if (b.length < 4 || b[0] !== TOKEN_REF_FORMAT) return bad();
  const p = b[1]!;
  if (p < 1 || p > 32 || b.length < 3 + p) return bad();
  const i = b[2 + p]!;
  if (i < 1 || i > 64 || b.length !== 3 + p + i) return bad();
  return { provider: b.subarray(2, 2 + p).toString('ascii'), ckaId: Buffer.from(b.subarray(3 + p)) };
}
