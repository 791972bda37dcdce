/**
 * Data operations on managed keys, by name (docs/protocol.md §6.11):
 * MANAGED_ENCRYPT, _DECRYPT, _SIGN, _VERIFY, _MAC, _VERIFY_MAC, _REWRAP.
 *
 *   chain: authorize (access `key`, managed-auth.ts: policy `clients`; a key
 *          it does not know waits for one keystore refresh)
 *   handler: acquire snapshot lease (O(1), never waits)
 *           ─▶ outbound: current version │ inbound: the version in the header
 *           ─▶ crypto (managed-crypto.ts) ─▶ release the lease
 *
 * Every operation has a single form (`{ key, plaintext, aad? }`) and a batch
 * form (`{ key, items: [{ plaintext, aad? }, …] }`): one lease for the whole
 * batch, one result per item, and an item that fails becomes
 * `{ error: { code, message, detail? } }` in its place instead of failing the
 * request. What applies to the whole batch (no such key, not allowed, no
 * managed keys) still fails the request.
 *
 * The lease is held only while the synchronous crypto runs, so a rotation
 * that lands meanwhile swaps the next snapshot in without waiting; the
 * material this request uses is zeroed only after the lease is released.
 */
import type { HandlerResult, ManagedKeys, Operation, RequestContext } from './operation.js';
import type { KeyOp } from '../keys/model.js';
import type { SnapshotLease } from '../keys/snapshot.js';
import type { CborValue } from '../protocol/cbor.js';
import { InvalidArgumentError, KeyVersionError, toCryptodError } from '../protocol/errors.js';
import { Op, type OpCode } from '../protocol/ops.js';
import { ManagedDecrypt, ManagedEncrypt, ManagedMac, ManagedRewrap, ManagedSign, ManagedVerify, ManagedVerifyMac, MAX_BATCH } from '../protocol/messages/managed.js';
import { asCbor, type Schema } from '../protocol/schema.js';
import { sensitiveReply } from './keys.js';
import { checkKey, managedKeys } from './managed-auth.js';
import { macMessage, open, seal, signMessage, verifyMac, verifyMessage } from './managed-crypto.js';
import { parseHeader, type OutputKind } from '../protocol/managed-format.js';

export { MAX_BATCH };

/** One item's fields, checked by the operation's declaration (src/protocol/messages/managed.ts). */
type Item = { plaintext?: Buffer; ciphertext?: Buffer; aad?: Buffer; message?: Buffer; signature?: Buffer; mac?: Buffer };
type Request = { key: string; items: Item[] } | ({ key: string; items?: undefined } & Item);
/**
 * One item. `secrets` collects reply buffers that are key material (the
 * unwrapped key of an aes256-kwp decrypt): the reply then goes out as a
 * sensitive reply (unpooled, zeroed after the write) and they are zeroed.
 */
type ItemFn = (lease: SnapshotLease, key: string, item: Item, secrets: Buffer[]) => CborValue;
/** The single item of a batch request: none (its items are run instead). */
const BATCH: Item = Object.freeze({});

/**
 * One data operation: the chain authorized the key (`access`), the handler
 * runs `fn` for the item or for every item of a batch. The lease is taken in
 * `attempt` (not in the loop: see the tsx `using` caveat in the notes) and
 * covers the whole batch.
 *
 * Data naming a version newer than this daemon holds may be the work of
 * another daemon on the same keystore a moment ago: the request then waits
 * for one refresh (KeyManager.refreshSoon) and runs once more — the whole
 * request for a single item, only the items that missed for a batch. (A key
 * it does not hold at all waited already, in the authorize phase.) Every
 * other path stays synchronous.
 */
function dataOp(op: OpCode, args: Schema<Request, unknown>, right: KeyOp, fn: ItemFn, sensitiveRequest = false): Operation {
  return {
    op,
    access: { kind: 'key', arg: 'key', permission: right },
    sensitiveRequest,
    handle(ctx: RequestContext, raw: CborValue): HandlerResult | Promise<HandlerResult> {
      const request = args.parse(raw);
      const keys = managedKeys(ctx);
      const name = request.key;
      const items = request.items;
      const single: Item = request.items === undefined ? request : BATCH;
      const secrets: Buffer[] = [];
      const first = attempt(ctx, keys, name, right, fn, single, items, null, secrets);
      if (first.missed === null) return replyOf(first.reply, secrets);
      const { missed } = first;
      return keys.manager.refreshSoon().then(() => replyOf(attempt(ctx, keys, name, right, fn, single, items, missed, secrets).reply, secrets));
    },
  };
}

/** A reply carrying key material takes the sensitive path; its secrets are zeroed once it is encoded (keys.ts sensitiveReply). */
function replyOf(reply: CborValue, secrets: Buffer[]): HandlerResult {
  if (secrets.length === 0) return reply;
  setImmediate(() => {
    for (const b of secrets) b.fill(0);
  });
  return sensitiveReply(reply);
}

/** Batch items to run again into the first attempt's results. */
interface Rerun {
  out: CborValue[];
  indices: number[];
}

interface Attempt {
  reply: CborValue;
  /**
   * What missed and is worth one refresh — 'all' (the single
   * item's version) or the batch items whose version missed — or null.
   */
  missed: 'all' | Rerun | null;
}

/**
 * The request under one snapshot lease. `again` is null on the first attempt,
 * whose misses are reported rather than answered; on the retry ('all', or
 * the batch items to re-run) whatever happens is the answer.
 */
