/**
 * Client-owned keys, WebCrypto-shaped (docs/protocol.md §6.3–§6.7): DIGEST,
 * GENERATE_KEY, IMPORT_KEY, EXPORT_KEY, ENCRYPT, DECRYPT, SIGN, VERIFY,
 * DERIVE_BITS, DERIVE_KEY, WRAP_KEY, UNWRAP_KEY.
 */
import { Op } from '../ops.js';
import { bool, bytes, cbor, handle, map, nullable, oneOf, optional, uint } from '../schema.js';
import { algorithm, hashAlgorithm, jwk, cryptoKeyDescription, keyFormat, keyGenParams, keyImportParams, keyOrPair, usages } from './common.js';
import { message } from './message.js';

export const Digest = message(Op.DIGEST, map({ algorithm: hashAlgorithm, data: bytes() }), bytes());

export const GenerateKey = message(Op.GENERATE_KEY, map({ algorithm: algorithm(keyGenParams), extractable: bool(), usages }), keyOrPair);

export const ImportKey = message(
  Op.IMPORT_KEY,
  map({ format: keyFormat, keyData: oneOf(bytes(), jwk), algorithm: algorithm(keyImportParams), extractable: bool(), usages }),
  cryptoKeyDescription,
);

/** Bytes, or a JWK map for format "jwk". */
export const ExportKey = message(Op.EXPORT_KEY, map({ format: keyFormat, key: handle() }), oneOf(bytes(), jwk));

/** AES-GCM/ChaCha20-Poly1305: iv, additionalData, tagLength; AES-CBC: iv; AES-CTR: counter, length; RSA-OAEP: label. */
export const cipherParams = {
  iv: optional(bytes()),
  additionalData: optional(bytes()),
  tagLength: optional(uint()),
  counter: optional(bytes()),
  length: optional(uint()),
  label: optional(bytes()),
};
export const Encrypt = message(Op.ENCRYPT, map({ algorithm: algorithm(cipherParams), key: handle(), data: bytes() }), bytes());
export const Decrypt = message(Op.DECRYPT, map({ algorithm: algorithm(cipherParams), key: handle(), data: bytes() }), bytes());

/** HMAC's `hash`, when given, must be the key's; ECDSA's is required; RSA-PSS takes `saltLength`. */
export const signParams = { hash: optional(hashAlgorithm), saltLength: optional(uint()), context: optional(bytes()) };
export const Sign = message(Op.SIGN, map({ algorithm: algorithm(signParams), key: handle(), data: bytes() }), bytes());
export const Verify = message(Op.VERIFY, map({ algorithm: algorithm(signParams), key: handle(), signature: bytes(), data: bytes() }), cbor());

const deriveParams = { hash: optional(hashAlgorithm), salt: optional(bytes()), info: optional(bytes()), public: optional(handle()), iterations: optional(uint()) };
export const DeriveBits = message(Op.DERIVE_BITS, map({ algorithm: algorithm(deriveParams), baseKey: handle(), length: optional(nullable(uint())) }), bytes());
export const DeriveKey = message(
  Op.DERIVE_KEY,
  map({ algorithm: algorithm(deriveParams), baseKey: handle(), derivedKeyType: algorithm(keyGenParams), extractable: bool(), usages }),
  cryptoKeyDescription,
);

export const WrapKey = message(Op.WRAP_KEY, map({ format: keyFormat, key: handle(), wrappingKey: handle(), wrapAlgorithm: algorithm(cipherParams) }), bytes());
export const UnwrapKey = message(
  Op.UNWRAP_KEY,
  map({
    format: keyFormat,
    wrappedKey: bytes(),
    unwrappingKey: handle(),
    unwrapAlgorithm: algorithm(cipherParams),
    unwrappedKeyAlgorithm: algorithm(keyImportParams),
    extractable: bool(),
    usages,
  }),
  cryptoKeyDescription,
);
