/**
 * The handler contract. An operation declares what the request chain
 * (src/daemon/request-chain.ts, docs/protocol.md §5) must enforce before it
 * runs — `access` — and what it records after — `audit` — and its handler
 * sees the client's identity, the Data Manager interface (never its storage),
 * the connection as owner of the nodes it creates, and the daemon's limits.
 */
import type { CborValue } from '../protocol/cbor.js';
import type { OpCode } from '../protocol/ops.js';
import type { ClientId, DataNodeId, IDataManager, NodeOwner, NodeValue } from '../state/data-manager.js';
import type { Limits } from '../config/limits.js';
import type { Audit, AuditEvent } from '../observe/audit.js';
import type { MetricHooks } from '../observe/metric-hooks.js';
import type { KeyManager } from '../keys/manager.js';
import type { KeyOp } from '../keys/model.js';
import type { DataKeyCache } from '../cache/data-key-cache.js';
import type { DataKeyKeks } from '../kek/data-key-kek.js';

/** Data keys (src/ops/datakeys.ts): the KEKs that wrap them and the cache of unwrapped ones (assembled by src/daemon/server.ts). */
export interface DataKeys {
  readonly keks: DataKeyKeks;
  readonly cache: DataKeyCache;
}
import type { RewrapBatchResult } from '../keys/rewrap-all.js';

/** What the managed-key operations need from the daemon (assembled by src/daemon/managed-keys.ts). */
export interface ManagedKeys {
  readonly manager: KeyManager;
  /** Uids whose clients (`uid:<uid>/…`) hold the `admin` right on every key. */
  readonly adminUids: ReadonlySet<number>;
  /** Whether `local/…` clients (no peer credentials: only the socket mode guards access) are administrators. */
  readonly localIsAdmin: boolean;
  /** One batch of `kek rewrap-all` (src/keys/rewrap-all.ts): up to `limit` versions moved to the root KEK. */
  readonly rewrapAll?: (limit?: number) => Promise<RewrapBatchResult>;
  /** Token clients (`token:<name>`) that administer every key (`--admin-client`): what a Vault policy on `transit/keys/*` grants. */
  readonly adminClients?: ReadonlySet<string>;
  /** Throws while this daemon may not serve managed keys (its fleet heartbeat lapsed; src/store/members.ts). */
  fence?(): void;
  /** Wait until every other live daemon has acknowledged this daemon's writes so far (destroy, trim). */
  acknowledge?(): Promise<void>;
}

export interface DaemonView {
  readonly startedAt: number;
  readonly version: string;
  /** Status of every client, for STATUS (asynchronous when it gathers several workers' counts). */
  status(): CborValue | Promise<CborValue>;
  /** The audit log, for handlers whose events it records (key created, rotated, exported…); absent or disabled when off. */
  readonly audit?: Audit;
  /** Managed keys; absent without a data directory: managed ops answer CRYPTOD_ERR_UNSUPPORTED. */
  readonly keys?: ManagedKeys;
  /** Re-read the configuration (RELOAD); absent when the daemon has none: RELOAD answers CRYPTOD_ERR_UNSUPPORTED. */
  readonly reload?: () => Promise<CborValue>;
  /** Data keys; present with managed keys. */
  readonly dataKeys?: DataKeys;
  /** Readiness checks (HEALTH, src/daemon/health.ts); absent without managed keys. */
  readonly health?: () => Promise<CborValue>;
  /** Metrics, for handlers that count what only they know (a manual rotation); absent when off. */
  readonly metrics?: MetricHooks;
  /** Shared-memory windows; absent where they cannot work (no native addon, not Linux, maxWindowBytes 0). */
  readonly windows?: WindowBroker;
}

/** The process at the other end of a Unix-socket connection, as the kernel reported it (SO_PEERCRED). */
export interface PeerProcess {
  readonly uid: number;
  readonly pid: number;
}

/**
 * Shared-memory windows (docs/protocol.md §6.16): the daemon's listener for
 * the descriptors clients send (src/daemon/windows.ts). Windows are counted
 * per connection (`owner`), pending offers included.
 */
