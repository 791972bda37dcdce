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
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError, InternalError } from '../protocol/errors.js';
import type { Keystore } from '../store/keystore.js';
import { MAX_WRAPPED_BYTES } from '../store/records.js';
import { BLOB_OVERHEAD, gcmUnwrap, gcmWrap, KEK_BYTES } from './gcm-blob.js';
import { BINDING_FILE, isStoreId, newStoreId, readBindingFile, STORE_ID_META_KEY, writeBindingFile } from './binding.js';
import { assertBytes, type KekProvider } from './provider.js';
import {
  checkScryptParams, DEFAULT_SCRYPT, deriveRootKey, loadRootKeyFile, newScryptParams, ROOT_KEY_FILE, rootKeyId, rootKeyVerifier, type ScryptParams,
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
  /**
   * Start a new store even though a root.key or kek.binding of a lost one is
   * left in `dir` (`cryptod serve --init`); refused when the store already
   * holds a KEK record. Never needed on an empty directory.
   */
  init?: boolean;
  /** The keystore's file, named in messages. Default: `dir/keystore.sqlite`. */
  storeFile?: string;
}

export type BindingState = 'created' | 'existing' | 'migrated';

interface BindingFiles {
  root: string;
  binding: string;
  store: string;
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
  /** The keystore this KEK is bound to (binding.ts). */
  readonly storeId: string;
  /** What opening did to the binding: made a new store, found it in place, or bound a store from before binding. */
  readonly binding: BindingState;
  readonly #root = Buffer.alloc(KEK_BYTES);
  #closed = false;

