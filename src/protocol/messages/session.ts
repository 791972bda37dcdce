/** Session messages: HELLO (docs/protocol.md §4), PING, STATUS, HEALTH, RELEASE (§6.2). */
import { Op } from '../ops.js';
import { array, bool, cbor, handle, map, none, optional, text, uint } from '../schema.js';
import { message } from './message.js';

/** A client name: 1–64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit. */
export const CLIENT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export const Hello = message(
  Op.HELLO,
  map({
    version: uint(0, 0xffff),
    client: optional(text({ pattern: CLIENT_NAME, expected: '1-64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit' })),
    token: optional(text()),
  }),
  map(
    {
      version: uint(),
      daemon: text(),
      daemonVersion: text(),
      clientId: text(),
      limits: map(
        {
          maxFrame: uint(),
          maxNodesPerClient: uint(),
          maxInflightPerConnection: uint(),
          // Absent from daemons older than the limit.
          maxInflightBytesPerConnection: optional(uint()),
          maxConnectionsPerClient: optional(uint()),
          maxConnectionsPerUid: optional(uint()),
          maxConnections: optional(uint()),
          helloTimeoutMs: optional(uint()),
          contextIdleMs: optional(uint()),
          maxContextMemory: optional(uint()),
          maxContextMemoryPerClient: optional(uint()),
          maxBatchItems: optional(uint()),
          maxWindowBytes: optional(uint()),
        },
        { open: true },
      ),
    },
    { open: true },
  ),
);

/**
 * HELLO's version alone, checked before the rest: a client of another
 * version may send fields this one does not know, and must learn about the
 * version (PROTOCOL_VERSION) rather than about a field.
 */
export const HelloVersion = map({ version: uint(0, 0xffff) }, { open: true });

/** Any value, or nothing; echoed. */
export const Ping = message(Op.PING, cbor(), cbor());
export const Status = message(Op.STATUS, none(), map({}, { open: true }));
export const Release = message(Op.RELEASE, map({ handle: handle() }), cbor());

/** Readiness (src/daemon/health.ts): ready when every check passed; check names are open (store, kek, keys today). */
export const Health = message(
  Op.HEALTH,
  none(),
  map({ ready: bool(), checks: array(map({ name: text(), ok: bool(), detail: text() }, { open: true })) }, { open: true }),
);
