/**
 * `cryptod kek rewrap-all`: move every stored key version's material to the
 * current root KEK (for instance after the root moved from `local` to a
 * PKCS#11 token), one bounded batch per request.
 *
 *   snapshot of every version ─▶ those with material whose kekId ≠ root id
 *        │ (up to `limit` rewrapped per batch; failures are reported and passed over)
 *        ▼
 *   unwrap (the ring finds the provider by the blob's format) ─▶ wrap under the root
 *        ▼
 *   one transaction per version: still the same blob and kekId? ─yes─▶ replace blob + kekId
 *                                                               └no──▶ leave it (changed meanwhile)
 *
 * Safe to interrupt anywhere: each version is replaced in a transaction of
 * its own, and a version either still has its old blob and kekId (the old
 * KEK still unwraps it: it stays configured) or its new ones. A rerun picks
 * up what is left. The material itself is unchanged, so data encrypted under
 * a version decrypts exactly as before, and the key manager's in-memory
 * copies stay valid.
 */
import type { KekProvider } from '../kek/provider.js';
import { keyVersionAad } from '../kek/provider.js';
import { CryptodError, InvalidArgumentError, KekUnavailableError } from '../protocol/errors.js';
import type { Keystore, KeyVersionRecord } from '../store/keystore.js';

/** Most versions rewrapped by one request: a batch holds the provider for a bounded time. */
export const MAX_REWRAP_BATCH = 1000;
export const DEFAULT_REWRAP_BATCH = 100;

export interface RewrapFailure {
  key: string;
  version: number;
  code: string;
  message: string;
}

export interface RewrapBatchResult {
  /** The root KEK's id: where every version goes. */
  root: string;
  /** Versions with material in the keystore. */
  total: number;
  /** Rewrapped by this batch. */
  rewrapped: number;
  /** Still under another KEK after this batch (failures included). */
  remaining: number;
  /** Versions that could not be rewrapped (damaged: their blob does not unwrap). */
  failed: RewrapFailure[];
}

export interface RewrapOptions {
  limit?: number;
  /** Called after each version is written (tests interrupt here). */
  onVersion?: (done: number) => void | Promise<void>;
}

/**
 * Rewrap up to `limit` versions not yet under the root. `ring` unwraps under any configured KEK and wraps under the root (src/kek/ring.ts); its id is the root's.
 * @throws KekUnavailableError when a provider is away (the batch stops; what it wrote stays)
 */
export async function rewrapBatch(store: Keystore, ring: KekProvider, options: RewrapOptions = {}): Promise<RewrapBatchResult> {
  const limit = options.limit ?? DEFAULT_REWRAP_BATCH;
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_REWRAP_BATCH) {
    throw new InvalidArgumentError(`expected limit from 1 to ${MAX_REWRAP_BATCH}, got ${String(limit)}`, { detail: { field: 'limit' } });
  }
  const all = await store.read(async (r) => {
    const out: KeyVersionRecord[] = [];
    for (const k of await r.listKeys()) out.push(...(await r.getVersions(k.name)));
    return out;
  });
  const stored = all.filter((v) => v.wrapped !== null);
  const pending = stored.filter((v) => v.kekId !== ring.id);
  const failed: RewrapFailure[] = [];
  let rewrapped = 0;
  for (const v of pending) {
    if (rewrapped >= limit) break;
    const aad = keyVersionAad(v.name, v.version);
    let plain: Buffer | undefined;
    let blob: Buffer;
    try {
      plain = await ring.unwrap(v.wrapped!, aad);
      blob = await ring.wrap(plain, aad);
    } catch (err) {
      // A provider that is away stops the batch (retry later); a blob whose provider is not
      // configured at all, or that does not unwrap, is this version's problem only.
      if (err instanceof KekUnavailableError && err.detail?.reason !== 'not-configured') throw err;
      if (!(err instanceof CryptodError)) throw err;
      failed.push({ key: v.name, version: v.version, code: err.code, message: err.message });
      continue;
    } finally {
      plain?.fill(0);
    }
    const written = await store.transaction(async (tx) => {
      const now = await tx.getVersion(v.name, v.version);
      if (now === undefined || now.wrapped === null || now.kekId !== v.kekId || !Buffer.from(now.wrapped).equals(Buffer.from(v.wrapped!))) return false;
      await tx.putVersion({ ...now, wrapped: blob, kekId: ring.id });
      return true;
    });
    if (written) {
      rewrapped++;
      await options.onVersion?.(rewrapped);
    }
  }
  const remaining = await store.read(async (r) => {
    let n = 0;
    for (const k of await r.listKeys()) n += (await r.getVersions(k.name)).filter((x) => x.wrapped !== null && x.kekId !== ring.id).length;
    return n;
  });
  return { root: ring.id, total: stored.length, rewrapped, remaining, failed };
}
