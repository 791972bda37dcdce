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
import type { CborValue } from '../protocol/cbor.js';
import { asCbor } from '../protocol/schema.js';
import { ConfigFileError, loadConfig, type LoadedConfig } from '../config/load.js';
import { DEFAULT_DATA_DIR, preparePrivateSocketDirectory, resolveSocket } from '../config/paths.js';
import { applyKeys, createReloader, type Reloader } from '../config/reload.js';
import { openManagedKeys, type OpenedManagedKeys } from '../daemon/managed-keys.js';
import { createLogger, type Level, type Logger } from '../observe/logger.js';
import { NO_AUDIT, createAudit, type Audit } from '../observe/audit.js';
import { watchClientChanges } from '../auth/revocation.js';
import type { Limits } from '../config/limits.js';
import { peerCred, peerCredAvailable, raiseFileLimit, setNonDumpable } from '../daemon/peer-cred.js';
import { startDaemon, type Daemon, type DaemonOptions, type TlsReloadSummary } from '../daemon/server.js';
import { ConfigError, CryptodError } from '../protocol/errors.js';
import { ensurePrivateDir } from '../store/private-files.js';
import { readTrustedFileSync } from '../store/trusted-files.js';
import { openSqliteClientRegistry, type SqliteClientRegistry } from '../store/sqlite/client-registry.js';
import { UsageError, choiceOpt, integerOpt, modeOpt, parseCommand, stringOpt, wantsHelp, type OptionSpec, type Parsed } from './args.js';
import { SOCKET_OPTION } from './connect.js';
import { EXIT_FAILURE, EXIT_OK, LocalFailure } from './output.js';

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
  --max-frame BYTES          largest frame accepted (default: 4194304, 4 MiB;
                             at most 67108864)
  --max-nodes-per-client N   live keys and contexts per client (default: 10000)
  --max-inflight N           requests in flight per connection before the
                             daemon stops reading from it (default: 1024)
  --max-inflight-bytes BYTES payload bytes of the requests in flight per
                             connection before the daemon stops reading from
                             it (default: 33554432, 32 MiB)
  --max-connections-per-client N
                             open connections per client (default: 128)
  --max-connections-per-uid N
                             open connections per uid, counted from accept;
                             not applied to the daemon's own uid and root
                             (default: a quarter of --max-connections)
  --max-connections N        open connections over both listeners; the last
                             --max-connections-per-uid are kept for the
                             daemon's own uid and root (default: 512)
  --hello-timeout-ms MS      close a connection that has not completed HELLO
                             within MS of connecting (default: 10000)
  --context-idle-ms MS       release hash, HMAC and cipher contexts that no
                             request used for MS; 0: never (default: 600000)
  --max-context-memory BYTES memory for context state over all clients
                             (default: 536870912, 512 MiB)
  --max-context-memory-per-client BYTES
                             the share of it one client may hold
                             (default: a quarter of --max-context-memory)
  --audit-log FILE|-         append one JSON line per security event to FILE
                             (created mode 600), or to stdout with '-'
                             (default: off)
  --shutdown-grace-ms MS     how long shutdown waits for requests in flight
                             (default: 5000)
  --log-level LEVEL          debug, info, warn or error (default: info)
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
  config: { type: 'string', short: 'c' },
  'data-dir': { type: 'string' },
  init: { type: 'boolean' },
  'socket-mode': { type: 'string' },
  'max-frame': { type: 'string' },
  'max-nodes-per-client': { type: 'string' },
  'max-inflight': { type: 'string' },
  'max-inflight-bytes': { type: 'string' },
  'max-connections-per-client': { type: 'string' },
  'max-connections-per-uid': { type: 'string' },
  'max-connections': { type: 'string' },
  'hello-timeout-ms': { type: 'string' },
  'context-idle-ms': { type: 'string' },
  'max-context-memory': { type: 'string' },
  'max-context-memory-per-client': { type: 'string' },
  'audit-log': { type: 'string' },
  'shutdown-grace-ms': { type: 'string' },
  'log-level': { type: 'string' },
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
 * Parse the command line and the --config file into daemon options; a flag
 * wins over the file's value. Throws UsageError, or a LocalFailure listing
 * every problem of the file as FILE:LINE:COL: field: message.
 */
