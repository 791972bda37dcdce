/**
 * Managed keys from the client: data operations by key name
 * (`client.encrypt`, `decrypt`, `sign`, `verify`, `mac`, `verifyMac`,
 * `rewrap` and their `…Batch` forms) and administration (`client.keys.*`).
 * Wire operations: docs/protocol.md §6.11; output formats: docs/formats.md.
 *
 * Batches: `client.encryptBatch(name, items)` sends one request and
 * resolves to one result per item, in order; an item that failed is a
 * `CryptodError` in its place (test with `instanceof`), the others are
 * unaffected. A failure of the whole request (unknown key, not allowed)
 * rejects the promise as for the single forms.
 */
import type { CborValue } from '../protocol/cbor.js';
import { errorFromWire, InvalidArgumentError, type CryptodError } from '../protocol/errors.js';
import type { AnySchema, Schema } from '../protocol/schema.js';
import type { DaemonConnection, RequestOptions } from './connection.js';
import { parseHeader } from '../protocol/managed-format.js';
import { bytesOf, handleOf, type BufferSource, type CryptoKey } from './subtle.js';
import {
  KeyBackup, KeyRestore, KeyCreate, KeyDescribe, KeyDestroy, KeyExport, KeyImport, KeyList, KeyPersist, KeyPublic, KeyRotate, KeySetPolicy, KeyTrim,
  ManagedDecrypt, ManagedEncrypt, ManagedMac, ManagedRewrap, ManagedSign, ManagedVerify, ManagedVerifyMac,
  type ArgsIn, type ManagedItemError, type ManagedKeyDefinition, type ManagedKeyDescription, type ManagedKeyPolicy, type ManagedKeyType,
  type Message, type ResultOf,
} from '../protocol/messages/index.js';

// The shapes are the protocol's (src/protocol/messages/managed.ts, docs/protocol.md §6.11).
export type { ManagedKeyDefinition, ManagedKeyDescription, ManagedKeyPolicy, ManagedKeyType, ManagedKeyVersion } from '../protocol/messages/managed.js';

/**
 * An exported version: `raw` secret bytes, or `pkcs8` DER of a private key.
 * The public key of a signing key's version (`client.keys.publicKey`):
 * `spki` is SubjectPublicKeyInfo DER (RFC 5280 §4.1.2.7), `jwk` the same key
 * as a JWK (RFC 7517), public members only.
 */
export type ExportedManagedKey = ResultOf<typeof KeyExport>;
export type ManagedPublicKey = ResultOf<typeof KeyPublic>;

/** A managed signature taken apart: who made it, and the standard signature under the header. */
export interface ManagedSignatureParts {
  key: string;
  type: ManagedKeyType;
  version: number;
  /**
   * The signature over the message alone, as the algorithm defines it:
   * Ed25519 (RFC 8032), ECDSA as IEEE P1363 r‖s (node:crypto's
   * `dsaEncoding: 'ieee-p1363'`), RSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt.
   */
  signature: Uint8Array;
}

/**
 * Split a managed signature (docs/formats.md) into its header fields and the
 * plain signature, for verifiers outside the daemon: fetch the public key of
 * `version` with `client.keys.publicKey(key, { version })` and check
 * `signature` with any library. Throws DataError for anything else.
 */
export function splitManagedSignature(signature: BufferSource): ManagedSignatureParts {
  const { header, body } = parseHeader(bytesOf(signature, 'signature'), 'signature');
  return { key: header.key, type: header.type, version: header.version, signature: new Uint8Array(body) };
}

export interface AadOptions {
  /** Additional authenticated data: must be given again, identical, to decrypt. */
  aad?: BufferSource;
}

export interface CipherItem {
  data: BufferSource;
  aad?: BufferSource;
}

export interface VerifyItem {
  message: BufferSource;
  /** The signature or MAC to check. */
  tag: BufferSource;
}

/** One result of a batch: the value, or the error of that item. */
export type BatchResult<T> = T | CryptodError;

/** A data operation's two forms (src/protocol/messages/managed.ts): one item, or a batch of `Item`s whose replies are `R`. */
interface DataOp<Item extends CborMap, R> {
  readonly single: Message<Schema<unknown, { key: string } & Item, boolean>, Schema<R, unknown, boolean>>;
  readonly batch: Message<Schema<unknown, { key: string; items: Item[] }, boolean>, Schema<{ items: Array<ManagedItemError | R> }, unknown, boolean>>;
}

/** The data operations; `Client` exposes them as methods. */
export class ManagedData {
  readonly #conn: DaemonConnection;

