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
export * from './protocol/errors.js';
export { PROTOCOL_VERSION, Op } from './protocol/ops.js';
export { startDaemon, type Daemon, type DaemonOptions, type DaemonStatus } from './daemon/server.js';
