/**
 * Small DIGEST, SIGN, VERIFY, ENCRYPT and DECRYPT requests issued in one
 * tick, under one algorithm and one key, carried as the batch form of the request
 * (docs/protocol.md §6.15) instead of one frame each: what `subtle.sign`
 * costs the client and the daemon per call is mostly per frame — the
 * request's head, its id and pending entry, its decode, schema check and key
 * lookup on the daemon, its reply frame — and a batch pays that once.
 *
 *   subtle.sign(alg, key, data)
 *     │
 *     ├─ the tick's first call, or one that cannot join ──▶ single request, at once
 *     │  (large data, RSA, AES-CBC/CTR, an Ed448 context, a daemon without
 *     │   batch forms, coalesce: false)
 *     │
 *     └─ later calls of the tick ──▶ group (op, key or digest, algorithm, its parameter)
 *                                     │  sent when full, or at the end of the tick
 *                                     │  (before the connection writes the tick's frames)
 *                                     ├─ 1 call   ──▶ single request
 *                                     └─ 2+ calls ──▶ one batch request ──▶ each item's
 *                                                     result or error to its own caller
 *
 * What the caller sees does not change: a result is the single form's
 * result (the daemon answers an item exactly as it answers the single
 * request); an item's error is its own (`{ error }` in its place, rebuilt
 * as the same typed error); a failure of the whole batch (the key, the
 * algorithm: what every item shares) fails every item with it, as each
 * single request would have failed. No call waits longer than it did: every
 * frame of a tick still goes out in the tick's one write.
 *
 * Why the first call goes alone: a client making one call at a time then
 * runs exactly the code it ran without coalescing. Holding every call in a
 * group made V8 pretenure the groups' allocation sites during such a phase
 * (--trace-pretenuring-statistics: ten sites, every object found alive), and
 * a later pipelined phase then allocated its groups in the old space: the
 * client's CPU per call went from 3 µs to 6–8 µs, most of it in scavenges.
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

/**
 * Calls that share one batch frame: the same op, the same key (or digest
 * algorithm), the same algorithm name and parameter. Found by the key
 * handle (or the digest's algorithm) and then `name`, `param`: no string is
 * built per call to look a group up.
 */
class Group<T> {
  /** Each call's own fields, as the batch form takes them. */
  readonly items: Payload[] = [];
  /** Each call's request as the single form takes it: sent as it is when the group holds one call. */
  readonly singles: Payload[] = [];
  readonly resolves: Array<(v: T) => void> = [];
  readonly rejects: Array<(e: unknown) => void> = [];
  bytes = 0;

  constructor(
    readonly op: number,
    readonly name: string,
    /** The shared parameter: ECDSA's hash, an AEAD's tagLength; '' when none. */
    readonly param: string | number,
    /** The fields every item shares: `algorithm` (without what is per item), and `key` but for DIGEST. */
    readonly fixed: Payload,
    readonly options: RequestOptions | undefined,
    readonly result: (v: CborValue) => T,
    readonly failure: (err: Error) => never,
  ) {}
}

/** What splitOf found for one call (one per coalescer, reused: nothing is allocated per call for it). */
interface Split {
  by: string;
  name: string;
  param: string | number;
  bytes: number;
  item: Payload | null;
}

export class Coalescer {
  readonly #conn: DaemonConnection;
  readonly #enabled: boolean;
  /** The tick's open groups, by key handle (or digest algorithm); rarely more than one per entry. */
  readonly #groups = new Map<string, Array<Group<unknown>>>();
  #queued = false;
  readonly #split: Split = { by: '', name: '', param: '', bytes: 0, item: null };

  /** A call went out alone this tick: the next ones of the tick are grouped. */
  #tickStarted = false;

  constructor(conn: DaemonConnection, enabled: boolean) {
    this.#conn = conn;
    this.#enabled = enabled;
    if (enabled) conn.beforeTickFlush = this.#flush;
  }