function configure(argv: readonly string[]): {
  dataDir: string;
  init: boolean;
  socketFlag: string | undefined;
  level: Level;
  auditLog: string | undefined;
  options: Omit<DaemonOptions, 'socketPath'>;
  loaded: LoadedConfig | null;
} {
  const p = parseCommand('serve', argv, OPTIONS);
  const configPath = stringOpt(p, 'config');
  let loaded: LoadedConfig | null = null;
  if (configPath !== undefined) {
    try {
      loaded = loadConfig(configPath);
    } catch (err) {
      if (err instanceof ConfigFileError) throw new LocalFailure(err.message, { cause: err });
      throw err;
    }
  }
  const file = loaded?.config;
  const limits: { -readonly [K in keyof Limits]?: number } = { ...file?.limits };
  const set = (key: keyof Limits, flag: string): void => {
    const v = integerOpt(p, flag, 'serve');
    if (v !== undefined) limits[key] = v;
  };
  set('maxFrame', 'max-frame');
  set('maxNodesPerClient', 'max-nodes-per-client');
  set('maxInflightPerConnection', 'max-inflight');
  set('maxInflightBytesPerConnection', 'max-inflight-bytes');
  set('maxConnectionsPerClient', 'max-connections-per-client');
  set('maxConnectionsPerUid', 'max-connections-per-uid');
  set('maxConnections', 'max-connections');
  set('helloTimeoutMs', 'hello-timeout-ms');
  set('contextIdleMs', 'context-idle-ms');
  set('maxContextMemory', 'max-context-memory');
  set('maxContextMemoryPerClient', 'max-context-memory-per-client');
  set('shutdownGraceMs', 'shutdown-grace-ms');
  const socketMode = modeOpt(p, 'socket-mode', 'serve') ?? file?.socketMode;
  const flagged = accessOptions(p);
  const access = flagged.access ?? file?.access;
  const tcp = flagged.tcp ?? file?.tcp;
  return {
    dataDir: stringOpt(p, 'data-dir') ?? file?.dataDir ?? DEFAULT_DATA_DIR,
    init: p.values.init === true,
    socketFlag: stringOpt(p, 'socket') ?? file?.socket,
    level: choiceOpt(p, 'log-level', LEVELS, 'serve') ?? file?.logLevel ?? 'info',
    auditLog: stringOpt(p, 'audit-log') ?? file?.audit?.log,
    options: {
      ...(socketMode === undefined ? { limits } : { limits, socketMode }),
      ...(access === undefined ? {} : { access }),
      ...(tcp === undefined ? {} : { tcp }),
    },
    loaded,
  };
}

/** Largest KEK passphrase file read: a passphrase is a line, not a document. */
export const MAX_PASSPHRASE_FILE_BYTES = 64 * 1024;

/**
 * The KEK passphrase named by the file's `kek:` section, as bytes the caller
 * zeroes after use; one trailing newline of a passphrase file is not part of
 * it (editors add one). The file is a secret the daemon trusts: owned by its
 * user or root, mode 600, a regular file (src/store/trusted-files.ts).
 */
export function kekPassphrase(file: LoadedConfig['config'] | undefined): Buffer | undefined {
  const kek = file?.kek;
  if (kek?.passphraseFile !== undefined) {
    const raw = readTrustedFileSync(kek.passphraseFile, { what: 'kek.passphraseFile', maxBytes: MAX_PASSPHRASE_FILE_BYTES, secret: true });
    let end = raw.length;
    if (end > 0 && raw[end - 1] === 0x0a) end--;
    if (end > 0 && raw[end - 1] === 0x0d) end--;
    const out = Buffer.alloc(end);
    raw.copy(out, 0, 0, end);
    raw.fill(0);
    if (out.length === 0) throw new ConfigError(`kek.passphraseFile ${kek.passphraseFile} is empty`);
    return out;
  }
  if (kek?.passphraseEnv !== undefined) {
    const v = process.env[kek.passphraseEnv];
    if (v === undefined || v === '') throw new ConfigError(`kek.passphraseEnv names ${kek.passphraseEnv}, which is not set in the environment`);
    return Buffer.from(v, 'utf8');
  }
  return undefined;
}