function attempt(
  ctx: RequestContext, keys: ManagedKeys, name: string, right: KeyOp, fn: ItemFn, args: Item,
  items: Item[] | undefined, again: 'all' | Rerun | null, secrets: Buffer[],
): Attempt {
  const first = again === null;
  using lease = keys.manager.acquire();
  // The chain authorized the request under the snapshot it arrived in; a retry
  // runs under a newer one (the key may be gone, its policy changed): again.
  if (!first) checkKey(ctx, keys, lease.snapshot.keys.get(name), name, right);
  if (items === undefined) {
    try {
      return { reply: fn(lease, name, args, secrets), missed: null };
    } catch (err) {
      if (first && isVersionMiss(err)) return { reply: null, missed: 'all' };
      throw err;
    }
  }
  if (again !== null && again !== 'all') {
    for (const i of again.indices) again.out[i] = runItem(fn, lease, name, items[i]!, i, secrets);
    return { reply: { items: again.out }, missed: null };
  }
  const out: CborValue[] = new Array<CborValue>(items.length);
  const indices: number[] = [];
  for (let i = 0; i < items.length; i++) out[i] = runItem(fn, lease, name, items[i]!, i, secrets, first ? indices : null);
  return { reply: { items: out }, missed: indices.length > 0 ? { out, indices } : null };
}

/** A version the data names that this daemon does not hold (KEY_VERSION, reason "unknown"). */
function isVersionMiss(err: unknown): boolean {
  return err instanceof KeyVersionError && err.detail?.reason === 'unknown';
}

/** One batch item; its failure becomes its result. A version miss also adds `i` to `misses`, when given. */
function runItem(fn: ItemFn, lease: SnapshotLease, name: string, item: Item, i: number, secrets: Buffer[], misses: number[] | null = null): CborValue {
  try {
    return fn(lease, name, item, secrets);
  } catch (err) {
    if (misses !== null && isVersionMiss(err)) misses.push(i);
    return { error: asCbor(toCryptodError(err).toJSON()) };
  }
}

/** Parse an inbound value and insist it names the key the request named. */
function inbound(data: Uint8Array, kind: OutputKind, name: string): ReturnType<typeof parseHeader> {
  const p = parseHeader(data, kind);
  if (p.header.key !== name) {
    throw new InvalidArgumentError(`the ${kind} was made by key '${p.header.key}', not by '${name}'`, { detail: { key: name, field: kind } });
  }
  return p;
}

const encrypt: ItemFn = (lease, name, a) => {
  const u = lease.outbound(name, 'encrypt');
  return { ciphertext: seal(u, a.plaintext!, a.aad), version: u.version.version };
};

const decrypt: ItemFn = (lease, name, a, secrets) => {
  const { header, body } = inbound(a.ciphertext!, 'ciphertext', name);
  const u = lease.inbound(name, header.version, 'decrypt');
  const plaintext = open(u, header, body, a.aad);
  if (u.key.type === 'aes256-kwp') secrets.push(plaintext); // an unwrapped key
  return { plaintext, version: header.version };
};

const rewrap: ItemFn = (lease, name, a) => {
  const aad = a.aad;
  const { header, body } = inbound(a.ciphertext!, 'ciphertext', name);
  const from = lease.inbound(name, header.version, 'decrypt');
  const plaintext = open(from, header, body, aad);
  try {
    // The plaintext never leaves the daemon: decrypted, re-sealed, zeroed.
    const to = lease.outbound(name, 'encrypt');
    return { ciphertext: seal(to, plaintext, aad), version: to.version.version, previousVersion: header.version };
  } finally {
    plaintext.fill(0);
  }
};

const signOp: ItemFn = (lease, name, a) => {
  const u = lease.outbound(name, 'sign');
  return { signature: signMessage(u, a.message!), version: u.version.version };
};

const verifyOp: ItemFn = (lease, name, a) => {
  const { header, body } = inbound(a.signature!, 'signature', name);
  const u = lease.inbound(name, header.version, 'verify');
  return { valid: verifyMessage(u, header, body, a.message!), version: header.version };
};

const macOp: ItemFn = (lease, name, a) => {
  const u = lease.outbound(name, 'mac');
  return { mac: macMessage(u, a.message!), version: u.version.version };
};

const verifyMacOp: ItemFn = (lease, name, a) => {
  const { header, body } = inbound(a.mac!, 'mac', name);
  const u = lease.inbound(name, header.version, 'verify-mac');
  return { valid: verifyMac(u, header, body, a.message!), version: header.version };
};

export const managedDataOperations: Operation[] = [
  dataOp(Op.MANAGED_ENCRYPT, ManagedEncrypt.args, 'encrypt', encrypt, true),
  dataOp(Op.MANAGED_DECRYPT, ManagedDecrypt.args, 'decrypt', decrypt),
  dataOp(Op.MANAGED_REWRAP, ManagedRewrap.args, 'rewrap', rewrap),
  dataOp(Op.MANAGED_SIGN, ManagedSign.args, 'sign', signOp),
  dataOp(Op.MANAGED_VERIFY, ManagedVerify.args, 'verify', verifyOp),
  dataOp(Op.MANAGED_MAC, ManagedMac.args, 'mac', macOp),
  dataOp(Op.MANAGED_VERIFY_MAC, ManagedVerifyMac.args, 'verify-mac', verifyMacOp),
];
