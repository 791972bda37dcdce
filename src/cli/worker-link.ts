/**
 * The worker's end of `cryptod serve --workers N`: the daemon's FleetLink
 * (src/daemon/fleet.ts) over the node:cluster IPC channel to the primary
 * (workers.ts), and the primary's requests to this worker.
 *
 *   worker ──{fleet-status}──▶ primary ──{report?}──▶ every worker
 *          ◀──{fleet-status, reports}── primary ◀──{report}── every worker
 *   worker ──{reload-others}──▶ primary ──{reload}──▶ every other worker
 *   primary ──{reload}──▶ worker (SIGHUP on the primary)
 *
 * Only counts and triggers cross: never key material, tokens or requests.
 */
import cluster from 'node:cluster';
import type { FleetLink, WorkerReport } from '../daemon/fleet.js';
import type { FromPrimary, ToPrimary } from './workers.js';

export interface WorkerHooks {
  /** This worker's own report, for the primary's `report` requests. */
  report(): WorkerReport | null;
  /** A reload the primary passes on (SIGHUP, or RELOAD on another worker). */
  reload(trigger: string): void;
}

/** How long STATUS waits for the primary's gathered reports before answering with this worker's alone. */
const STATUS_TIMEOUT_MS = 2_000;

/** Connect this cluster worker to its primary; call `hooks` once the daemon runs. */
export function workerLink(): { link: FleetLink; attach(hooks: WorkerHooks): void } {
  if (!cluster.isWorker || typeof process.send !== 'function') throw new Error('workerLink() outside a cluster worker');
  let hooks: WorkerHooks | null = null;
  let nextId = 1;
  const waiting = new Map<number, (reports: WorkerReport[] | null) => void>();
  const send = (m: ToPrimary): void => {
    if (process.connected) process.send!(m);
  };
  process.on('message', (m: FromPrimary) => {
    if (m === null || typeof m !== 'object' || !('cryptod' in m)) return;
    switch (m.cryptod) {
      case 'report?': {
        const report = hooks?.report() ?? null;
        if (report !== null) send({ cryptod: 'report', probe: m.probe, report });
        return;
      }
      case 'fleet-status':
        waiting.get(m.id)?.(m.reports);
        waiting.delete(m.id);
        return;
      case 'reload':
        hooks?.reload(m.trigger);
    }
  });
  const link: FleetLink = {
    reports(own) {
      const id = nextId++;
      return new Promise<WorkerReport[]>((resolve) => {
        const timer = setTimeout(() => done(null), STATUS_TIMEOUT_MS);
        const done = (reports: WorkerReport[] | null): void => {
          clearTimeout(timer);
          waiting.delete(id);
          // Ours is always this request's own answer (fresher than the probe's); the primary gone: ours alone.
          resolve([own, ...(reports ?? []).filter((r) => r.pid !== own.pid)]);
        };
        waiting.set(id, done);
        send({ cryptod: 'fleet-status', id });
      });
    },
    reloadOthers(trigger) {
      send({ cryptod: 'reload-others', trigger });
    },
  };
  return {
    link,
    attach(h) {
      hooks = h;
      send({ cryptod: 'ready' });
    },
  };
}
