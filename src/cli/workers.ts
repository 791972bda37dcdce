/**
 * `cryptod serve --workers N`: the primary process. It prepares what is
 * shared once, forks N workers (each a whole daemon, src/cli/serve.ts in
 * worker mode), owns the listening sockets through node:cluster, replaces a
 * worker that dies, and relays the little the workers say to each other
 * (worker-link.ts).
 *
 *   primary: data dir ─▶ socket dir, stale socket ─▶ keystore opened once
 *            (created, migrated, bound to its KEK, the file's keys applied)
 *            ─▶ umask for the socket mode ─▶ fork N ─▶ supervise
 *   cluster: the first worker's listen() makes the primary bind the Unix
 *            socket (and the TLS port) once; the primary accepts and hands
 *            each connection to a worker, round robin; the descriptor is the
 *            connection's own, so SO_PEERCRED works in the worker
 *   a worker exits ─▶ its connections and their data nodes are gone (as with
 *            any disconnect; one handed to it as it died is closed too,
 *            lost-handoffs.ts) ─▶ a new one is forked: at once after a long
 *            life, with doubling backoff (to MAX_BACKOFF_MS) while they keep
 *            dying young; one that dies before any worker ever started means
 *            a configuration problem: everything stops, exit 1
 *   --http   the HTTP listener is shared the same way: its socket file (when
 *            a Unix one) cleared here once, bound by the primary when the
 *            first worker listens, each HTTP connection handed to a worker
 *   systemd  a socket-activated primary keeps the inherited descriptor; each
 *            worker listens on that descriptor number (INHERITED_FD_ENV), which
 *            node:cluster resolves in the primary: the primary serves it and
 *            hands out its connections as for a socket it bound; READY=1 and
 *            STOPPING=1 come from the primary (NotifyAccess=main)
 *   SIGHUP ─▶ {reload} to every worker       SIGTERM/SIGINT ─▶ SIGTERM to every
 *            worker (each drains as a single daemon does) ─▶ exit 0; a second
 *            signal kills the workers at once
 *
 * Workers ignore SIGINT and SIGHUP (a terminal sends them to the whole
 * process group; the primary relays each once). Scheduled rotation needs no
 * election on one host: every worker plans versions inside the keystore's
 * write transaction, so workers due at the same instant make one version.
 */
import cluster, { type Worker } from 'node:cluster';
import type { DaemonConfig } from '../config/daemon-config.js';
import { preparePrivateSocketDirectory } from '../config/paths.js';
import { applyKeys } from '../config/reload.js';
import type { WorkerReload, WorkerReport } from '../daemon/fleet.js';
import { openManagedKeys } from '../daemon/managed-keys.js';
import { prepareSocketDirectory, removeStaleSocket } from '../daemon/socket-file.js';
import { ensurePrivateDir } from '../files/private-files.js';
import { readKekPassphrase } from '../kek/passphrase.js';
import type { Logger } from '../observe/logger.js';
import { parseHttpUrl } from '../http/vault-front-door.js';
import { closeLostHandoffs } from './lost-handoffs.js';
import { UsageError } from './args.js';
import { EXIT_FAILURE, EXIT_OK } from './output.js';
import { WORKERS_EXPECTED, workerCount } from '../config/workers.js';

/** Worker → primary. */
export type ToPrimary =
  | { cryptod: 'ready' }
  | { cryptod: 'fleet-status'; id: number }
  | { cryptod: 'report'; probe: number; report: WorkerReport }
  | { cryptod: 'reload-others'; trigger: string; id: number }
  | { cryptod: 'reloaded'; probe: number; result: WorkerReload };

/** Primary → worker. `missing`: pids of the workers that did not answer in time. */
export type FromPrimary =
  | { cryptod: 'report?'; probe: number }
  | { cryptod: 'fleet-status'; id: number; reports: WorkerReport[]; missing: number[] }
  | { cryptod: 'reload'; trigger: string; probe?: number }
  | { cryptod: 'reloaded-others'; id: number; results: WorkerReload[] };

/** A worker that lived this long is healthy: the next death is replaced at once. */
const STABLE_MS = 10_000;
const FIRST_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 30_000;
/** How long the primary gathers reports for STATUS; a worker silent that long is named as not answering. */
export const REPORT_TIMEOUT_MS = 1_500;
/** How long the primary waits for the other workers' reload outcomes (a reload may create keys: longer than a report). */
export const RELOAD_TIMEOUT_MS = 5_000;

