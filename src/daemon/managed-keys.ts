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
import { openPostgresKeystore, PostgresKeystore, type PostgresKeystoreOptions } from '../store/postgres/pg-store.js';
import { PostgresLeaseStore, PostgresMemberStore } from '../store/postgres/fleet-store.js';
import { SqliteLeaseStore, SqliteMemberStore } from '../store/sqlite/fleet-store.js';
import { Membership } from '../store/members.js';
import { NotAcknowledgedError, StoreUnavailableError } from '../protocol/errors.js';
import { Lease } from '../store/lease.js';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
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
  /** Metrics: rotations the manager does on its own are counted there (absent: off). */
  metrics?: MetricHooks;
  /** Encryption budgets of random-nonce AEAD versions (budget.ts); the defaults suit production, small ones suit tests. */
  budget?: Partial<BudgetOptions>;
  /** Keep the keystore in PostgreSQL (`serve --store`) instead of SQLite in dataDir; root.key and kek.binding stay in dataDir. */
  postgres?: PostgresKeystoreOptions;
  /**
   * The fleet lease's period (ms, default 15 000): only the daemon holding it
   * does scheduled rotation; when it dies another takes over within about
   * this long (README "Running several daemons").
   */
  leasePeriodMs?: number;
  /**
   * How long a daemon's heartbeat keeps it a live fleet member (ms, default
   * 15 000, renewed at a third): a daemon that cannot renew it stops serving
   * managed keys until it has caught up (src/store/members.ts).
   */
  heartbeatPeriodMs?: number;
  /** How long a destroy or trim waits for every live daemon to acknowledge it (ms, default 20 000). */
  ackTimeoutMs?: number;
}

/** Default of OpenManagedKeysOptions.leasePeriodMs. */
export const DEFAULT_LEASE_PERIOD_MS = 15_000;
/** Defaults of OpenManagedKeysOptions.heartbeatPeriodMs and ackTimeoutMs: a destroy waits out a silent member's heartbeat, and a little more. */
export const DEFAULT_HEARTBEAT_PERIOD_MS = 15_000;
export const DEFAULT_ACK_TIMEOUT_MS = 20_000;

/** Default of OpenManagedKeysOptions.refreshIntervalMs. */
export const DEFAULT_REFRESH_INTERVAL_MS = 1_000;

