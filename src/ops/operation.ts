/**
 * What a request handler sees: the client's identity, the Data Manager
 * interface (never its storage), the connection as owner of the nodes it
 * creates, and the daemon's limits.
 */
import type { CborValue } from '../protocol/cbor.js';
import type { OpCode } from '../protocol/ops.js';
import type { ClientId, DataNodeId, IDataManager, NodeOwner } from '../state/data-manager.js';
import type { Limits } from '../config/limits.js';
import type { Audit } from '../observe/audit.js';
import type { KeyManager } from '../keys/manager.js';

/** What the managed-key operations need from the daemon (assembled by src/daemon/managed-keys.ts). */
export interface ManagedKeys {
  readonly manager: KeyManager;
  /** Uids whose clients (`uid:<uid>/…`) hold the `admin` right on every key. */
  readonly adminUids: ReadonlySet<number>;
  /** Whether `local/…` clients (no peer credentials: only the socket mode guards access) are administrators. */
  readonly localIsAdmin: boolean;
}

export interface DaemonView {
  readonly startedAt: number;
  readonly version: string;
  /** Status of every client, for STATUS. */
  status(): CborValue;
  /** The audit log, for handlers whose events it records (key created, rotated, exported…); absent or disabled when off. */
  readonly audit?: Audit;
  /** Managed keys; absent without a data directory: managed ops answer CRYPTOD_ERR_UNSUPPORTED. */
  readonly keys?: ManagedKeys;
  /** Re-read the configuration (RELOAD); absent when the daemon has none: RELOAD answers CRYPTOD_ERR_UNSUPPORTED. */
  readonly reload?: () => Promise<CborValue>;
}

export interface RequestContext {
  readonly clientId: ClientId;
  readonly clientName: string;
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

export interface Operation {
  readonly op: OpCode;
  /** The arguments carry key material: the daemon zeroes the request frame after the handler ran. */
  readonly sensitiveRequest?: boolean;
  handle(ctx: RequestContext, args: CborValue): HandlerResult | Promise<HandlerResult>;
}
