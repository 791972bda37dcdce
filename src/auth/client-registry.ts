/**
 * The registry of token clients: the one persistence interface for
 * `cryptod client add|revoke|list` and for token checks at HELLO. It is
 * separate from the Keystore interface (keys and clients change for different
 * reasons and are read by different code) but the SQLite backend keeps both
 * in the same database file (src/store/sqlite/client-registry.ts).
 *
 *   name ─▶ (token id, SHA-256(token), uid restriction?, created, revoked?)
 *
 * A name has at most one *active* (not revoked) token. Revoked rows stay, so
 * `client list` shows the history; adding a revoked name again issues a new
 * token under a new id, and connections made with the old one stay cut.
 *
 * Every method is async for the same reason as the keystore's: a networked
 * backend cannot answer synchronously.
 */
import { InvalidArgumentError } from '../protocol/errors.js';

/** What `client list` shows: never the token, nor any part of it. */
export interface ClientRecord {
  readonly name: string;
  /** The peer uid the token is restricted to, or null for any uid (and TCP). */
  readonly uid: number | null;
  /** Epoch milliseconds. */
  readonly createdAt: number;
  /** Epoch milliseconds, or null while the token is valid. */
  readonly revokedAt: number | null;
}

/** A token that verified: who it names. */
export interface VerifiedClient {
  readonly name: string;
  readonly uid: number | null;
  /** The token's non-secret lookup id: lets the daemon re-check live connections after a revocation. */
  readonly tokenId: string;
}

export interface ClientRegistry {
  /**
   * Issue a token for `name`. The token is returned once and stored only as a
   * hash.
   * @throws InvalidArgumentError when the name is malformed, the uid out of
   *   range, or `name` already has an active token (revoke it first).
   */
  add(name: string, options?: { uid?: number }): Promise<{ token: string; client: ClientRecord }>;
  /**
   * Revoke the active token of `name`; new HELLOs with it fail at once.
   * @throws NotFoundError when `name` has no active token.
   */
  revoke(name: string): Promise<ClientRecord>;
  /** Every client, active and revoked, oldest first. */
  list(): Promise<ClientRecord[]>;
  /** The client a token names, or null when it is malformed, unknown or revoked. */
  verify(token: string): Promise<VerifiedClient | null>;
  /** The subset of `tokenIds` that are still valid (not revoked). */
  stillValid(tokenIds: readonly string[]): Promise<Set<string>>;
  close(): Promise<void>;
}

/** Client names follow the HELLO client-name rule (docs/protocol.md §4). */
export const CLIENT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function assertClientName(name: unknown): string {
  if (typeof name !== 'string' || !CLIENT_NAME.test(name)) {
    throw new InvalidArgumentError(
      `expected a client name of 1-64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit, got ${describe(name)}`,
      { detail: { field: 'name' } },
    );
  }
  return name;
}

export function assertUid(uid: unknown): number {
  if (typeof uid !== 'number' || !Number.isInteger(uid) || uid < 0 || uid > 0xfffffffe) {
    throw new InvalidArgumentError(`expected a uid from 0 to 4294967294, got ${describe(uid)}`, { detail: { field: 'uid' } });
  }
  return uid;
}

function describe(v: unknown): string {
  if (typeof v === 'string') return v.length > 64 ? `a ${v.length}-character string` : JSON.stringify(v);
  if (typeof v === 'number') return String(v);
  return typeof v;
}
