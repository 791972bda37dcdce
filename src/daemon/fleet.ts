/**
 * One daemon as one of several worker processes behind one socket
 * (`cryptod serve --workers N`; the process side is src/cli/workers.ts).
 *
 *   primary ── owns the socket file(s), forks, replaces, relays ──┐
 *     │ node:cluster: the primary binds once, accepts, hands each  │
 *     │ connection to a worker (round robin)                      │ IPC
 *   worker 1 … worker N ── each a whole daemon: its own connections,│
 *     data nodes, key manager; one shared keystore ─────────────────┘
 *
 * What a worker needs from the others is small, and this interface is all
 * of it: everyone's counts for STATUS, and RELOAD passed on. Per-connection
 * state never leaves the worker that holds the connection; persistent state
 * is the keystore's, kept coherent by the freshness check (keys/freshness.ts).
 */
import type { DaemonStatus } from './server.js';

/** What one worker reports about itself. */
export interface WorkerReport {
  pid: number;
  connections: number;
  nodes: number;
  refused: Record<string, number>;
  clients: DaemonStatus['clients'];
}

/** The daemon's line to the other workers (src/cli/worker-link.ts over node:cluster IPC). */
export interface FleetLink {
  /** Every live worker's report, this worker's own included (`own` answers for it). */
  reports(own: WorkerReport): Promise<WorkerReport[]>;
  /** Pass a reload on to every other worker (RELOAD reaches one; SIGHUP reaches the primary). */
  reloadOthers(trigger: string): void;
}

/** STATUS of a worker: `workers` lists each; the totals and the per-client rows cover them all. */
export interface FleetStatus extends DaemonStatus {
  workers: Array<{ pid: number; connections: number; nodes: number }>;
}

/** What a worker reports, from its own status. */
export function reportOf(s: DaemonStatus): WorkerReport {
  return { pid: s.daemon.pid, connections: s.connections, nodes: s.nodes, refused: s.refused, clients: s.clients };
}

/**
 * Sum the reports into this worker's status: totals, refusals by kind and
 * clients by id are over every worker (a client may have connections on
 * several); `daemon` stays this worker's own (its pid answers this request).
 */
export function fleetStatus(own: DaemonStatus, reports: readonly WorkerReport[]): FleetStatus {
  const sorted = [...reports].sort((a, b) => a.pid - b.pid);
  const refused: Record<string, number> = {};
  const clients = new Map<string, DaemonStatus['clients'][number]>();
  for (const r of sorted) {
    for (const [kind, n] of Object.entries(r.refused)) refused[kind] = (refused[kind] ?? 0) + n;
    for (const c of r.clients) {
      const seen = clients.get(c.clientId);
      if (seen === undefined) {
        clients.set(c.clientId, { ...c, byType: { ...c.byType } });
        continue;
      }
      seen.connections += c.connections;
      seen.nodes += c.nodes;
      seen.busy += c.busy;
      for (const [t, n] of Object.entries(c.byType)) seen.byType[t] = (seen.byType[t] ?? 0) + n;
    }
  }
  return {
    ...own,
    nodes: sorted.reduce((n, r) => n + r.nodes, 0),
    connections: sorted.reduce((n, r) => n + r.connections, 0),
    refused,
    clients: [...clients.values()],
    workers: sorted.map((r) => ({ pid: r.pid, connections: r.connections, nodes: r.nodes })),
  };
}