export interface WindowBroker {
  /** Expect a memory file of `size` bytes from process `peer` for connection `owner`; QUOTA past maxWindowsPerConnection. */
  offer(owner: object, peer: PeerProcess, size: number, limits: Limits): Promise<{ socket: string; offer: Uint8Array }>;
  /** The window process `peer` sent for `offer` of connection `owner`, once it has arrived (bounded wait). */
  take(owner: object, offer: Uint8Array): Promise<NodeValue & { readonly bytes: Uint8Array }>;
}

export interface RequestContext {
  readonly clientId: ClientId;
  readonly clientName: string;
  /** The peer process of a Unix-socket connection; null or absent elsewhere (TCP, HTTP, no peer credentials). */
  readonly peer?: PeerProcess | null;
  readonly dm: IDataManager;
  /** The connection: owns every node a request creates. */
  readonly owner: NodeOwner & { own(id: DataNodeId): void };
  readonly limits: Limits;
  readonly daemon: DaemonView;
}

/** A reply whose frame carries key material: zeroed after the socket wrote it. */
export class SensitiveReply {
  constructor(readonly value: CborValue) {}
}

export type HandlerResult = CborValue | SensitiveReply;

/**
 * Who may run an operation; the chain's authorize phase enforces it before
 * the handler runs (rules: src/ops/managed-auth.ts).
 *
 *   none          no managed key: session and ephemeral-key operations (the
 *                 data manager already scopes every node to its client)
 *   key           one managed key, named by argument `arg` (a batch's items
 *                 all use it); `permission` is the right the policy must
 *                 grant, 'any' any right at all. No right at all: NOT_FOUND
 *                 (existence not revealed); some right, not this one: FORBIDDEN
 *   admin         an administrator; `arg` names the key being made, null for
 *                 daemon-wide administration (RELOAD, valid without managed keys)
 *   visible-keys  any client; the handler shows only the keys it may see
 *   data-key      a KEK (a managed key), named by argument `kek` or, for
 *                 operations on a data key, by the header of `wrappedKey`;
 *                 `permission` as for `key`
 *
 * A required field: an operation that forgets it does not compile, and the
 * daemon refuses at start a managed-key operation declared `none`.
 */
export type Access =
  | { readonly kind: 'none' }
  | { readonly kind: 'key'; readonly arg: 'key' | 'name'; readonly permission: KeyOp | 'any' }
  | { readonly kind: 'admin'; readonly arg: 'name' | null; readonly action: string }
  | { readonly kind: 'visible-keys' }
  | { readonly kind: 'data-key'; readonly permission: KeyOp };

/** Enforces an operation's `access` (src/ops/managed-auth.ts); the request chain calls it. */
export interface Authorizer {
  /**
   * Returns when the request may run; a promise when the answer waits for a
   * keystore refresh (a key this daemon does not know, or may not show).
   * @throws (or rejects with) NOT_FOUND, FORBIDDEN, UNSUPPORTED, INVALID_ARGUMENT, INVALID_KEY
   */
  authorize(ctx: RequestContext, access: Access, args: CborValue): void | Promise<void>;
}

/** A request that succeeded, as the audit phase shows it to an operation's `audit`. */
export interface AuditedRequest {
  readonly op: OpCode;
  readonly args: CborValue;
  readonly result: HandlerResult;
  readonly connection: number;
  readonly clientId: ClientId;
  readonly client: string;
}

export interface Operation {
  readonly op: OpCode;
  readonly access: Access;
  /** The arguments carry key material: the daemon zeroes the request frame after the handler ran. */
  readonly sensitiveRequest?: boolean;
  /**
   * The handler keeps no reference to its arguments' byte strings (views of
   * the request frame) once it returned synchronously: the daemon may then
   * reuse the frame's memory for the next request (src/protocol/frame.ts).
   */
  readonly keepsNoInput?: boolean;
  /** The event the chain records when the request succeeds (called only with the audit log on). */
  readonly audit?: (request: AuditedRequest) => AuditEvent;
  handle(ctx: RequestContext, args: CborValue): HandlerResult | Promise<HandlerResult>;
}
