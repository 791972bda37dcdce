/**
 * `cryptod serve`: run the daemon in the foreground until SIGTERM or SIGINT.
 * This file turns flags and the --config file into a configuration
 * (src/config/daemon-config.ts) and handles the process: its signals here,
 * core dumps and the descriptor limit in process-setup.ts. The daemon itself
 * is assembled by createDaemon (src/daemon/assemble.ts).
 *
 * Shutdown is graceful once and immediate twice:
 *
 *   signal ──▶ daemon.close(): refuse new requests, let requests in flight
 *              finish (at most --shutdown-grace-ms), close every connection
 *              (which releases every node), remove the socket, close the
 *              parts in reverse order (src/daemon/assemble.ts) ──▶ exit 0
 *   second signal while that runs ──▶ die of that signal at once (a shell
 *              reports 128 + signal number: 130 for SIGINT, 143 for SIGTERM)
 */
import { constants } from 'node:os';
import { configOption } from './config-option.js';
import { daemonConfig, type ConfigOverrides, type DaemonConfig } from '../config/daemon-config.js';
import { createDaemon } from '../daemon/assemble.js';
import { LOG_FORMATS, createLogger, type Level, type LogFormat } from '../observe/logger.js';
import { CryptodError } from '../protocol/errors.js';
import { UsageError, choiceOpt, modeOpt, parseCommand, stringOpt, wantsHelp, type OptionSpec, type Parsed } from './args.js';
import { SOCKET_OPTION } from './connect.js';
import { LIMIT_OPTIONS, limitFlags, limitHelp } from './limit-flags.js';
import { EXIT_FAILURE, EXIT_OK, LocalFailure } from './output.js';
import { prepareProcess } from './process-setup.js';
import { createNotifier, takeListenFd } from '../daemon/systemd.js';

export const SERVE_HELP = `Usage: cryptod serve [options]

Run the cryptod daemon in the foreground. Logs are JSON lines on stderr;
the first info line ("listening") names the socket. SIGTERM or SIGINT stops
it gracefully; a second signal stops it at once.

Options:
  -c, --config FILE          YAML configuration file (README "Configuration
                             file"); flags given here override its values.
                             SIGHUP or \`cryptod reload\` re-reads its keys
  --data-dir DIR             data directory, created with mode 0700
                             (default: ./.cryptod); refused if another user
                             owns it, anything in it, or a directory above
                             it that others may write (README "Files the
                             daemon trusts"; the same for every file below)
  --init                     start a new, empty keystore although a root.key
                             or kek.binding of a lost one is left in DIR
                             (README "Backup"); refused when DIR already
                             holds a keystore. Not needed on an empty DIR
  -s, --socket PATH          Unix socket to listen on (default:
                             $CRYPTOD_SOCKET, else
                             $XDG_RUNTIME_DIR/cryptod/cryptod.sock, else
                             /tmp/cryptod-$UID/cryptod.sock, whose directory
                             is created 0700 and must be yours and private)
  --socket-mode MODE         octal mode of the socket file (default: 600)
${limitHelp()}  --audit-log FILE|-         append one JSON line per security event to FILE
                             (created mode 600), or to stdout with '-'
                             (default: off)
  --log-level LEVEL          debug, info, warn or error (default: info)
  --metrics URL              serve GET /metrics (Prometheus), /healthz and
                             /readyz on tcp://HOST:PORT (loopback; another
                             address needs the --tls-* files of --listen and
                             then takes client certificates only) or
                             unix:PATH (default: off, and then free)
  --log-format FORMAT        json (one JSON line per event, the default) or
                             pretty (readable lines, coloured on a terminal)
  --allow-uid N              also admit processes of uid N on the socket
                             (repeatable; the daemon's user and root always
                             may connect)
  --allow-gid N              also admit processes whose primary gid is N
                             (repeatable; supplementary groups are not seen)
  --listen tcp://HOST:PORT   also listen on TCP, with mutual TLS only; needs
                             the three --tls-* files below
  --tls-cert FILE            server certificate (PEM)
  --tls-key FILE             its private key (PEM, mode 600 or stricter)
  --tls-client-ca FILE       CA whose client certificates are admitted; the
                             certificate's subject CN becomes the client name
  --tls-crl FILE             CRL(s) of that CA (PEM): revoked certificates
                             are refused; SIGHUP or \`cryptod reload\` re-read
                             the four TLS files and close live connections
                             whose certificate the CRL now lists
  -h, --help                 show this help

Environment:
  CRYPTOD_SOCKET             socket path when --socket is not given
`;

