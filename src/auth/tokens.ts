/**
 * Client tokens: bearer secrets for clients that need an identity finer than
 * a uid (several services under one user) or that connect over TCP.
 *
 *     cdt_ A7x0Qm2Pk9Zs … (43 characters: base64url of 32 random bytes)
 *          └── id ──┘     the first 12 characters (72 bits): the row to look up
 *
 * Only SHA-256(token) is stored. A password hash (scrypt, Argon2) exists to
 * slow down guessing a *low-entropy* secret after the hash leaks; a token is
 * 256 bits from the CSPRNG, so inverting one SHA-256 is already a 2^256
 * search, and a deliberately slow hash would only make every HELLO slow and
 * hand clients a lever to burn the daemon's CPU. (Knowing the id part — it is
 * never printed, but it is not compared in constant time — still leaves 184
 * unknown bits.)
 *
 * Lookup goes by the id, which is not the secret; the secret comparison is
 * `crypto.timingSafeEqual` over the two 32-byte digests, so the time a
 * verification takes does not depend on how many leading bytes matched.
 *
 * JavaScript cannot wipe a string: the token the CLI prints and the one a
 * client sends in HELLO exist as strings until the garbage collector reclaims
 * them (README "What JavaScript cannot promise"). The daemon keeps only the
 * digest and never logs a token or puts it in an error.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export const TOKEN_PREFIX = 'cdt_';
/** Random bytes in a token. */
export const TOKEN_BYTES = 32;
/** Characters of the base64url part used as the (non-secret) lookup id. */
export const TOKEN_ID_LENGTH = 12;

const TOKEN_SHAPE = /^cdt_[A-Za-z0-9_-]{43}$/;

/** A freshly issued token; `token` is shown once and never stored. */
export interface IssuedToken {
  readonly token: string;
  readonly id: string;
  /** SHA-256 of the whole token string: what the registry stores. */
  readonly hash: Buffer;
}

/** Make a new token from 32 bytes of the operating system's CSPRNG. */
export function issueToken(): IssuedToken {
  const raw = randomBytes(TOKEN_BYTES);
  const token = `${TOKEN_PREFIX}${raw.toString('base64url')}`;
  raw.fill(0);
  return { token, id: tokenIdOf(token), hash: hashToken(token) };
}

/**
 * The lookup id and digest of a presented token, or null when it does not
 * have the shape of a cryptod token (so a typo or a token of another system
 * fails without touching the registry).
 */
export function parseToken(token: unknown): { id: string; hash: Buffer } | null {
  if (typeof token !== 'string' || !TOKEN_SHAPE.test(token)) return null;
  return { id: tokenIdOf(token), hash: hashToken(token) };
}

/** Whether the two digests are equal, in time independent of where they differ. */
export function digestsMatch(presented: Uint8Array, stored: Uint8Array): boolean {
  // timingSafeEqual throws on a length mismatch; both are 32-byte SHA-256
  // digests unless the stored row is corrupt, and then it is simply no match.
  if (presented.length !== stored.length) return false;
  return timingSafeEqual(presented, stored);
}

/**
 * A digest to compare against when no row has the presented id, so a miss
 * costs the same work as a hit with the wrong secret. (The id is not secret;
 * this only keeps the two paths alike for whoever times them.)
 */
export const DECOY_DIGEST: Buffer = createHash('sha256').update('cryptod: no such token').digest();

function tokenIdOf(token: string): string {
  return token.slice(TOKEN_PREFIX.length, TOKEN_PREFIX.length + TOKEN_ID_LENGTH);
}

function hashToken(token: string): Buffer {
  return createHash('sha256').update(token, 'latin1').digest();
}
