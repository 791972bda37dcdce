/**
 * Managed keys as the daemon serves them: the key manager (src/keys/) on the
 * SQLite keystore and the local KEK provider of the data directory, plus who
 * administers them.
 *
 *   createDaemon (assemble.ts) ─▶ openManagedKeys({ dataDir }) ─▶ startDaemon({ keys })
 *                        keystore.sqlite ─▶ LocalKekProvider ─▶ KeyManager
 *   shutdown:   daemon.close() (connections first) ─▶ keys.close()
 *               (manager, then KEK, then store: the reverse of opening)
 *
 * Several daemons may share one data directory (one host, one SQLite file in
 * WAL mode): every change is a keystore transaction that bumps the store's
 * generation (design note 3), and each daemon catches up with what the
 * others committed (KeyManager.refresh: only the keys changed since its last
 * look) every `refreshIntervalMs`, and at once when a request names a key or
 * version it does not hold yet (managed-data.ts). Rotations need no
 * coordination beyond that: versions are planned from the store inside the
 * writing transaction, so two daemons due at the same instant make one version.
 *
 * Who is an administrator by default (README "Managed keys"): clients the
 * kernel identifies as the daemon's own uid (`uid:<daemon uid>/…`), and,
 * where the platform has no peer credentials, `local/…` clients — the socket
 * is 0600, so only the daemon's user can reach it then. A key's policy can
 * grant `admin` to anyone else (e.g. `token:deployer`).
 */
import type { BudgetOptions } from '../keys/budget.js';
import type { Clock } from '../keys/clock.js';
import { KeyManager, type AutoRotation } from '../keys/manager.js';
import { LocalKekProvider } from '../kek/local.js';
import type { KekProvider } from '../kek/provider.js';
import type { Keystore } from '../store/keystore.js';
import { openSqliteKeystore } from '../store/sqlite/sqlite-store.js';
import { silentLogger, type Logger } from '../observe/logger.js';
import type { Audit } from '../observe/audit.js';
import type { MetricHooks } from '../observe/metric-hooks.js';
import type { ManagedKeys } from '../ops/operation.js';

export type { ManagedKeys };

export interface OpenManagedKeysOptions {
  /** The data directory: `keystore.sqlite` and (without a passphrase) `root.key` live there. */
  dataDir: string;
  /** Derive the root KEK from a passphrase instead of the root.key file. */
  passphrase?: string | Uint8Array;
  /** Start a new store beside a root.key / kek.binding left by a lost one (`serve --init`; kek/local.ts). */
  init?: boolean;
  clock?: Clock;
  logger?: Logger;
  /** Administrator uids; default: the daemon's own uid. */
  adminUids?: readonly number[];
  /** Default true (see the header). */
  localIsAdmin?: boolean;
  /**
   * Where rotations the manager does on its own (schedule, encryption count)
   * are recorded as `key.rotated` without `by`. Manual rotations are audited
   * by the KEY_ROTATE operation instead, so each rotation is one event.
   */
  audit?: Audit;
  /**
   * How often to pick up changes other daemons made to the keystore, in ms
   * (default 1000; 0: only when a request names a key or version this daemon
   * does not hold).
   */
  refreshIntervalMs?: number;
  /** Metrics: rotations the manager does on its own are counted there (absent: off). */
  metrics?: MetricHooks;
  /** Encryption budgets of random-nonce AEAD versions (budget.ts); the defaults suit production, small ones suit tests. */
  budget?: Partial<BudgetOptions>;
}

/** Default of OpenManagedKeysOptions.refreshIntervalMs. */
export const DEFAULT_REFRESH_INTERVAL_MS = 1_000;

export interface OpenedManagedKeys extends ManagedKeys {
  readonly store: Keystore;
  /** The keystore's file (SQLite), which readiness checks is still there. */
  readonly storeFile?: string;
  readonly kek: KekProvider;
  /** Close the manager (zeroing every key once readers are done), the KEK, then the store. Idempotent. */
  close(): Promise<void>;
}