/**
 * Primary → worker, in the environment: the descriptor number the primary
 * inherited from systemd. A worker listening on it is served the primary's
 * descriptor by node:cluster (its own fd of that number plays no part).
 */
export const INHERITED_FD_ENV = 'CRYPTOD_WORKER_LISTEN_FD';

/** `--workers N|auto`: 1 … MAX_WORKERS, or the number of cores (src/config/workers.ts); undefined: not given. */
export function parseWorkers(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = workerCount(value);
  if (n === null) throw new UsageError(`option '--workers' expects ${WORKERS_EXPECTED}, got '${value}'`, 'serve');
  return n;
}

/**
 * What the workers share, prepared once before any exists: the data
 * directory, the socket's directory (a live daemon on the socket refuses the
 * start here), and the keystore — created, migrated, bound to its KEK and
 * given the configuration file's keys by one process, not raced by N.
 */
export async function prepareShared(config: DaemonConfig, log: Logger, inherited: boolean): Promise<void> {
  const dataDir = ensurePrivateDir(config.dataDir);
  // A socket systemd handed over is systemd's file: neither checked nor removed.
  if (!inherited) {
    preparePrivateSocketDirectory(config.socket);
    prepareSocketDirectory(config.socket.path);
    await removeStaleSocket(config.socket.path);
  }
  // The HTTP socket likewise, once: a worker finds its siblings listening on it (front-door-host.ts).
  if (config.http !== undefined) {
    const address = parseHttpUrl(config.http.url);
    if ('unix' in address) {
      prepareSocketDirectory(address.unix);
      await removeStaleSocket(address.unix);
    }
  }
  const passphrase = readKekPassphrase(config.kek);
  let keys;
  try {
    keys = await openManagedKeys({ dataDir, init: config.init, logger: log, refreshIntervalMs: 0, ...(passphrase === undefined ? {} : { passphrase }) });
  } finally {
    passphrase?.fill(0);
  }
  try {
    if (config.file !== null) await applyKeys(keys.manager, config.file);
  } finally {
    await keys.close();
  }
}

interface Slot {
  worker: Worker;
  startedAt: number;
  ready: boolean;
}

/** A question to several workers: the answers so far, and who has not answered (worker id → pid). */
interface Probe {
  expect: Map<number, number>;
  answers: unknown[];
  timer: NodeJS.Timeout;
  finish(): void;
}

export interface PrimaryOptions {
  count: number;
  log: Logger;
  /** Called with the signal when a second one arrives during shutdown (serve.ts dieBy). */
  die(signal: NodeJS.Signals): void;
  /** Added to each worker's environment. */
  env?: Record<string, string>;
  /** Every first worker is ready (systemd's READY=1). */
  ready?(): void;
  /** Shutdown begins (systemd's STOPPING=1). */
  stopping?(): void;
}

