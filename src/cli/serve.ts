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
import cluster from 'node:cluster';
import { constants } from 'node:os';
import { resolve } from 'node:path';
import { configOption } from './config-option.js';
import { daemonConfig, type ConfigOverrides, type DaemonConfig } from '../config/daemon-config.js';
import { createDaemon } from '../daemon/assemble.js';
import { LOG_FORMATS, createLogger, type Level, type LogFormat, type Logger } from '../observe/logger.js';
import { CryptodError } from '../protocol/errors.js';
import { UsageError, choiceOpt, modeOpt, parseCommand, stringOpt, wantsHelp, type OptionSpec, type Parsed } from './args.js';
import { SOCKET_OPTION } from './connect.js';
import { LIMIT_OPTIONS, limitFlags, limitHelp } from './limit-flags.js';
import { EXIT_FAILURE, EXIT_OK, LocalFailure } from './output.js';
import { prepareProcess } from './process-setup.js';
import { reportOf, type WorkerReload } from '../daemon/fleet.js';
import { workerLink } from './worker-link.js';
import { INHERITED_FD_ENV, parseWorkers, prepareShared, runPrimary } from './workers.js';
import { VaultFrontDoor } from '../http/vault-front-door.js';
import type { FrontDoor } from '../ops/front-door.js';
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
  --root-provider NAME       the KEK provider that wraps managed-key material
                             at rest: local (default) or a provider of the
                             --config file's providers: (overrides root:)
  --store SPEC               keep the keystore in PostgreSQL instead of
                             SQLite in DIR: postgres://user:pw@host/db,
                             env:NAME (the URL in $NAME) or file:PATH (the
                             URL on the file's first line); the password is
                             never logged (README "Running several daemons").
                             root.key and kek.binding stay in DIR
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
  --workers N|auto           serve from N worker processes behind the same
                             socket(s) (default: 1; auto: one per core).
                             Each connection lives in one worker; limits
                             apply per worker; signals go to this process
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
  --http unix:PATH|tcp://HOST:PORT
                             also serve Vault's transit API over HTTP
                             (docs/vault-compat.md): on a Unix socket (mode
                             600, peer uid checked), plain HTTP on loopback,
                             or HTTPS with client certificates elsewhere
                             (needs --listen and its --tls-* files); clients
                             authenticate with a token client's token or
                             their certificate (cert:<CN>); with --workers
                             every worker serves it
  --http-mount PATH          mount path of the transit engine (default:
                             transit, i.e. /v1/transit/)
  --admin-client NAME        the token client NAME administers every key
                             (create, config, rotate, delete, export) as a
                             Vault policy on transit/keys/* would (repeatable)
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
  'root-provider': { type: 'string' },
  store: { type: 'string' },
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
  workers: { type: 'string' },
  http: { type: 'string' },
  'http-mount': { type: 'string' },
  'admin-client': { type: 'string', multiple: true },
};

const LEVELS: readonly Level[] = ['debug', 'info', 'warn', 'error'];

/**
 * The command line and the --config file as a daemon configuration; a flag
 * wins over the file's value. Throws UsageError, or a LocalFailure listing
 * every problem of the file as FILE:LINE:COL: field: message, or naming the
 * limit out of range.
 */
function configure(argv: readonly string[]): { config: DaemonConfig; workers: number; logFormat: LogFormat } {
  const p = parseCommand('serve', argv, OPTIONS);
  const workersFlag = parseWorkers(stringOpt(p, 'workers'));
  const logFormat = choiceOpt(p, 'log-format', LOG_FORMATS, 'serve') ?? 'json';
  const file = configOption(p);
  // The flag wins over the file's `workers:`, as every flag does.
  const workers = workersFlag ?? file?.config.workers ?? 1;
  const overrides: ConfigOverrides = { ...accessOptions(p), limits: limitFlags(p, 'serve') };
  const set = <K extends keyof ConfigOverrides>(key: K, value: ConfigOverrides[K] | undefined): void => {
    if (value !== undefined) overrides[key] = value;
  };
  set('dataDir', stringOpt(p, 'data-dir'));
  set('socket', stringOpt(p, 'socket'));
  set('socketMode', modeOpt(p, 'socket-mode', 'serve'));
  set('logLevel', choiceOpt(p, 'log-level', LEVELS, 'serve'));
  set('auditLog', stringOpt(p, 'audit-log'));
  set('root', stringOpt(p, 'root-provider'));
  set('store', stringOpt(p, 'store'));
  set('metrics', stringOpt(p, 'metrics'));
  if (p.values.init === true) overrides.init = true;
  const http = stringOpt(p, 'http');
  const mount = stringOpt(p, 'http-mount');
  if (http !== undefined) overrides.http = { url: http, ...(mount === undefined ? {} : { mount }) };
  else if (mount !== undefined) {
    if (file?.config.http === undefined) throw new UsageError('--http-mount configures the HTTP listener: give --http too', 'serve');
    overrides.http = { ...file.config.http, mount };
  }
  const admins = (p.values as Record<string, unknown>)['admin-client'];
  if (Array.isArray(admins)) overrides.adminClients = admins as string[];
  try {
    return { config: daemonConfig(file, overrides), workers, logFormat };
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

/** The HTTP front door when the configuration asks for one (src/http/: the daemon layer cannot build it). */
function frontDoors(config: DaemonConfig): { frontDoors?: FrontDoor[] } {
  if (config.http === undefined) return {};
  try {
    return { frontDoors: [new VaultFrontDoor(config.http)] };
  } catch (err) {
    if (err instanceof CryptodError) throw new LocalFailure(err.message, { cause: err });
    throw err;
  }
}

/** Run the daemon; resolves with the exit status once it has stopped. */
export async function serve(argv: readonly string[]): Promise<number> {
  if (wantsHelp(argv)) {
    process.stdout.write(SERVE_HELP);
    return EXIT_OK;
  }
  const { config: configured, workers, logFormat } = configure(argv);
  const base = createLogger({ level: configured.logLevel, format: logFormat });
  // A worker's every line names it: the workers share one stderr.
  const log = cluster.isWorker ? tagged(base, { worker: process.pid }) : base;
  const processLimits = prepareProcess(log);
  if (workers > 1 && cluster.isPrimary) return primary(configured, workers, log);
  // A worker: the primary prepared the data directory, the socket and the keystore (an --init included).
  const fleet = cluster.isWorker ? workerLink() : null;
  // It inherited the primary's umask, set for the socket's mode (no x bit: a
  // directory made under it would be unusable). Everything a daemon creates is
  // private anyway, so a private umask loses nothing.
  if (fleet !== null) process.umask(0o077);
  const config = fleet === null ? configured : { ...configured, init: false };
  // systemd (contrib/systemd/): the socket it may hand over, and where it wants to hear of readiness.
  let listenFd: number | null;
  try {
    // A worker's descriptor is the primary's (workers.ts INHERITED_FD_ENV); the primary read LISTEN_FDS.
    listenFd = fleet === null ? takeListenFd() : workerListenFd();
  } catch (err) {
    if (err instanceof CryptodError) throw new LocalFailure(err.message, { cause: err });
    throw err;
  }
  const notifier = createNotifier(process.env, (state, err) => log.warn('sd_notify failed', { state: state.split('\n')[0], error: err instanceof Error ? err.message : String(err) }));
  delete process.env.NOTIFY_SOCKET;
  const daemon = createDaemon(config, {
    logger: log, ...(fleet === null ? {} : { fleet: fleet.link }), ...frontDoors(config), ...(listenFd === null ? {} : { listenFd }),
  });

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
  // A worker hears SIGINT and SIGHUP through the primary, which relays each once
  // (a terminal sends them to the whole process group: twice would be "die now").
  const ignore = (): void => undefined;
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', fleet === null ? onSignal : ignore);
  process.on('SIGHUP', fleet === null ? onHangup : ignore);
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
  fleet?.attach({
    report: () => {
      try {
        return reportOf(daemon.status());
      } catch {
        return null; // stopped meanwhile
      }
    },
    // The outcome goes back to the worker whose RELOAD passed it on (its reply lists every worker's).
    reload: (trigger) => daemon.reload(trigger).then(
      (outcome): WorkerReload => (outcome === null
        ? { pid: process.pid, outcome: 'failed', error: { code: 'CRYPTOD_ERR_UNSUPPORTED', message: 'this worker is starting or stopping, so it did not reload' } }
        : { pid: process.pid, outcome: 'reloaded' }),
      (err: unknown): WorkerReload => ({
        pid: process.pid, outcome: 'failed',
        error: { code: err instanceof CryptodError ? err.code : 'CRYPTOD_ERR_INTERNAL', message: err instanceof Error ? err.message : String(err) },
      }),
    ),
  });
  // The keys of the configuration are loaded and the socket is served (daemon.start()).
  notifier?.ready();
  const code = await done;
  notifier?.close();
  process.off('SIGHUP', onHangup);
  return code;
}

/** `log` with `fields` added to every line (a line's own fields win). */
function tagged(log: Logger, fields: Record<string, unknown>): Logger {
  return {
    debug: (msg, f) => log.debug(msg, { ...fields, ...f }),
    info: (msg, f) => log.info(msg, { ...fields, ...f }),
    warn: (msg, f) => log.warn(msg, { ...fields, ...f }),
    error: (msg, f) => log.error(msg, { ...fields, ...f }),
  };
}

/** The descriptor the primary inherited from systemd, in a worker (workers.ts INHERITED_FD_ENV); null when none. */
function workerListenFd(): number | null {
  const value = process.env[INHERITED_FD_ENV];
  delete process.env[INHERITED_FD_ENV];
  return value === undefined ? null : Number(value);
}

/** `--workers N` (N > 1), in the primary: prepare what the workers share, then fork and supervise them (workers.ts). */
async function primary(config: DaemonConfig, workers: number, log: Logger): Promise<number> {
  if (config.auditLog === '-') {
    throw new LocalFailure('--audit-log - (stdout) cannot be shared by several workers: several processes on one pipe may split a line; give a file, which every worker appends whole lines to');
  }
  let listenFd: number | null;
  try {
    listenFd = takeListenFd();
    await prepareShared(config, log, listenFd !== null);
  } catch (err) {
    if (err instanceof CryptodError) throw new LocalFailure(err.message, { cause: err });
    throw err;
  }
  // systemd hears from the primary, its main pid; the workers must not speak for it.
  const notifier = createNotifier(process.env, (state, err) => log.warn('sd_notify failed', { state: state.split('\n')[0], error: err instanceof Error ? err.message : String(err) }));
  delete process.env.NOTIFY_SOCKET;
  // The primary binds the socket when the first worker listens: with this
  // umask the file is born with the configured mode, as in a single daemon.
  process.umask(0o777 & ~config.socketMode);
  // Every worker listens on the native socket before its HTTP socket, so once
  // one has, the next Unix bind is the HTTP socket's: born 0600, as in a single daemon.
  const socketPath = resolve(config.socket.path);
  const tighten = (_w: unknown, address: { addressType: number | string; address: string | null }): void => {
    if (address.addressType !== -1 || address.address === null || resolve(address.address) !== socketPath) return;
    process.umask(0o177);
    cluster.off('listening', tighten);
  };
  if (config.http !== undefined && listenFd === null) cluster.on('listening', tighten);
  try {
    return await runPrimary({
      count: workers, log, die: dieBy,
      ...(listenFd === null ? {} : { env: { [INHERITED_FD_ENV]: String(listenFd) } }),
      ...(notifier === null ? {} : { ready: () => notifier.ready(), stopping: () => notifier.stopping() }),
    });
  } finally {
    cluster.off('listening', tighten);
    notifier?.close();
  }
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
