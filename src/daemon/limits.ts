/**
 * Every limit the daemon enforces, with its default. Documented in README.md
 * ("Limits"); each has its own typed error when it is hit.
 */
import { DEFAULT_MAX_FRAME, MAX_MAX_FRAME, MIN_LENGTH } from '../protocol/frame.js';
import { ConfigError } from '../protocol/errors.js';

export interface Limits {
  /** Largest value of a frame's length field (bytes). CRYPTOD_ERR_FRAME_TOO_LARGE. */
  readonly maxFrame: number;
  /** Live data nodes one client may hold. CRYPTOD_ERR_QUOTA. */
  readonly maxNodesPerClient: number;
  /** Requests one connection may have in flight before the daemon stops reading from it. */
  readonly maxInflightPerConnection: number;
  /** How long SIGTERM waits for requests in flight before it closes connections (ms). */
  readonly shutdownGraceMs: number;
}

export const DEFAULT_LIMITS: Limits = {
  maxFrame: DEFAULT_MAX_FRAME,
  maxNodesPerClient: 10_000,
  maxInflightPerConnection: 1024,
  shutdownGraceMs: 5_000,
};

export function resolveLimits(partial: Partial<Limits> = {}): Limits {
  const limits = { ...DEFAULT_LIMITS, ...partial };
  check('maxFrame', limits.maxFrame, 1024, MAX_MAX_FRAME);
  check('maxNodesPerClient', limits.maxNodesPerClient, 1, 10_000_000);
  check('maxInflightPerConnection', limits.maxInflightPerConnection, 1, 1_000_000);
  check('shutdownGraceMs', limits.shutdownGraceMs, 0, 600_000);
  return limits;
}

function check(name: string, value: number, min: number, max: number): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new ConfigError(`limit ${name} must be an integer from ${min} to ${max}, got ${value}`);
  }
}

/** Largest payload that fits one frame. */
export function maxPayload(limits: Limits): number {
  return limits.maxFrame - MIN_LENGTH;
}
