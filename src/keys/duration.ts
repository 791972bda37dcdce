/**
 * Durations in policies and configuration: `90s`, `10m`, `1h`, `30d`, or a
 * sum of such parts (`1h30m`). Kept in memory and in the keystore as integer
 * milliseconds; shown back to people in the same compact form.
 *
 * Bare numbers in text are refused on purpose: `gracePeriod: 600` in a YAML
 * file could mean seconds or milliseconds, and guessing wrong by a factor of
 * 1000 silently breaks rotation. A JavaScript number passed through the API
 * is milliseconds (the type says so).
 */
import { InvalidArgumentError } from '../protocol/errors.js';

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
type Unit = keyof typeof UNIT_MS;

/** 100 years: far beyond any sensible period, and window arithmetic stays well inside safe integers. */
export const MAX_DURATION_MS = 100 * 365 * UNIT_MS.d;

export const DURATION_FORMS = 'a duration like 90s, 10m, 1h or 30d (an integer followed by ms, s, m, h or d; parts may be combined, e.g. 1h30m)';

const PART = /(\d+)(ms|s|m|h|d)/y;

/**
 * Parse a duration into milliseconds.
 *
 * @example
 *   parseDuration('10m')   // 600000
 *   parseDuration('1h30m') // 5400000
 *   parseDuration(1500)    // 1500 (a number is milliseconds)
 */
export function parseDuration(value: unknown, field = 'duration'): number {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0 || value > MAX_DURATION_MS) {
      throw new InvalidArgumentError(`expected ${field} as ${DURATION_FORMS}, or whole milliseconds in 0..${MAX_DURATION_MS}; got ${value}`, {
        detail: { field },
      });
    }
    return value;
  }
  if (typeof value !== 'string') {
    throw new InvalidArgumentError(`expected ${field} as ${DURATION_FORMS}, got ${value === null ? 'null' : typeof value}`, { detail: { field } });
  }
  const text = value.trim();
  // "-5d" would otherwise read as a malformed duration; say what is wrong with it.
  if (/^-\s*\d/.test(text)) {
    throw new InvalidArgumentError(`expected ${field} as ${DURATION_FORMS}; durations cannot be negative, got "${clip(text)}"`, { detail: { field } });
  }
  let total = 0;
  let at = 0;
  const seen = new Set<Unit>();
  while (at < text.length) {
    PART.lastIndex = at;
    const m = PART.exec(text);
    if (m === null) break;
    const unit = m[2] as Unit;
    if (seen.has(unit)) break; // "1h1h" is a typo, not a sum
    seen.add(unit);
    total += Number(m[1]) * UNIT_MS[unit];
    at = PART.lastIndex;
  }
  if (text.length === 0 || at !== text.length) {
    throw new InvalidArgumentError(`expected ${field} as ${DURATION_FORMS}, got "${clip(text)}"`, { detail: { field } });
  }
  if (!Number.isSafeInteger(total) || total > MAX_DURATION_MS) {
    throw new InvalidArgumentError(`expected ${field} of at most 100 years, got "${clip(text)}"`, { detail: { field } });
  }
  return total;
}

/** The compact form of `ms`: 5400000 → `1h30m`, 1500 → `1s500ms`, 0 → `0s`. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  let rest = ms;
  let out = '';
  for (const unit of ['d', 'h', 'm', 's', 'ms'] as const) {
    const size = UNIT_MS[unit];
    const n = Math.floor(rest / size);
    if (n > 0) {
      out += `${n}${unit}`;
      rest -= n * size;
    }
  }
  return out;
}

/** Config values are user text, not secrets, but a 10 kB line would flood the error. */
function clip(s: string): string {
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
}