  /**
   * DIGEST, SIGN, VERIFY, ENCRYPT or DECRYPT with the single form's `args`
   * (typed by its declaration, as DaemonConnection.send): coalesced with
   * the tick's other calls of its group when it can be, else sent alone.
   * Resolves with `result` of what the single form's reply decodes to;
   * a failure goes through `failure` (which throws what the caller sees).
   * Calls of one group share their first call's `options`, `result` and
   * `failure`: client.subtle passes the same ones for every call of a method.
   */
  request<I extends Payload, T>(
    message: Message<Schema<unknown, I, boolean>, AnySchema>,
    args: NoInfer<I>,
    options: RequestOptions | undefined,
    result: (v: CborValue) => T,
    failure: (err: Error) => never,
  ): Promise<T> {
    const op = message.op;
    const payload: Payload = args;
    const limits = this.#conn.hello.limits;
    const split = this.#split;
    if (!this.#enabled || (limits.maxBatchItems ?? 0) < 2) return this.#conn.request(op, payload, options).then(result, failure);
    if (!this.#tickStarted) {
      // The tick's first call goes at once, as the single form: a call made alone costs what it did without coalescing.
      this.#tickStarted = true;
      this.#queue();
      return this.#conn.request(op, payload, options).then(result, failure);
    }
    if (!splitOf(op, payload, split)) return this.#conn.request(op, payload, options).then(result, failure);
    // The frame's room for items: GROUP_BYTES, or less on a daemon with a small maxFrame.
    const room = Math.min(GROUP_BYTES, limits.maxFrame - FRAME_SLACK);
    const cost = split.bytes + ITEM_OVERHEAD;
    if (cost > room) return this.#conn.request(op, payload, options).then(result, failure);
    let list = this.#groups.get(split.by);
    let g: Group<T> | undefined;
    if (list === undefined) {
      list = [];
      this.#groups.set(split.by, list);
    } else {
      for (const x of list) if (x.op === op && x.name === split.name && x.param === split.param) g = x as Group<T>;
    }
    if (g !== undefined && g.bytes + cost > room) {
      list.splice(list.indexOf(g as Group<unknown>), 1);
      this.#send(g);
      g = undefined;
    }
    if (g === undefined) {
      g = new Group<T>(op, split.name, split.param, fixedOf(op, payload, split), options, result, failure);
      list.push(g as Group<unknown>);
      this.#queue();
    }
    const target = g;
    target.items.push(split.item!);
    target.singles.push(payload);
    target.bytes += cost;
    const p = new Promise<T>((resolve, reject) => {
      target.resolves.push(resolve);
      target.rejects.push(reject);
    });
    if (target.items.length >= Math.min(GROUP_ITEMS, limits.maxBatchItems ?? 0)) {
      list.splice(list.indexOf(target as Group<unknown>), 1);
      this.#send(target);
    }
    return p;
  }

  /** The end of the tick: open groups are sent (before the connection's write of the tick, or, failing that, on this tick). */
  #queue(): void {
    if (this.#queued) return;
    this.#queued = true;
    process.nextTick(this.#flush);
  }

  readonly #flush = (): void => {
    if (!this.#queued) return;
    this.#queued = false;
    this.#tickStarted = false;
    if (this.#groups.size === 0) return;
    const lists = [...this.#groups.values()];
    this.#groups.clear();
    for (const list of lists) for (const g of list) this.#send(g);
  };

  #send<T>(g: Group<T>): void {
    if (g.items.length === 1) {
      this.#conn.request(g.op, g.singles[0], g.options).then(g.result, g.failure).then(g.resolves[0], g.rejects[0]);
      return;
    }
    this.#conn.request(g.op, { ...g.fixed, items: g.items }, g.options).then(
      (reply) => settle(g, reply),
      (err: Error) => {
        for (const reject of g.rejects) fail(g, reject, err);
      },
    );
  }
}

/** Each item's result or error to its caller; a reply without one result per item fails them all. */
function settle<T>(g: Group<T>, reply: CborValue): void {
  const results = isMap(reply) ? reply.items : undefined;
  if (!Array.isArray(results) || results.length !== g.items.length) {
    const err = new BadFrameError('the daemon replied to a batch without one result per item');
    for (const reject of g.rejects) fail(g, reject, err);
    return;
  }
  for (let i = 0; i < results.length; i++) {
    const r = results[i];
    if (isMap(r) && isMap(r.error)) {
      fail(g, g.rejects[i]!, errorFromWire(r.error.code, r.error.message, r.error.detail));
      continue;
    }
    let v: T;
    try {
      v = g.result(r);
    } catch (err) {
      g.rejects[i]!(err);
      continue;
    }
    g.resolves[i]!(v);
  }
}

/** Reject with what the group's `failure` makes of `err`. */
function fail<T>(g: Group<T>, reject: (e: unknown) => void, err: Error): void {
  try {
    g.failure(err);
  } catch (mapped) {
    reject(mapped);
  }
}

/**
 * Whether the single form's `payload` can join a group; if so `out` says
 * which group and holds the call's batch item. Not when the input is too
 * large to gain from a batch, or the algorithm (or a parameter) is one the
 * batch form does not take.
 */
function splitOf(op: number, payload: Payload, out: Split): boolean {
  const data = payload.data;
  if (!(data instanceof Uint8Array)) return false;
  const algorithm = payload.algorithm;
  switch (op) {
    case Op.DIGEST:
      if (typeof algorithm !== 'string' || data.length > ITEM_BYTES) return false;
      out.by = algorithm;
      out.name = algorithm;
      out.param = '';
      out.bytes = data.length;
      out.item = { data };
      return true;
    case Op.SIGN:
    case Op.VERIFY: {
      const key = payload.key;
      const signature = payload.signature;
      if (typeof key !== 'string' || !isMap(algorithm)) return false;
      const name = algorithm.name;
      if (typeof name !== 'string' || !BATCH_SIGNERS.has(name)) return false;
      let hash: string | null = '';
      for (const f in algorithm) {
        const v = algorithm[f];
        if (f === 'name' || v === undefined) continue;
        if (f !== 'hash') return false; // a context, a salt length: alone
        hash = typeof v === 'string' ? v : isMap(v) && typeof v.name === 'string' ? v.name : null;
      }
      if (hash === null) return false;
      let bytes = data.length;
      if (op === Op.VERIFY) {
        if (!(signature instanceof Uint8Array)) return false;
        bytes += signature.length;
        out.item = { signature, data };
      } else {
        out.item = { data };
      }
      if (bytes > ITEM_BYTES) return false;
      out.by = key;
      out.name = name;
      out.param = hash;
      out.bytes = bytes;
      return true;
    }
    case Op.ENCRYPT:
    case Op.DECRYPT: {
      const key = payload.key;
      if (typeof key !== 'string' || !isMap(algorithm)) return false;
      const { name, iv, additionalData, tagLength } = algorithm;
      if (typeof name !== 'string' || !BATCH_CIPHERS.has(name) || !(iv instanceof Uint8Array)) return false;
      for (const f in algorithm) if (algorithm[f] !== undefined && f !== 'name' && f !== 'iv' && f !== 'additionalData' && f !== 'tagLength') return false;
      if (additionalData !== undefined && !(additionalData instanceof Uint8Array)) return false;
      if (tagLength !== undefined && typeof tagLength !== 'number') return false;
      const bytes = data.length + iv.length + (additionalData?.length ?? 0);
      if (bytes > ITEM_BYTES) return false;
      out.by = key;
      out.name = name;
      out.param = tagLength ?? '';
      out.bytes = bytes;
      out.item = additionalData === undefined ? { data, iv } : { data, iv, additionalData };
      return true;
    }
    default:
      return false;
  }
}

/** The fields a group's items share, from its first call. */
function fixedOf(op: number, payload: Payload, split: Split): Payload {
  if (op === Op.DIGEST) return { algorithm: payload.algorithm };
  if (op === Op.ENCRYPT || op === Op.DECRYPT) return { algorithm: split.param === '' ? { name: split.name } : { name: split.name, tagLength: split.param }, key: payload.key };
  return { algorithm: payload.algorithm, key: payload.key };
}

function isMap(v: unknown): v is { [field: string]: CborValue } {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array);
}
