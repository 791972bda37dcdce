/**
 * How many worker processes `cryptod serve` runs (`--workers N|auto`, or
 * `workers:` in the configuration file): one rule for both, so the flag and
 * the file accept and refuse the same values with the same words.
 */
import { availableParallelism } from 'node:os';

/** Most workers accepted: far beyond any core count a daemon host has, and a typo like 1000 is refused. */
export const MAX_WORKERS = 256;

/** What `workers` accepts, for messages. */
export const WORKERS_EXPECTED = `a number from 1 to ${MAX_WORKERS} or 'auto'`;

/**
 * The worker count `value` asks for (`auto`: the cores this process may
 * use, at most MAX_WORKERS), or null when it is not one: a whole number
 * from 1 to MAX_WORKERS (a YAML number, or its digits as a string) or `auto`.
 */
export function workerCount(value: unknown): number | null {
  if (value === 'auto') return Math.min(MAX_WORKERS, availableParallelism());
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^[0-9]+$/.test(value) ? Number(value) : NaN;
  return Number.isInteger(n) && n >= 1 && n <= MAX_WORKERS ? n : null;
}
