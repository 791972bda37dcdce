/**
 * What `describe` and `list` show of a managed key: plain JSON-ready data
 * (the CLI's `--json` prints it as is). Never material, never wrapped blobs.
 */
import { formatDuration } from './duration.js';
import { iso } from './model.js';
import { describePolicy } from './policy.js';
import { selectOutbound } from './selection.js';
import type { KeyEntry } from './snapshot.js';

import type { ManagedKeyDescription, ManagedKeyVersion } from '../protocol/messages/managed.js';

/** One version as described (the shape is the protocol's: docs/protocol.md §6.11). */
export type VersionDescription = ManagedKeyVersion;

/**
 * The description of a key (docs/protocol.md §6.11). `policy` is what
 * describePolicy makes of the policy; the handler checks it against the
 * declared reply before it is sent.
 */
export type KeyDescription = Omit<ManagedKeyDescription, 'policy'> & { policy: Record<string, unknown> };

export function describeEntry(e: KeyEntry, now: number): KeyDescription {
  let currentVersion: number | null = null;
  if (!e.disabled) {
    try {
      currentVersion = selectOutbound(e.name, e.versions, e.policy, now).version;
    } catch {
      currentVersion = null;
    }
  }
  return {
    name: e.name,
    type: e.type,
    origin: e.origin,
    disabled: e.disabled,
    currentVersion,
    derived: e.derived === null ? null : { epochStart: iso(e.derived.epochStart), period: formatDuration(e.derived.period) },
    policy: describePolicy(e.policy),
    versions: e.versions.map((v) => {
      const d: VersionDescription = {
        version: v.version,
        state: v.state,
        createdAt: iso(v.createdAt),
        notBefore: iso(v.notBefore),
        notAfter: v.notAfter === null ? null : iso(v.notAfter),
      };
      if (v.budget !== null) d.encryptionsReserved = v.budget.reserved;
      else if (v.encryptions > 0) d.encryptionsReserved = v.encryptions;
      if (v.damaged !== null) d.damaged = v.damaged;
      return d;
    }),
    ...(e.damaged === null ? {} : { damaged: e.damaged }),
    ...(e.provider == null ? {} : { provider: e.provider }),
  };
}