  /** Takes a copy of `root`; the caller zeroes its own. */
  private constructor(root: Buffer, source: RootKeySource, storeId: string, binding: BindingState) {
    if (root.length !== KEK_BYTES) throw new ConfigError(`expected a ${KEK_BYTES}-byte root key, got ${root.length}`);
    root.copy(this.#root);
    this.id = rootKeyId(this.#root);
    this.source = source;
    this.storeId = storeId;
    this.binding = binding;
  }

  /**
   * Load or create the root key, check it against the store's record, and
   * check (or make) the binding between the two (binding.ts):
   *
   *   store has kek.local?  no ──▶ root.key or kek.binding left over? yes ──▶ refuse (unless init)
   *          │ yes                           │ no (or init)
   *          ▼                               ▼
   *   init? yes ──▶ refuse            new store: root key, kek.local, store.id,
   *          │ no                     kek.binding — created under the store's
   *          ▼                        write lock, so two processes starting on
   *   verifier matches? no ──▶ refuse one fresh directory bind it once
   *          │ yes
   *          ▼
   *   kek.binding agrees (store id, check)? no ──▶ refuse
   *          │ yes, or absent (written again; store.id added on a store from
   *          ▼       before binding: the migration)
   *        open
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
    const files = bindingFiles(options);
    for (let attempt = 0; attempt < 3; attempt++) {
      const { recorded, storeId } = await options.store.read(async (r) => ({
        recorded: parseRecord(await r.getMeta(LOCAL_KEK_META_KEY)),
        storeId: await r.getMeta(STORE_ID_META_KEY),
      }));
      if (recorded === undefined) {
        const created = await bindNewStore(options, files);
        if (created === null) continue; // another process bound the store first: check against its record
        try {
          return new LocalKekProvider(created.root, created.source, created.storeId, 'created');
        } finally {
          created.root.fill(0);
        }
      }
      if (options.init === true) {
        throw new ConfigError(
          `--init refused: ${files.store} already holds a keystore (${storeId ?? 'KEK ' + recorded.kekId}); --init never replaces keys. ` +
            `To start a new store, stop every daemon of ${options.dir} and move keystore.sqlite (with its -wal and -shm files), ` +
            `${ROOT_KEY_FILE} and ${BINDING_FILE} out of it first; to keep this one, start without --init`,
          { detail: { path: files.store } },
        );
      }
      const root = await loadRoot(options, recorded, files);
      try {
        if (!timingSafeEqual(recorded.verifier, rootKeyVerifier(root))) {
          throw new ConfigError(
            options.passphrase !== undefined
              ? `the passphrase does not match this keystore (${files.store}, KEK ${recorded.kekId}): it does not derive the key that wraps its keys; configure the passphrase the store was created with`
              : `${files.root} does not match ${files.store}: its keys are wrapped by KEK ${recorded.kekId}, another root key; restore the root.key that was backed up with this keystore`,
            { detail: { kekId: recorded.kekId } },
          );
        }
        const { id, state } = await checkBinding(options.store, files, recorded, storeId);
        return new LocalKekProvider(root, recorded.source, id, state);
      } finally {
        root.fill(0);
      }
    }
    throw new InternalError(`binding the keystore ${files.store} kept racing with other processes; start again`);
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

function bindingFiles(options: LocalKekOptions): BindingFiles {
  return {
    root: path.join(options.dir, ROOT_KEY_FILE),
    binding: path.join(options.dir, BINDING_FILE),
    store: options.storeFile ?? path.join(options.dir, 'keystore.sqlite'),
  };
}

/** The root key of a store that has a KEK record. Never creates root.key: the store's keys need the original. */
async function loadRoot(options: LocalKekOptions, recorded: KekRecord, files: BindingFiles): Promise<Buffer> {
  if (options.passphrase !== undefined) {
    if (recorded.source === 'file') {
      throw new ConfigError(
        `a KEK passphrase is configured, but the keys of ${files.store} are wrapped with the root.key file (${recorded.kekId}); ` +
          'remove the passphrase from the configuration (switching needs a rewrap)',
      );
    }
    return deriveRootKey(options.passphrase, recorded.scrypt!);
  }
  if (recorded.source === 'passphrase') {
    throw new ConfigError(`the keys of ${files.store} are wrapped with a passphrase-derived KEK (${recorded.kekId}); configure the KEK passphrase`);
  }
  const hint =
    `${files.store} holds keys wrapped by it (KEK ${recorded.kekId}); restore root.key from the backup taken with this keystore ` +
    '(a new one would not unwrap them)';
  return loadRootKeyFile(options.dir, false, hint);
}

/**
 * A store without a KEK record: make it a new store bound to the KEK, unless
 * files of a lost store are left over. Returns null when another process
 * bound the store first. The record, and the root.key file when this process
 * creates it, are made while holding the store's write lock, so a second
 * process starting at the same moment waits and then finds both — it never
 * mistakes our fresh root.key for one left over.
 */
async function bindNewStore(
  options: LocalKekOptions, files: BindingFiles,
): Promise<{ root: Buffer; source: RootKeySource; storeId: string } | null> {
  // scrypt runs before the lock (it takes a noticeable fraction of a second); a lost race only wastes it.
  const params = options.passphrase === undefined ? undefined : newScryptParams(options.scrypt);
  let root = params === undefined ? undefined : await deriveRootKey(options.passphrase!, params);
  try {
    const made = await options.store.transaction(async (tx) => {
      if ((await tx.getMeta(LOCAL_KEK_META_KEY)) !== undefined) return null;
      const leftovers = [files.binding, ...(params === undefined ? [files.root] : [])].filter((f) => fs.existsSync(f));
      if (leftovers.length > 0 && options.init !== true) {
        throw new ConfigError(
          `${files.store} is missing or empty, but ${leftovers.join(' and ')} ${leftovers.length > 1 ? 'are' : 'is'} there: ` +
            'the keystore these belong to is gone, and starting would begin an empty one (every managed key lost). ' +
            'Restore keystore.sqlite from the backup taken with root.key and kek.binding; ' +
            'to start a new, empty store on purpose, run `cryptod serve --init` once',
          { detail: { path: leftovers[0]! } },
        );
      }
      root ??= loadRootKeyFile(options.dir, true, '');
      const record: KekRecord = { source: params === undefined ? 'file' : 'passphrase', kekId: rootKeyId(root), verifier: rootKeyVerifier(root) };
      if (params !== undefined) record.scrypt = params;
      const storeId = newStoreId();
      await tx.setMeta(LOCAL_KEK_META_KEY, encodeRecord(record));
      await tx.setMeta(STORE_ID_META_KEY, storeId);
      return { record, storeId };
    });
    if (made === null || root === undefined) return null;
    writeBindingFile(files.binding, { storeId: made.storeId, kekId: made.record.kekId, source: made.record.source, check: made.record.verifier });
    const out = { root, source: made.record.source, storeId: made.storeId };
    root = undefined; // handed over: the caller zeroes it
    return out;
  } finally {
    root?.fill(0);
  }
}

/**
 * Compare the KEK side (kek.binding) with the store (store.id) once the
 * verifier has proven root key and store belong together. A missing binding
 * file is written again (nothing is lost: the verifier already matched); a
 * store from before binding gets its store id here (the migration).
 */
async function checkBinding(
  store: Keystore, files: BindingFiles, record: KekRecord, storeId: string | undefined,
): Promise<{ id: string; state: BindingState }> {
  const binding = readBindingFile(files.binding);
  const rebind = `if this keystore is the right one, remove ${files.binding} and start again (it is written anew for this keystore)`;
  if (binding !== undefined && !timingSafeEqual(binding.check, record.verifier)) {
    throw new ConfigError(
      `${files.binding} was written for another KEK (${binding.kekId}) than the one of ${files.store} (${record.kekId}); ` +
        `restore the kek.binding backed up with this keystore, or ${rebind}`,
      { detail: { path: files.binding } },
    );
  }
  if (storeId !== undefined && !isStoreId(storeId)) {
    throw new ConfigError(`the ${STORE_ID_META_KEY} entry of ${files.store} is damaged; restore the keystore from a backup`, { detail: { path: files.store } });
  }
  if (binding !== undefined && storeId !== undefined && binding.storeId !== storeId) {
    throw new ConfigError(
      `${files.store} is keystore ${storeId}, but ${files.binding} records keystore ${binding.storeId}: ` +
        `this is not the keystore the KEK was bound to (copied from another directory, or an older store); ` +
        `put back the keystore.sqlite backed up with root.key and kek.binding, or ${rebind}`,
      { detail: { path: files.store, storeId, boundStoreId: binding.storeId } },
    );
  }
  let id = storeId;
  let state: BindingState = 'existing';
  if (id === undefined) {
    state = 'migrated';
    const adopt = binding?.storeId ?? newStoreId();
    id = await store.transaction(async (tx) => {
      const theirs = await tx.getMeta(STORE_ID_META_KEY);
      if (theirs !== undefined) return theirs;
      await tx.setMeta(STORE_ID_META_KEY, adopt);
      return adopt;
    });
  }
  if (binding?.storeId !== id) {
    writeBindingFile(files.binding, { storeId: id, kekId: record.kekId, source: record.source, check: record.verifier });
  }
  return { id, state };
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
