/**
 * `cryptod serve`: run the daemon in the foreground until SIGTERM or SIGINT.
 *
 * Shutdown is graceful once and immediate twice:
 *
 *   signal ──▶ daemon.close(): refuse new requests, let requests in flight
 *              finish (at most --shutdown-grace-ms), close every connection
 *              (which releases every node), remove the socket ──▶ exit 0
 *   second signal while that runs ──▶ die of that signal at once (a shell
 *              reports 128 + signal number: 130 for SIGINT, 143 for SIGTERM)
 */
import { constants } from 'node:os';
import { DEFAULT_DATA_DIR, resolveSocketPath } from '../config/paths.js';
import { createLogger, type Level, type Logger } from '../daemon/logger.js';
import type { Limits } from '../daemon/limits.js';
import { peerCred, peerCredAvailable } from '../daemon/peer-cred.js';
import { startDaemon, type Daemon, type DaemonOptions } from '../daemon/server.js';
import { CryptodError } from '../protocol/errors.js';
import { ensurePrivateDir } from '../store/private-files.js';
import { choiceOpt, integerOpt, modeOpt, parseCommand, stringOpt, wantsHelp, type OptionSpec } from './args.js';
import { SOCKET_OPTION } from './connect.js';
import { EXIT_FAILURE, EXIT_OK, LocalFailure } from './output.js';

export const SERVE_HELP = `Usage: cryptod serve [options]

Run the cryptod daemon in the foreground. Logs are JSON lines on stderr;
the first info line ("listening") names the socket. SIGTERM or SIGINT stops
it gracefully; a second signal stops it at once.

Options:
  --data-dir DIR             data directory, created with mode 0700
                             (default: ./.cryptod)
  -s, --socket PATH          Unix socket to listen on
                             (default: $CRYPTOD_SOCKET, else DIR/cryptod.sock)
  --socket-mode MODE         octal mode of the socket file (default: 600)
  --max-frame BYTES          largest frame accepted (default: 4194304, 4 MiB;
                             at most 67108864)
  --max-nodes-per-client N   live keys and contexts per client (default: 10000)
  --max-inflight N           requests in flight per connection before the
                             daemon stops reading from it (default: 1024)
  --shutdown-grace-ms MS     how long shutdown waits for requests in flight
                             (default: 5000)
  --log-level LEVEL          debug, info, warn or error (default: info)
  -h, --help                 show this help

Environment:
  CRYPTOD_SOCKET             socket path when --socket is not given
`;

const OPTIONS: OptionSpec = {
  ...SOCKET_OPTION,
  'data-dir': { type: 'string' },
  'socket-mode': { type: 'string' },
  'max-frame': { type: 'string' },
  'max-nodes-per-client': { type: 'string' },
  'max-inflight': { type: 'string' },
  'shutdown-grace-ms': { type: 'string' },
  'log-level': { type: 'string' },
};

const LEVELS: readonly Level[] = ['debug', 'info', 'warn', 'error'];

/** Parse the command line into daemon options; throws UsageError. */
function configure(argv: readonly string[]): { dataDir: string; socketFlag: string | undefined; level: Level; options: Omit<DaemonOptions, 'socketPath'> } {
  const p = parseCommand('serve', argv, OPTIONS);
  const limits: { -readonly [K in keyof Limits]?: number } = {};
  const set = (key: keyof Limits, flag: string): void => {
    const v = integerOpt(p, flag, 'serve');
    if (v !== undefined) limits[key] = v;
  };
  set('maxFrame', 'max-frame');
  set('maxNodesPerClient', 'max-nodes-per-client');
  set('maxInflightPerConnection', 'max-inflight');
  set('shutdownGraceMs', 'shutdown-grace-ms');
  const socketMode = modeOpt(p, 'socket-mode', 'serve');
  return {
    dataDir: stringOpt(p, 'data-dir') ?? DEFAULT_DATA_DIR,
    socketFlag: stringOpt(p, 'socket'),
    level: choiceOpt(p, 'log-level', LEVELS, 'serve') ?? 'info',
    options: socketMode === undefined ? { limits } : { limits, socketMode },
  };
}

/** Run the daemon; resolves with the exit status once it has stopped. */
export async function serve(argv: readonly string[]): Promise<number> {
  if (wantsHelp(argv)) {
    process.stdout.write(SERVE_HELP);
    return EXIT_OK;
  }
  const { dataDir, socketFlag, level, options } = configure(argv);
  const log = createLogger({ level });

  // Signals are handled from the start, so one that arrives while the socket
  // is being created still ends in a clean shutdown rather than a stale file.
  let daemon: Daemon | null = null;
  let stopping = false;
  let stopped!: (code: number) => void;
  const done = new Promise<number>((res) => (stopped = res));
  const shutdown = (d: Daemon): void => {
    d.close().then(
      () => stopped(EXIT_OK),
      (err: unknown) => {
        log.error('shutdown failed', { error: err instanceof Error ? err.message : String(err) });
        stopped(EXIT_FAILURE);
      },
    );
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.warn('second signal during shutdown: exiting now', { signal });
      dieBy(signal);
      return;
    }
    stopping = true;
    log.info('shutting down', { signal });
    if (daemon !== null) shutdown(daemon);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  try {
    const dir = ensurePrivateDir(dataDir);
    const socketPath = resolveSocketPath(socketFlag, dir);
    daemon = await startDaemon({ ...options, socketPath, logger: log, ...peerIdentityOption(log) });
  } catch (err) {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    // Start-up failures are configuration problems: say what to fix, no code.
    if (err instanceof CryptodError) throw new LocalFailure(err.message, { cause: err });
    throw err;
  }
  if (stopping) shutdown(daemon);
  return done;
}

/**
 * Die of `signal` now. `process.exit()` cannot do this: Node's exit joins
 * libuv's thread pool, which first runs every queued job (an RSA key
 * generation takes seconds). With our handlers removed the signal's default
 * action applies again, so re-raising it ends the process at once, and the
 * parent sees what a shell reports as 128 + signal number (130 for SIGINT,
 * 143 for SIGTERM) — the convention for a program stopped by a signal.
 */
function dieBy(signal: NodeJS.Signals): void {
  process.removeAllListeners('SIGTERM');
  process.removeAllListeners('SIGINT');
  process.kill(process.pid, signal);
  // Unreachable once the default action runs; a last resort if it did not.
  process.exit(128 + constants.signals[signal]);
}

/**
 * Clients are named by the kernel-verified uid when SO_PEERCRED is readable;
 * otherwise only the socket's file mode stands between other users and the
 * daemon, which the operator should know (once, at start).
 */
function peerIdentityOption(log: Logger): Pick<DaemonOptions, 'peerIdentity'> {
  if (peerCredAvailable()) return { peerIdentity: peerCred };
  log.warn('peer credentials are unavailable (native addon not built, or not Linux): clients are not identified by uid, and access rests on the socket file mode alone', {
    platform: process.platform,
  });
  return {};
}