export interface OpenedManagedKeys extends ManagedKeys {
  readonly store: Keystore;
  readonly kek: KekRing;
  /** The keystore's file (SQLite), which readiness checks is still there; absent for PostgreSQL. */
  readonly storeFile?: string;
  /** Where keys declared with `provider:` keep their versions, and the token calls made (tests and bench count C_Decrypt). */
  readonly tokens: Pkcs11TokenKeys;
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
  const opened = options.postgres === undefined ? await openSqliteKeystore({ dataDir: options.dataDir }) : await openPostgresKeystore(options.postgres);
  const store: Keystore = opened;
  // Named in messages; for PostgreSQL the URL without its password.
  const storeFile = 'file' in opened ? opened.file : opened.where;
  let kek: KekRing | undefined;
  const members: RingMember[] = [];
  let manager: KeyManager;
  let lease: Lease | undefined;
  let closeLeaseStore: () => void = () => undefined;
  let tokens: Pkcs11TokenKeys;
  try {
    const local = await LocalKekProvider.open({
      dir: options.dataDir, store, storeFile, init: options.init === true,
      ...(options.passphrase === undefined ? {} : { passphrase: options.passphrase }),
    });
    members.push({ name: 'local', format: BLOB_FORMAT_V1, provider: local });
    members.push(...await openTokenProviders(store, local.storeId, options.providers ?? {}, options.env, (name, created, kekId) => {
      (options.logger ?? silentLogger).info(created ? 'KEK generated in the token' : 'KEK found in the token', { provider: name, kekId });
    }));
    kek = new KekRing(options.root ?? 'local', members);
    if (local.binding !== 'existing') {
      (options.logger ?? silentLogger).info(local.binding === 'created' ? 'new keystore created and bound to its KEK' : 'keystore bound to its KEK (store id added)', {
        file: storeFile, storeId: local.storeId, kekId: local.id,
      });
    }
    const audit = options.audit;
    const log = options.logger ?? silentLogger;
    const leaseStore = opened instanceof PostgresKeystore ? new PostgresLeaseStore(opened) : new SqliteLeaseStore({ dataDir: options.dataDir });
    lease = new Lease({
      store: leaseStore, name: 'fleet', periodMs: options.leasePeriodMs ?? DEFAULT_LEASE_PERIOD_MS,
      holder: `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`,
      onChange: (e) => (e.held
        ? log.info('fleet lease taken: this daemon does the scheduled rotations', { generation: e.generation })
        : log.warn('fleet lease lost: scheduled rotations stop here', { error: e.error.message })),
    });
    closeLeaseStore = leaseStore instanceof SqliteLeaseStore ? () => leaseStore.close() : () => undefined;
    await lease.start();
    const fleet = lease;
    if (options.metrics?.enabled === true) {
      let seen = 0;
      options.metrics.lease({
        held: () => fleet.current() !== null,
        generation: () => (seen = fleet.current()?.generation ?? seen),
      });
    }
    // Keys declared with provider: keep their versions in these providers' tokens.
    tokens = new Pkcs11TokenKeys(local.storeId, new Map(members.flatMap((m) => (m.provider instanceof Pkcs11KekProvider ? [[m.name, m.provider] as const] : []))));
    manager = await KeyManager.open({
      fleetWork: () => fleet.current()?.signal ?? null,
      store, kek, tokens, logger: options.logger ?? silentLogger, storeFile,
      ...(audit?.enabled === true ? { onDamaged: (e) => audit.emit({ event: 'key.damaged', key: e.key, version: e.version, file: storeFile, reason: e.reason }) } : {}),
      ...onRotated(options.audit, options.metrics),
      ...(options.clock === undefined ? {} : { clock: options.clock }),
      ...(options.budget === undefined ? {} : { budget: options.budget }),
    });
  } catch (err) {
    await lease?.stop();
    closeLeaseStore();
    await Promise.allSettled(members.map((m) => m.provider.close()));
    await store.close();
    throw err;
  }
  const held = lease;
  const heartbeatPeriodMs = options.heartbeatPeriodMs ?? DEFAULT_HEARTBEAT_PERIOD_MS;
  const ackTimeoutMs = options.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS;
  const memberStore = opened instanceof PostgresKeystore ? new PostgresMemberStore(opened) : new SqliteMemberStore({ dataDir: options.dataDir });
  const m = manager;
  const membership = new Membership({
    store: memberStore, id: `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`, host: hostname(), pid: process.pid,
    periodMs: heartbeatPeriodMs, seen: () => m.seenGeneration(), catchUp: () => m.refresh(),
  });
  await membership.start();
  const ownUid = typeof process.getuid === 'function' ? process.getuid() : null;
  const adminUids = new Set(options.adminUids ?? (ownUid === null ? [] : [ownUid]));
  const k = kek;
  const poll = pollKeystore(manager, options.refreshIntervalMs ?? DEFAULT_REFRESH_INTERVAL_MS, options.logger ?? silentLogger, () => membership.poke());
  // Pushed commits (PostgreSQL NOTIFY) are caught up with by the manager's freshness check, which
  // subscribes once (keys/freshness.ts); the heartbeat then reports the new generation at once.
  const pushed = manager.onCaughtUp(() => membership.poke());
  let closing: Promise<void> | null = null;
  return {
    manager, store, kek: k, tokens, adminUids, localIsAdmin: options.localIsAdmin ?? true,
    ...('file' in opened ? { storeFile: opened.file } : {}),
    rewrapAll: (limit) => rewrapBatch(store, k, limit === undefined ? {} : { limit }),
    adminClients: new Set((options.adminClients ?? []).map((n) => `token:${n}`)),
    fence() {
      if (!membership.healthy()) {
        throw new StoreUnavailableError(
          `this daemon could not renew its fleet heartbeat within ${heartbeatPeriodMs} ms, so it may have missed a destroy: managed keys are not served until it has caught up with the keystore`,
          { detail: { reason: 'heartbeat' } },
        );
      }
    },
    async acknowledge() {
      let generation: number;
      try {
        generation = await store.generation();
      } catch (err) {
        // Called after a commit: the change happened, only its acknowledgement cannot be waited for.
        throw new NotAcknowledgedError(
          'the change is committed, but the keystore could not be read to wait for the other daemons to acknowledge it; ' +
            'each stops serving managed keys when its heartbeat lapses',
          { cause: err, detail: { generation: null, laggards: 'unknown (the store could not be read)', timeoutMs: ackTimeoutMs } },
        );
      }
      await membership.awaitAcknowledged(generation, ackTimeoutMs);
    },
    close() {
      closing ??= (async () => {
        poll?.stop();
        pushed();
        await membership.stop();
        if (memberStore instanceof SqliteMemberStore) memberStore.close();
        await manager.close();
        await held.stop(); // released: the next daemon need not wait out the period
        closeLeaseStore();
        await k.close();
        await store.close();
      })();
      return closing;
    },
  };
}

/** Refresh the manager from the keystore every `intervalMs` (null when 0). One refresh at a time; unref'd. */
function pollKeystore(manager: KeyManager, intervalMs: number, log: Logger, after: () => void): { stop(): void } | null {
  if (!Number.isSafeInteger(intervalMs) || intervalMs < 0) throw new RangeError(`refreshIntervalMs must be an integer ≥ 0, got ${intervalMs}`);
  if (intervalMs === 0) return null;
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    manager.refresh().then(
      (names) => {
        running = false;
        after();
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
