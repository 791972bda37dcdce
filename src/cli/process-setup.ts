/**
 * What `cryptod serve` does to its own process before the daemon starts:
 * settings that belong to the process, not to a daemon an embedding program
 * assembles (src/daemon/assemble.ts), which must not change them behind its
 * back.
 *
 * - No core dumps and no same-uid ptrace: key material lives in this heap.
 * - The soft RLIMIT_NOFILE raised to the hard limit: every connection costs a
 *   file descriptor. Raised before the socket exists; logged once the daemon
 *   started, so that a start-up failure is the only line a failed start prints.
 */
import type { Limits } from '../config/limits.js';
import type { Logger } from '../observe/logger.js';
import { raiseFileLimit, setNonDumpable } from '../daemon/peer-cred.js';

/** Descriptors the daemon needs besides connections: stdio, the listeners, the keystore, the audit log, libuv's own. */
export const FD_HEADROOM = 64;

type Raised = ReturnType<typeof raiseFileLimit> | { error: string };

/** Harden the process and raise its descriptor limit; call `started` once the daemon runs. */
export function prepareProcess(log: Logger): { started(limits: Limits): void } {
  if (!setNonDumpable()) log.warn('could not make the process non-dumpable (prctl PR_SET_DUMPABLE); disable core dumps with `ulimit -c 0` or LimitCORE=0', {});
  let raised: Raised;
  try {
    raised = raiseFileLimit();
  } catch (err) {
    raised = { error: err instanceof Error ? err.message : String(err) };
  }
  return { started: (limits) => logFileLimit(log, raised, limits.maxConnections) };
}

/**
 * Log the descriptor limit, and warn when the connection cap, the refused
 * connections that linger a moment (a quarter of it, src/daemon/refusals.ts)
 * and the daemon's own files (FD_HEADROOM) do not fit in it.
 */
function logFileLimit(log: Logger, raised: Raised, maxConnections: number): void {
  if (raised === null) {
    // Node itself raises the soft limit at start on Linux, so this is rarely fatal; say so anyway.
    log.warn('could not raise the file descriptor limit: the native addon is not built, is older than this daemon, or the platform has no setrlimit; run npm install (or npm rebuild) to build it', {});
    return;
  }
  if ('error' in raised) {
    log.warn('could not raise the file descriptor limit (setrlimit RLIMIT_NOFILE)', { error: raised.error });
    return;
  }
  log.info('file descriptor limit', { softBefore: raised.before.soft, soft: raised.after.soft, hard: raised.after.hard });
  const needed = maxConnections + Math.floor(maxConnections / 4) + FD_HEADROOM;
  if (raised.after.soft !== -1 && raised.after.soft < needed) {
    log.warn('the file descriptor limit is too low for --max-connections: new clients may fail with EMFILE before the cap refuses them', {
      soft: raised.after.soft,
      maxConnections,
      needed,
      fix: `lower --max-connections to ${Math.max(2, Math.floor(((raised.after.soft - FD_HEADROOM) * 4) / 5))} or raise the hard limit (LimitNOFILE=, ulimit -Hn)`,
    });
  }
}
