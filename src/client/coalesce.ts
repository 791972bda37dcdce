/**
 * Small DIGEST, SIGN, VERIFY, ENCRYPT and DECRYPT requests issued in one
 * tick, under one algorithm and one key, carried as the batch form of the request
 * (docs/protocol.md §6.15) instead of one frame each: what `subtle.sign`
 * costs the client and the daemon per call is mostly per frame — the
 * request's head, its id and pending entry, its decode, schema check and key
 * lookup on the daemon, its reply frame — and a batch pays that once.
 *
 *   subtle.sign(alg, key, data) ──▶ group (op, key, algorithm) of this tick
 *        │  (ineligible: large data, RSA, AES-CBC/CTR, an Ed448          │
 *        │   context, no batch form on the daemon, coalescing off)      │ process.nextTick,
 *        ▼                                                              │ or the group is full
 *   single request                                  1 item ─▶ single request
 *                                                  2+ items ─▶ one batch request
 *                                                              └▶ each item's result or
 *                                                                 error to its own caller
 *
 * What the caller sees does not change: a result is the single form's
 * result (the daemon answers an item exactly as it answers the single
 * request); an item's error is its own (`{ error }` in its place, rebuilt
 * as the same typed error); a failure of the whole batch (the key, the
 * algorithm: what every item shares) fails every item with it, as each
 * single request would have failed. A lone call in a tick goes as the
 * single form, with no added wait (the connection writes on the same tick).
 *
 * A group holds at most GROUP_ITEMS items and GROUP_BYTES bytes of data:
 * 256 calls in flight then travel as several frames, so the daemon works on
 * one while the client reads the replies of another (a single frame of 256
 * would make the two sides take turns).
 */
import type { CborValue } from '../protocol/cbor.js';
import { BadFrameError, errorFromWire } from '../protocol/errors.js';
import type { Message } from '../protocol/messages/index.js';
import { Op } from '../protocol/ops.js';
import type { AnySchema, Schema } from '../protocol/schema.js';
import type { DaemonConnection, RequestOptions } from './connection.js';

/** Items per batch frame. */
export const GROUP_ITEMS = 32;
/** Bytes of items per batch frame (less when the daemon's maxFrame is smaller). */
export const GROUP_BYTES = 32 * 1024;
/** Room in a frame for its header and the shared fields (algorithm, key handle): generous, they are small. */
const FRAME_SLACK = 1024;
/** An item's CBOR beyond its byte strings: its map head, field names and byte-string heads. */
const ITEM_OVERHEAD = 48;
/** An input larger than this goes as its own request: per-frame costs are small beside its own. */
export const ITEM_BYTES = 4096;

/** The signature algorithms whose batch form the daemon has (RSA signs on its thread pool, one request at a time). */
const BATCH_SIGNERS = new Set(['HMAC', 'Ed25519', 'Ed448', 'ECDSA']);
/** The ciphers whose batch form the daemon has: the AEADs, each item with its own iv. */
const BATCH_CIPHERS = new Set(['AES-GCM', 'ChaCha20-Poly1305']);

type Payload = { [field: string]: CborValue };

interface Group {
  readonly op: number;
  /** The fields every item shares: `algorithm` (without what is per item), and `key` but for DIGEST. */
  readonly fixed: Payload;
  readonly options: RequestOptions | undefined;
  /** Each call's own fields, as the batch form takes them. */
  readonly items: Payload[];
  /** Each call's request as the single form takes it: sent as it is when the group holds one call. */
  readonly singles: Payload[];
  readonly resolves: Array<(v: CborValue) => void>;
  readonly rejects: Array<(e: Error) => void>;
  bytes: number;
}

/** How one call splits into the batch form's shared fields and its own item, and which group it joins. */
interface Split {
  readonly key: string;
  readonly fixed: Payload;
  readonly item: Payload;
  readonly bytes: number;
}

export class Coalescer {
  readonly #conn: DaemonConnection;
  readonly #enabled: boolean;
  readonly #groups = new Map<string, Group>();
  #queued = false;

  constructor(conn: DaemonConnection, enabled: boolean) {
    this.#conn = conn;
    this.#enabled = enabled;
  }

