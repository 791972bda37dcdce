/**
 * Managed keys as the daemon serves them: the key manager (src/keys/) on the
 * SQLite keystore and the local KEK provider of the data directory, plus who
 * administers them.
 *
 *   createDaemon (assemble.ts) ─▶ openManagedKeys({ dataDir }) ─▶ startDaemon({ keys })
 *                        keystore.sqlite ─▶ LocalKekProvider ─┬▶ KekRing (root: local or a provider) ─▶ KeyManager
 *                                           pkcs11 providers ─┘
 *   shutdown:   daemon.close() (connections first) ─▶ keys.close()
 *               (manager, then KEK, then store: the reverse of opening)
 *
 * Several daemons may share one data directory (one host, one SQLite file in
 * WAL mode): every change is a keystore transaction that bumps the store's
 * generation (design note 3), and each daemon catches up with what the
 * others committed (KeyManager.refresh: only the keys changed since its last
 * look) when an operation on managed keys starts and SQLite's data_version
 * says another connection committed (keys/freshness.ts), so the operation
 * runs on the change; the poll every `refreshIntervalMs` keeps timers and
 * idle daemons current. Rotations need no
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
import { rewrapBatch } from '../keys/rewrap-all.js';
import { LocalKekProvider } from '../kek/local.js';
import { BLOB_FORMAT_V1 } from '../kek/gcm-blob.js';
import { KekRing, type RingMember } from '../kek/ring.js';
import { openTokenProviders } from '../kek/pkcs11/open-providers.js';
import { Pkcs11KekProvider } from '../kek/pkcs11/provider.js';
import { Pkcs11TokenKeys } from '../kek/pkcs11/token-keys.js';
import type { ProviderConfig } from '../config/config.js';
import type { Keystore } from '../store/keystore.js';
import { openSqliteKeystore } from '../store/sqlite/sqlite-store.js';
import { silentLogger, type Logger } from '../observe/logger.js';
import type { Audit } from '../observe/audit.js';
import type { ManagedKeys } from '../ops/operation.js';

export type { ManagedKeys };

export interface OpenManagedKeysOptions {
  /** The data directory: `keystore.sqlite` and (without a passphrase) `root.key` live there. */
  dataDir: string;
  /** Derive the root KEK from a passphrase instead of the root.key file. */
  passphrase?: string | Uint8Array;
  /** Start a new store beside a root.key / kek.binding left by a lost one (`serve --init`; kek/local.ts). */
  init?: boolean;
  /** KEK providers besides `local` (`providers:`); every one is opened, so blobs any of them wrapped unwrap. */
  providers?: Readonly<Record<string, ProviderConfig>>;
  /** The provider that wraps new material (`root:`); default `local`. */
  root?: string;
  /** Where `pin: env:NAME` is read; default process.env. */
  env?: NodeJS.ProcessEnv;
  clock?: Clock;
  logger?: Logger;
  /** Administrator uids; default: the daemon's own uid. */
  adminUids?: readonly number[];
  /** Token client names that administer every key too (`--admin-client`). */
  adminClients?: readonly string[];
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
  /** Encryption budgets of random-nonce AEAD versions (budget.ts); the defaults suit production, small ones suit tests. */
  budget?: Partial<BudgetOptions>;
}

/** Default of OpenManagedKeysOptions.refreshIntervalMs. */
export const DEFAULT_REFRESH_INTERVAL_MS = 1_000;

export interface OpenedManagedKeys extends ManagedKeys {
  readonly store: Keystore;
  readonly kek: KekRing;
  /** Where keys declared with `provider:` keep their versions, and the token calls made (tests and bench count C_Decrypt). */
  readonly tokens: Pkcs11TokenKeys;
  /** Close the manager (zeroing every key once readers are done), the KEK, then the store. Idempotent. */
  close(): Promise<void>;
}

function auditRotation(audit: Audit): (e: AutoRotation) => void {
  return (e) => audit.emit({ event: 'key.rotated', key: e.key, version: e.version, previousVersion: e.previousVersion, reason: e.reason });
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
  let kek: KekRing | undefined;
  const members: RingMember[] = [];
  let manager: KeyManager;
  let tokens: Pkcs11TokenKeys;
  try {
    const local = await LocalKekProvider.open({
      dir: options.dataDir, store, storeFile: store.file, init: options.init === true,
      ...(options.passphrase === undefined ? {} : { passphrase: options.passphrase }),
    });
    members.push({ name: 'local', format: BLOB_FORMAT_V1, provider: local });
    members.push(...await openTokenProviders(store, local.storeId, options.providers ?? {}, options.env, (name, created, kekId) => {
      (options.logger ?? silentLogger).info(created ? 'KEK generated in the token' : 'KEK found in the token', { provider: name, kekId });
    }));
    kek = new KekRing(options.root ?? 'local', members);
    if (local.binding !== 'existing') {
      (options.logger ?? silentLogger).info(local.binding === 'created' ? 'new keystore created and bound to its KEK' : 'keystore bound to its KEK (store id added)', {
        file: store.file, storeId: local.storeId, kekId: local.id,
      });
    }
    const audit = options.audit;
    // Keys declared with provider: keep their versions in these providers' tokens.
    tokens = new Pkcs11TokenKeys(local.storeId, new Map(members.flatMap((m) => (m.provider instanceof Pkcs11KekProvider ? [[m.name, m.provider] as const] : []))));
    manager = await KeyManager.open({
      store, kek, tokens, logger: options.logger ?? silentLogger, storeFile: store.file,
      ...(audit?.enabled === true ? { onDamaged: (e) => audit.emit({ event: 'key.damaged', key: e.key, version: e.version, file: store.file, reason: e.reason }) } : {}),
      ...(options.audit?.enabled === true ? { onRotated: auditRotation(options.audit) } : {}),
      ...(options.clock === undefined ? {} : { clock: options.clock }),
      ...(options.budget === undefined ? {} : { budget: options.budget }),
    });
  } catch (err) {
    await Promise.allSettled(members.map((m) => m.provider.close()));
    await store.close();
    throw err;
  }
  const ownUid = typeof process.getuid === 'function' ? process.getuid() : null;
  const adminUids = new Set(options.adminUids ?? (ownUid === null ? [] : [ownUid]));
  const k = kek;
  const poll = pollKeystore(manager, options.refreshIntervalMs ?? DEFAULT_REFRESH_INTERVAL_MS, options.logger ?? silentLogger);
  let closing: Promise<void> | null = null;
  return {
    manager, store, kek: k, tokens, adminUids, localIsAdmin: options.localIsAdmin ?? true,
    rewrapAll: (limit) => rewrapBatch(store, k, limit === undefined ? {} : { limit }),
    adminClients: new Set((options.adminClients ?? []).map((n) => `token:${n}`)),
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
