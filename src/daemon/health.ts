/**
 * Readiness: whether this daemon can serve what its configuration promises.
 * Asked by `GET /readyz` on the metrics listener and by the HEALTH operation
 * (`cryptod health`); `GET /healthz` (alive) asks nothing and needs nothing.
 *
 *   store  the keystore file is where it was opened, and a read transaction
 *          (its generation) completes
 *   kek    the KEK provider wraps and unwraps a probe (no key's material)
 *   keys   every key the configuration file declares is loaded
 *
 * Each check has a deadline: a store that hangs is as unready as one that
 * fails, and the probe must answer while it hangs. A check's `detail` names
 * what failed in words a person can act on; never key material.
 */
import { statSync } from 'node:fs';
import { timingSafeEqual } from 'node:crypto';
import type { KekProvider } from '../kek/provider.js';
import type { KeyManager } from '../keys/manager.js';
import type { Keystore } from '../store/keystore.js';

export type CheckName = 'store' | 'kek' | 'keys';

export interface HealthCheck {
  readonly name: CheckName;
  readonly ok: boolean;
  /** What was found; on failure, what failed. */
  readonly detail: string;
}

export interface HealthReport {
  readonly ready: boolean;
  readonly checks: HealthCheck[];
}

export interface ReadinessParts {
  store: Keystore;
  /** The store's file, when it has one (SQLite). */
  storeFile?: string;
  kek: KekProvider;
  manager: KeyManager;
  /** The names the configuration file declares, now (reload may change them). */
  configuredKeys(): readonly string[];
}

/** How long one check may take before it counts as failed. */
export const CHECK_DEADLINE_MS = 2_000;

const PROBE_AAD = Buffer.from('cryptod/readiness-probe/v1', 'ascii');

/** The readiness check of a daemon's parts; each call runs every check anew. */
export function readinessCheck(parts: ReadinessParts, deadlineMs = CHECK_DEADLINE_MS): () => Promise<HealthReport> {
  const store = async (): Promise<string> => {
    if (parts.storeFile !== undefined) {
      let isFile = false;
      try {
        isFile = statSync(parts.storeFile).isFile();
      } catch (err) {
        throw new Error(`the keystore file ${parts.storeFile} cannot be reached: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
      if (!isFile) throw new Error(`the keystore file ${parts.storeFile} is not a regular file`);
    }
    const generation = await parts.store.read((r) => r.generation());
    return `${parts.store.backend} keystore readable at generation ${generation}`;
  };
  const kek = async (): Promise<string> => {
    const probe = Buffer.alloc(32, 0x5a);
    const blob = await parts.kek.wrap(probe, PROBE_AAD);
    const back = await parts.kek.unwrap(blob, PROBE_AAD);
    try {
      if (back.length !== probe.length || !timingSafeEqual(back, probe)) throw new Error('the KEK provider unwrapped the probe to different bytes');
    } finally {
      back.fill(0);
    }
    return `KEK ${parts.kek.id} wraps and unwraps`;
  };
  const keys = async (): Promise<string> => {
    const loaded = new Set(parts.manager.list().map((k) => k.name));
    const wanted = parts.configuredKeys();
    const missing = wanted.filter((n) => !loaded.has(n));
    if (missing.length > 0) throw new Error(`configured keys not loaded: ${missing.join(', ')}`);
    return `${wanted.length} configured key(s) loaded, ${loaded.size} in all`;
  };
  const run = async (name: CheckName, check: () => Promise<string>): Promise<HealthCheck> => {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, rej) => {
      timer = setTimeout(() => rej(new Error(`no answer within ${deadlineMs} ms`)), deadlineMs);
    });
    try {
      return { name, ok: true, detail: await Promise.race([check(), late]) };
    } catch (err) {
      return { name, ok: false, detail: err instanceof Error ? err.message : String(err) };
    } finally {
      clearTimeout(timer);
    }
  };
  return async () => {
    const checks = await Promise.all([run('store', store), run('kek', kek), run('keys', keys)]);
    return { ready: checks.every((c) => c.ok), checks };
  };
}
