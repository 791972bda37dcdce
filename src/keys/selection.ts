/**
 * Which version of a managed key serves an operation (design note 4). Pure functions of (versions, policy, now): no I/O, no clock, so
 * every boundary is testable to the millisecond.
 *
 * Outbound (encrypt, sign, mac): the newest `active` version whose window
 * contains now. Windows are half-open, [notBefore, notAfter), and outbound
 * uses no clock tolerance: every daemon switches at exactly notAfter(n) =
 * notBefore(n+1) by its own clock.
 *
 *   v1 ├────────────┤
 *   v2              ├────────────┤          (created a prefetch period early)
 *                   ▲ switch instant, the same everywhere
 *
 * Inbound (decrypt, verify, verify-mac) takes the version named in the data:
 *
 *   with a grace period (MAC and token keys, the design note's model)
 *     accepted while  notBefore − tolerance ≤ now < notAfter + grace
 *   without one (data at rest, as in Vault transit)
 *     accepted while  notBefore − tolerance ≤ now, for as long as the version
 *     is neither below minDecryptionVersion nor disabled nor destroyed
 *
 * The tolerance on notBefore admits data from a peer whose clock runs ahead
 * and has already switched to the next version; at the other end the grace
 * period plays that role.
 */
import { KeyVersionError } from '../protocol/errors.js';
import { formatDuration } from './duration.js';
import { iso, type VersionInfo } from './model.js';
import type { KeyPolicy } from './policy.js';

export type RefusalReason = 'unknown' | 'destroyed' | 'disabled' | 'below-minimum' | 'not-yet-valid' | 'expired' | 'no-current' | 'exhausted';

/** The inbound part of a policy. */
export type InboundPolicy = Pick<KeyPolicy, 'gracePeriod' | 'clockTolerance' | 'minDecryptionVersion'>;

export function refusal(key: string, version: number | null, reason: RefusalReason, message: string): InstanceType<typeof KeyVersionError> {
  return new KeyVersionError(message, { detail: { key, version, reason } });
}

function contains(v: VersionInfo, now: number): boolean {
  return v.notBefore <= now && (v.notAfter === null || now < v.notAfter);
}

/**
 * The current version for outbound use, or a KeyVersionError saying why
 * there is none. `versions` is ordered by version number. A version below
 * minDecryptionVersion is never current: what it produced could not be
 * decrypted.
 */
export function selectOutbound(key: string, versions: readonly VersionInfo[], policy: Pick<KeyPolicy, 'minDecryptionVersion'>, now: number): VersionInfo {
  for (let i = versions.length - 1; i >= 0; i--) {
    const v = versions[i]!;
    if (v.state === 'active' && contains(v, now)) {
      if (v.version >= policy.minDecryptionVersion) return v;
      throw refusal(
        key, v.version, 'below-minimum',
        `key '${key}' has no usable current version: version ${v.version} is below the minimum decryption version ${policy.minDecryptionVersion} (rotate the key)`,
      );
    }
  }
  throw noCurrent(key, versions, now);
}

function noCurrent(key: string, versions: readonly VersionInfo[], now: number): InstanceType<typeof KeyVersionError> {
  const active = versions.filter((v) => v.state === 'active');
  const at = iso(now);
  if (active.length === 0) {
    return refusal(key, null, 'no-current', `key '${key}' has no active version (all are decrypt-only, disabled or destroyed); rotate it to create one`);
  }
  const upcoming = active.filter((v) => v.notBefore > now).sort((a, b) => a.notBefore - b.notBefore)[0];
  const ended = active.filter((v) => v.notAfter !== null && v.notAfter <= now).sort((a, b) => b.notAfter! - a.notAfter!)[0];
  if (ended !== undefined) {
    const next = upcoming === undefined ? '' : `; version ${upcoming.version} starts at ${iso(upcoming.notBefore)}`;
    return refusal(
      key, ended.version, 'no-current',
      `key '${key}' has no version valid at ${at}: version ${ended.version} expired at ${iso(ended.notAfter!)} and no successor covers now (rotation is overdue)${next}`,
    );
  }
  const first = upcoming ?? active[active.length - 1]!;
  return refusal(key, first.version, 'no-current', `key '${key}' has no version valid at ${at} yet: version ${first.version} starts at ${iso(first.notBefore)}`);
}

/** Look a version up: versions are usually dense (1..n), so try the index first. */
export function findVersion(versions: readonly VersionInfo[], version: number): VersionInfo | undefined {
  const guess = versions[version - 1];
  if (guess?.version === version) return guess;
  return versions.find((v) => v.version === version);
}

/**
 * Check that `version` (named by inbound data) may be used now; returns it,
 * or throws a KeyVersionError naming the version and the reason.
 */
export function selectInbound(key: string, versions: readonly VersionInfo[], policy: InboundPolicy, version: number, now: number): VersionInfo {
  const v = Number.isSafeInteger(version) ? findVersion(versions, version) : undefined;
  if (v === undefined) {
    const latest = versions[versions.length - 1]?.version;
    const hint = latest === undefined ? 'it has no versions' : `latest is ${latest}`;
    return fail(key, Number.isSafeInteger(version) ? version : null, 'unknown', `version ${String(version)} of key '${key}' does not exist (${hint})`);
  }
  const why = inboundRefusal(key, v, policy, now);
  if (why !== null) throw why;
  return v;
}

/** The reason `v` cannot be used inbound at `now`, or null when it can. */
export function inboundRefusal(key: string, v: VersionInfo, policy: InboundPolicy, now: number): InstanceType<typeof KeyVersionError> | null {
  const name = `version ${v.version} of key '${key}'`;
  if (v.state === 'destroyed') return refusal(key, v.version, 'destroyed', `${name} is destroyed`);
  if (v.state === 'disabled') return refusal(key, v.version, 'disabled', `${name} is disabled`);
  if (v.version < policy.minDecryptionVersion) {
    return refusal(key, v.version, 'below-minimum', `${name} is below the minimum decryption version ${policy.minDecryptionVersion}`);
  }
  if (v.notBefore - policy.clockTolerance > now) {
    return refusal(
      key, v.version, 'not-yet-valid',
      `${name} is not valid before ${iso(v.notBefore)} (clock tolerance ${formatDuration(policy.clockTolerance)}; now ${iso(now)})`,
    );
  }
  const until = inboundUntil(v, policy);
  if (now >= until) {
    return refusal(
      key, v.version, 'expired',
      `${name} expired at ${iso(v.notAfter!)} (grace ${formatDuration(policy.gracePeriod!)} ended at ${iso(until)})`,
    );
  }
  return null;
}

/**
 * The instant from which `v` is never again usable inbound by time alone
 * (`Infinity` without a grace model or for an open window). States and
 * minDecryptionVersion are checked separately.
 */
export function inboundUntil(v: VersionInfo, policy: Pick<KeyPolicy, 'gracePeriod'>): number {
  if (policy.gracePeriod === null || v.notAfter === null) return Infinity;
  return v.notAfter + policy.gracePeriod;
}

/**
 * Whether `v` can still serve anything at or after `now`; decides which
 * versions keep material in memory. Outbound use ends at notAfter, inbound
 * use at notAfter + grace ≥ notAfter, so the inbound bound covers both.
 */
export function stillUsable(v: VersionInfo, policy: InboundPolicy, now: number): boolean {
  if (v.state !== 'active' && v.state !== 'decrypt-only') return false;
  return v.version >= policy.minDecryptionVersion && now < inboundUntil(v, policy);
}

function fail(key: string, version: number | null, reason: RefusalReason, message: string): never {
  throw refusal(key, version, reason, message);
}
