/**
 * Data keys under a managed KEK (docs/protocol.md §6.12, design note 5):
 * DATAKEY_GENERATE, _ENCRYPT, _DECRYPT, _REWRAP, _OPEN, _KEY, _UNWRAP.
 *
 *   chain: authorize (access `data-key`: the KEK named by `kek` or by the
 *          wrapped key's header; policy right `datakey`)
 *   handler: parse the wrapped key ─▶ the KEK version it names (inbound rules)
 *           ─▶ cache.acquire (hit, or the one unwrap in flight) ─▶ AES-GCM
 *           ─▶ release the lease (the key is zeroed later, by the cache)
 *
 * A new data key is returned in plaintext only with `plaintext: true` and the
 * separate `datakey-plaintext` right (as Vault separates datakey/plaintext
 * from datakey/wrapped), and an existing one (DATAKEY_UNWRAP) only with that
 * right too; otherwise no data-key byte ever leaves the daemon.
 * Generate, rewrap, open and unwrap are audited (the data operations are not, as for
 * managed keys); refusals are audited by the chain (`request.denied`).
 *
 * The unwrap may take long (a token, a remote KMS): the handler awaits it,
 * and the event loop serves everyone else meanwhile.
 */
import { createCipheriv, createDecipheriv, randomBytes, randomFillSync } from 'node:crypto';
import type { DataKeyLease } from '../cache/data-key-cache.js';
import type { DataKeyKek } from '../kek/data-key-kek.js';
import type { CborValue } from '../protocol/cbor.js';
import {
  DATA_FORMAT, DATA_NONCE, DATA_TAG, DEFAULT_DATAKEY_LENGTH, encodeWrappedKeyHeader, isDataKeyLength, parseDataCiphertext, parseWrappedKey,
} from '../protocol/datakey-format.js';
import { DecryptError, InternalError, InvalidArgumentError, InvalidKeyError, UnsupportedError, toCryptodError } from '../protocol/errors.js';
import { DataKeyDecrypt, DataKeyEncrypt, DataKeyGenerate, DataKeyKey, DataKeyOpen, DataKeyRewrap, DataKeyUnwrap } from '../protocol/messages/datakeys.js';
import { addKey, KeyNode } from './key.js';
import { Op } from '../protocol/ops.js';
import { asCbor } from '../protocol/schema.js';
import { sensitiveReply } from './keys.js';
import { checkKey, managedKeys } from './managed-auth.js';
import { SensitiveReply, type AuditedRequest, type DataKeys, type HandlerResult, type Operation, type RequestContext } from './operation.js';

function dataKeys(ctx: RequestContext): DataKeys {
  const d = ctx.daemon.dataKeys;
  if (d === undefined) throw new UnsupportedError('data keys need managed keys (a data directory): this daemon was started without one');
  return d;
}

/** The wrapped key's parts and the KEK version that can unwrap it now (typed refusals otherwise). */
function locate(d: DataKeys, wrappedKey: Buffer): { kek: DataKeyKek; header: ReturnType<typeof parseWrappedKey>['header']; body: Buffer } {
  const { header, body } = parseWrappedKey(wrappedKey);
  const kek = d.keks.version(header.kek, header.kekVersion);
  if (kek.type !== header.kekType) {
    throw new InvalidKeyError(`the wrapped key names a ${header.kekType} KEK, but '${header.kek}' is ${kek.type}`, { detail: { key: header.kek, field: 'wrappedKey' } });
  }
  return { kek, header, body };
}

/** The data key of `wrappedKey`, for one use over `bytes` bytes: from the cache or its one unwrap. */
async function keyFor(d: DataKeys, wrappedKey: Buffer, bytes: bigint): Promise<{ lease: DataKeyLease; kekVersion: number; kek: string }> {
  const { kek, header, body } = locate(d, wrappedKey);
  const lease = await d.cache.acquire({ partition: header.kek, kekVersion: header.kekVersion, wrapped: wrappedKey }, async () => {
    const key = await kek.unwrap(body, header.bytes);
    if (key.length !== header.length) {
      key.fill(0);
      throw new DecryptError(`the wrapped key unwrapped to ${key.length} bytes, but its header says ${header.length}`);
    }
    return key;
  }, bytes);
  return { lease, kekVersion: header.kekVersion, kek: header.kek };
}

