/**
 * The worker's end of `cryptod serve --workers N`: the daemon's FleetLink
 * (src/daemon/fleet.ts) over the node:cluster IPC channel to the primary
 * (workers.ts), and the primary's requests to this worker.
 *
 *   worker ──{fleet-status}──▶ primary ──{report?}──▶ every worker
 *          ◀──{fleet-status, reports, missing}── primary ◀──{report}── every worker
 *   worker ──{reload-others}──▶ primary ──{reload, probe}──▶ every other worker
 *          ◀──{reloaded-others, results}── primary ◀──{reloaded}── every other worker
 *   primary ──{reload}──▶ worker (SIGHUP on the primary: nobody waits for the outcome)
 *
 * The primary answers within its own timeouts, naming the workers that did
 * not answer; this end waits a little longer, in case the primary itself is
 * stuck. Only counts, triggers and error messages cross: never key
 * material, tokens or requests.
 */
import cluster from 'node:cluster';
import type { FleetLink, FleetReports, WorkerReload, WorkerReport } from '../daemon/fleet.js';
import { REPORT_TIMEOUT_MS, RELOAD_TIMEOUT_MS, type FromPrimary, type ToPrimary } from './workers.js';

export interface WorkerHooks {
  /** This worker's own report, for the primary's `report` requests. */
  report(): WorkerReport | null;
  /** A reload the primary passes on (SIGHUP, or RELOAD on another worker); resolves with its outcome, never rejects. */
  reload(trigger: string): Promise<WorkerReload>;
}

/** How much longer than the primary's timeouts this end waits before answering without it. */
const SLACK_MS = 500;

/** Connect this cluster worker to its primary; call `hooks` once the daemon runs. */
export function workerLink(): { link: FleetLink; attach(hooks: WorkerHooks): void } {
  if (!cluster.isWorker || typeof process.send !== 'function') throw new Error('workerLink() outside a cluster worker');
  let hooks: WorkerHooks | null = null;
  let nextId = 1;
  const waiting = new Map<number, (m: FromPrimary | null) => void>();
  const send = (m: ToPrimary): void => {
    if (process.connected) process.send!(m);
  };
  /** Send `m` (with a fresh id) and wait for the primary's answer to it, or null after `timeoutMs`. */
  const ask = (make: (id: number) => ToPrimary, timeoutMs: number): Promise<FromPrimary | null> => {
    const id = nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(null), timeoutMs);
      const done = (m: FromPrimary | null): void => {
        clearTimeout(timer);
        waiting.delete(id);
        resolve(m);
      };
      waiting.set(id, done);
      send(make(id));
    });
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
      case 'reloaded-others':
        waiting.get(m.id)?.(m);
        return;
      case 'reload': {
        const h = hooks;
        if (h === null) return;
        const probe = m.probe;
        void h.reload(m.trigger).then((result) => {
          if (probe !== undefined) send({ cryptod: 'reloaded', probe, result });
        });
      }
    }
  });
  const link: FleetLink = {
    async reports(own) {
      const m = await ask((id) => ({ cryptod: 'fleet-status', id }), REPORT_TIMEOUT_MS + SLACK_MS);
      // Ours is always this request's own answer (fresher than the probe's); the primary gone: ours alone.
      const got: FleetReports = m?.cryptod === 'fleet-status' ? { reports: m.reports, missing: m.missing } : { reports: [], missing: [] };
      return { reports: [own, ...got.reports.filter((r) => r.pid !== own.pid)], missing: got.missing.filter((pid) => pid !== own.pid) };
    },
    async reloadOthers(trigger) {
      const m = await ask((id) => ({ cryptod: 'reload-others', trigger, id }), RELOAD_TIMEOUT_MS + SLACK_MS);
      return m?.cryptod === 'reloaded-others' ? m.results.filter((r) => r.pid !== process.pid) : [];
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
