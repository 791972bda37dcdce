#!/usr/bin/env node
/**
 * The `cryptod` command: `serve` runs the daemon, `digest` and `status` talk
 * to a running one. Exit status: 0 success, 1 failure, 2 usage error (see
 * output.ts).
 */
import { DAEMON_VERSION } from '../daemon/version.js';
import { UsageError, wantsHelp } from './args.js';
import { DATA_COMMANDS, dataCommand } from './data.js';
import { EXIT_OK, EXIT_USAGE, report } from './output.js';

const MAIN_HELP = `Usage: cryptod <command> [options]

cryptod keeps keys in a daemon; applications talk to it over a local Unix
socket and never hold key material themselves.

Commands:
  serve      run the daemon in the foreground
  digest     hash a file or stdin through the daemon (streams any size)
  status     show clients, connections and live keys/contexts of a daemon
  client     add, revoke or list token clients (run as the daemon's user)
  key        create, import, rotate, list, describe, set-policy, trim or
             destroy managed keys
  encrypt, decrypt, rewrap, sign, mac
             transform stdin (or --in FILE) with a managed key (--key NAME)
  verify, verify-mac
             check a signature or MAC (exit 0 valid, 1 invalid)
  datakey    generate a data key wrapped by a KEK, or rewrap one; use it
             with encrypt|decrypt --wrapped-key FILE
  keystore check
             verify the keystore of a data directory offline: SQLite
             integrity and every wrapped key version (exit 0 clean, 1 damage)
  reload     make the daemon re-read its --config file (like SIGHUP)
  kek rewrap-all
             rewrap every stored key version under the root KEK
  random     print random bytes made by the daemon (--bytes N)
  health     check that a daemon is ready (exit 0 ready, 1 not ready or
             not reachable)
  completion print a bash or zsh completion script (cryptod completion bash)
  help       show this help, or \`cryptod help <command>\` for one command

Options:
  -h, --help       show this help (every command also takes --help)
  -V, --version    print the version

Environment:
  CRYPTOD_SOCKET   socket path used when --socket is not given
                   (default: $XDG_RUNTIME_DIR/cryptod/cryptod.sock, else
                   /tmp/cryptod-$UID/cryptod.sock)
  CRYPTOD_TOKEN    token sent at HELLO by digest, status and connect()
`;

type Command = (argv: readonly string[]) => Promise<number>;

/**
 * A command whose module is loaded when it runs: `serve` alone pulls in the
 * daemon, both keystores and the HTTP servers, and a client command such as
 * `digest` should not wait for them (node starts in ~0.1 s; loading every
 * command took ~0.3 s more).
 */
function lazy<M>(load: () => Promise<M>, pick: (m: M) => Command): Command {
  return async (argv) => pick(await load())(argv);
}

const COMMANDS: Record<string, Command> = {
  serve: lazy(() => import('./serve.js'), (m) => m.serve),
  digest: lazy(() => import('./digest.js'), (m) => m.digest),
  status: lazy(() => import('./status.js'), (m) => m.status),
  client: lazy(() => import('./client.js'), (m) => m.client),
  key: lazy(() => import('./key.js'), (m) => m.key),
  keystore: lazy(() => import('./keystore.js'), (m) => m.keystore),
  reload: lazy(() => import('./reload.js'), (m) => m.reload),
  datakey: lazy(() => import('./datakey.js'), (m) => m.datakey),
  kek: lazy(() => import('./kek.js'), (m) => m.kek),
  random: lazy(() => import('./random.js'), (m) => m.random),
  health: lazy(() => import('./health.js'), (m) => m.health),
  completion: lazy(() => import('./completion.js'), (m) => m.completion),
  ...Object.fromEntries(DATA_COMMANDS.map((n) => [n, dataCommand(n)])),
};

async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    process.stderr.write(MAIN_HELP);
    return EXIT_USAGE;
  }
  if (name === '--help' || name === '-h') {
    process.stdout.write(MAIN_HELP);
    return EXIT_OK;
  }
  if (name === '--version' || name === '-V') {
    process.stdout.write(`${DAEMON_VERSION}\n`);
    return EXIT_OK;
  }
  if (name === 'help') {
    const topic = rest[0];
    if (topic === undefined) {
      process.stdout.write(MAIN_HELP);
      return EXIT_OK;
    }
    const cmd = Object.hasOwn(COMMANDS, topic) ? COMMANDS[topic] : undefined;
    if (cmd === undefined) throw new UsageError(`unknown command '${topic}'; commands: ${Object.keys(COMMANDS).join(', ')}`);
    return cmd(['--help']);
  }
  if (name.startsWith('-')) {
    if (wantsHelp(argv)) {
      process.stdout.write(MAIN_HELP);
      return EXIT_OK;
    }
    throw new UsageError(`unknown option '${name}'; give a command first: cryptod <command> [options]`);
  }
  const cmd = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (cmd === undefined) throw new UsageError(`unknown command '${name}'; commands: ${Object.keys(COMMANDS).join(', ')}`);
  return cmd(rest);
}

// `serve` has closed its listener and every connection by the time it
// returns; it exits explicitly so a stray timer cannot keep a stopped (or
// never started) daemon alive. Other commands let stdout drain first.
const finish = (code: number): void => {
  if (process.argv[2] === 'serve') process.exit(code);
  process.exitCode = code;
};

main(process.argv.slice(2)).then(finish, (err: unknown) => finish(report(err)));
