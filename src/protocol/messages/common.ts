/**
 * Shapes several operations share (docs/protocol.md §6.1): WebCrypto
 * algorithm identifiers, key usages, key formats and the description of a
 * client-owned key.
 */
import { array, bool, either, bytes, cbor, handle, literal, map, optional, oneOf, record, text, uint, type Fields, type Out } from '../schema.js';

/**
 * An algorithm identifier: a name, or a dictionary `{ name, …params }` whose
 * parameters are those `params` declares (the operation's; which of them an
 * algorithm uses is checked by the handler).
 */
export function algorithm<F extends Fields>(params: F) {
  return oneOf(text(), map({ name: text(), ...params }));
}

/** A hash, as an algorithm identifier without parameters: `"SHA-256"` or `{ name: "SHA-256" }`. */
export const hashAlgorithm = algorithm({});

/** Parameters of the key algorithms (GENERATE_KEY, and DERIVE_KEY's derivedKeyType). */
export const keyGenParams = {
  length: optional(uint()),
  hash: optional(hashAlgorithm),
  namedCurve: optional(text()),
  modulusLength: optional(uint()),
  publicExponent: optional(bytes()),
};

/** Parameters of IMPORT_KEY's and UNWRAP_KEY's key algorithm. */
export const keyImportParams = {
  length: optional(uint()),
  hash: optional(hashAlgorithm),
  namedCurve: optional(text()),
};

export const KEY_USAGES = ['encrypt', 'decrypt', 'sign', 'verify', 'deriveKey', 'deriveBits', 'wrapKey', 'unwrapKey'] as const;
export type KeyUsage = (typeof KEY_USAGES)[number];
/** Usages are text; which are valid for an algorithm is the handler's check (an unknown one names its index). */
export const usages = array(text());

export const KEY_FORMATS = ['raw', 'pkcs8', 'spki', 'jwk'] as const;
export type KeyFormat = (typeof KEY_FORMATS)[number];
export const keyFormat = literal(KEY_FORMATS);

/** A JSON Web Key's members with their JSON types (RFC 7517); checked member by member by the handler. */
export const jwk = record(cbor());

/** What every operation that creates a client-owned key returns (§6.1 "Key description"). */
export const cryptoKeyDescription = map(
  {
    handle: handle(),
    type: literal(['secret', 'private', 'public']),
    extractable: bool(),
    algorithm: map({ name: text() }, { open: true }),
    usages: array(literal(KEY_USAGES)),
  },
  { open: true },
);
export type CryptoKeyDescription = Out<typeof cryptoKeyDescription>;

/** A key, or a key pair (`{ publicKey, privateKey }`). */
export const keyOrPair = either((v) => v.handle !== undefined, cryptoKeyDescription, map({ publicKey: cryptoKeyDescription, privateKey: cryptoKeyDescription }, { open: true }));
