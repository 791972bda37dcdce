/**
 * A client-owned key: the value of a `key` data node.
 *
 * Secret keys are bytes the daemon owns (`Buffer.alloc`, never the shared
 * pool), zeroed when the node is freed. Asymmetric keys are node:crypto
 * KeyObjects: their bytes live in OpenSSL memory that JavaScript cannot wipe;
 * dropping the last reference lets OpenSSL free (and, for private keys,
 * cleanse) them when the KeyObject is collected. README "What JavaScript
 * cannot promise" says so.
 */
import type { KeyObject } from 'node:crypto';
import type { CborValue } from '../protocol/cbor.js';
import { asCbor } from '../protocol/schema.js';
import { InternalError, InvalidKeyError } from '../protocol/errors.js';
import type { NodeValue } from '../state/data-manager.js';
import type { DataNodeId } from '../state/ids.js';
import type { RequestContext } from './operation.js';
import type { DataNodeAccessor } from '../state/data-manager.js';
import type { AlgorithmName } from './algorithms.js';

export type KeyType = 'secret' | 'private' | 'public';
export type KeyUsage = 'encrypt' | 'decrypt' | 'sign' | 'verify' | 'deriveKey' | 'deriveBits' | 'wrapKey' | 'unwrapKey';
export const KEY_USAGES: readonly KeyUsage[] = ['encrypt', 'decrypt', 'sign', 'verify', 'deriveKey', 'deriveBits', 'wrapKey', 'unwrapKey'];

/** The key's algorithm as WebCrypto reports it (CryptoKey.algorithm). */
export interface KeyAlgorithm {
  name: AlgorithmName;
  /** AES, ChaCha20 and HMAC: key length in bits. */
  length?: number;
  /** HMAC, RSA-PSS: `{ name: 'SHA-256' }`. */
  hash?: { name: string };
  /** ECDSA, ECDH: 'P-256' | 'P-384'. */
  namedCurve?: string;
  /** RSA-PSS. */
  modulusLength?: number;
  publicExponent?: Uint8Array;
}

export class KeyNode implements NodeValue {
  readonly algorithm: KeyAlgorithm;
  readonly type: KeyType;
  readonly extractable: boolean;
  readonly usages: readonly KeyUsage[];
  #secret: Buffer | null;
  #object: KeyObject | null;
  #disposed = false;

  /**
   * @param secret bytes now owned by the node (not copied; zeroed on dispose)
   * @param object the KeyObject of an asymmetric key
   */
  constructor(init: {
    algorithm: KeyAlgorithm;
    type: KeyType;
    extractable: boolean;
    usages: readonly KeyUsage[];
    secret?: Buffer;
    object?: KeyObject;
  }) {
    this.algorithm = init.algorithm;
    this.type = init.type;
    this.extractable = init.extractable;
    this.usages = init.usages;
    this.#secret = init.secret ?? null;
    this.#object = init.object ?? null;
    if ((this.#secret === null) === (this.#object === null)) throw new InternalError('a key node holds either secret bytes or a KeyObject');
  }

  /** The secret bytes of a secret key. Valid while an accessor to the node is held. */
  get secret(): Buffer {
    if (this.#secret === null) throw new InternalError(this.#disposed ? 'key used after release' : 'not a secret key');
    return this.#secret;
  }

  /** The KeyObject of an asymmetric key. */
  get object(): KeyObject {
    if (this.#object === null) throw new InternalError(this.#disposed ? 'key used after release' : 'not an asymmetric key');
    return this.#object;
  }

  /** Refuse a key whose algorithm or usages do not allow `usage` (WebCrypto's InvalidAccessError). */
  require(algorithm: AlgorithmName | readonly AlgorithmName[], usage: KeyUsage): void {
    const ok = typeof algorithm === 'string' ? this.algorithm.name === algorithm : algorithm.includes(this.algorithm.name);
    if (!ok) {
      const want = typeof algorithm === 'string' ? algorithm : algorithm.join(' or ');
      throw new InvalidKeyError(`the key is a ${this.algorithm.name} key; this operation needs a ${want} key`, {
        detail: { expected: want, actual: this.algorithm.name },
      });
    }
    if (!this.usages.includes(usage)) {
      throw new InvalidKeyError(`the key's usages (${this.usages.join(', ') || 'none'}) do not include '${usage}'`, {
        detail: { usage },
      });
    }
  }

  /** The wire description of this key (docs/protocol.md §6.2). */
  describe(handle: DataNodeId): CborValue {
    return {
      handle,
      type: this.type,
      extractable: this.extractable,
      algorithm: asCbor(this.algorithm),
      usages: [...this.usages],
    };
  }

  dispose(): void {
    this.#disposed = true;
    this.#secret?.fill(0);
    this.#secret = null;
    this.#object = null;
  }
}

/** Register a new key node owned by the requesting connection; returns its description. */
export function addKey(ctx: RequestContext, key: KeyNode): CborValue {
  let id: DataNodeId;
  try {
    id = ctx.dm.add(ctx.clientId, 'key', key, { owner: ctx.owner });
  } catch (err) {
    key.dispose(); // a refused key (quota) must not linger in memory
    throw err;
  }
  ctx.owner.own(id);
  return key.describe(id);
}

/** Acquire a key node by the handle in a request. Dispose the accessor (`using`). */
export function acquireKey(ctx: RequestContext, handle: DataNodeId): DataNodeAccessor<KeyNode> {
  return ctx.dm.acquire<KeyNode>(ctx.clientId, handle, 'key');
}
