/**
 * The Data Manager (design note 1) with the ownership and reference counting
 * of design note 2: the one registry of every piece of per-client state.
 *
 * Index: ClientId → DataNodeId → node, two Map lookups, O(1).
 *
 * Lifetime of a node:
 *
 *        add()                 acquire() / dispose()             delete()
 *   ──────────▶ live, refs=1 ◀──────────────────────────▶ ──────────────▶ dying
 *               (the owner's     refs+1 / refs-1           removed from     │
 *                reference)                                the index: a     │ last put
 *                                                          lookup is        ▼
 *                                                          "not found"    freed: value
 *                                                                         disposed (key
 *                                                                         bytes zeroed),
 *                                                                         parent put
 *
 * - A child holds a reference on its parent, so a parent is freed after its
 *   children. Deleting a node deletes its subtree first.
 * - The owner (a connection) holds the creation reference of every node it
 *   made and drops them all when it closes. An accessor held by an operation
 *   in flight keeps the node alive until that operation ends.
 * - Exclusive nodes are busy while an accessor is held; a second acquire is
 *   refused at once with CRYPTOD_ERR_BUSY (never queued).
 * - A put below zero is a bug and throws.
 *
 * Concurrency: the seed's mutex is the event loop. Every public method runs to
 * completion without awaiting, so no two callers interleave inside it; state
 * that an operation keeps across an `await` is protected by the busy flag.
 */
import { BusyError, ExpiredError, InternalError, InvalidArgumentError, MemoryLimitError, NotFoundError, QuotaError } from '../protocol/errors.js';
import { NodeIdGenerator, type ClientId, type DataNodeId } from './ids.js';

export type { ClientId, DataNodeId } from './ids.js';

/** What a node may hold. Kinds are listed here so `cryptod status` can count them. */
export type NodeType = 'key' | 'hash' | 'hmac' | 'cipher' | 'window';

/** The value a node holds. `dispose` runs once, when the last reference is put. */
export interface NodeValue {
  dispose(): void;
  /**
   * Bytes this value holds for its whole life (buffered segments, digest
   * state), charged against the daemon-wide context memory budget when the
   * node is added and refunded when it is freed. Read once, at add().
   */
  readonly memoryCost?: number;
}

/** Told when one of the nodes it owns is deleted (explicitly or by cascade). */
export interface NodeOwner {
  disown(id: DataNodeId): void;
}

export interface AddOptions {
  exclusive?: boolean;
  /** The new node becomes a child of the node behind this accessor. */
  parent?: DataNodeAccessor<NodeValue>;
  owner?: NodeOwner;
}

export interface ClientNodeStats {
  clientId: ClientId;
  /** Nodes not yet freed (including deleted ones that an operation still holds). */
  live: number;
  busy: number;
  byType: Partial<Record<NodeType, number>>;
}

/** The interface request handlers see; the storage stays private. */
export interface IDataManager {
  add<T extends NodeValue>(clientId: ClientId, type: NodeType, value: T, options?: AddOptions): DataNodeId;
  acquire<T extends NodeValue>(clientId: ClientId, id: DataNodeId, expected?: NodeType | readonly NodeType[]): DataNodeAccessor<T>;
  delete(clientId: ClientId, id: DataNodeId): boolean;
  /** Delete every node of a client; returns how many were deleted (cascades included). */
  deleteClient(clientId: ClientId): number;
  liveNodes(clientId?: ClientId): number;
  stats(): ClientNodeStats[];
  /** Bytes charged by live nodes' {@link NodeValue.memoryCost}. */
  memoryUsed(): number;
}

export interface DataNodeAccessor<T extends NodeValue> extends Disposable {
  readonly id: DataNodeId;
  readonly clientId: ClientId;
  readonly type: NodeType;
  readonly value: T;
  /** False once the owner deleted the node; the value stays usable until the accessor is disposed. */
  readonly alive: boolean;
}

