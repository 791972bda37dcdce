/**
 * Admission on the Unix socket, decided from the kernel's record of the peer
 * (SO_PEERCRED, see peer-cred.ts) when the connection is accepted, before the
 * daemon reads a byte from it.
 *
 * The default is ssh-agent's: the daemon's own user and root, nobody else.
 * Root is admitted because it can read the daemon's memory and data
 * directory anyway; refusing it would protect nothing. An {@link AccessPolicy}
 * admits more users or groups:
 *
 *     peer ──▶ uid = daemon's euid ─┐
 *              uid = 0 (root) ──────┤
 *              uid ∈ policy.uids ───┼──▶ admitted
 *              gid ∈ policy.gids ───┘
 *              otherwise ──────────────▶ refused: closed at once, logged
 *
 * Groups: SO_PEERCRED carries the peer's *effective primary* gid only. The
 * kernel does not report supplementary groups on the socket, so a user who is
 * merely a member of a listed group (`usermod -aG`) is not admitted unless
 * that group is the primary group of the process that connects (`newgrp`,
 * `sg`, or the service unit's `Group=`). Looking supplementary groups up in
 * /etc/group at accept time would trust a file over the kernel and race with
 * changes to it, so the daemon does not.
 *
 * The socket file mode is a second, coarser barrier: a peer must also be able
 * to open the socket (`--socket-mode`, directory permissions) to be seen here.
 */
import { ConfigError } from '../protocol/errors.js';
import type { PeerIdentity } from './handshake.js';
import type { AccessPolicy } from '../config/listeners.js';

export type { AccessPolicy };


/** A validated policy: the admission test for one peer. */
export interface AccessControl {
  /** Why `peer` is admitted, or null when it is refused. */
  admit(peer: PeerIdentity): AdmitReason | null;
  /** The policy as configured, for the start-up log line. */
  readonly summary: { daemonUid: number; uids: number[]; gids: number[] };
}

export type AdmitReason = 'daemon-user' | 'root' | 'uid' | 'gid';

/**
 * A connection the daemon closed at accept, before reading from it: a uid the
 * policy does not admit, unreadable peer credentials, or a failed TLS client
 * authentication. Given to `DaemonOptions.onRefused` (the audit log's hook)
 * after the daemon logged its warn line.
 */
export interface RefusedConnection {
  readonly transport: 'unix' | 'tls';
  /** Why, in words; never secret. */
  readonly reason: string;
  /** Kernel-verified ids of a Unix peer. */
  readonly uid?: number;
  readonly gid?: number;
  readonly pid?: number;
  /** Address of a TCP peer. */
  readonly remoteAddress?: string | undefined;
  readonly remotePort?: number | undefined;
}

/** Largest uid/gid the kernel allows: ids are u32 and (u32)-1 means "no id". */
const MAX_ID = 0xfffffffe;

/**
 * Check `policy` and build the admission test. `daemonUid` is the daemon's
 * effective uid (the default; injectable for tests of the policy itself).
 *
 * @throws ConfigError when an id is not an integer in 0…4294967294.
 */
export function createAccessControl(policy: AccessPolicy = {}, daemonUid: number = currentUid()): AccessControl {
  const uids = checkIds(policy.uids, 'uids');
  const gids = checkIds(policy.gids, 'gids');
  const uidSet = new Set(uids);
  const gidSet = new Set(gids);
  return {
    summary: { daemonUid, uids, gids },
    admit(peer) {
      if (peer.uid === daemonUid) return 'daemon-user';
      if (peer.uid === 0) return 'root';
      if (uidSet.has(peer.uid)) return 'uid';
      if (gidSet.has(peer.gid)) return 'gid';
      return null;
    },
  };
}

/** Whether the policy admits anyone beyond the defaults (so peer credentials are required to honour it). */
export function widensAccess(policy: AccessPolicy | undefined): boolean {
  return (policy?.uids?.length ?? 0) > 0 || (policy?.gids?.length ?? 0) > 0;
}

function checkIds(ids: readonly number[] | undefined, field: 'uids' | 'gids'): number[] {
  if (ids === undefined) return [];
  if (!Array.isArray(ids)) throw new ConfigError(`access.${field} must be a list of numeric ids, got ${typeof ids}`);
  const out: number[] = [];
  for (const id of ids) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id > MAX_ID) {
      throw new ConfigError(`access.${field} must hold integers from 0 to ${MAX_ID}, got ${JSON.stringify(id)}`, {
        detail: { field: `access.${field}` },
      });
    }
    out.push(id);
  }
  return out;
}

/** The daemon's effective uid; -1 where the platform has no uids (no peer can have it). */
function currentUid(): number {
  return typeof process.geteuid === 'function' ? process.geteuid() : -1;
}
