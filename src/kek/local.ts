/**
 * The `local` KEK provider: a 256-bit root key held in this process, from a
 * `root.key` file or derived from a passphrase, wrapping with AES-256-GCM
 * (format in gcm-blob.ts).
 *
 * The keystore's meta entry `kek.local` records which root key the store's
 * blobs are wrapped with:
 *
 *   { "v": 1, "source": "file" | "passphrase", "kekId": "local:…",
 *     "verifier": base64(HMAC(root, label)),
 *     "scrypt": { "N": …, "r": …, "p": …, "salt": base64 } }     (passphrase only)
 *
 * Why the scrypt parameters live in the store's meta and not in a file
 * beside root.key: the salt is needed to unwrap every key in the store, so it
 * must travel and be backed up with the store — a backup of the database plus
 * the passphrase is then enough to recover. And when several processes or
 * hosts share one keystore (design note 3), they all derive the same KEK from
 * the same passphrase without copying any file; the first to start creates
 * the record inside a store transaction, so there is exactly one salt.
 *
 * The verifier turns mistakes into clear errors at start instead of
 * DecryptErrors later: a wrong passphrase, a replaced or regenerated
 * root.key, a missing root.key (never silently recreated once the store
 * depends on it), or a switch between file and passphrase without a rewrap.
 */
import { timingSafeEqual } from 'node:crypto';
import { ConfigError, InternalError } from '../protocol/errors.js';
import type { Keystore } from '../store/keystore.js';
import { MAX_WRAPPED_BYTES } from '../store/records.js';
import { BLOB_OVERHEAD, gcmUnwrap, gcmWrap, KEK_BYTES } from './gcm-blob.js';
import { assertBytes, type KekProvider } from './provider.js';
import {
  checkScryptParams, DEFAULT_SCRYPT, deriveRootKey, loadRootKeyFile, newScryptParams, rootKeyId, rootKeyVerifier, type ScryptParams,
} from './root-key.js';

export const LOCAL_KEK_META_KEY = 'kek.local';

export type RootKeySource = 'file' | 'passphrase';

export interface LocalKekOptions {
  /** Directory holding root.key (created 0700); usually the data directory. Unused with a passphrase. */
  dir: string;
  /** The keystore whose meta records the KEK parameters and verifier. */
  store: Keystore;
  /** Derive the root key from this passphrase instead of reading root.key. */
  passphrase?: string | Uint8Array;
  /** scrypt cost when a passphrase is set up for the first time; later starts use the recorded parameters. */
  scrypt?: { N?: number; r?: number; p?: number };
}

interface KekRecord {
  source: RootKeySource;
  kekId: string;
  verifier: Buffer;
  scrypt?: ScryptParams;
}

const MAX_PLAINTEXT = MAX_WRAPPED_BYTES - BLOB_OVERHEAD;
const MAX_AAD = 64 * 1024;

export class LocalKekProvider implements KekProvider {
  readonly id: string;
  readonly source: RootKeySource;
  readonly #root = Buffer.alloc(KEK_BYTES);
  #closed = false;