/** --allow-uid/--allow-gid and --listen with its TLS files. Missing TLS files are the daemon's ConfigError, which names them. */
function accessOptions(p: Parsed): Pick<DaemonOptions, 'access' | 'tcp'> {
  const ids = (flag: string): number[] => {
    const values = (p.values as Record<string, unknown>)[flag];
    return (Array.isArray(values) ? (values as string[]) : []).map((v) => {
      if (!/^[0-9]+$/.test(v) || Number(v) > 0xfffffffe) throw new UsageError(`option '--${flag}' expects a numeric id from 0 to 4294967294, got '${v}'`, 'serve');
      return Number(v);
    });
  };
  const out: Pick<DaemonOptions, 'access' | 'tcp'> = {};
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
  const { dataDir, init, socketFlag, level, auditLog, options, loaded } = configure(argv);
  const log = createLogger({ level });
  // Raised before the socket exists; logged once the daemon started, so a
  // start-up failure is the only line it prints.
  const fileLimit = raiseFileLimitOrError();

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
  // SIGHUP re-reads --config (src/config/reload.ts); its outcome is logged there.
  let reloader: Reloader | null = null;
  const onHangup = (): void => {
    if (reloader === null && loaded === null && daemon !== null && options.tcp !== undefined) {
      reloadTlsOnly(daemon, log, 'SIGHUP');
      return;
    }
    if (reloader === null) {
      log.warn(loaded === null ? 'SIGHUP ignored: the daemon was started without --config, so there is nothing to reload' : 'SIGHUP ignored: the daemon is still starting');
      return;
    }
    reloader.reload('SIGHUP').catch(() => undefined);
  };
  process.on('SIGHUP', onHangup);

  // Token clients live in the data directory's registry (`cryptod client add`).
  let clients: SqliteClientRegistry | null = null;
  let managed: OpenedManagedKeys | null = null;
  let audit: Audit = NO_AUDIT;
  try {
    const dir = ensurePrivateDir(dataDir);
    const socketLocation = resolveSocket(socketFlag);
    preparePrivateSocketDirectory(socketLocation);
    const socketPath = socketLocation.path;
    if (auditLog !== undefined) audit = createAudit({ target: auditLog, log });
    clients = openSqliteClientRegistry({ dataDir: dir });
    const passphrase = kekPassphrase(loaded?.config);
    try {
      managed = await openManagedKeys({ dataDir: dir, init, logger: log, audit, ...(passphrase === undefined ? {} : { passphrase }) });
    } finally {
      passphrase?.fill(0);
    }
    // The file's keys are applied before the socket exists: a client never
    // sees a daemon without the keys its configuration declares.
    if (loaded !== null) {
      const changes = await applyKeys(managed.manager, loaded);
      log.info('configuration applied', { file: loaded.config.path, ...changes, reloadable: ['keys'] });
    }
    // Without --config, RELOAD re-reads the TLS files if there is a TLS
    // listener, and otherwise answers CRYPTOD_ERR_UNSUPPORTED.
    let reload: Pick<DaemonOptions, 'reload'> = {};
    if (loaded !== null) {
      const r = createReloader({ file: loaded.config.path, initial: loaded.config, manager: managed.manager, log, reloadTls: () => daemon?.reloadTls() ?? null });
      reloader = r;
      reload = { reload: async () => asCbor(await r.reload('RELOAD')) };
    } else if (options.tcp !== undefined) {
      reload = { reload: async () => asCbor({ tls: reloadTlsOnly(daemon!, log, 'RELOAD') }) };
    }
    daemon = await startDaemon({ ...options, socketPath, logger: log, clients, audit, keys: managed, ...reload, ...peerIdentityOption(log) });
    logFileLimit(log, fileLimit, daemon.limits.maxConnections);
  } catch (err) {
    await managed?.close();
    await clients?.close();
    audit.close();
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    process.off('SIGHUP', onHangup);
    // Start-up failures are configuration problems: say what to fix, no code.
    if (err instanceof CryptodError) throw new LocalFailure(err.message, { cause: err });
    throw err;
  }
  // `cryptod client add|revoke` write the registry from another process; with
  // an audit log the daemon records what it observes there (src/auth/revocation.ts).
  const clientChanges = audit.enabled ? watchClientChanges(clients, audit, log) : null;
  if (stopping) shutdown(daemon);
  const code = await done;
  clientChanges?.stop();
  process.off('SIGHUP', onHangup);
  await managed?.close();
  await clients.close();
  audit.close();
  return code;
}

