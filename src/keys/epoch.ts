/**
 * Derived epoch keys: the fleet model of design note 4 (DRKey-like). Version
 * n of such a key is not stored; it is derived from one master secret:
 *
 *   key(n)       = HKDF-SHA-256(IKM = master, salt = name, info = "cryptod epoch key v1" ‖ u64be(n), L)   (RFC 5869 §2)
 *   notBefore(n) = epochStart + n × period
 *   notAfter(n)  = notBefore(n) + period
 *
 * `name` is the key's canonical name, its exact UTF-8 bytes (the keystore
 * refuses ill-formed strings, so one name has one encoding). Any daemon
 * holding the same master computes the same key for the same epoch at the
 * same instant, with no coordination. Versions are epoch numbers n ≥ 0.
 *
 * A daemon holds, at time t, the epochs that can serve anything:
 *
 *            prefetch/tolerance lead                 grace
 *              ◀────┤                                ├────▶
 *   epoch n         ├────────────── period ──────────┤
 *
 * i.e. epoch m while notBefore(m) − lead ≤ t < notAfter(m) + grace, with
 * lead = max(prefetch, clock tolerance). Since period ≥ prefetch + grace +
 * tolerance (policy.ts), that is at most three epochs: n−1, n, n+1.
 */
import { hkdfSync } from 'node:crypto';
import type { VersionInfo } from './model.js';
import type { KeyPolicy } from './policy.js';

export const EPOCH_INFO_LABEL = 'cryptod epoch key v1';
export const EPOCH_MASTER_BYTES = 32;

export interface EpochSchedule {
  /** Epoch 0 starts here (epoch milliseconds). */
  readonly epochStart: number;
  /** Length of an epoch: the key's rotationPeriod. */
  readonly period: number;
}

type LeadPolicy = Pick<KeyPolicy, 'prefetchPeriod' | 'gracePeriod' | 'clockTolerance'>;

/** `"cryptod epoch key v1" ‖ u64 big-endian n`. */
export function epochInfo(n: number): Buffer {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`epoch number must be a non-negative safe integer, got ${n}`);
  const label = Buffer.from(EPOCH_INFO_LABEL, 'ascii');
  const out = Buffer.alloc(label.length + 8);
  label.copy(out);
  out.writeBigUInt64BE(BigInt(n), label.length);
  return out;
}

/** Key n of the epoch key `name`, `length` bytes in owned memory. */
export function deriveEpochKey(master: Uint8Array, name: string, n: number, length: number): Buffer {
  const derived = new Uint8Array(hkdfSync('sha256', master, Buffer.from(name, 'utf8'), epochInfo(n), length));
  const out = Buffer.alloc(length);
  out.set(derived);
  derived.fill(0);
  return out;
}

/** The epoch that contains `t` (negative before epochStart). */
export function epochAt(s: EpochSchedule, t: number): number {
  return Math.floor((t - s.epochStart) / s.period);
}

export function epochWindow(s: EpochSchedule, n: number): { notBefore: number; notAfter: number } {
  const notBefore = s.epochStart + n * s.period;
  return { notBefore, notAfter: notBefore + s.period };
}

/** Epoch n as a version, for selection. Derived versions are always `active`. */
export function epochVersion(s: EpochSchedule, n: number): VersionInfo {
  return { version: n, state: 'active', ...epochWindow(s, n) };
}

function lead(p: LeadPolicy): number {
  return Math.max(p.prefetchPeriod, p.clockTolerance);
}

/** The epochs to hold at `now`, ascending (see the header). */
export function epochsHeld(s: EpochSchedule, p: LeadPolicy, now: number): number[] {
  const n = epochAt(s, now);
  const out: number[] = [];
  for (let m = Math.max(0, n - 2); m <= Math.max(0, n + 2); m++) {
    const w = epochWindow(s, m);
    if (w.notBefore - lead(p) <= now && now < w.notAfter + (p.gracePeriod ?? 0)) out.push(m);
  }
  return out;
}

/** The next instant after `now` at which `epochsHeld` changes. */
export function nextEpochChange(s: EpochSchedule, p: LeadPolicy, now: number): number {
  const n = epochAt(s, now);
  let next = Infinity;
  for (let m = Math.max(0, n - 2); m <= Math.max(0, n + 3); m++) {
    const w = epochWindow(s, m);
    for (const t of [w.notBefore - lead(p), w.notAfter + (p.gracePeriod ?? 0)]) if (t > now && t < next) next = t;
  }
  return next;
}