  constructor(conn: DaemonConnection) {
    this.#conn = conn;
  }

  /** `options.sensitiveReply`: the results may be key material (a decrypt: an unwrapped key, a secret). */
  one<Item extends CborMap, R extends object, T>(op: DataOp<Item, R>, name: string, item: NoInfer<Item>, pick: (r: NoInfer<R>) => T, options?: RequestOptions): Promise<T> {
    // The hot path of every managed call: one `.then` on the checked reply, no async frame of its own.
    return this.#conn.call(op.single, { key: name, ...item }, options).then(pick);
  }

  async batch<Item extends CborMap, R extends object, T>(op: DataOp<Item, R>, name: string, items: NoInfer<Item>[], pick: (r: NoInfer<R>) => T, options?: RequestOptions): Promise<Array<BatchResult<T>>> {
    if (!Array.isArray(items)) throw new InvalidArgumentError('expected the batch items to be an array');
    const out = (await this.#conn.call(op.batch, { key: name, items }, options)).items;
    if (out.length !== items.length) throw new InvalidArgumentError('the daemon replied without one result per batch item');
    return out.map((x) => (failed(x) ? errorFromWire(x.error.code, x.error.message, x.error.detail) : pick(x)));
  }
}

/** How the declaration tells a batch item's error from its result. */
function failed<R extends object>(x: ManagedItemError | R): x is ManagedItemError {
  return 'error' in x && x.error !== undefined;
}

export const pickCiphertext = (r: { ciphertext: Uint8Array }): Uint8Array => r.ciphertext;
export const pickPlaintext = (r: { plaintext: Uint8Array }): Uint8Array => r.plaintext;
export const pickSignature = (r: { signature: Uint8Array }): Uint8Array => r.signature;
export const pickMac = (r: { mac: Uint8Array }): Uint8Array => r.mac;
export const pickValid = (r: { valid: boolean }): boolean => r.valid;

/** The item of MANAGED_ENCRYPT. */
export function plaintextItem(plaintext: BufferSource, aad: BufferSource | undefined): ItemOf<typeof ManagedEncrypt> {
  return { plaintext: bytesOf(plaintext, 'plaintext'), aad: aad === undefined ? undefined : bytesOf(aad, 'aad') };
}

/** The item of MANAGED_DECRYPT and MANAGED_REWRAP. */
export function ciphertextItem(ciphertext: BufferSource, aad: BufferSource | undefined): ItemOf<typeof ManagedDecrypt> & ItemOf<typeof ManagedRewrap> {
  return { ciphertext: bytesOf(ciphertext, 'ciphertext'), aad: aad === undefined ? undefined : bytesOf(aad, 'aad') };
}

/** The item of MANAGED_SIGN and MANAGED_MAC. */
export function messageItem(message: BufferSource): ItemOf<typeof ManagedSign> & ItemOf<typeof ManagedMac> {
  return { message: bytesOf(message, 'message') };
}

export function signatureItem(message: BufferSource, signature: BufferSource): ItemOf<typeof ManagedVerify> {
  return { message: bytesOf(message, 'message'), signature: bytesOf(signature, 'signature') };
}

export function macItem(message: BufferSource, mac: BufferSource): ItemOf<typeof ManagedVerifyMac> {
  return { message: bytesOf(message, 'message'), mac: bytesOf(mac, 'mac') };
}

/** One item of data operation `M`, as a client builds it. */
type ItemOf<M extends { batch: Message<AnySchema, AnySchema> }> = ArgsIn<M['batch']> extends { items: Array<infer Item> } ? Item : never;
type CborMap = { [field: string]: CborValue };

/**
 * Administration of managed keys (`client.keys`). Creating keys, persist
 * and reload need an administrator (by default: clients running as the
 * daemon's own uid); rotate, setPolicy, trim and destroy need the `admin`
 * right on the key (README "Managed keys").
 *
 * @example
 * ```ts
 * await client.keys.create('orders', { type: 'aes256-gcm', rotationPeriod: '30d' });
 * const ct = await client.encrypt('orders', data, { aad: orderId });
 * await client.keys.rotate('orders');            // ct still decrypts
 * const fresh = await client.rewrap('orders', ct, { aad: orderId });
 * ```
 */
export class ManagedKeysClient {
  readonly #conn: DaemonConnection;

  constructor(conn: DaemonConnection) {
    this.#conn = conn;
  }

