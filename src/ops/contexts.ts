/**
 * Multi-part hash and HMAC contexts: HASH_CREATE, HMAC_CREATE, CONTEXT_UPDATE,
 * CONTEXT_FINAL.
 *
 * A context is an EXCLUSIVE data node (design note 1): it is busy from the
 * moment a request on it acquires it until that request's reply, and a second
 * request meanwhile is refused at once with CRYPTOD_ERR_BUSY. An HMAC context
 * is a child of its key node (design note 2), so releasing the key — or
 * closing the connection that owns it — releases its contexts too:
 *
 *   connection ──owns──▶ key node ──parent of──▶ hmac context
 *             └─owns──▶ hash context            (holds a reference on the key)
 *
 * Large updates are processed in slices with a turn of the event loop between
 * them, so one client's 64 MiB update does not stall every other client; the
 * accessor — and with it the busy flag — is held across those turns.
 */
import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto';
import type { HandlerResult, Operation, RequestContext } from './operation.js';
import type { CborValue } from '../protocol/cbor.js';
import { InternalError, InvalidKeyError, NotFoundError } from '../protocol/errors.js';
import { Op } from '../protocol/ops.js';
import type { DataNodeAccessor, DataNodeId, NodeType, NodeValue } from '../state/data-manager.js';
import { NODE_HASH, normalizeHash, type HashName } from './algorithms.js';
import { ContextFinal, ContextUpdate, HashCreate, HmacCreate, INLINE_REGION, INLINE_UPDATE } from '../protocol/messages/contexts.js';
import { acquireKey } from './key.js';
import { orRelease, windowRegion } from './windows.js';

/**
 * Inputs longer than this are processed slice by slice, yielding between
 * slices; shorter ones synchronously, which is what lets a client pipeline
 * updates on one context (INLINE_UPDATE, docs/protocol.md §6.8).
 */
export const SLICE = INLINE_UPDATE;

/**
 * What a hash or HMAC context is charged against the daemon's context memory
 * budget: an EVP_MD_CTX with SHA-512 state is ~250 bytes, an HMAC holds two
 * plus its padded keys; 2 KiB covers them and their JavaScript wrappers.
 */
export const DIGEST_CONTEXT_COST = 2048;

/**
 * The value of a 'hash' or 'hmac' node: node:crypto's running state.
 *
 * What dispose() can and cannot wipe: an HMAC's keyed state (the inner and
 * outer padded keys, RFC 2104 §2) lives in OpenSSL memory inside the Hmac
 * object. JavaScript cannot reach it; dropping the last reference lets the
 * garbage collector free the object, and OpenSSL cleanses digest state when it
 * frees it (OPENSSL_clear_free in the providers' freectx) — but when that
 * happens is up to the collector. The key bytes themselves stay in the key
 * node, which zeroes them when it is freed.
 */
export class DigestState implements NodeValue {
  readonly algorithm: HashName;
  /** A fixed charge on the context memory budget (src/config/limits.ts): OpenSSL's digest or HMAC state and its wrappers. */
  readonly memoryCost = DIGEST_CONTEXT_COST;
  #state: Hash | Hmac | null;

  constructor(algorithm: HashName, state: Hash | Hmac) {
    this.algorithm = algorithm;
    this.#state = state;
  }

  update(data: Uint8Array): void {
    this.#live().update(data);
  }

  /** The digest; the state is spent afterwards (node:crypto refuses a second digest). */
  digest(): Buffer {
    const d = this.#live().digest();
    this.#state = null;
    return d;
  }

  #live(): Hash | Hmac {
    if (this.#state === null) throw new InternalError('hash context used after its digest or release');
    return this.#state;
  }

  dispose(): void {
    this.#state = null;
  }
}

/**
 * Add an exclusive context node owned by the requesting connection, as a
 * child of `parent` when given. The value is disposed if the node cannot be
 * added (quota, parent already released).
 */
export function addContext(ctx: RequestContext, type: NodeType, value: NodeValue, parent?: DataNodeAccessor<NodeValue>): DataNodeId {
  let id: DataNodeId;
  try {
    id = ctx.dm.add(ctx.clientId, type, value, parent === undefined ? { exclusive: true, owner: ctx.owner } : { exclusive: true, owner: ctx.owner, parent });
  } catch (err) {
    value.dispose();
    throw err;
  }
  ctx.owner.own(id);
  return id;
}

