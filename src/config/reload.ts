/**
 * Reloading the configuration file (SIGHUP, or `cryptod reload` → RELOAD op):
 *
 *   read + validate the whole file ──✗──▶ refused: nothing changes, the
 *        │                                 problems go to the log (and back
 *        ▼                                 to `cryptod reload`) as FILE:LINE:COL
 *   TLS listener: re-read its files ──✗──▶ refused: nothing changes
 *        │   (certificate, key, client CA, CRL; live connections the CRL
 *        ▼    now revokes are closed — src/daemon/tls-listener.ts)
 *   manager.applyConfig(keys) ──✗──▶ refused as a whole (one keystore
 *        │                            transaction: a change the key manager
 *        ▼                            forbids, e.g. a new type, applies nothing)
 *   log what changed; warn about settings that need a restart
 *
 * Only `keys` takes effect live (config.ts RELOADABLE_FIELDS), and the
 * contents of the TLS files (their paths need a restart). Readers are
 * not involved: applyConfig swaps the key manager's snapshot, and operations
 * in flight keep the snapshot they hold (src/keys/snapshot.ts).
 *
 * Reloads run one at a time, in the order they were asked for: a SIGHUP and
 * a RELOAD arriving together must not apply an older file after a newer one.
 */
import type { Logger } from '../observe/logger.js';
import type { TlsReloadSummary } from './listeners.js';
import type { KeyManager } from '../keys/manager.js';
import { KeyConfigError } from '../keys/policy.js';
import { RESTART_FIELDS, keyIssue, type ConfigFile } from './config.js';
import { ConfigFileError, formatProblem, reloadConfigFile, type LoadedConfig } from './load.js';

export interface ReloadSummary {
  file: string;
  created: string[];
  updated: string[];
  enabled: string[];
  disabled: string[];
  unchanged: string[];
  /** Top-level settings that differ from the running ones and wait for a restart. */
  restartNeeded: string[];
  /** The TLS listener's files re-read, when the daemon has one. */
  tls?: TlsReloadSummary;
}

export interface Reloader {
  /** The configuration in force (its `keys` are the last ones applied). */
  readonly current: ConfigFile;
  /** Re-read the file and apply it; rejects with ConfigFileError (CRYPTOD_ERR_CONFIG) when it is refused. */
  reload(trigger: string): Promise<ReloadSummary>;
}

/**
 * Apply `loaded.config.keys` to `manager`. A KeyConfigError (a change the
 * keystore's state forbids) becomes a ConfigFileError naming the lines.
 */
export async function applyKeys(manager: KeyManager, loaded: LoadedConfig): Promise<Omit<ReloadSummary, 'restartNeeded' | 'file'>> {
  try {
    const c = await manager.applyConfig(loaded.config.keys);
    return { created: c.created, updated: c.updated, enabled: c.enabled, disabled: c.disabled, unchanged: c.unchanged };
  } catch (err) {
    if (!(err instanceof KeyConfigError)) throw err;
    const keys = loaded.config.keys;
    const problems = err.issues.map((i) =>
      loaded.problemAt(i.key === undefined ? { path: ['keys'], at: 'key', message: `${i.field}: ${i.message}` } : keyIssue(i.key, keys[i.key], i.field, i.message)),
    );
    problems.sort((a, b) => a.line - b.line || a.col - b.col);
    throw new ConfigFileError(loaded.config.path, problems);
  }
}

export interface ReloaderOptions {
  file: string;
  initial: ConfigFile;
  manager: KeyManager;
  log: Logger;
  /** Re-read the TLS listener's files; null when there is no listener. Throws (ConfigError) to refuse the reload. */
  reloadTls?: () => TlsReloadSummary | null;
}

export function createReloader(options: ReloaderOptions): Reloader {
  const { file, manager, log } = options;
  let current = options.initial;
  let chain: Promise<unknown> = Promise.resolve();

  const once = async (trigger: string): Promise<ReloadSummary> => {
    log.info('reloading configuration', { file, trigger });
    try {
      const loaded = await reloadConfigFile(file);
      const restartNeeded = RESTART_FIELDS.filter((f) => !same(current[f as keyof ConfigFile], loaded.config[f as keyof ConfigFile]));
      // Before the keys: a TLS file that cannot be used refuses the reload while nothing has changed yet.
      const tls = options.reloadTls?.() ?? null;
      const changes = await applyKeys(manager, loaded);
      current = { ...current, keys: loaded.config.keys };
      if (restartNeeded.length > 0) {
        log.warn('configuration settings changed that only take effect at restart; the running values stay until then', { file, fields: restartNeeded });
      }
      log.info('configuration reloaded', { file, trigger, ...changes, restartNeeded, ...(tls === null ? {} : { tls }) });
      return { file, ...changes, restartNeeded, ...(tls === null ? {} : { tls }) };
    } catch (err) {
      if (err instanceof ConfigFileError) {
        log.error('configuration reload refused; the running configuration stays', { file, trigger, problems: err.problems.map(formatProblem) });
      } else {
        log.error('configuration reload failed; the running configuration stays', { file, trigger, error: err instanceof Error ? err.message : String(err) });
      }
      throw err;
    }
  };

  return {
    get current() {
      return current;
    },
    reload(trigger) {
      const run = chain.then(() => once(trigger));
      chain = run.catch(() => undefined);
      return run;
    },
  };
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
}
