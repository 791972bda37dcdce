/** Every operation's messages (docs/protocol.md §4, §6), declared once for client and daemon. */
export * from './message.js';
export * from './common.js';
export * from './session.js';
export * from './subtle.js';
export * from './contexts.js';
export * from './managed.js';
export * from './datakeys.js';
export * from './kek.js';
export * from './random.js';
export * from './backup.js';
export * from './batch.js';
