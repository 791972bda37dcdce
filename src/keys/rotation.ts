/**
 * Rotation plans: which version to add, with which window, and what happens
 * to the versions already there. Pure functions of (versions, policy, now);
 * the manager applies a plan inside one keystore transaction, after planning
 * again from what the transaction reads (another process may have rotated
 * first, and then there is nothing to do).
 *
 * Scheduled rotation (design note 4): versions form a chain of windows,
 * notBefore(n+1) = notAfter(n), and version n+1 is created a prefetch period
 * before version n ends:
 *
 *   v(n)    ├──────────────────────────────┤
 *                           create v(n+1) ▲  │
 *                       notAfter(n) − prefetch
 *   v(n+1)                                   ├──────────── rotationPeriod ───┤
 *
 * Every daemon reads the same windows, so all switch at notAfter(n) by their
 * own clocks, without talking to each other. A daemon that was down past
 * notAfter(n) catches up on the same grid: the new window is the one of the
 * chain that contains now.
 *
 * Manual rotation (and rotation at an encryption-count threshold): version
 * n+1 starts now; the current version's window is cut at now (its grace, if
 * any, runs from now); a successor that was prefetched but has not started
 * becomes decrypt-only (a peer with a fast clock may already have used it).
 */
import type { VersionInfo } from './model.js';
import type { KeyPolicy } from './policy.js';

export interface Window {
  notBefore: number;
  notAfter: number | null;
}

export interface RotationPlan {
  /** The new version's number: one past the highest existing one. */
  version: number;
  window: Window;
  /** Active versions whose window is cut at `window.notBefore`. */
  truncate: Array<{ version: number; notAfter: number }>;
  /** Prefetched versions that never became current: set to decrypt-only. */
  demote: number[];
}

type RotationPolicy = Pick<KeyPolicy, 'rotationPeriod' | 'prefetchPeriod'>;

/** The window of a new key's first version, or of a manually rotated one. */
export function firstWindow(policy: RotationPolicy, now: number): Window {
  return { notBefore: now, notAfter: policy.rotationPeriod === null ? null : now + policy.rotationPeriod };
}

function highest(versions: readonly VersionInfo[]): number {
  let max = 0;
  for (const v of versions) if (v.version > max) max = v.version;
  return max;
}

/** The end of the chain: the active version that starts last (ties: the newer). */
export function chainTail(versions: readonly VersionInfo[]): VersionInfo | undefined {
  let tail: VersionInfo | undefined;
  for (const v of versions) {
    if (v.state !== 'active') continue;
    if (tail === undefined || v.notBefore > tail.notBefore || (v.notBefore === tail.notBefore && v.version > tail.version)) tail = v;
  }
  return tail;
}

/**
 * When the next scheduled rotation is due and what it creates, or null when
 * the chain ends in an open window (no rotation period) or has no active
 * version. `due` may be in the past: then it is due now.
 */
export function planScheduled(versions: readonly VersionInfo[], policy: RotationPolicy, now: number): { due: number; plan: RotationPlan } | null {
  const tail = chainTail(versions);
  if (tail === undefined || tail.notAfter === null) return null;
  const end = tail.notAfter;
  const period = policy.rotationPeriod;
  let notBefore = end;
  if (now >= end && period !== null) notBefore = end + Math.floor((now - end) / period) * period;
  return {
    due: end - policy.prefetchPeriod,
    plan: {
      version: highest(versions) + 1,
      window: { notBefore, notAfter: period === null ? null : notBefore + period },
      truncate: [],
      demote: [],
    },
  };
}

/** Rotate now (see the header). */
export function planManual(versions: readonly VersionInfo[], policy: RotationPolicy, now: number): RotationPlan {
  const truncate: RotationPlan['truncate'] = [];
  const demote: number[] = [];
  for (const v of versions) {
    if (v.state !== 'active') continue;
    if (v.notBefore > now) demote.push(v.version);
    else if (v.notAfter === null || v.notAfter > now) truncate.push({ version: v.version, notAfter: now });
  }
  return { version: highest(versions) + 1, window: firstWindow(policy, now), truncate, demote };
}

/**
 * Window changes a policy change implies: when a rotation period is set on a
 * key whose chain ends in an open window, that window now ends one period
 * from now (or from its start, if later), so scheduled rotation begins.
 * Removing the period leaves windows alone; the next successor is open-ended.
 */
export function planPolicyChange(versions: readonly VersionInfo[], policy: RotationPolicy, now: number): Array<{ version: number; notAfter: number }> {
  const tail = chainTail(versions);
  if (policy.rotationPeriod === null || tail === undefined || tail.notAfter !== null) return [];
  return [{ version: tail.version, notAfter: Math.max(now, tail.notBefore) + policy.rotationPeriod }];
}
