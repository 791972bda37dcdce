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
import { Op } from '../protocol/ops.js';
import type { DaemonConnection } from './connection.js';
import { parseHeader } from '../protocol/managed-format.js';
import { bytesOf, handleOf, type BufferSource, type CryptoKey } from './subtle.js';
import {
  KeyCreate, KeyDescribe, KeyDestroy, KeyExport, KeyImport, KeyList, KeyPersist, KeyPublic, KeyRotate, KeySetPolicy, KeyTrim,
  type ManagedKeyDefinition, type ManagedKeyDescription, type ManagedKeyPolicy, type ManagedKeyType, type ResultOf,
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

type Reply = Record<string, CborValue>;

function field<T extends CborValue>(r: CborValue, name: string, check: (v: CborValue) => boolean): T {
  const v = (r as Reply | null)?.[name];
  if (v === undefined || !check(v)) throw new InvalidArgumentError(`the daemon replied without the expected '${name}'`);
  return v as T;
}
const isBytes = (v: CborValue): boolean => v instanceof Uint8Array;
const isBool = (v: CborValue): boolean => typeof v === 'boolean';

/** Item errors come back as `{ error: { code, message, detail? } }`. */
function itemResult<T>(r: CborValue, pick: (r: CborValue) => T): BatchResult<T> {
  const e = (r as Reply | null)?.error as Reply | undefined;
  if (e !== undefined && e !== null && typeof e === 'object') return errorFromWire(e.code, e.message, e.detail);
  return pick(r);
}

/** The data operations; `Client` exposes them as methods. */
export class ManagedData {
  readonly #conn: DaemonConnection;

  constructor(conn: DaemonConnection) {
    this.#conn = conn;
  }

  async one<T>(op: number, name: string, item: Record<string, CborValue>, pick: (r: CborValue) => T): Promise<T> {
    return pick(await this.#conn.request(op, { key: name, ...item }));
  }

  async batch<T>(op: number, name: string, items: Array<Record<string, CborValue>>, pick: (r: CborValue) => T): Promise<Array<BatchResult<T>>> {
    if (!Array.isArray(items)) throw new InvalidArgumentError('expected the batch items to be an array');
    const r = await this.#conn.request(op, { key: name, items });
    const out = (r as Reply | null)?.items;
    if (!Array.isArray(out) || out.length !== items.length) throw new InvalidArgumentError('the daemon replied without one result per batch item');
    return out.map((x) => itemResult(x, pick));
  }
}

export const pickCiphertext = (r: CborValue): Uint8Array => field<Uint8Array>(r, 'ciphertext', isBytes);
export const pickPlaintext = (r: CborValue): Uint8Array => field<Uint8Array>(r, 'plaintext', isBytes);
export const pickSignature = (r: CborValue): Uint8Array => field<Uint8Array>(r, 'signature', isBytes);
export const pickMac = (r: CborValue): Uint8Array => field<Uint8Array>(r, 'mac', isBytes);
export const pickValid = (r: CborValue): boolean => field<boolean>(r, 'valid', isBool);

export function cipherArgs(dataField: 'plaintext' | 'ciphertext', data: BufferSource, aad: BufferSource | undefined): Record<string, CborValue> {
  const out: Record<string, CborValue> = { [dataField]: bytesOf(data, dataField) };
  if (aad !== undefined) out.aad = bytesOf(aad, 'aad');
  return out;
}

export function messageArgs(message: BufferSource, tagField?: 'signature' | 'mac', tag?: BufferSource): Record<string, CborValue> {
  const out: Record<string, CborValue> = { message: bytesOf(message, 'message') };
  if (tagField !== undefined) out[tagField] = bytesOf(tag, tagField);
  return out;
}

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

  async #describe(op: number, args: CborValue): Promise<ManagedKeyDescription> {
    return KeyDescribe.result.parse(await this.#conn.request(op, args), 'the reply');
  }

  /** Create a key with fresh material. */
  create(name: string, definition: ManagedKeyDefinition): Promise<ManagedKeyDescription> {
    return this.#describe(KeyCreate.op, { name, definition });
  }

  /**
   * Bring your own key: `material` is the raw secret (32 bytes; 64 for
   * hmac-sha512) or PKCS#8 DER of a private key. Zeroing your copy is yours to do.
   */
  import(name: string, definition: ManagedKeyDefinition & { material: BufferSource }): Promise<ManagedKeyDescription> {
    const { material, ...def } = definition;
    return this.#describe(KeyImport.op, { name, definition: def, material: bytesOf(material, 'material') });
  }

  /** Turn a client-owned key (from `client.subtle`) into managed key `name`; the handle stays valid. */
  persist(key: CryptoKey, name: string, policy: ManagedKeyPolicy = {}): Promise<ManagedKeyDescription> {
    return this.#describe(KeyPersist.op, { handle: handleOf(key, 'key'), name, definition: policy });
  }

  /** A new version, current from now; resolves to its number. */
  async rotate(name: string): Promise<number> {
    return KeyRotate.result.parse(await this.#conn.request(KeyRotate.op, { name }), 'the reply').version;
  }

  /** The keys this client may see, by name. */
  async list(): Promise<ManagedKeyDescription[]> {
    return KeyList.result.parse(await this.#conn.request(KeyList.op, {}), 'the reply').keys;
  }

  describe(name: string): Promise<ManagedKeyDescription> {
    return this.#describe(KeyDescribe.op, { name });
  }

  /** Change some policy fields; `null` resets one to its default. */
  setPolicy(name: string, patch: ManagedKeyPolicy): Promise<ManagedKeyDescription> {
    return this.#describe(KeySetPolicy.op, { name, policy: patch });
  }

  /** Destroy every version below `below`; resolves to the versions destroyed. Data they made can no longer be decrypted. */
  async trim(name: string, below: number): Promise<number[]> {
    return KeyTrim.result.parse(await this.#conn.request(KeyTrim.op, { name, below }), 'the reply').destroyed;
  }

  /** Destroy every version and disable the key (refused under deletion protection). */
  async destroy(name: string): Promise<number[]> {
    return KeyDestroy.result.parse(await this.#conn.request(KeyDestroy.op, { name }), 'the reply').destroyed;
  }

  /**
   * The public key of a signing key's version (default: the current one), for
   * verifiers outside the daemon; see `splitManagedSignature`. Any right on
   * the key suffices.
   */
  async publicKey(name: string, options: { version?: number } = {}): Promise<ManagedPublicKey> {
    return KeyPublic.result.parse(await this.#ofVersion(KeyPublic.op, name, options.version), 'the reply');
  }

  /** The material of an exportable key's version (default: the current one). Zero `material` when done. */
  async export(name: string, options: { version?: number } = {}): Promise<ExportedManagedKey> {
    return KeyExport.result.parse(await this.#ofVersion(KeyExport.op, name, options.version), 'the reply');
  }

  /** A request about one version of a key (default: the current one) whose reply carries bytes in `bytesField`. */
  #ofVersion(op: number, name: string, version: number | undefined): Promise<CborValue> {
    return this.#conn.request(op, version === undefined ? { name } : { name, version });
  }
}