/** Reload of a daemon without --config: only its TLS files. Logged; rethrown for RELOAD to answer. */
function reloadTlsOnly(daemon: Daemon, log: Logger, trigger: string): TlsReloadSummary | null {
  try {
    return daemon.reloadTls();
  } catch (err) {
    log.error('TLS reload refused; the running certificate, CA and CRL stay', { trigger, error: err instanceof Error ? err.message : String(err) });
    if (trigger === 'RELOAD') throw err;
    return null;
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

/**
 * Every connection costs a file descriptor: raise the soft RLIMIT_NOFILE to
 * the hard limit (src/daemon/peer-cred.ts). Null where the addon cannot.
 */
function raiseFileLimitOrError(): ReturnType<typeof raiseFileLimit> | { error: string } {
  try {
    return raiseFileLimit();
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
}

/**
 * Log the descriptor limit, and warn when the connection cap, the refused
 * connections that linger a moment (a quarter of it, src/daemon/refusals.ts)
 * and the daemon's own files (FD_HEADROOM) do not fit in it.
 */
function logFileLimit(log: Logger, raised: ReturnType<typeof raiseFileLimitOrError>, maxConnections: number): void {
  if (raised === null) return;
  if ('error' in raised) {
    log.warn('could not raise the file descriptor limit (setrlimit RLIMIT_NOFILE)', { error: raised.error });
    return;
  }
  log.info('file descriptor limit', { softBefore: raised.before.soft, soft: raised.after.soft, hard: raised.after.hard });
  const needed = maxConnections + Math.floor(maxConnections / 4) + FD_HEADROOM;
  if (raised.after.soft !== -1 && raised.after.soft < needed) {
    log.warn('the file descriptor limit is too low for --max-connections: new clients may fail with EMFILE before the cap refuses them', {
      soft: raised.after.soft,
      maxConnections,
      needed,
      fix: `lower --max-connections to ${Math.max(2, Math.floor(((raised.after.soft - FD_HEADROOM) * 4) / 5))} or raise the hard limit (LimitNOFILE=, ulimit -Hn)`,
    });
  }
}

/** Descriptors the daemon needs besides connections: stdio, the listeners, the keystore, the audit log, libuv's own. */
const FD_HEADROOM = 64;

/**
 * Clients are named by the kernel-verified uid when SO_PEERCRED is readable;
 * otherwise only the socket's file mode stands between other users and the
 * daemon, which the operator should know (once, at start).
 */
function peerIdentityOption(log: Logger): Pick<DaemonOptions, 'peerIdentity'> {
  // Key material lives in this heap: no core dumps, no same-uid ptrace.
  if (!setNonDumpable()) log.warn('could not make the process non-dumpable (prctl PR_SET_DUMPABLE); disable core dumps with `ulimit -c 0` or LimitCORE=0', {});
  if (peerCredAvailable()) return { peerIdentity: peerCred };
  log.warn('peer credentials are unavailable (native addon not built, or not Linux): clients are not identified by uid, and access rests on the socket file mode alone', {
    platform: process.platform,
  });
  return {};
}
