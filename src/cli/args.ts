/**
 * Argument parsing for the `cryptod` command, on `node:util` parseArgs in
 * strict mode. Every mistake becomes a {@link UsageError} that names the
 * offending flag or argument; main.ts prints it and exits with code 2, the
 * conventional status for "you called me wrong" (sysexits' EX_USAGE is 64,
 * but 2 is what getopt-style tools and shells use).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** The command line was wrong: exit code 2, message on stderr, a pointer to --help. */
export class UsageError extends Error {
  /** The command whose --help to point at, e.g. `serve`; undefined for the top level. */
  readonly command: string | undefined;

  constructor(message: string, command?: string) {
    super(message);
    this.name = 'UsageError';
    this.command = command;
  }
}

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

export interface Parsed {
  readonly values: Record<string, string | boolean | undefined>;
  readonly positionals: string[];
}

/** Options every command accepts. */
const COMMON: OptionSpec = {
  help: { type: 'boolean', short: 'h' },
};

/** `--help` or `-h` anywhere before `--` wins over every other mistake on the line. */
export function wantsHelp(argv: readonly string[]): boolean {
  for (const a of argv) {
    if (a === '--') return false;
    if (a === '--help' || a === '-h') return true;
  }
  return false;
}

/**
 * Parse `argv` for `command` against `options` (plus --help). At most
 * `maxPositionals` positional arguments are accepted.
 */
export function parseCommand(command: string, argv: readonly string[], options: OptionSpec, maxPositionals = 0): Parsed {
  let parsed;
  try {
    parsed = parseArgs({ args: joinNegativeValues(argv, options), options: { ...COMMON, ...options }, strict: true, allowPositionals: true });
  } catch (err) {
    throw new UsageError(describeParseError(err, command), command);
  }
  if (parsed.positionals.length > maxPositionals) {
    const extra = parsed.positionals[maxPositionals]!;
    throw new UsageError(
      maxPositionals === 0
        ? `\`cryptod ${command}\` takes no arguments, got '${extra}'`
        : `\`cryptod ${command}\` takes at most ${maxPositionals === 1 ? 'one argument' : `${maxPositionals} arguments`}, got an extra '${extra}'`,
      command,
    );
  }
  return { values: parsed.values as Parsed['values'], positionals: parsed.positionals };
}

/**
 * parseArgs takes `-5d` after `--rotation-period` for a flag and reports the
 * option as missing its value, which sends the user looking for the wrong
 * mistake. A value that starts with a dash and a digit cannot be a flag here
 * (no short flag is a digit), so pass it as `--flag=-5d` and let the
 * option's own check say what is wrong with it (durations and counts cannot
 * be negative).
 */
function joinNegativeValues(argv: readonly string[], options: OptionSpec): string[] {
  const takesValue = new Set<string>();
  for (const [name, spec] of Object.entries(options)) {
    if (spec.type !== 'string') continue;
    takesValue.add(`--${name}`);
    if (spec.short !== undefined) takesValue.add(`-${spec.short}`);
  }
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      out.push(...argv.slice(i));
      break;
    }
    const next = argv[i + 1];
    if (takesValue.has(a) && next !== undefined && /^-\d/.test(next)) {
      out.push(`${a.startsWith('--') ? a : `--${longName(a, options)}`}=${next}`);
      i++;
    } else {
      out.push(a);
    }
  }
  return out;
}

function longName(short: string, options: OptionSpec): string {
  return Object.entries(options).find(([, spec]) => `-${spec.short ?? ''}` === short)?.[0] ?? short.slice(1);
}

/** Turn parseArgs' TypeError into one sentence that names the flag. */
function describeParseError(err: unknown, command: string): string {
  const code = (err as { code?: unknown }).code;
  const message = err instanceof Error ? err.message : String(err);
  // "Unknown option '-x'", "Option '-s, --socket <value>' argument missing": name the long form when there is one.
  const quoted = /'([^']*)'/.exec(message)?.[1] ?? '';
  const flag = /--[A-Za-z0-9-]+/.exec(quoted)?.[0] ?? /-[^\s,]+/.exec(quoted)?.[0];
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option '${flag ?? message}' for \`cryptod ${command}\``;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      // Either a missing value ("--socket" last) or a boolean flag given a value ("--json=1").
      return /argument missing|ambiguous/.test(message)
        ? `option '${flag ?? '?'}' needs a value`
        : `option '${flag ?? '?'}' does not take a value`;
    default:
      return message;
  }
}

/** A string option's value, or undefined; parseArgs already checked the type. */
export function stringOpt(p: Parsed, name: string): string | undefined {
  const v = p.values[name];
  return typeof v === 'string' ? v : undefined;
}

/** A non-negative decimal integer flag (`--max-frame 4194304`); range checks belong to the daemon's limits. */
export function integerOpt(p: Parsed, name: string, command: string): number | undefined {
  const v = stringOpt(p, name);
  if (v === undefined) return undefined;
  if (!/^[0-9]+$/.test(v) || !Number.isSafeInteger(Number(v))) {
    throw new UsageError(`option '--${name}' expects a non-negative integer, got '${v}'`, command);
  }
  return Number(v);
}

/** An octal file mode (`--socket-mode 600` or `0600`), owner bits required, no setuid/sticky bits. */
export function modeOpt(p: Parsed, name: string, command: string): number | undefined {
  const v = stringOpt(p, name);
  if (v === undefined) return undefined;
  if (!/^0?[0-7]{3}$/.test(v)) {
    throw new UsageError(`option '--${name}' expects an octal mode such as 600 or 660, got '${v}'`, command);
  }
  const mode = parseInt(v, 8);
  if ((mode & 0o600) !== 0o600) {
    throw new UsageError(`option '--${name}' must let the daemon's own user read and write the socket (6xx), got '${v}'`, command);
  }
  return mode;
}

/** One of a fixed set of words (`--log-level warn`). */
export function choiceOpt<T extends string>(p: Parsed, name: string, choices: readonly T[], command: string): T | undefined {
  const v = stringOpt(p, name);
  if (v === undefined) return undefined;
  if (!(choices as readonly string[]).includes(v)) {
    throw new UsageError(`option '--${name}' expects one of ${choices.join(', ')}, got '${v}'`, command);
  }
  return v as T;
}
