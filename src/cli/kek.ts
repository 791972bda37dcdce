/**
 * `cryptod kek rewrap-all`: through the running daemon, move every stored
 * key version to the root KEK (`root:` in the configuration), batch by batch
 * (KEK_REWRAP_ALL). Progress goes to stderr when it is a terminal; the
 * summary to stdout. Interrupting it (Ctrl-C, a killed daemon) loses at most
 * the batch in flight, and each version is replaced in its own transaction:
 * run it again and it continues where it stopped.
 */
import { UsageError, integerOpt, parseCommand, stringOpt, wantsHelp, type OptionSpec } from './args.js';
import { SOCKET_OPTION, connectCli } from './connect.js';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from './output.js';

export const KEK_HELP = `Usage: cryptod kek rewrap-all [options]

Rewrap every managed-key version stored in the keystore under the root KEK
(the provider named by root: in the configuration, default local), for
instance after moving the root from local to a PKCS#11 token. The key
material does not change: everything encrypted before still decrypts. Each
version is rewrapped in a transaction of its own, so the command is safe to
interrupt and to run again. Needs an administrator (README "Managed keys").

Options:
  --batch N            versions per request (1..1000, default 100)
  --json               print the summary as JSON
  -s, --socket PATH    daemon socket (default: $CRYPTOD_SOCKET, else
                       $XDG_RUNTIME_DIR/cryptod/cryptod.sock, else
                       /tmp/cryptod-$UID/cryptod.sock)
  -h, --help           show this help

Exit status: 0 when every version is under the root KEK, 1 when some could
not be rewrapped (listed), 2 on a usage error.
`;

const OPTIONS: OptionSpec = { ...SOCKET_OPTION, batch: { type: 'string' }, json: { type: 'boolean' } };

export async function kek(argv: readonly string[]): Promise<number> {
  if (wantsHelp(argv)) {
    process.stdout.write(KEK_HELP);
    return EXIT_OK;
  }
  const [sub, ...rest] = argv;
  if (sub !== 'rewrap-all') {
    process.stderr.write(KEK_HELP);
    if (sub === undefined) return EXIT_USAGE;
    throw new UsageError(`unknown subcommand '${sub}'; kek subcommands: rewrap-all`, 'kek');
  }
  const p = parseCommand('kek rewrap-all', rest, OPTIONS);
  const batch = integerOpt(p, 'batch', 'kek rewrap-all') ?? 100;
  if (batch < 1 || batch > 1000) throw new UsageError(`option '--batch' expects 1..1000, got ${batch}`, 'kek rewrap-all');
  const tty = process.stderr.isTTY === true;
  const client = await connectCli(stringOpt(p, 'socket'));
  let rewrapped = 0;
  let last;
  try {
    for (;;) {
      last = await client.kekRewrapAll(batch);
      rewrapped += last.rewrapped;
      if (tty) process.stderr.write(`\rrewrapped ${rewrapped}, ${last.remaining} left of ${last.total} versions`);
      if (last.remaining === 0 || last.rewrapped === 0) break;
    }
  } finally {
    if (tty) process.stderr.write('\n');
    await client.close();
  }
  const summary = { root: last.root, total: last.total, rewrapped, remaining: last.remaining, failed: last.failed };
  if (p.values.json === true) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  else {
    process.stdout.write(`root KEK:   ${summary.root}\nversions:   ${summary.total}\nrewrapped:  ${rewrapped}\nremaining:  ${summary.remaining}\n`);
    for (const f of summary.failed) process.stdout.write(`failed:     ${f.key} v${f.version}: ${f.code}: ${f.message}\n`);
  }
  return summary.remaining === 0 ? EXIT_OK : EXIT_FAILURE;
}