const OPTIONS: OptionSpec = {
  ...SOCKET_OPTION,
  ...LIMIT_OPTIONS,
  config: { type: 'string', short: 'c' },
  'data-dir': { type: 'string' },
  init: { type: 'boolean' },
  'socket-mode': { type: 'string' },
  'audit-log': { type: 'string' },
  'log-level': { type: 'string' },
  'log-format': { type: 'string' },
  metrics: { type: 'string' },
  'allow-uid': { type: 'string', multiple: true },
  'allow-gid': { type: 'string', multiple: true },
  listen: { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'tls-client-ca': { type: 'string' },
  'tls-crl': { type: 'string' },
};

const LEVELS: readonly Level[] = ['debug', 'info', 'warn', 'error'];

/**
 * The command line and the --config file as a daemon configuration; a flag
 * wins over the file's value. Throws UsageError, or a LocalFailure listing
 * every problem of the file as FILE:LINE:COL: field: message, or naming the
 * limit out of range.
 */
function configure(argv: readonly string[]): { config: DaemonConfig; logFormat: LogFormat } {
  const p = parseCommand('serve', argv, OPTIONS);
  const logFormat = choiceOpt(p, 'log-format', LOG_FORMATS, 'serve') ?? 'json';
  const file = configOption(p);
  const overrides: ConfigOverrides = { ...accessOptions(p), limits: limitFlags(p, 'serve') };
  const set = <K extends keyof ConfigOverrides>(key: K, value: ConfigOverrides[K] | undefined): void => {
    if (value !== undefined) overrides[key] = value;
  };
  set('dataDir', stringOpt(p, 'data-dir'));
  set('socket', stringOpt(p, 'socket'));
  set('socketMode', modeOpt(p, 'socket-mode', 'serve'));
  set('logLevel', choiceOpt(p, 'log-level', LEVELS, 'serve'));
  set('auditLog', stringOpt(p, 'audit-log'));
  set('metrics', stringOpt(p, 'metrics'));
  if (p.values.init === true) overrides.init = true;
  try {
    return { config: daemonConfig(file, overrides), logFormat };
  } catch (err) {
    // A limit out of range: say what to fix, no code.
    if (err instanceof CryptodError) throw new LocalFailure(err.message, { cause: err });
    throw err;
  }
}

/** --allow-uid/--allow-gid and --listen with its TLS files. Missing TLS files are the daemon's ConfigError, which names them. */
function accessOptions(p: Parsed): Pick<ConfigOverrides, 'access' | 'tcp'> {
  const ids = (flag: string): number[] => {
    const values = (p.values as Record<string, unknown>)[flag];
    return (Array.isArray(values) ? (values as string[]) : []).map((v) => {
      if (!/^[0-9]+$/.test(v) || Number(v) > 0xfffffffe) throw new UsageError(`option '--${flag}' expects a numeric id from 0 to 4294967294, got '${v}'`, 'serve');
      return Number(v);
    });
  };
  const out: Pick<ConfigOverrides, 'access' | 'tcp'> = {};
  const uids = ids('allow-uid');
  const gids = ids('allow-gid');
  if (uids.length > 0 || gids.length > 0) out.access = { uids, gids };
  const url = stringOpt(p, 'listen');
  const certFile = stringOpt(p, 'tls-cert');
  const keyFile = stringOpt(p, 'tls-key');
  const clientCaFile = stringOpt(p, 'tls-client-ca');
  const crlFile = stringOpt(p, 'tls-crl');
  if (url === undefined) {
    if (certFile !== undefined || keyFile !== undefined || clientCaFile !== undefined || crlFile !== undefined) {
      throw new UsageError('--tls-cert, --tls-key, --tls-client-ca and --tls-crl configure the TCP listener: give --listen tcp://HOST:PORT too', 'serve');
    }
    return out;
  }
  out.tcp = {
    url,
    ...(certFile === undefined ? {} : { certFile }),
    ...(keyFile === undefined ? {} : { keyFile }),
    ...(clientCaFile === undefined ? {} : { clientCaFile }),
    ...(crlFile === undefined ? {} : { crlFile }),
  };
  return out;
}

/** Run the daemon; resolves with the exit status once it has stopped. */
export async function serve(argv: readonly string[]): Promise<number> {
  if (wantsHelp(argv)) {
    process.stdout.write(SERVE_HELP);
    return EXIT_OK;
  }
  const { config, logFormat } = configure(argv);
  const log = createLogger({ level: config.logLevel, format: logFormat });
  const processLimits = prepareProcess(log);
  // systemd (contrib/systemd/): the socket it may hand over, and where it wants to hear of readiness.
  let listenFd: number | null;
  try {
    listenFd = takeListenFd();
  } catch (err) {
    if (err instanceof CryptodError) throw new LocalFailure(err.message, { cause: err });
    throw err;
  }
  const notifier = createNotifier(process.env, (state, err) => log.warn('sd_notify failed', { state: state.split('\n')[0], error: err instanceof Error ? err.message : String(err) }));
  delete process.env.NOTIFY_SOCKET;
  const daemon = createDaemon(config, { logger: log, ...(listenFd === null ? {} : { listenFd }) });

  // Signals are handled from the start: one that arrives while the daemon
  // starts closes it once started (close() waits for start), rather than
  // leaving a stale socket file.
  let stopping = false;
  let stopped!: (code: number) => void;
  const done = new Promise<number>((res) => (stopped = res));
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.warn('second signal during shutdown: exiting now', { signal });
      dieBy(signal);
      return;
    }
    stopping = true;
    log.info('shutting down', { signal });
    notifier?.stopping();
    notifier?.close();
    daemon.close().then(
      () => stopped(EXIT_OK),
      (err: unknown) => {
        log.error('shutdown failed', { error: err instanceof Error ? err.message : String(err) });
        stopped(EXIT_FAILURE);
      },
    );
  };
  // SIGHUP re-reads --config (src/config/reload.ts), or the TLS files; the outcome is logged there.
  const onHangup = (): void => {
    daemon.reload('SIGHUP').catch(() => undefined);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('SIGHUP', onHangup);
  try {
    await daemon.start();
  } catch (err) {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    process.off('SIGHUP', onHangup);
    // Start-up failures are configuration problems: say what to fix, no code.
    if (err instanceof CryptodError) throw new LocalFailure(err.message, { cause: err });
    throw err;
  }
  processLimits.started(config.limits);
  // The keys of the configuration are loaded and the socket is served (daemon.start()).
  notifier?.ready();
  const code = await done;
  notifier?.close();
  process.off('SIGHUP', onHangup);
  return code;
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
