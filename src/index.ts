/**
 * cryptod's public API for applications: the client, its types, and the typed
 * errors. Importing it loads the client and the protocol codec only — no
 * SQLite, no daemon (test/entry-points.test.ts). Embedding the daemon in a
 * process is `cryptod/daemon` (src/daemon/index.ts).
 */
export { connect, Client, type ConnectOptions } from './client/client.js';
export {
  CryptoKey,
  SubtleClient,
  type CryptoKeyPair,
  type KeyUsage,
  type KeyFormat,
  type KeyType,
  type AlgorithmIdentifier,
  type JsonWebKey,
  type BufferSource,
} from './client/subtle.js';
export type { CipherBatchItem, VerifyBatchItem } from './client/subtle-batch.js';
export { DigestContext } from './client/contexts.js';
export type { IntegerTypedArray } from './client/random.js';
export { AeadStream, type AeadStreamParams, type AeadStreamMode } from './client/streams.js';
export {
  ManagedKeysClient,
  type ManagedKeyDefinition,
  type ManagedKeyPolicy,
  type ManagedKeyDescription,
  type ManagedKeyVersion,
  type ManagedKeyType,
  type ExportedManagedKey,
  type ManagedPublicKey,
  type ManagedSignatureParts,
  splitManagedSignature,
  type AadOptions,
  type CipherItem,
  type VerifyItem,
  type BatchResult,
} from './client/managed.js';
export * from './protocol/errors.js';
export { PROTOCOL_VERSION, Op } from './protocol/ops.js';