function gcm(key: Buffer): 'aes-128-gcm' | 'aes-192-gcm' | 'aes-256-gcm' {
  switch (key.length) {
    case 16:
      return 'aes-128-gcm';
    case 24:
      return 'aes-192-gcm';
    case 32:
      return 'aes-256-gcm';
    default:
      throw new InternalError(`a data key of ${key.length} bytes`);
  }
}

const FORMAT_BYTE = Buffer.from([DATA_FORMAT]);

function additional(aad: Uint8Array | undefined): Buffer {
  return aad === undefined || aad.length === 0 ? FORMAT_BYTE : Buffer.concat([FORMAT_BYTE, aad]);
}

/** format ‖ nonce ‖ ciphertext ‖ tag (docs/formats.md "Data keys"). */
export function sealWithDataKey(key: Buffer, plaintext: Uint8Array, aad: Uint8Array | undefined): Buffer {
  const nonce = randomBytes(DATA_NONCE);
  const c = createCipheriv(gcm(key), key, nonce, { authTagLength: DATA_TAG });
  c.setAAD(additional(aad));
  const body = c.update(plaintext);
  const last = c.final();
  return Buffer.concat([FORMAT_BYTE, nonce, body, last, c.getAuthTag()]);
}

export function openWithDataKey(key: Buffer, ciphertext: Uint8Array, aad: Uint8Array | undefined): Buffer {
  const { nonce, body, tag } = parseDataCiphertext(ciphertext);
  const d = createDecipheriv(gcm(key), key, nonce, { authTagLength: DATA_TAG });
  d.setAAD(additional(aad));
  d.setAuthTag(tag);
  const out = d.update(body);
  try {
    d.final();
  } catch {
    out.fill(0);
    throw new DecryptError('decryption failed: the ciphertext or the additional data is not authentic for this data key');
  }
  return out;
}

type Item = { plaintext?: Buffer; ciphertext?: Buffer; aad?: Buffer | undefined };
type DataRequest = { wrappedKey: Buffer; items: Item[] } | ({ wrappedKey: Buffer; items?: undefined } & Item);

/** DATAKEY_ENCRYPT / _DECRYPT: one key lease for the item or the whole batch; a failed batch item becomes its `{ error }`. */
function dataOp(op: typeof Op.DATAKEY_ENCRYPT | typeof Op.DATAKEY_DECRYPT, parse: (raw: CborValue) => DataRequest, fn: (key: Buffer, item: Item) => CborValue, sensitiveRequest: boolean): Operation {
  return {
    op,
    access: { kind: 'data-key', permission: 'datakey' },
    sensitiveRequest,
    async handle(ctx, raw) {
      const req = parse(raw);
      const d = dataKeys(ctx);
      const items = req.items;
      let bytes = 0n;
      for (const i of items ?? [req]) bytes += BigInt((i.plaintext ?? i.ciphertext)?.length ?? 0);
      const { lease } = await keyFor(d, req.wrappedKey, bytes);
      try {
        if (items === undefined) return fn(lease.key, req);
        return {
          items: items.map((item) => {
            try {
              return fn(lease.key, item);
            } catch (err) {
              return { error: asCbor(toCryptodError(err).toJSON()) };
            }
          }),
        };
      } finally {
        lease[Symbol.dispose]();
      }
    },
  };
}