  /** Takes a copy of `root`; the caller zeroes its own. */
  private constructor(root: Buffer, source: RootKeySource) {
    if (root.length !== KEK_BYTES) throw new ConfigError(`expected a ${KEK_BYTES}-byte root key, got ${root.length}`);
    root.copy(this.#root);
    this.id = rootKeyId(this.#root);
    this.source = source;
  }

  /**
   * Load or create the root key and check it against the store's record.
   *
   * @example
   *   const kek = await LocalKekProvider.open({ dir: dataDir, store });
   *   const blob = await kek.wrap(keyBytes, keyVersionAad('billing', 1));
   */
  static async open(options: LocalKekOptions): Promise<LocalKekProvider> {
    if (options === null || typeof options !== 'object' || options.store === undefined) {
      throw new ConfigError('expected local KEK options with a keystore');
    }
    if (options.scrypt !== undefined) checkScryptParams({ ...DEFAULT_SCRYPT, ...options.scrypt });
    // Two fresh processes may race to create the record; the loser retries once with the winner's.
    for (let attempt = 0; ; attempt++) {
      const recorded = parseRecord(await options.store.read((r) => r.getMeta(LOCAL_KEK_META_KEY)));
      const { root, params } = await loadRoot(options, recorded);
      try {
        const verifier = rootKeyVerifier(root);
        const record = recorded ?? (await createRecord(options.store, root, verifier, params));
        if (timingSafeEqual(record.verifier, verifier)) return new LocalKekProvider(root, record.source);
        // Another process recorded a different KEK between our read and our
        // transaction (e.g. its own random salt): start over with its record.
        if (recorded === undefined && attempt === 0) continue;
        throw new ConfigError(
          options.passphrase !== undefined
            ? `wrong KEK passphrase: it does not derive the KEK (${record.kekId}) that wraps this keystore's keys`
            : `the root key file does not match the KEK (${record.kekId}) that wraps this keystore's keys; restore the original root.key`,
          { detail: { kekId: record.kekId } },
        );
      } finally {
        root.fill(0);
      }
    }
  }

  async wrap(plaintext: Uint8Array, aad: Uint8Array): Promise<Buffer> {
    this.#check();
    assertBytes('plaintext', plaintext, MAX_PLAINTEXT);
    assertBytes('aad', aad, MAX_AAD);
    return gcmWrap(this.#root, plaintext, aad);
  }

  async unwrap(blob: Uint8Array, aad: Uint8Array): Promise<Buffer> {
    this.#check();
    assertBytes('a wrapped blob', blob, MAX_WRAPPED_BYTES);
    assertBytes('aad', aad, MAX_AAD);
    return gcmUnwrap(this.#root, blob, aad, this.id);
  }

  async close(): Promise<void> {
    this.#root.fill(0);
    this.#closed = true;
  }

  #check(): void {
    if (this.#closed) throw new InternalError(`the KEK provider ${this.id} is closed`);
  }
}

async function loadRoot(options: LocalKekOptions, recorded: KekRecord | undefined): Promise<{ root: Buffer; params?: ScryptParams }> {
  if (options.passphrase !== undefined) {
    if (recorded?.source === 'file') {
      throw new ConfigError(
        `a KEK passphrase is configured, but this keystore's keys are wrapped with the root.key file (${recorded.kekId}); ` +
          'remove the passphrase from the configuration (switching needs a rewrap)',
      );
    }
    const params = recorded?.scrypt ?? newScryptParams(options.scrypt);
    return { root: await deriveRootKey(options.passphrase, params), params };
  }
  if (recorded?.source === 'passphrase') {
    throw new ConfigError(`this keystore's keys are wrapped with a passphrase-derived KEK (${recorded.kekId}); configure the KEK passphrase`);
  }
  const hint = `the keystore holds keys wrapped by it (${recorded?.kekId ?? ''}); restore root.key from a backup (a new one would not unwrap them)`;
  return { root: loadRootKeyFile(options.dir, recorded === undefined, hint) };
}

/** First start: record the KEK, unless another process did it first (then return theirs). */
async function createRecord(store: Keystore, root: Buffer, verifier: Buffer, params: ScryptParams | undefined): Promise<KekRecord> {
  const mine: KekRecord = { source: params === undefined ? 'file' : 'passphrase', kekId: rootKeyId(root), verifier };
  if (params !== undefined) mine.scrypt = params;
  return store.transaction(async (tx) => {
    const theirs = parseRecord(await tx.getMeta(LOCAL_KEK_META_KEY));
    if (theirs !== undefined) return theirs;
    await tx.setMeta(LOCAL_KEK_META_KEY, encodeRecord(mine));
    return mine;
  });
}

function encodeRecord(r: KekRecord): string {
  const scrypt = r.scrypt === undefined ? undefined : { N: r.scrypt.N, r: r.scrypt.r, p: r.scrypt.p, salt: r.scrypt.salt.toString('base64') };
  return JSON.stringify({ v: 1, source: r.source, kekId: r.kekId, verifier: r.verifier.toString('base64'), ...(scrypt && { scrypt }) });
}

function parseRecord(json: string | undefined): KekRecord | undefined {
  if (json === undefined) return undefined;
  const bad = (why: string): never => {
    throw new ConfigError(`the keystore's ${LOCAL_KEK_META_KEY} record is damaged (${why}); restore the keystore from a backup`);
  };
  let raw: { v?: unknown; source?: unknown; kekId?: unknown; verifier?: unknown; scrypt?: Record<string, unknown> };
  try {
    raw = JSON.parse(json) as typeof raw;
  } catch {
    return bad('not JSON');
  }
  if (raw.v !== 1) return bad(`unknown record version ${String(raw.v)}`);
  if (raw.source !== 'file' && raw.source !== 'passphrase') return bad('unknown source');
  if (typeof raw.kekId !== 'string' || typeof raw.verifier !== 'string') return bad('missing id or verifier');
  const verifier = Buffer.from(raw.verifier, 'base64');
  if (verifier.length !== 32) return bad('verifier is not 32 bytes');
  const record: KekRecord = { source: raw.source, kekId: raw.kekId, verifier };
  if (raw.source === 'passphrase') {
    const s = raw.scrypt;
    if (s === undefined || typeof s.salt !== 'string') return bad('missing scrypt parameters');
    const params = { N: s.N, r: s.r, p: s.p, salt: Buffer.from(s.salt, 'base64') };
    checkScryptParams(params);
    record.scrypt = params as ScryptParams;
  }
  return record;
}