class Node {
  refs = 1;
  dying = false;
  busy = false;
  children: Set<Node> | null = null;
  /** Charged against the memory budget; refunded when freed. */
  cost = 0;
  /** Idle clock tick of the last acquire or release (see expireIdle). */
  lastUsed = 0;

  constructor(
    readonly id: DataNodeId,
    readonly clientId: ClientId,
    readonly type: NodeType,
    readonly exclusive: boolean,
    readonly value: NodeValue,
    readonly parent: Node | null,
    readonly owner: NodeOwner | undefined,
  ) {}
}

class ClientEntry {
  readonly nodes = new Map<DataNodeId, Node>();
  live = 0;
  busy = 0;
  /** Context memory charged to this client (bytes). */
  memory = 0;
  readonly byType = new Map<NodeType, number>();
}

class Accessor<T extends NodeValue> implements DataNodeAccessor<T> {
  #node: Node | null;
  readonly #dm: DataManager;

  constructor(dm: DataManager, node: Node) {
    this.#dm = dm;
    this.#node = node;
  }

  #live(): Node {
    if (this.#node === null) throw new InternalError('data node accessor used after it was released');
    return this.#node;
  }

  get id(): DataNodeId {
    return this.#live().id;
  }
  get clientId(): ClientId {
    return this.#live().clientId;
  }
  get type(): NodeType {
    return this.#live().type;
  }
  get value(): T {
    return this.#live().value as T;
  }
  get alive(): boolean {
    return this.#node !== null && !this.#node.dying;
  }
  /** @internal */
  get node(): Node {
    return this.#live();
  }

  [Symbol.dispose](): void {
    const node = this.#node;
    if (node === null) return; // disposing twice is harmless; putting twice is not
    this.#node = null;
    this.#dm.release(node);
  }
}

const NOT_FOUND = 'no such handle: it was released, never existed, or belongs to another client';

/** Node types that expire when idle: multi-part contexts, never keys (they live as long as their connection). */
const EXPIRING: ReadonlySet<NodeType> = new Set(['hash', 'hmac', 'cipher']);
/**
 * How many expired handles are remembered, so that a later use gets
 * CRYPTOD_ERR_EXPIRED rather than NOT_FOUND. Bounded (oldest forgotten first,
 * ~100 bytes each) because an idle client can make any number of contexts
 * expire; an id forgotten here is merely reported as NOT_FOUND.
 */
const EXPIRED_MEMORY = 4096;

export class DataManager implements IDataManager {
  readonly #clients = new Map<ClientId, ClientEntry>();
  readonly #ids = new NodeIdGenerator();
  readonly #maxNodesPerClient: number;
  readonly #memoryBudget: number;
  readonly #memoryPerClient: number;
  #total = 0;
  #memory = 0;
  /** The idle clock: advanced by expireIdle(), stamped on nodes when used. */
  #tick = 0;
  /** Recently expired ids → their client (insertion order = expiry order). */
  readonly #expired = new Map<DataNodeId, ClientId>();

  /**
   * `memoryBudget`: context memory over all clients; `memoryPerClient`: the
   * share one client may hold (default: all of it), so that one client
   * filling its contexts cannot refuse everyone else theirs.
   */
  constructor(options: { maxNodesPerClient?: number; memoryBudget?: number; memoryPerClient?: number } = {}) {
    const max = options.maxNodesPerClient ?? 10_000;
    if (!Number.isSafeInteger(max) || max < 1) throw new InvalidArgumentError(`maxNodesPerClient must be a positive integer, got ${max}`);
    this.#maxNodesPerClient = max;
    const budget = options.memoryBudget ?? Number.POSITIVE_INFINITY;
    if (!(budget >= 0)) throw new InvalidArgumentError(`memoryBudget must be a number of bytes, got ${budget}`);
    this.#memoryBudget = budget;
    const share = options.memoryPerClient ?? budget;
    if (!(share >= 0)) throw new InvalidArgumentError(`memoryPerClient must be a number of bytes, got ${share}`);
    this.#memoryPerClient = share;
  }

