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
 * of it: everyone's counts for STATUS, and RELOAD passed on with everyone's
 * outcome. A worker that does not answer in time is named by its pid, not
 * left out: an operator must see that a status or a reload is incomplete. Per-connection
 * state never leaves the worker that holds the connection; persistent state
 * is the keystore's, kept coherent by the freshness check (keys/freshness.ts).
 */
import type { DaemonStatus, HttpStatus } from './server.js';

/** What one worker reports about itself. */
export interface WorkerReport {
  pid: number;
  connections: number;
  nodes: number;
  refused: Record<string, number>;
  clients: DaemonStatus['clients'];
  /** Its HTTP front door's counts (`--http`); absent without one. */
  http?: WorkerHttp;
}

/** One worker's share of the HTTP front door: each worker serves the connections the primary hands it. */
export type WorkerHttp = Pick<HttpStatus, 'connections' | 'inflight' | 'requests'>;

/** One worker's outcome of a reload passed on to it (RELOAD's reply lists every worker's). */
export type WorkerReload =
  | { pid: number; outcome: 'reloaded' }
  | { pid: number; outcome: 'failed'; error: { code: string; message: string } }
  | { pid: number; outcome: 'no answer' };

/** Every live worker's report, and the pids of those that did not answer in time. */
export interface FleetReports {
  reports: WorkerReport[];
  missing: number[];
}

/** The daemon's line to the other workers (src/cli/worker-link.ts over node:cluster IPC). */
export interface FleetLink {
  /** Every live worker's report, this worker's own included (`own` answers for it). */
  reports(own: WorkerReport): Promise<FleetReports>;
  /**
   * Pass a reload on to every other worker (RELOAD reaches one; SIGHUP
   * reaches the primary); resolves with each other worker's outcome, those
   * that did not answer in time included.
   */
  reloadOthers(trigger: string): Promise<WorkerReload[]>;
}

/** A worker's row in STATUS: its counts, or only its pid when it did not answer in time. */
export type WorkerRow = { pid: number; answered: true; connections: number; nodes: number; http?: WorkerHttp } | { pid: number; answered: false };

/** STATUS of a worker: `workers` lists each; the totals and the per-client rows cover those that answered. */
export interface FleetStatus extends DaemonStatus {
  workers: WorkerRow[];
}

/** What a worker reports, from its own status. */
export function reportOf(s: DaemonStatus): WorkerReport {
  return {
    pid: s.daemon.pid, connections: s.connections, nodes: s.nodes, refused: s.refused, clients: s.clients,
    ...(s.http === undefined ? {} : { http: { connections: s.http.connections, inflight: s.http.inflight, requests: s.http.requests } }),
  };
}

/**
 * Sum the reports into this worker's status: totals, refusals by kind and
 * clients by id are over every worker (a client may have connections on
 * several); `daemon` stays this worker's own (its pid answers this request).
 * The HTTP counts are summed too; `http.maxInflight` stays the per-worker
 * limit, which `maxInflightScope: 'worker'` says.
 */
export function fleetStatus(own: DaemonStatus, reports: readonly WorkerReport[], missing: readonly number[] = []): FleetStatus {
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
    ...(own.http === undefined ? {} : {
      http: {
        ...own.http,
        connections: sorted.reduce((n, r) => n + (r.http?.connections ?? 0), 0),
        inflight: sorted.reduce((n, r) => n + (r.http?.inflight ?? 0), 0),
        requests: sorted.reduce((n, r) => n + (r.http?.requests ?? 0), 0),
      },
    }),
    workers: [
      ...sorted.map((r): WorkerRow => ({ pid: r.pid, answered: true, connections: r.connections, nodes: r.nodes, ...(r.http === undefined ? {} : { http: r.http }) })),
      ...missing.filter((pid) => !sorted.some((r) => r.pid === pid)).map((pid): WorkerRow => ({ pid, answered: false })),
    ].sort((a, b) => a.pid - b.pid),
  };
}
