/**
 * What `describe` and `list` show of a managed key: plain JSON-ready data
 * (the CLI's `--json` prints it as is). Never material, never wrapped blobs.
 */
import { formatDuration } from './duration.js';
import { iso } from './model.js';
import { describePolicy } from './policy.js';
import { selectOutbound } from './selection.js';
import type { KeyEntry } from './snapshot.js';

export interface VersionDescription {
  version: number;
  state: string;
  createdAt: string;
  notBefore: string;
  notAfter: string | null;
  /**
   * Versions with an encryption budget (AES-GCM): encryptions reserved in the
   * keystore. Daemons reserve them in blocks (2^20 by default) before using
   * them, so this is an upper bound on the encryptions made with the version
   * by every daemon sharing the keystore, not a count: right after the first
   * encryption it is already one block. The version rotates when it passes
   * the budget's rotation point and refuses encryption at its limit (2^32).
   */
  encryptionsReserved?: number;
  /** Present when the version's stored material did not load: why (it answers CRYPTOD_ERR_KEY_DAMAGED). */
  damaged?: string;
}

export interface KeyDescription {
  name: string;
  type: string;
  origin: string;
  disabled: boolean;
  /** The version outbound operations use now, or null when none is valid. */
  currentVersion: number | null;
  derived: { epochStart: string; period: string } | null;
  policy: Record<string, unknown>;
  versions: VersionDescription[];
  /** A derived key whose master secret did not load: why. */
  damaged?: string;
}

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
  };
}
