/**
 * The `cryptod serve` flags of the limits, derived from their declarations
 * (src/config/limits.ts): the option specs, the --help lines and the parsed
 * values. A limit added to the table gets its flag and its help line here
 * without this file changing.
 */
import { LIMITS, LIMIT_NAMES, type LimitDeclaration, type Limits } from '../config/limits.js';
import { integerOpt, type OptionSpec, type Parsed } from './args.js';

/** One `--flag VALUE` option per limit. */
export const LIMIT_OPTIONS: OptionSpec = Object.fromEntries(LIMIT_NAMES.map((name) => [LIMITS[name].flag, { type: 'string' as const }]));

/** The limits given on the command line; ranges are checked with the file's values (src/config/daemon-config.ts). */
export function limitFlags(p: Parsed, command: string): Partial<Limits> {
  const out: { -readonly [K in keyof Limits]?: number } = {};
  for (const name of LIMIT_NAMES) {
    const v = integerOpt(p, LIMITS[name].flag, command);
    if (v !== undefined) out[name] = v;
  }
  return out;
}

/** Help lines in the layout of the others: flag in a 27-column gutter, text wrapped at 78. */
export function limitHelp(): string {
  return LIMIT_NAMES.map((name) => helpEntry(LIMITS[name])).join('');
}

const GUTTER = 29;
const WIDTH = 78;

function helpEntry(d: LimitDeclaration): string {
  const head = `  --${d.flag} ${d.unit}`;
  const text = `${d.doc} (default: ${defaultText(d)}; ${d.min} to ${maxText(d)})`;
  const lines = wrap(text, WIDTH - GUTTER);
  const first = head.length < GUTTER ? `${head.padEnd(GUTTER)}${lines.shift() ?? ''}` : head;
  return [first, ...lines.map((l) => `${' '.repeat(GUTTER)}${l}`)].join('\n') + '\n';
}

function defaultText(d: LimitDeclaration): string {
  if (typeof d.default === 'function') return d.defaultDoc ?? 'derived';
  return d.unit === 'BYTES' ? withBinaryUnit(d.default) : String(d.default);
}

function maxText(d: LimitDeclaration): string {
  if (typeof d.max === 'function') return d.maxDoc ?? 'derived';
  return d.max >= 2 ** 32 && Number.isInteger(Math.log2(d.max)) ? `2^${Math.log2(d.max)}` : String(d.max);
}

/** `33554432, 32 MiB` for an exact number of KiB, MiB or GiB. */
function withBinaryUnit(n: number): string {
  for (const [unit, size] of [['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]] as const) {
    if (n >= size && n % size === 0) return `${n}, ${n / size} ${unit}`;
  }
  return String(n);
}

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  if (line !== '') lines.push(line);
  return lines;
}