const generate: Operation = {
  op: Op.DATAKEY_GENERATE,
  access: { kind: 'data-key', permission: 'datakey' },
  async handle(ctx, raw): Promise<HandlerResult> {
    const args = DataKeyGenerate.args.parse(raw);
    const d = dataKeys(ctx);
    if (args.plaintext === true) {
      const keys = managedKeys(ctx);
      checkKey(ctx, keys, keys.manager.entry(args.kek), args.kek, 'datakey-plaintext');
    }
    const length = args.length ?? DEFAULT_DATAKEY_LENGTH;
    if (!isDataKeyLength(length)) {
      throw new InvalidArgumentError(`expected a data key length of 16, 24 or 32 bytes (AES-128/192/256-GCM), got ${length}`, { detail: { field: 'length' } });
    }
    const kek = d.keks.current(args.kek);
    const key = randomFillSync(Buffer.alloc(length));
    let wrappedKey: Buffer;
    try {
      const header = encodeWrappedKeyHeader(kek.type, kek.name, kek.version, length, args.aad ?? Buffer.alloc(0));
      wrappedKey = Buffer.concat([header, await kek.wrap(key, header)]);
    } catch (err) {
      key.fill(0);
      throw err;
    }
    if (args.plaintext !== true) {
      // A new key is usually used at once: keep it, so the first use needs no unwrap.
      d.cache.insert({ partition: kek.name, kekVersion: kek.version, wrapped: wrappedKey }, key);
      return { wrappedKey, kekVersion: kek.version };
    }
    const copy = Buffer.alloc(length);
    key.copy(copy);
    d.cache.insert({ partition: kek.name, kekVersion: kek.version, wrapped: wrappedKey }, key);
    setImmediate(() => copy.fill(0));
    return sensitiveReply({ wrappedKey, kekVersion: kek.version, plaintext: copy });
  },
  audit: (r: AuditedRequest) => {
    const args = DataKeyGenerate.args.parse(r.args);
    const res = DataKeyGenerate.result.parse(resultValue(r.result));
    return { event: 'datakey.generated', kek: args.kek, kekVersion: res.kekVersion, plaintext: args.plaintext === true, connection: r.connection, clientId: r.clientId, client: r.client };
  },
};

function resultValue(result: HandlerResult): CborValue {
  return result instanceof SensitiveReply ? result.value : result;
}

/** The data key of `wrappedKey` under the KEK's current version; the plaintext stays in the daemon. */
async function rewrapKey(d: DataKeys, wrappedKey: Buffer, always: boolean): Promise<{ wrappedKey: Buffer; kekVersion: number; previousVersion: number; rewrapped: boolean }> {
  const { header } = parseWrappedKey(wrappedKey);
  const to = d.keks.current(header.kek);
  const { lease } = await keyFor(d, wrappedKey, 0n);
  try {
    if (!always && to.version === header.kekVersion) {
      return { wrappedKey, kekVersion: header.kekVersion, previousVersion: header.kekVersion, rewrapped: false };
    }
    const h = encodeWrappedKeyHeader(to.type, to.name, to.version, header.length, header.context);
    const out = Buffer.concat([h, await to.wrap(lease.key, h)]);
    const copy = Buffer.alloc(lease.key.length);
    lease.key.copy(copy);
    d.cache.insert({ partition: to.name, kekVersion: to.version, wrapped: out }, copy);
    return { wrappedKey: out, kekVersion: to.version, previousVersion: header.kekVersion, rewrapped: true };
  } finally {
    lease[Symbol.dispose]();
  }
}

function auditRewrap(r: AuditedRequest, res: { kekVersion: number; previousVersion: number }, kek: string) {
  return { event: 'datakey.rewrapped' as const, kek, kekVersion: res.kekVersion, previousVersion: res.previousVersion, connection: r.connection, clientId: r.clientId, client: r.client };
}

const rewrap: Operation = {
  op: Op.DATAKEY_REWRAP,
  access: { kind: 'data-key', permission: 'datakey' },
  async handle(ctx, raw) {
    const r = await rewrapKey(dataKeys(ctx), DataKeyRewrap.args.parse(raw).wrappedKey, true);
    return { wrappedKey: r.wrappedKey, kekVersion: r.kekVersion, previousVersion: r.previousVersion };
  },
  audit: (r) => {
    const res = DataKeyRewrap.result.parse(r.result as CborValue);
    return auditRewrap(r, res, parseWrappedKey(res.wrappedKey).header.kek);
  },
};

