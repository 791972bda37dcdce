/**
 * `cryptod datakey generate|rewrap`: data keys under a managed KEK
 * (docs/protocol.md §6.12). The wrapped key is binary (docs/formats.md
 * "Data keys"); it is not secret, but a file written with --out is created
 * mode 0600 all the same. Use it with `cryptod encrypt|decrypt --wrapped-key FILE`.
 */
import { UsageError, parseCommand, stringOpt, wantsHelp } from './args.js';
import { SOCKET_OPTION } from './connect.js';
import { readInput, withClient, writeOutput } from './data.js';
import { EXIT_OK, EXIT_USAGE } from './output.js';

export const DATAKEY_HELP = `Usage: cryptod datakey generate --kek NAME [--length 16|24|32] [--context TEXT] [--out FILE]
       cryptod datakey rewrap --wrapped-key FILE [--out FILE]

generate  a new data key wrapped by the current version of KEK NAME (a
          managed aes256-kwp key on which you hold 'datakey'); writes the
          wrapped key. The key itself never leaves the daemon.
rewrap    the same data key under the KEK's current version (after
          \`cryptod key rotate KEK\`); writes the new wrapped key.

Options:
  --kek NAME           the KEK (generate)
  --length N           key length in bytes: 16, 24 or 32 (default 32)
  --context TEXT       context kept, authenticated, in the wrapped key (UTF-8)
  --wrapped-key FILE   the wrapped key (rewrap; - for stdin)
  -o, --out FILE       write the wrapped key to FILE (created mode 600; default stdout)
  -s, --socket PATH    daemon socket
  -h, --help           show this help
`;

export async function datakey(argv: readonly string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined) {
    process.stderr.write(DATAKEY_HELP);
    return EXIT_USAGE;
  }
  if (wantsHelp(argv)) {
    process.stdout.write(DATAKEY_HELP);
    return EXIT_OK;
  }
  const command = `datakey ${sub}`;
  if (sub === 'generate') {
    const p = parseCommand(command, rest, { ...SOCKET_OPTION, kek: { type: 'string' }, length: { type: 'string' }, context: { type: 'string' }, out: { type: 'string', short: 'o' } });
    const kek = stringOpt(p, 'kek');
    if (kek === undefined) throw new UsageError("missing required option '--kek NAME' (the KEK that wraps the new key)", command);
    const lengthText = stringOpt(p, 'length');
    const length = lengthText === undefined ? undefined : Number(lengthText);
    if (length !== undefined && ![16, 24, 32].includes(length)) throw new UsageError(`--length must be 16, 24 or 32, got '${lengthText}'`, command);
    const context = stringOpt(p, 'context');
    const g = await withClient(p, (c) => c.dataKeys.generate({ kek, ...(length === undefined ? {} : { length }), ...(context === undefined ? {} : { aad: Buffer.from(context, 'utf8') }) }));
    await writeOutput(stringOpt(p, 'out'), g.wrappedKey);
    return EXIT_OK;
  }
  if (sub === 'rewrap') {
    const p = parseCommand(command, rest, { ...SOCKET_OPTION, 'wrapped-key': { type: 'string' }, out: { type: 'string', short: 'o' } });
    const file = stringOpt(p, 'wrapped-key');
    if (file === undefined) throw new UsageError("missing required option '--wrapped-key FILE' (the data key to rewrap)", command);
    const wrapped = await readInput(file);
    const out = await withClient(p, (c) => c.dataKeys.rewrap(wrapped));
    await writeOutput(stringOpt(p, 'out'), out);
    return EXIT_OK;
  }
  throw new UsageError(`unknown datakey command '${sub}'; expected generate or rewrap`, 'datakey');
}