function auditRotation(audit: Audit): (e: AutoRotation) => void {
  return (e) => audit.emit({ event: 'key.rotated', key: e.key, version: e.version, previousVersion: e.previousVersion, reason: e.reason });
}

/** Who hears of the rotations the manager does on its own: the audit log, the metrics, both or neither. */
function onRotated(audit: Audit | undefined, metrics: MetricHooks | undefined): { onRotated?: (e: AutoRotation) => void } {
  const toAudit = audit?.enabled === true ? auditRotation(audit) : null;
  if (metrics === undefined || !metrics.enabled) return toAudit === null ? {} : { onRotated: toAudit };
  return {
    onRotated: (e) => {
      toAudit?.(e);
      metrics.rotated(e.reason, e.key);
    },
  };
}

/**
 * Open the keystore, the KEK and the key manager of a data directory.
 *
 * @example
 *   const keys = await openManagedKeys({ dataDir: '/var/lib/cryptod' });
 *   const daemon = await startDaemon({ socketPath, keys });
 *   // …
 *   await daemon.close();
 *   await keys.close();
 */
export async function openManagedKeys(options: OpenManagedKeysOptions): Promise<OpenedManagedKeys> {
  const store = await openSqliteKeystore({ dataDir: options.dataDir });
  let kek: KekProvider | undefined;
  let manager: KeyManager;
  try {
    const local = await LocalKekProvider.open({
      dir: options.dataDir, store, storeFile: store.file, init: options.init === true,
      ...(options.passphrase === undefined ? {} : { passphrase: options.passphrase }),
    });
    kek = local;
    if (local.binding !== 'existing') {
      (options.logger ?? silentLogger).info(local.binding === 'created' ? 'new keystore created and bound to its KEK' : 'keystore bound to its KEK (store id added)', {
        file: store.file, storeId: local.storeId, kekId: local.id,
      });
    }
    const audit = options.audit;
    manager = await KeyManager.open({
      store, kek, logger: options.logger ?? silentLogger, storeFile: store.file,
      ...(audit?.enabled === true ? { onDamaged: (e) => audit.emit({ event: 'key.damaged', key: e.key, version: e.version, file: store.file, reason: e.reason }) } : {}),
      ...onRotated(options.audit, options.metrics),
      ...(options.clock === undefined ? {} : { clock: options.clock }),
      ...(options.budget === undefined ? {} : { budget: options.budget }),
    });
  } catch (err) {
    await kek?.close();
    await store.close();
    throw err;
  }
  const ownUid = typeof process.getuid === 'function' ? process.getuid() : null;
  const adminUids = new Set(options.adminUids ?? (ownUid === null ? [] : [ownUid]));
  const k = kek;
  const poll = pollKeystore(manager, options.refreshIntervalMs ?? DEFAULT_REFRESH_INTERVAL_MS, options.logger ?? silentLogger);
  let closing: Promise<void> | null = null;
  return {
    manager, store, storeFile: store.file, kek: k, adminUids, localIsAdmin: options.localIsAdmin ?? true,
    close() {
      closing ??= (async () => {
        poll?.stop();
        await manager.close();
        await k.close();
        await store.close();
      })();
      return closing;
    },
  };
}

/** Refresh the manager from the keystore every `intervalMs` (null when 0). One refresh at a time; unref'd. */
function pollKeystore(manager: KeyManager, intervalMs: number, log: Logger): { stop(): void } | null {
  if (!Number.isSafeInteger(intervalMs) || intervalMs < 0) throw new RangeError(`refreshIntervalMs must be an integer ≥ 0, got ${intervalMs}`);
  if (intervalMs === 0) return null;
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    manager.refresh().then(
      (names) => {
        running = false;
        if (names.length > 0) log.debug('keys changed by another process picked up', { keys: names });
      },
      (err: unknown) => {
        running = false;
        log.warn('keystore refresh failed; the keys held stay in use', { error: err instanceof Error ? err.message : String(err) });
      },
    );
  }, intervalMs);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
    },
  };
}
