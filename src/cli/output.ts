/**
 * How the `cryptod` command reports failure: one line on stderr, prefixed
 * `cryptod:`, and an exit status a script can branch on.
 *
 *   0  success
 *   1  the command ran and failed (no daemon, a daemon error, a bad file, bad configuration)
 *   2  the command line was wrong (unknown command or flag, missing value)
 *
 * Errors the daemon returned carry their stable code (`cryptod: CODE: message`,
 * see docs/errors.md) so scripts can match on it; errors raised before any
 * request reached a daemon (configuration, start-up, connecting) are plain
 * sentences saying what to fix.
 */
import { CryptodError } from '../protocol/errors.js';
import { UsageError } from './args.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** An error raised locally (start-up, connect, reading input): printed without a code. */
export class LocalFailure extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LocalFailure';
  }
}

export function writeErr(line: string): void {
  process.stderr.write(`cryptod: ${line}\n`);
}

/** Print `err` and return the exit status for it. */
export function report(err: unknown): number {
  if (err instanceof UsageError) {
    writeErr(err.message);
    process.stderr.write(`Run 'cryptod ${err.command === undefined ? '' : `${err.command} `}--help' for usage.\n`);
    return EXIT_USAGE;
  }
  if (err instanceof LocalFailure) {
    writeErr(err.message);
    return EXIT_FAILURE;
  }
  if (err instanceof CryptodError) {
    writeErr(`${err.code}: ${oneLine(err.message)}`);
    return EXIT_FAILURE;
  }
  // A bug in the CLI itself: say so, with the stack, rather than hide it.
  writeErr(`unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  return EXIT_FAILURE;
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ');
}
