/** cryptod's public API: the client, its types, and the typed errors. */
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
export { DigestContext } from './client/contexts.js';
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
export { openManagedKeys, type ManagedKeys, type OpenedManagedKeys, type OpenManagedKeysOptions } from './daemon/managed-keys.js';
export * from './protocol/errors.js';
export { PROTOCOL_VERSION, Op } from './protocol/ops.js';
export { startDaemon, type Daemon, type DaemonOptions, type DaemonStatus } from './daemon/server.js';