/** Fork and supervise the workers; resolves with the exit status once every worker has stopped. */
export function runPrimary(options: PrimaryOptions): Promise<number> {
  const { count, log } = options;
  const slots = new Map<number, Slot>();
  const probes = new Map<number, Probe>();
  let nextProbe = 1;
  let stopping = false;
  let everReady = false;
  let youngDeaths = 0;
  let respawnTimer: NodeJS.Timeout | null = null;
  let finished!: (code: number) => void;
  const done = new Promise<number>((res) => (finished = res));
  let exitCode = EXIT_OK;

  const ready = (): Slot[] => [...slots.values()].filter((s) => s.ready && s.worker.isConnected());
  const send = (w: Worker, m: FromPrimary): void => {
    if (w.isConnected()) w.send(m);
  };

  const fork = (): void => {
    const worker = cluster.fork(options.env);
    closeLostHandoffs(worker);
    const slot: Slot = { worker, startedAt: Date.now(), ready: false };
    slots.set(worker.id, slot);
    worker.on('message', (m: ToPrimary) => onMessage(slot, m));
    worker.on('exit', (code, signal) => onExit(slot, code, signal));
  };

  const onMessage = (slot: Slot, m: ToPrimary): void => {
    if (m === null || typeof m !== 'object' || !('cryptod' in m)) return;
    switch (m.cryptod) {
      case 'ready':
        slot.ready = true;
        if (everReady) {
          log.info('worker replaced', { pid: slot.worker.process.pid });
        } else if (ready().length === count) {
          everReady = true;
          log.info('workers started', { workers: ready().map((s) => s.worker.process.pid) });
          options.ready?.();
        }
        return;
      case 'fleet-status':
        gather(slot.worker, m.id);
        return;
      case 'report':
        answer(slot, m.probe, m.report);
        return;
      case 'reload-others': {
        const asker = slot.worker;
        ask(ready().filter((s) => s !== slot), RELOAD_TIMEOUT_MS, (probe) => ({ cryptod: 'reload', trigger: m.trigger, probe }), (answers, missing) => {
          const results = [...(answers as WorkerReload[]), ...missing.map((pid): WorkerReload => ({ pid, outcome: 'no answer' }))];
          send(asker, { cryptod: 'reloaded-others', id: m.id, results });
        });
        return;
      }
      case 'reloaded':
        answer(slot, m.probe, m.result);
    }
  };

  const answer = (slot: Slot, probe: number, value: unknown): void => {
    const p = probes.get(probe);
    if (p === undefined || !p.expect.delete(slot.worker.id)) return;
    p.answers.push(value);
    if (p.expect.size === 0) p.finish();
  };

  /** Send `targets` a question; `done` gets the answers that came back within `timeoutMs`, and the pids of the rest. */
  const ask = (targets: Slot[], timeoutMs: number, question: (probe: number) => FromPrimary, done: (answers: unknown[], missing: number[]) => void): void => {
    const probe = nextProbe++;
    const p: Probe = {
      expect: new Map(targets.map((s) => [s.worker.id, s.worker.process.pid ?? 0])),
      answers: [],
      timer: setTimeout(() => p.finish(), timeoutMs),
      finish() {
        clearTimeout(p.timer);
        probes.delete(probe);
        done(p.answers, [...p.expect.values()]);
      },
    };
    probes.set(probe, p);
    for (const s of targets) send(s.worker, question(probe));
    if (p.expect.size === 0) p.finish();
  };

  /** Ask every ready worker for its report; answer `asker` with what came back in time, naming the workers that were silent. */
  const gather = (asker: Worker, id: number): void => {
    ask(ready(), REPORT_TIMEOUT_MS, (probe) => ({ cryptod: 'report?', probe }), (answers, missing) => {
      send(asker, { cryptod: 'fleet-status', id, reports: answers as WorkerReport[], missing });
    });
  };

  const onExit = (slot: Slot, code: number | null, signal: string | null): void => {
    slots.delete(slot.worker.id);
    for (const p of [...probes.values()]) {
      if (p.expect.delete(slot.worker.id) && p.expect.size === 0) p.finish();
    }
    const pid = slot.worker.process.pid;
    if (stopping) {
      if (slots.size === 0) finished(exitCode);
      return;
    }
    if (!everReady) {
      // The worker printed why (a configuration it cannot use); N copies of that would not help.
      log.error('a worker failed to start; stopping', { pid, code, signal });
      exitCode = EXIT_FAILURE;
      stop('SIGTERM');
      return;
    }
    const lived = Date.now() - slot.startedAt;
    youngDeaths = lived < STABLE_MS ? youngDeaths + 1 : 0;
    const delay = youngDeaths === 0 ? 0 : Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** (youngDeaths - 1));
    log.warn('worker died; its connections and their data nodes are gone; replacing it', { pid, code, signal, livedMs: lived, replaceInMs: delay });
    respawnTimer = setTimeout(() => {
      respawnTimer = null;
      if (!stopping) fork();
    }, delay);
  };

  const stop = (signal: NodeJS.Signals): void => {
    stopping = true;
    options.stopping?.();
    if (respawnTimer !== null) clearTimeout(respawnTimer);
    if (slots.size === 0) {
      finished(exitCode);
      return;
    }
    for (const s of slots.values()) s.worker.process.kill(signal);
  };

  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.warn('second signal during shutdown: killing the workers and exiting now', { signal });
      for (const s of slots.values()) s.worker.process.kill('SIGKILL');
      options.die(signal);
      return;
    }
    log.info('shutting down the workers', { signal, workers: [...slots.values()].map((s) => s.worker.process.pid) });
    stop('SIGTERM');
  };
  const onHangup = (): void => {
    for (const s of ready()) send(s.worker, { cryptod: 'reload', trigger: 'SIGHUP' });
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('SIGHUP', onHangup);
  for (let i = 0; i < count; i++) fork();
  return done.finally(() => {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    process.off('SIGHUP', onHangup);
  });
}
