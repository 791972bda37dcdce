/**
 * Cutting live connections whose token was revoked.
 *
 * A revocation is checked at every HELLO, so it stops new connections at
 * once. A connection that authenticated before the revocation would keep its
 * identity (and every key it holds) for as long as it stays open, so the
 * daemon re-checks the tokens of its live token connections on a timer and
 * closes those whose token is gone: a revoked client loses access within one
 * interval (default 1 s), wherever the revocation was written (the CLI
 * writes to the registry directly, from another process).
 *
 * It costs nothing while no token connection is open, and one indexed
 * lookup per live token per interval otherwise.
 */
import type { Logger } from '../daemon/logger.js';
import type { ClientRegistry } from './client-registry.js';

/** What the watcher needs of a connection. */
export interface TokenConnection {
  readonly number: number;
  readonly clientId: string | null;
  readonly identity: { readonly tokenId: string | null } | null;
  /** Close now; requests in flight finish and their replies are dropped. */
  destroy(): void;
}

export interface RevocationWatch {
  /** Start watching a connection that authenticated with a token (no-op otherwise). */
  add(conn: TokenConnection): void;
  delete(conn: TokenConnection): void;
  /** One check now (the timer calls it); resolves when done. */
  check(): Promise<void>;
  stop(): void;
}

export const DEFAULT_REVOCATION_CHECK_MS = 1_000;

export function watchRevocations(registry: ClientRegistry, log: Logger, intervalMs = DEFAULT_REVOCATION_CHECK_MS): RevocationWatch {
  if (!Number.isSafeInteger(intervalMs) || intervalMs < 10) throw new RangeError(`revocation check interval must be an integer ≥ 10 ms, got ${intervalMs}`);
  const live = new Set<TokenConnection>();
  let running: Promise<void> | null = null;

  const check = (): Promise<void> => {
    if (running !== null) return running;
    if (live.size === 0) return Promise.resolve();
    const batch = [...live];
    running = registry
      .stillValid(batch.map((c) => c.identity!.tokenId!))
      .then(
        (valid) => {
          for (const conn of batch) {
            if (!live.has(conn) || valid.has(conn.identity!.tokenId!)) continue;
            live.delete(conn);
            log.warn('token revoked: connection closed', { connection: conn.number, clientId: conn.clientId });
            conn.destroy();
          }
        },
        // Keep serving: a registry that cannot be read now may be readable at the next tick.
        (err: unknown) => log.error('could not re-check token revocations', { error: err instanceof Error ? err.message : String(err) }),
      )
      .finally(() => {
        running = null;
      });
    return running;
  };

  const timer = setInterval(() => void check(), intervalMs);
  timer.unref();
  return {
    add(conn) {
      if (conn.identity?.tokenId != null) live.add(conn);
    },
    delete(conn) {
      live.delete(conn);
    },
    check,
    stop() {
      clearInterval(timer);
      live.clear();
    },
  };
}
