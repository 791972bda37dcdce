/**
 * The configuration a daemon is assembled from (src/daemon/assemble.ts):
 * the configuration file and the command line merged, every value checked
 * and every default applied, so the assembly has nothing left to decide.
 *
 *   --config FILE ─▶ loadConfig ─┐
 *                                ├─▶ daemonConfig() ─▶ DaemonConfig ─▶ createDaemon()
 *   flags ─────────▶ overrides ──┘     (a flag wins over the file's value)
 *
 * Relative paths are resolved here, against the working directory, so that
 * the daemon does not depend on where it was when a later step runs.
 */
import { resolve } from 'node:path';
import type { Level } from '../observe/logger.js';
import { ConfigError } from '../protocol/errors.js';
import type { ProviderConfig } from './config.js';
import type { LoadedConfig } from './load.js';
import { resolveLimits, type Limits } from './limits.js';
import type { AccessPolicy, TcpListenOptions } from './listeners.js';
import { DEFAULT_DATA_DIR, resolveSocket, type SocketLocation } from './paths.js';

/** Where the root KEK's passphrase comes from; neither: the data directory's root.key file. */
export interface KekSource {
  readonly passphraseFile?: string;
  readonly passphraseEnv?: string;
}

export interface DaemonConfig {
  /** Absolute; created 0700 at start, refused when others may access it. */
  readonly dataDir: string;
  /**
   * The Unix socket: its absolute path, and where that came from. A default
   * location's directory ($XDG_RUNTIME_DIR/cryptod, /tmp/cryptod-$UID) must
   * be the daemon user's own and private (src/config/paths.ts).
   */
  readonly socket: SocketLocation;
  readonly socketMode: number;
  readonly logLevel: Level;
  readonly limits: Limits;
  /** Who besides the daemon's own user and root may connect on the socket. */
  readonly access?: AccessPolicy;
  /** The second listener: TCP with mutual TLS. */
  readonly tcp?: TcpListenOptions;
  /** The audit log's file, or `-` for stdout; off when absent. */
  readonly auditLog?: string;
  /** The Vault-compatible HTTP listener (src/http/). */
  readonly http?: HttpListenerConfig;
  /** Token client names that administer every key (create, config, rotate, delete). */
  readonly adminClients?: readonly string[];
  /** The metrics and health listener (src/daemon/metrics-listener.ts); off when absent. */
  readonly metrics?: { listen: string; keyLabels: boolean };
  readonly kek: KekSource;
  /** KEK providers besides the implicit `local` (`providers:` of the file). */
  readonly providers: Readonly<Record<string, ProviderConfig>>;
  /** The provider that wraps managed-key material at rest (`root:`, `--root-provider`); default `local`. */
  readonly root: string;
  /** Start a new, empty keystore although a lost one's root.key or kek.binding is left in the data directory (`serve --init`, src/kek/local.ts). */
  readonly init: boolean;
  /** The configuration file, when there is one: its keys are applied at start, and reload re-reads it. */
  readonly file: LoadedConfig | null;
  /** The PostgreSQL keystore: postgres://…, env:NAME or file:PATH (a secret); absent = SQLite in dataDir. */
  readonly store?: string;
}

/** Settings given on the command line (or by an embedding program); each wins over the file's. */
export interface ConfigOverrides {
  dataDir?: string;
  socket?: string;
  socketMode?: number;
  logLevel?: Level;
  /** Merged limit by limit with the file's. */
  limits?: Partial<Limits>;
  access?: AccessPolicy;
  tcp?: TcpListenOptions;
  auditLog?: string;
  /** `--metrics URL`; keyLabels comes from the file. */
  metrics?: string;
  init?: boolean;
  /** `--root-provider NAME`: `local` or a provider of the file. */
  root?: string;
  store?: string;
  http?: HttpListenerConfig;
  adminClients?: readonly string[];
}

/** `--http URL` and `--http-mount PATH` (YAML `http: { listen, mount }`). */
export interface HttpListenerConfig {
  /** `unix:/path` or `tcp://HOST:PORT` (a non-loopback HOST needs the `tcp` listener's TLS files). */
  readonly url: string;
  /** Transit mount path (default `transit`). */
  readonly mount?: string;
}

/** Default socket mode: only the daemon's user. */
export const DEFAULT_SOCKET_MODE = 0o600;

/**
 * Merge `file` and `overrides` into a configuration.
 *
 * @throws ConfigError when the merged limits are out of range (a file's
 *   limits are checked on their own when it is loaded; a flag, or a flag
 *   and the file together, can still break a range).
 */
export function daemonConfig(file: LoadedConfig | null, overrides: ConfigOverrides = {}): DaemonConfig {
  const f = file?.config;
  const dataDir = resolve(overrides.dataDir ?? f?.dataDir ?? DEFAULT_DATA_DIR);
  const access = overrides.access ?? f?.access;
  const tcp = overrides.tcp ?? f?.tcp;
  const auditLog = overrides.auditLog ?? f?.audit?.log;
  const providers = f?.providers ?? {};
  const root = overrides.root ?? f?.root ?? 'local';
  if (root !== 'local' && !Object.hasOwn(providers, root)) {
    throw new ConfigError(
      `--root-provider ${root}: expected local or a provider configured under providers: in the configuration file (${['local', ...Object.keys(providers)].join(', ')})`,
    );
  }
  const http = overrides.http ?? f?.http;
  const adminClients = overrides.adminClients ?? f?.adminClients;
  const store = overrides.store ?? f?.store;
  const metrics = overrides.metrics === undefined ? f?.metrics : { listen: overrides.metrics, keyLabels: f?.metrics?.keyLabels ?? false };
  return {
    dataDir,
    // Explicit, else $CRYPTOD_SOCKET, else the user's runtime directory, else /tmp/cryptod-$UID.
    socket: resolveSocket(overrides.socket ?? f?.socket),
    socketMode: overrides.socketMode ?? f?.socketMode ?? DEFAULT_SOCKET_MODE,
    logLevel: overrides.logLevel ?? f?.logLevel ?? 'info',
    limits: resolveLimits({ ...f?.limits, ...overrides.limits }),
    ...(access === undefined ? {} : { access }),
    ...(tcp === undefined ? {} : { tcp }),
    ...(auditLog === undefined ? {} : { auditLog }),
    ...(http === undefined ? {} : { http }),
    ...(adminClients === undefined ? {} : { adminClients }),
    ...(metrics === undefined ? {} : { metrics }),
    kek: f?.kek ?? {},
    providers,
    root,
    init: overrides.init ?? false,
    file,
    ...(store === undefined ? {} : { store }),
  };
}
