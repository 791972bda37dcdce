/**
 * `cryptod health [--socket PATH] [--json]`: is the daemon ready? For
 * scripts and service managers, so the answer is the exit status:
 *
 *   0  ready: the daemon answered and every check passed
 *   1  not ready (a check failed: printed, one line each), or no daemon
 *      answered on the socket
 *   2  usage error
 *
 * The checks are the daemon's (HEALTH, src/daemon/health.ts): the keystore
 * reachable, the KEK usable, the configured keys loaded — the same as
 * `GET /readyz` on the metrics listener.
 */
import { parseCommand, stringOpt, wantsHelp, type OptionSpec } from './args.js';
import { SOCKET_OPTION, connectCli } from './connect.js';
import { EXIT_FAILURE, EXIT_OK } from './output.js';

export const HEALTH_HELP = `Usage: cryptod health [options]

Ask a running daemon whether it is ready: its keystore reachable, its KEK
usable and the keys its configuration declares loaded. Prints one line per
check (or JSON) and exits 0 when ready, 1 when not ready or when no daemon
answers on the socket, 2 on a usage error.

Options:
  --json               print the daemon's answer as JSON
  -s, --socket PATH    daemon socket (default: $CRYPTOD_SOCKET, else
                       $XDG_RUNTIME_DIR/cryptod/cryptod.sock, else
                       /tmp/cryptod-$UID/cryptod.sock)
  -h, --help           show this help
`;

const OPTIONS: OptionSpec = {
  ...SOCKET_OPTION,
  json: { type: 'boolean' },
};

export async function health(argv: readonly string[]): Promise<number> {
  if (wantsHelp(argv)) {
    process.stdout.write(HEALTH_HELP);
    return EXIT_OK;
  }
  const p = parseCommand('health', argv, OPTIONS);
  const client = await connectCli(stringOpt(p, 'socket'));
  let report: Awaited<ReturnType<typeof client.health>>;
  try {
    report = await client.health();
  } finally {
    await client.close();
  }
  if (p.values.json === true) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } else {
    const lines = report.checks.map((c) => `${c.ok ? 'ok  ' : 'FAIL'}  ${c.name.padEnd(6)} ${c.detail}`);
    process.stdout.write(`${[report.ready ? 'ready' : 'not ready', ...lines].join('\n')}\n`);
  }
  return report.ready ? EXIT_OK : EXIT_FAILURE;
}