/** "Open a database, rewrap if stale": checks the key unwraps (and caches it), rewraps only under an old KEK version. */
const open: Operation = {
  op: Op.DATAKEY_OPEN,
  access: { kind: 'data-key', permission: 'datakey' },
  async handle(ctx, raw) {
    const r = await rewrapKey(dataKeys(ctx), DataKeyOpen.args.parse(raw).wrappedKey, false);
    return { wrappedKey: r.wrappedKey, kekVersion: r.kekVersion, rewrapped: r.rewrapped };
  },
  audit: (r) => {
    const res = DataKeyOpen.result.parse(r.result as CborValue);
    const before = parseWrappedKey(DataKeyOpen.args.parse(r.args).wrappedKey).header;
    return { event: 'datakey.opened', kek: before.kek, kekVersion: res.kekVersion, rewrapped: res.rewrapped, connection: r.connection, clientId: r.clientId, client: r.client };
  },
};

/**
 * DATAKEY_KEY: the data key as an ephemeral AES-GCM key node of this
 * connection (a copy: the node zeroes it when released), for CIPHER_CREATE
 * streams in the segmented format. Non-extractable: the node can encrypt and
 * decrypt, never export or wrap.
 */
const asKey: Operation = {
  op: Op.DATAKEY_KEY,
  access: { kind: 'data-key', permission: 'datakey' },
  async handle(ctx, raw) {
    const { lease } = await keyFor(dataKeys(ctx), DataKeyKey.args.parse(raw).wrappedKey, 0n);
    try {
      const secret = Buffer.alloc(lease.key.length);
      lease.key.copy(secret);
      return addKey(ctx, new KeyNode({ algorithm: { name: 'AES-GCM', length: secret.length * 8 }, type: 'secret', extractable: false, usages: ['encrypt', 'decrypt'], secret }));
    } finally {
      lease[Symbol.dispose]();
    }
  },
};

/**
 * DATAKEY_UNWRAP: the plaintext of an existing wrapped key, which is what
 * Vault's transit/decrypt gives for a datakey ciphertext. The same two
 * rights as generating with `plaintext: true`: `datakey` (the access
 * check) and `datakey-plaintext` (here, on the KEK the header names).
 */
const unwrap: Operation = {
  op: Op.DATAKEY_UNWRAP,
  access: { kind: 'data-key', permission: 'datakey' },
  async handle(ctx, raw) {
    const { wrappedKey } = DataKeyUnwrap.args.parse(raw);
    const d = dataKeys(ctx);
    const kekName = parseWrappedKey(wrappedKey).header.kek;
    const keys = managedKeys(ctx);
    checkKey(ctx, keys, keys.manager.entry(kekName), kekName, 'datakey-plaintext');
    const { lease, kekVersion } = await keyFor(d, wrappedKey, 0n);
    try {
      // A copy: the cache keeps (and later zeroes) its own; this one is zeroed once the reply is written.
      const copy = Buffer.alloc(lease.key.length);
      lease.key.copy(copy);
      setImmediate(() => copy.fill(0));
      return sensitiveReply({ plaintext: copy, kekVersion });
    } finally {
      lease[Symbol.dispose]();
    }
  },
  audit: (r: AuditedRequest) => {
    const header = parseWrappedKey(DataKeyUnwrap.args.parse(r.args).wrappedKey).header;
    return { event: 'datakey.unwrapped', kek: header.kek, kekVersion: header.kekVersion, connection: r.connection, clientId: r.clientId, client: r.client };
  },
};

export const dataKeyOperations: Operation[] = [
  asKey,
  generate,
  dataOp(Op.DATAKEY_ENCRYPT, (raw) => DataKeyEncrypt.args.parse(raw), (key, i) => ({ ciphertext: sealWithDataKey(key, i.plaintext!, i.aad) }), true),
  dataOp(Op.DATAKEY_DECRYPT, (raw) => DataKeyDecrypt.args.parse(raw), (key, i) => ({ plaintext: openWithDataKey(key, i.ciphertext!, i.aad) }), false),
  rewrap,
  open,
  unwrap,
];