  get maxNodesPerClient(): number {
    return this.#maxNodesPerClient;
  }

  add<T extends NodeValue>(clientId: ClientId, type: NodeType, value: T, options: AddOptions = {}): DataNodeId {
    let entry = this.#clients.get(clientId);
    if (entry !== undefined && entry.live >= this.#maxNodesPerClient) {
      throw new QuotaError(`the client holds ${entry.live} live data nodes, the limit is ${this.#maxNodesPerClient}; release handles it no longer needs`, {
        detail: { limit: this.#maxNodesPerClient },
      });
    }
    const cost = value.memoryCost ?? 0;
    const held = entry?.memory ?? 0;
    if (cost > 0 && held + cost > this.#memoryPerClient) {
      throw new MemoryLimitError(
        `this client's share of context memory is used up: it holds ${held} of its ${this.#memoryPerClient} bytes, this context needs ${cost}; release contexts no longer needed, then retry`,
        { detail: { scope: 'client', budget: this.#memoryPerClient, used: held, cost } },
      );
    }
    if (cost > 0 && this.#memory + cost > this.#memoryBudget) {
      throw new MemoryLimitError(
        `the daemon's context memory is used up: ${this.#memory} of ${this.#memoryBudget} bytes in use over all clients, this context needs ${cost}; release contexts no longer needed, then retry`,
        { detail: { scope: 'daemon', budget: this.#memoryBudget, used: this.#memory, cost } },
      );
    }
    let parent: Node | null = null;
    if (options.parent !== undefined) {
      parent = (options.parent as Accessor<NodeValue>).node;
      if (parent.clientId !== clientId) throw new NotFoundError(NOT_FOUND);
      if (parent.dying) throw new NotFoundError(NOT_FOUND);
    }
    if (entry === undefined) {
      entry = new ClientEntry();
      this.#clients.set(clientId, entry);
    }
    const node = new Node(this.#ids.next(), clientId, type, options.exclusive === true, value, parent, options.owner);
    if (parent !== null) {
      parent.refs++; // the child's back reference on its container
      (parent.children ??= new Set()).add(node);
    }
    node.cost = cost;
    node.lastUsed = this.#tick;
    this.#memory += cost;
    entry.memory += cost;
    entry.nodes.set(node.id, node);
    entry.live++;
    entry.byType.set(type, (entry.byType.get(type) ?? 0) + 1);
    this.#total++;
    return node.id;
  }

  acquire<T extends NodeValue>(clientId: ClientId, id: DataNodeId, expected?: NodeType | readonly NodeType[]): DataNodeAccessor<T> {
    const node = this.#clients.get(clientId)?.nodes.get(id);
    if (node === undefined || node.dying || node.refs === 0) {
      if (this.#expired.get(id) === clientId) {
        throw new ExpiredError('the context was released because no request used it for longer than the daemon\'s idle limit (--context-idle-ms); start a new one');
      }
      throw new NotFoundError(NOT_FOUND);
    }
    if (expected !== undefined && (typeof expected === 'string' ? node.type !== expected : !expected.includes(node.type))) {
      const want = typeof expected === 'string' ? expected : expected.join(' or ');
      throw new InvalidArgumentError(`the handle refers to a ${describe(node.type)}, expected a ${want} handle`, {
        detail: { expected: want, actual: node.type },
      });
    }
    if (node.exclusive) {
      if (node.busy) throw new BusyError(`the ${describe(node.type)} is in use by another request; wait for its reply before the next one`);
      node.busy = true;
      this.#clients.get(clientId)!.busy++;
    }
    node.refs++;
    node.lastUsed = this.#tick;
    return new Accessor<T>(this, node);
  }

  delete(clientId: ClientId, id: DataNodeId): boolean {
    const node = this.#clients.get(clientId)?.nodes.get(id);
    if (node === undefined || node.dying) return false;
    this.#kill(node);
    return true;
  }

  deleteClient(clientId: ClientId): number {
    const entry = this.#clients.get(clientId);
    if (entry === undefined) return 0;
    // The index holds exactly the nodes not yet deleted; a cascade below may
    // delete some before the loop reaches them, so count them here.
    const n = entry.nodes.size;
    for (const node of [...entry.nodes.values()]) {
      if (node.dying) continue;
      this.#kill(node);
    }
    return n;
  }

  liveNodes(clientId?: ClientId): number {
    if (clientId === undefined) return this.#total;
    return this.#clients.get(clientId)?.live ?? 0;
  }

  memoryUsed(): number {
    return this.#memory;
  }

  /**
   * One tick of the idle clock: advance it, then delete every context (hash,
   * HMAC, cipher node) not acquired or released during the last `idleTicks`
   * ticks and not held by a request right now. With ticks every T ms a
   * context expires after between (idleTicks - 1)·T and idleTicks·T ms idle.
   * The clock costs the hot path one integer store per acquire; the walk over
   * every node happens only here, on the daemon's sweep timer.
   * Returns how many contexts were deleted.
   */
  expireIdle(idleTicks: number): number {
    const now = ++this.#tick;
    let n = 0;
    for (const entry of this.#clients.values()) {
      for (const node of entry.nodes.values()) {
        if (!EXPIRING.has(node.type) || node.busy || node.refs > 1 || now - node.lastUsed < idleTicks) continue;
        // Deleting from the map being iterated is safe for Map iterators; a
        // context has no children, so nothing else in it is touched.
        this.#kill(node);
        this.#expired.set(node.id, node.clientId);
        if (this.#expired.size > EXPIRED_MEMORY) this.#expired.delete(this.#expired.keys().next().value!);
        n++;
      }
    }
    return n;
  }

  stats(): ClientNodeStats[] {
    const out: ClientNodeStats[] = [];
    for (const [clientId, entry] of this.#clients) {
      out.push({ clientId, live: entry.live, busy: entry.busy, byType: Object.fromEntries(entry.byType) });
    }
    return out;
  }

  /** @internal accessor disposal: clear busy, put the accessor's reference. */
  release(node: Node): void {
    node.lastUsed = this.#tick;
    if (node.exclusive && node.busy) {
      node.busy = false;
      const entry = this.#clients.get(node.clientId);
      if (entry !== undefined) entry.busy--;
    }
    this.#put(node);
  }

  #kill(node: Node): void {
    if (node.children !== null) {
      for (const child of [...node.children]) if (!child.dying) this.#kill(child);
    }
    node.dying = true;
    this.#clients.get(node.clientId)?.nodes.delete(node.id);
    node.owner?.disown(node.id);
    this.#put(node); // the owner's reference
  }

  #put(node: Node): void {
    if (node.refs <= 0) throw new InternalError(`reference count of a ${node.type} node would drop below zero`);
    if (--node.refs > 0) return;
    this.#free(node);
  }

  #free(node: Node): void {
    try {
      node.value.dispose();
    } finally {
      const entry = this.#clients.get(node.clientId);
      if (entry !== undefined) {
        entry.nodes.delete(node.id);
        entry.live--;
        entry.memory -= node.cost;
        const n = (entry.byType.get(node.type) ?? 1) - 1;
        if (n === 0) entry.byType.delete(node.type);
        else entry.byType.set(node.type, n);
        if (entry.live === 0) this.#clients.delete(node.clientId);
      }
      this.#total--;
      this.#memory -= node.cost;
      if (node.parent !== null) {
        node.parent.children?.delete(node);
        this.#put(node.parent);
      }
    }
  }
}

function describe(type: NodeType): string {
  switch (type) {
    case 'key':
      return 'key';
    case 'hash':
      return 'hash context';
    case 'hmac':
      return 'HMAC context';
    case 'cipher':
      return 'cipher stream context';
    case 'window':
      return 'shared-memory window';
  }
}
