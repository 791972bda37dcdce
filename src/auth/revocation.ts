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
import type { Logger } from '../observe/logger.js';
import type { Audit } from '../observe/audit.js';
import type { ClientRecord, ClientRegistry } from './client-registry.js';

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

/**
 * Auditing client changes made outside the daemon. `cryptod client add` and
 * `revoke` write the registry from another process (often without an audit
 * log of their own), so a daemon that keeps an audit log compares the
 * registry's listing between polls and records what changed:
 *
 *   more tokens under one (name, uid, createdAt) than before ─▶ client.added   (no `by`: the daemon only observed it)
 *   more of them revoked than before                        ─▶ client.revoked
 *
 * The first listing is the baseline (no events: those changes predate this
 * daemon). Cost: one listing of the registry (a few rows) per interval, and
 * only when auditing is on; the caller does not start it otherwise.
 */
export interface ClientChangeWatch {
  /** One comparison now (the timer calls it); resolves when done. */
  check(): Promise<void>;
  stop(): void;
}

interface ClientGroup {
  readonly name: string;
  readonly uid: number | null;
  tokens: number;
  revoked: number;
}

/** The registry's listing counted per (name, uid, createdAt), in listing order. */
function groupClients(clients: readonly ClientRecord[]): Map<string, ClientGroup> {
  const groups = new Map<string, ClientGroup>();
  for (const c of clients) {
    const k = `${c.name}\u0000${c.uid ?? ''}\u0000${c.createdAt}`;
    let g = groups.get(k);
    if (g === undefined) groups.set(k, (g = { name: c.name, uid: c.uid, tokens: 0, revoked: 0 }));
    g.tokens++;
    if (c.revokedAt !== null) g.revoked++;
  }
  return groups;
}

export function watchClientChanges(registry: ClientRegistry, audit: Audit, log: Logger, intervalMs = DEFAULT_REVOCATION_CHECK_MS): ClientChangeWatch {
  if (!Number.isSafeInteger(intervalMs) || intervalMs < 10) throw new RangeError(`client check interval must be an integer ≥ 10 ms, got ${intervalMs}`);
  // Counted per group, not matched row to row: a name revoked and added again
  // within one millisecond gives two rows with the same key, and the listing
  // exposes no token ids to tell them apart (nor should it).
  let seen: Map<string, ClientGroup> | null = null;
  let running: Promise<void> | null = null;
  let stopped = false;

  const check = (): Promise<void> => {
    if (running !== null) return running;
    running = registry
      .list()
      .then(
        (clients) => {
          if (stopped) return;
          const next = groupClients(clients);
          if (seen !== null) {
            for (const [k, g] of next) {
              const before = seen.get(k) ?? { name: g.name, uid: g.uid, tokens: 0, revoked: 0 };
              const added = (): void => {
                for (let i = before.tokens; i < g.tokens; i++) audit.emit({ event: 'client.added', name: g.name, uid: g.uid });
              };
              const revoked = (): void => {
                for (let i = before.revoked; i < g.revoked; i++) audit.emit({ event: 'client.revoked', name: g.name });
              };
              // A known group that grew was revoked before it was re-added; a new one was added first.
              if (before.tokens > 0) {
                revoked();
                added();
              } else {
                added();
                revoked();
              }
            }
          }
          seen = next;
        },
        (err: unknown) => log.error('could not list clients for the audit log', { error: err instanceof Error ? err.message : String(err) }),
      )
      .finally(() => {
        running = null;
      });
    return running;
  };

  void check(); // the baseline
  const timer = setInterval(() => void check(), intervalMs);
  timer.unref();
  return {
    check,
    stop() {
      stopped = true;
      clearInterval(timer);
    },
  };
}
