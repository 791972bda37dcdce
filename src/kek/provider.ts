/**
 * Key-encryption-key (KEK) providers: what wraps managed-key material and
 * data keys before they reach the keystore (design note 5). `local` keeps a
 * root key in the data directory; a PKCS#11 provider will keep it in a token,
 * which is why every operation is async.
 */
import { InvalidArgumentError } from '../protocol/errors.js';
import { assertKeyName, assertVersion } from '../store/records.js';

export interface KekProvider {
  /**
   * Identifies the KEK (not the provider type): stored beside every blob it
   * wraps (`KeyVersionRecord.kekId`) so rewrap can find blobs under an old
   * KEK. Derived from the key, never equal to or invertible into it.
   */
  readonly id: string;
  /**
   * Encrypt and authenticate `plaintext`, binding it to `aad` (which is not
   * stored in the blob: the caller supplies the same bytes to unwrap).
   */
  wrap(plaintext: Uint8Array, aad: Uint8Array): Promise<Buffer>;
  /**
   * Reverse of `wrap`. Fails with DecryptError if the blob was altered, made
   * by another KEK or bound to other AAD. The result is a fresh, non-pooled
   * Buffer that the caller owns and must zero (`fill(0)`) when done.
   */
  unwrap(blob: Uint8Array, aad: Uint8Array): Promise<Buffer>;
  /** Zero the KEK held in memory; later wrap/unwrap calls fail. */
  close(): Promise<void>;
}

const AAD_LABEL = Buffer.from('cryptod/key-version/v1', 'ascii');

/**
 * The AAD that binds a wrapped key version to its key name and version, so a
 * blob copied onto another key or version fails to unwrap.
 *
 * Encoding (every field length-prefixed, so no two (name, version) pairs
 * share an encoding):
 *
 *   offset  size  field
 *   0       1     label length L (22)
 *   1       L     label "cryptod/key-version/v1"  (domain separation from other AADs)
 *   1+L     4     name length N, unsigned big-endian
 *   5+L     N     name, UTF-8 (well-formed: lone surrogates are refused)
 *   5+L+N   4     version, unsigned big-endian
 *
 * @example
 *   const blob = await kek.wrap(keyBytes, keyVersionAad('billing', 3));
 */
export function keyVersionAad(name: string, version: number): Buffer {
  assertKeyName(name);
  assertVersion(version);
  const nameLength = Buffer.byteLength(name, 'utf8');
  const out = Buffer.alloc(1 + AAD_LABEL.length + 4 + nameLength + 4);
  let at = out.writeUInt8(AAD_LABEL.length, 0);
  at += AAD_LABEL.copy(out, at);
  at = out.writeUInt32BE(nameLength, at);
  at += out.write(name, at, 'utf8');
  out.writeUInt32BE(version, at);
  return out;
}

/** Edge check shared by providers: "expected plaintext as bytes, got string". */
export function assertBytes(what: string, value: unknown, max: number, min = 0): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw new InvalidArgumentError(`expected ${what} as bytes (Uint8Array), got ${value === null ? 'null' : typeof value}`);
  }
  if (value.length < min || value.length > max) {
    throw new InvalidArgumentError(`expected ${what} of ${min}..${max} bytes, got ${value.length}`);
  }
}