  /** Create a key with fresh material. */
  create(name: string, definition: ManagedKeyDefinition): Promise<ManagedKeyDescription> {
    return this.#conn.call(KeyCreate, { name, definition });
  }

  /**
   * Bring your own key: `material` is the raw secret (32 bytes; 64 for
   * hmac-sha512) or PKCS#8 DER of a private key. Zeroing your copy is yours to do.
   */
  import(name: string, definition: ManagedKeyDefinition & { material: BufferSource }): Promise<ManagedKeyDescription> {
    const { material, ...def } = definition;
    // The frame holds a copy of the material: zeroed once written.
    return this.#conn.call(KeyImport, { name, definition: def, material: bytesOf(material, 'material') }, { sensitiveRequest: true });
  }

  /** Turn a client-owned key (from `client.subtle`) into managed key `name`; the handle stays valid. */
  persist(key: CryptoKey, name: string, policy: ManagedKeyPolicy = {}): Promise<ManagedKeyDescription> {
    return this.#conn.call(KeyPersist, { handle: handleOf(key, 'key'), name, definition: policy });
  }

  /** A new version, current from now; resolves to its number. */
  async rotate(name: string): Promise<number> {
    return (await this.#conn.call(KeyRotate, { name })).version;
  }

  /** The keys this client may see, by name. */
  async list(): Promise<ManagedKeyDescription[]> {
    return (await this.#conn.call(KeyList, {})).keys;
  }

  describe(name: string): Promise<ManagedKeyDescription> {
    return this.#conn.call(KeyDescribe, { name });
  }

  /** Change some policy fields; `null` resets one to its default. */
  setPolicy(name: string, patch: ManagedKeyPolicy): Promise<ManagedKeyDescription> {
    return this.#conn.call(KeySetPolicy, { name, policy: patch });
  }

  /** Destroy every version below `below`; resolves to the versions destroyed. Data they made can no longer be decrypted. */
  async trim(name: string, below: number): Promise<number[]> {
    return (await this.#conn.call(KeyTrim, { name, below })).destroyed;
  }

  /** Destroy every version and disable the key (refused under deletion protection). */
  async destroy(name: string): Promise<number[]> {
    return (await this.#conn.call(KeyDestroy, { name })).destroyed;
  }

  /**
   * The public key of a signing key's version (default: the current one), for
   * verifiers outside the daemon; see `splitManagedSignature`. Any right on
   * the key suffices.
   */
  async publicKey(name: string, options: { version?: number } = {}): Promise<ManagedPublicKey> {
    return this.#conn.call(KeyPublic, { name, version: options.version });
  }

  /** The material of an exportable key's version (default: the current one). Zero `material` when done. */
  async export(name: string, options: { version?: number } = {}): Promise<ExportedManagedKey> {
    // The material is copied out of the read buffer, which is zeroed.
    return this.#conn.call(KeyExport, { name, version: options.version }, { sensitiveReply: true });
  }

  /**
   * A backup of every version of key `name` (its policy must allow backups),
   * encrypted to another daemon's x25519 transfer key (`recipient`, SPKI DER
   * from `publicKey` there) and signed by ed25519 key `signingKey` of this
   * daemon (docs/formats.md "Key backups"). Administrators only.
   *
   * @example
   * ```ts
   * const { spki } = await receiver.keys.publicKey('transfer');
   * const { backup } = await sender.keys.backup('orders', { recipient: spki, signingKey: 'backup-signer' });
   * await receiver.keys.restore(backup, { trust: (await sender.keys.publicKey('backup-signer')).spki });
   * ```
   */
  backup(name: string, options: { recipient: BufferSource; signingKey: string }): Promise<KeyBackupResult> {
    return this.#conn.call(KeyBackup, { name, recipient: bytesOf(options.recipient, 'recipient'), signingKey: options.signingKey });
  }

  /**
   * Import a key from a backup made for one of this daemon's transfer keys.
   * `trust` is the sender's ed25519 signing public key (SPKI DER); a backup
   * signed by anything else, or altered, is CRYPTOD_ERR_BACKUP_INVALID. An
   * existing key of the same name is refused unless `force`. Administrators only.
   */
  restore(backup: BufferSource, options: { trust: BufferSource; force?: boolean }): Promise<KeyRestoreResult> {
    return this.#conn.call(KeyRestore, { backup: bytesOf(backup, 'backup'), trust: bytesOf(options.trust, 'trust'), force: options.force });
  }
}

export type KeyBackupResult = ResultOf<typeof KeyBackup>;
export type KeyRestoreResult = ResultOf<typeof KeyRestore>;
