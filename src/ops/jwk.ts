/**
 * JSON Web Key members common to every key type (RFC 7517 §4) and the checks
 * WebCrypto runs on them at import (W3C WebCrypto §14.3.9 importKey, "jwk"
 * steps of each algorithm): kty, use, key_ops, ext, alg.
 *
 * Errors name the member and what was expected. They quote a public member
 * (kty, alg, crv, use, key_ops) only when its value is a name JOSE defines
 * ({@link quote}), never `k`, `d` or the private RSA members.
 */
import type { CborValue } from '../protocol/cbor.js';
import { DataError } from '../protocol/errors.js';
import { asArgs, kindOf, type Args } from './args.js';
import { KEY_USAGES, type KeyUsage } from './key.js';

export type Jwk = Args;
export type JwkOut = { [member: string]: CborValue };

export function asJwk(v: CborValue): Jwk {
  if (v === null || typeof v !== 'object' || v instanceof Uint8Array || Array.isArray(v)) {
    throw new DataError(`expected the JWK to be a map (JSON object), got ${kindOf(v)}`, { detail: { field: 'keyData' } });
  }
  return asArgs(v);
}

/**
 * Names a JWK's public members may carry (RFC 7518 §3.1 alg, §6.1 kty, §6.2.1.1
 * and RFC 8037 crv, RFC 7517 use; WebCrypto's key_ops and its 'HS1'/'RS1'…).
 */
const JOSE_NAMES: ReadonlySet<string> = new Set([
  ...['oct', 'RSA', 'EC', 'OKP', 'sig', 'enc'],
  ...['P-256', 'P-384', 'P-521', 'secp256k1', 'Ed25519', 'Ed448', 'X25519', 'X448'],
  ...['HS1', 'HS256', 'HS384', 'HS512', 'RS1', 'RS256', 'RS384', 'RS512', 'PS1', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'],
  ...['A128GCM', 'A192GCM', 'A256GCM', 'A128KW', 'A192KW', 'A256KW', 'A128CTR', 'A192CTR', 'A256CTR', 'A128CBC', 'A192CBC', 'A256CBC'],
  ...['A128GCMKW', 'A192GCMKW', 'A256GCMKW', 'RSA-OAEP', 'RSA-OAEP-256', 'RSA-OAEP-384', 'RSA-OAEP-512', 'RSA1_5', 'ECDH-ES', 'dir', 'C20P', 'XC20P'],
  ...KEY_USAGES,
]);

/**
 * A member's value for an error message: quoted when it is a name JOSE
 * defines, else only its length. A JWK arrives with its key next to these
 * members; a value that is no known name may be key bytes in the wrong
 * member, and an error message must never echo them.
 */
export function quote(s: string): string {
  return JOSE_NAMES.has(s) ? `'${s}'` : `an unrecognized value of ${s.length} characters`;
}

/** A required text member. */
export function jwkText(jwk: Jwk, member: string): string {
  const v = jwk[member];
  if (typeof v !== 'string') throw new DataError(`expected JWK member '${member}' to be text, got ${kindOf(v)}`, { detail: { member } });
  return v;
}

const B64URL = /^[A-Za-z0-9_-]*$/;

/**
 * Strict base64url without padding (RFC 7515 §2, RFC 4648 §5), decoded into
 * memory the daemon owns. Buffer.from(…, 'base64url') alone would skip
 * characters outside the alphabet.
 */
export function jwkBytes(jwk: Jwk, member: string): Buffer {
  const s = jwkText(jwk, member);
  if (!B64URL.test(s) || s.length % 4 === 1) {
    throw new DataError(`expected JWK member '${member}' to be base64url without padding`, { detail: { member } });
  }
  const decoded = Buffer.from(s, 'base64url');
  const out = Buffer.alloc(decoded.length);
  decoded.copy(out);
  decoded.fill(0);
  return out;
}

export function b64url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}

export interface JwkExpectations {
  kty: string;
  /** The `use` value this key type has: 'sig' for signature and MAC keys, 'enc' otherwise. */
  use: 'sig' | 'enc';
  usages: readonly KeyUsage[];
  extractable: boolean;
  /** `alg` values accepted when the member is present; undefined = not checked (X25519, ECDH). */
  alg?: readonly string[];
}

/** The checks every JWK import runs, in WebCrypto's order. */
export function checkJwk(jwk: Jwk, want: JwkExpectations): void {
  const kty = jwkText(jwk, 'kty');
  if (kty !== want.kty) throw new DataError(`expected JWK 'kty' to be '${want.kty}', got ${quote(kty)}`, { detail: { member: 'kty', expected: want.kty } });

  const use = jwk.use;
  if (use !== undefined && want.usages.length > 0) {
    if (typeof use !== 'string' || use !== want.use) {
      throw new DataError(`expected JWK 'use' to be '${want.use}' for this key, got ${typeof use === 'string' ? quote(use) : kindOf(use)}`, {
        detail: { member: 'use', expected: want.use },
      });
    }
  }

  const ops = jwk.key_ops;
  if (ops !== undefined) {
    if (!Array.isArray(ops)) throw new DataError(`expected JWK 'key_ops' to be an array of text, got ${kindOf(ops)}`, { detail: { member: 'key_ops' } });
    const seen = new Set<string>();
    for (const op of ops) {
      if (typeof op !== 'string') throw new DataError(`expected JWK 'key_ops[]' to be text, got ${kindOf(op)}`, { detail: { member: 'key_ops' } });
      // RFC 7517 §4.3: duplicate key operation values MUST NOT be present.
      if (seen.has(op)) throw new DataError(`JWK 'key_ops' lists ${quote(op)} twice`, { detail: { member: 'key_ops' } });
      seen.add(op);
    }
    for (const u of want.usages) {
      if (!seen.has(u)) throw new DataError(`the requested usage '${u}' is not in the JWK's 'key_ops'`, { detail: { member: 'key_ops', usage: u } });
    }
  }

  const ext = jwk.ext;
  if (ext !== undefined) {
    if (typeof ext !== 'boolean') throw new DataError(`expected JWK 'ext' to be a boolean, got ${kindOf(ext)}`, { detail: { member: 'ext' } });
    if (!ext && want.extractable) throw new DataError("the JWK says 'ext': false; it cannot be imported as extractable", { detail: { member: 'ext' } });
  }

  const alg = jwk.alg;
  if (alg !== undefined && want.alg !== undefined) {
    if (typeof alg !== 'string' || !want.alg.includes(alg)) {
      throw new DataError(`expected JWK 'alg' to be ${want.alg.map((a) => `'${a}'`).join(' or ')}, got ${typeof alg === 'string' ? quote(alg) : kindOf(alg)}`, {
        detail: { member: 'alg', expected: want.alg.join(' or ') },
      });
    }
  }
}

/** The members WebCrypto adds to every exported JWK. */
export function jwkTail(usages: readonly KeyUsage[], extractable: boolean): JwkOut {
  return { key_ops: KEY_USAGES.filter((u) => usages.includes(u)), ext: extractable };
}
