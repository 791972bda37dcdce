/**
 * `cryptod random --bytes N [--format hex|base64|raw]`: N bytes from the
 * daemon's CSPRNG on stdout. More than one request's worth (65,536 bytes,
 * docs/protocol.md RANDOM) is fetched in requests of at most that size;
 * raw output streams, hex and base64 are printed on one line at the end.
 */
import { once } from 'node:events';
import { MAX_RANDOM_BYTES } from '../protocol/messages/random.js';
import { UsageError, choiceOpt, integerOpt, parseCommand, stringOpt, wantsHelp, type OptionSpec } from './args.js';
import { SOCKET_OPTION, connectCli } from './connect.js';
import { EXIT_OK } from './output.js';

/** The most one command prints: 64 MiB, a bound on what hex or base64 hold in memory. */
export const MAX_RANDOM_CLI_BYTES = 64 * 1024 * 1024;

export const RANDOM_HELP = `Usage: cryptod random --bytes N [--format hex|base64|raw] [--socket PATH]

Print N random bytes made by the daemon (node:crypto's CSPRNG). Each request
returns at most ${MAX_RANDOM_BYTES} bytes; more are fetched in several requests.

Options:
  -n, --bytes N        how many bytes, 1 to ${MAX_RANDOM_CLI_BYTES} (required)
  -f, --format FORMAT  hex (default) or base64: one line; raw: the bytes
                       themselves, no newline
  -s, --socket PATH    daemon socket (default: $CRYPTOD_SOCKET, else
                       $XDG_RUNTIME_DIR/cryptod/cryptod.sock, else
                       /tmp/cryptod-$UID/cryptod.sock)
  -h, --help           show this help
`;

const OPTIONS: OptionSpec = {
  ...SOCKET_OPTION,
  bytes: { type: 'string', short: 'n' },
  format: { type: 'string', short: 'f' },
};

const FORMATS = ['hex', 'base64', 'raw'] as const;

export async function random(argv: readonly string[]): Promise<number> {
  if (wantsHelp(argv)) {
    process.stdout.write(RANDOM_HELP);
    return EXIT_OK;
  }
  const p = parseCommand('random', argv, OPTIONS);
  const n = integerOpt(p, 'bytes', 'random');
  if (n === undefined) throw new UsageError("missing required option '--bytes' (for example --bytes 32)", 'random');
  if (n < 1 || n > MAX_RANDOM_CLI_BYTES) throw new UsageError(`option '--bytes' expects 1 to ${MAX_RANDOM_CLI_BYTES}, got ${n}`, 'random');
  const format = choiceOpt(p, 'format', FORMATS, 'random') ?? 'hex';
  const client = await connectCli(stringOpt(p, 'socket'));
  try {
    const parts: Buffer[] = [];
    for (let left = n; left > 0; left -= MAX_RANDOM_BYTES) {
      const chunk = await client.getRandomValues(Buffer.alloc(Math.min(left, MAX_RANDOM_BYTES)));
      if (format !== 'raw') {
        parts.push(chunk);
      } else if (!process.stdout.write(chunk)) {
        await once(process.stdout, 'drain');
      }
    }
    if (format !== 'raw') {
      const all = Buffer.concat(parts);
      process.stdout.write(`${all.toString(format)}\n`);
      all.fill(0);
      for (const b of parts) b.fill(0);
    }
  } finally {
    await client.close();
  }
  return EXIT_OK;
}