  /**
   * DIGEST, SIGN, VERIFY, ENCRYPT or DECRYPT with the single form's
   * `args` (typed by its declaration, as DaemonConnection.send): coalesced with the tick's other calls of its group when it
   * can be, else sent alone. Resolves with what the single form's reply
   * decodes to.
   */
  request<I extends Payload>(message: Message<Schema<unknown, I, boolean>, AnySchema>, args: NoInfer<I>, options?: RequestOptions): Promise<CborValue> {
    const op = message.op;
    const payload: Payload = args;
    const split = this.#enabled && (this.#conn.hello.limits.maxBatchItems ?? 0) >= 2 ? splitOf(op, payload) : null;
    if (split === null) return this.#conn.request(op, payload, options);
    const limits = this.#conn.hello.limits;
    // The frame's room for items: GROUP_BYTES, or less on a daemon with a small maxFrame.
    const room = Math.min(GROUP_BYTES, limits.maxFrame - FRAME_SLACK);
    const cost = split.bytes + ITEM_OVERHEAD;
    if (cost > room) return this.#conn.request(op, payload, options);
    let g = this.#groups.get(split.key);
    if (g !== undefined && g.bytes + cost > room) {
      this.#groups.delete(split.key);
      this.#send(g);
      g = undefined;
    }
    if (g === undefined) {
      g = { op, fixed: split.fixed, options, items: [], singles: [], resolves: [], rejects: [], bytes: 0 };
      this.#groups.set(split.key, g);
      if (!this.#queued) {
        this.#queued = true;
        process.nextTick(this.#flush);
      }
    }
    const target = g;
    target.items.push(split.item);
    target.singles.push(payload);
    target.bytes += cost;
    const p = new Promise<CborValue>((resolve, reject) => {
      target.resolves.push(resolve);
      target.rejects.push(reject);
    });
    if (target.items.length >= Math.min(GROUP_ITEMS, limits.maxBatchItems ?? 0)) {
      this.#groups.delete(split.key);
      this.#send(target);
    }
    return p;
  }

  readonly #flush = (): void => {
    this.#queued = false;
    const groups = [...this.#groups.values()];
    this.#groups.clear();
    for (const g of groups) this.#send(g);
  };

  #send(g: Group): void {
    if (g.items.length === 1) {
      this.#conn.request(g.op, g.singles[0], g.options).then(g.resolves[0], g.rejects[0]);
      return;
    }
    this.#conn.request(g.op, { ...g.fixed, items: g.items }, g.options).then(
      (reply) => settle(g, reply),
      (err: Error) => {
        for (const reject of g.rejects) reject(err);
      },
    );
  }
}

/** Each item's result or error to its caller; a reply without one result per item fails them all. */
function settle(g: Group, reply: CborValue): void {
  const results = isMap(reply) ? reply.items : undefined;
  if (!Array.isArray(results) || results.length !== g.items.length) {
    const err = new BadFrameError('the daemon replied to a batch without one result per item');
    for (const reject of g.rejects) reject(err);
    return;
  }
  for (let i = 0; i < results.length; i++) {
    const r = results[i];
    if (isMap(r) && isMap(r.error)) g.rejects[i]!(errorFromWire(r.error.code, r.error.message, r.error.detail));
    else g.resolves[i]!(r);
  }
}

/**
 * The single form's `payload` split into the batch form's shared fields and
 * this call's item, with the key of its group; or null when it goes alone:
 * an input too large to gain from a batch, or an algorithm (or a parameter)
 * the batch form does not take.
 */
function splitOf(op: number, payload: Payload): Split | null {
  const { algorithm, key, data } = payload;
  if (!(data instanceof Uint8Array)) return null;
  switch (op) {
    case Op.DIGEST:
      if (typeof algorithm !== 'string' || data.length > ITEM_BYTES) return null;
      return { key: `${op}\0${algorithm}`, fixed: { algorithm }, item: { data }, bytes: data.length };
    case Op.SIGN:
    case Op.VERIFY: {
      const signature = payload.signature;
      const bytes = data.length + (signature instanceof Uint8Array ? signature.length : 0);
      if (typeof key !== 'string' || !isMap(algorithm) || bytes > ITEM_BYTES) return null;
      const { name, hash, ...rest } = algorithm;
      if (typeof name !== 'string' || !BATCH_SIGNERS.has(name) || !allUndefined(rest)) return null; // a context, a salt length: alone
      const hashName = hash === undefined ? '' : typeof hash === 'string' ? hash : isMap(hash) && typeof hash.name === 'string' ? hash.name : null;
      if (hashName === null) return null;
      const item = op === Op.SIGN ? { data } : signature instanceof Uint8Array ? { signature, data } : null;
      return item === null ? null : { key: `${op}\0${key}\0${name}\0${hashName}`, fixed: { algorithm, key }, item, bytes };
    }
    case Op.ENCRYPT:
    case Op.DECRYPT: {
      if (typeof key !== 'string' || !isMap(algorithm)) return null;
      const { name, iv, additionalData, tagLength, ...rest } = algorithm;
      if (typeof name !== 'string' || !BATCH_CIPHERS.has(name) || !(iv instanceof Uint8Array) || !allUndefined(rest)) return null;
      if (additionalData !== undefined && !(additionalData instanceof Uint8Array)) return null;
      if (tagLength !== undefined && typeof tagLength !== 'number') return null;
      const bytes = data.length + iv.length + (additionalData?.length ?? 0);
      if (bytes > ITEM_BYTES) return null;
      const item: Payload = additionalData === undefined ? { data, iv } : { data, iv, additionalData };
      const fixedAlg: Payload = tagLength === undefined ? { name } : { name, tagLength };
      return { key: `${op}\0${key}\0${name}\0${tagLength ?? ''}`, fixed: { algorithm: fixedAlg, key }, item, bytes };
    }
    default:
      return null;
  }
}

function isMap(v: unknown): v is { [field: string]: CborValue } {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array);
}

function allUndefined(fields: { [field: string]: unknown }): boolean {
  for (const k in fields) if (fields[k] !== undefined) return false;
  return true;
}