/** The error for a context deleted (released, or its key or connection gone) while a request worked on it. */
export function contextGone(type: string): InstanceType<typeof NotFoundError> {
  return new NotFoundError(`the ${type} was released while this request was using it (its handle, its key or its connection was released)`);
}

/**
 * Feed `data` to `step` in slices of at most {@link SLICE} bytes, turning the
 * event loop between slices (`setImmediate`, so I/O of other clients runs).
 * The caller holds `acc`, so the node stays busy throughout. If the node is
 * deleted meanwhile the work stops with NOT_FOUND: its result could no longer
 * be used.
 */
export async function forEachSlice(acc: DataNodeAccessor<NodeValue>, data: Uint8Array, step: (slice: Uint8Array) => void): Promise<void> {
  for (let off = 0; off < data.length; off += SLICE) {
    if (off > 0) {
      await new Promise(setImmediate);
      if (!acc.alive) throw contextGone(describe(acc.type));
    }
    step(data.subarray(off, Math.min(off + SLICE, data.length)));
  }
}

function describe(type: NodeType): string {
  return type === 'hmac' ? 'HMAC context' : type === 'cipher' ? 'cipher stream' : 'hash context';
}

/**
 * CONTEXT_UPDATE: synchronous for small inputs, sliced for large ones. The
 * input is `data`, or a region of a shared-memory window (§6.16), whose
 * accessor is held until the last slice is hashed.
 */
function update(ctx: RequestContext, raw: CborValue): HandlerResult | Promise<HandlerResult> {
  const args = ContextUpdate.args.parse(raw);
  const region = 'window' in args ? windowRegion(ctx, args) : null;
  const data = region === null ? (args as { data: Uint8Array }).data : region.data;
  const acc = orRelease(region, () => ctx.dm.acquire<DigestState>(ctx.clientId, args.handle, ['hash', 'hmac']));
  if (data.length <= (region === null ? SLICE : INLINE_REGION)) {
    using held = acc;
    using _window = region?.acc;
    held.value.update(data);
    return null;
  }
  return (async () => {
    using held = acc;
    using _window = region?.acc;
    await forEachSlice(held, data, (slice) => held.value.update(slice));
    return null;
  })();
}

export const contextOperations: Operation[] = [
  {
    /** `{ algorithm }` → `{ handle }`: a hash context (SHA-1, SHA-256, SHA-384, SHA-512). */
    op: Op.HASH_CREATE,
    access: { kind: 'none' },
    handle: (ctx, raw) => {
      const hash = normalizeHash(HashCreate.args.parse(raw).algorithm, 'algorithm');
      const id = addContext(ctx, 'hash', new DigestState(hash, createHash(NODE_HASH[hash])));
      return { handle: id };
    },
  },
  {
    /**
     * `{ key }` → `{ handle }`: an HMAC context (RFC 2104) under an HMAC key
     * whose usages include 'sign', with the key's hash. It is a child of the key.
     */
    op: Op.HMAC_CREATE,
    access: { kind: 'none' },
    handle: (ctx, raw) => {
      const handle = HmacCreate.args.parse(raw).key;
      using key = acquireKey(ctx, handle);
      key.value.require('HMAC', 'sign');
      const hashName = key.value.algorithm.hash?.name;
      if (hashName === undefined) throw new InvalidKeyError('the HMAC key names no hash');
      const hash = normalizeHash(hashName, 'key.algorithm.hash');
      const state = new DigestState(hash, createHmac(NODE_HASH[hash], key.value.secret));
      return { handle: addContext(ctx, 'hmac', state, key) };
    },
  },
  {
    /**
     * `{ handle, data }` or `{ handle, window, offset, length }` → null. Data
     * larger than 256 KiB (a region larger than 1 MiB) is hashed in slices;
     * the context stays busy until the reply.
     */
    op: Op.CONTEXT_UPDATE,
    access: { kind: 'none' },
    // The hash consumes `data` at once: a stream of updates reuses one joining buffer.
    keepsNoInput: true,
    handle: update,
  },
  {
    /** `{ handle }` → digest bytes. The context is deleted: its handle is gone afterwards. */
    op: Op.CONTEXT_FINAL,
    access: { kind: 'none' },
    handle: (ctx, raw) => {
      const handle = ContextFinal.args.parse(raw).handle;
      using held = ctx.dm.acquire<DigestState>(ctx.clientId, handle, ['hash', 'hmac']);
      try {
        return held.value.digest();
      } finally {
        ctx.dm.delete(ctx.clientId, handle);
      }
    },
  },
];
