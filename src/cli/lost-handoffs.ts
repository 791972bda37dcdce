/**
 * Connections handed to a worker that died before taking them.
 *
 * node:cluster's primary accepts each connection and sends its descriptor to
 * a worker ('newconn'), keeping its own copy until the worker answers that it
 * accepted it. A worker killed in that instant never answers, and Node keeps
 * the primary's copy open for good: the client hangs, waiting for a reply
 * nobody will write (with HTTP and one connection per request, the next
 * request after a crash was enough). This closes those copies when the worker
 * exits, so such a client sees its connection closed at once and can retry,
 * as after any disconnect.
 *
 * It reads the cluster's own IPC messages (`cmd: 'NODE_CLUSTER'`, `act:
 * 'newconn'` with a `seq`, answered by `ack: seq`), which Node does not
 * document: if their shape ever changes, nothing matches and this does
 * nothing, which is Node's behaviour without it.
 */
import type { Worker } from 'node:cluster';

interface ClusterMessage {
  cmd?: unknown;
  act?: unknown;
  seq?: unknown;
  ack?: unknown;
}

interface Closable {
  close(): void;
}

/** Watch `worker`'s handoffs; on its exit, close the connections it never acknowledged. */
export function closeLostHandoffs(worker: Worker): void {
  const pending = new Map<number, Closable>();
  const child = worker.process as unknown as { send: (...args: unknown[]) => boolean; on(e: 'internalMessage', f: (m: ClusterMessage) => void): void };
  const send = child.send.bind(child);
  child.send = (...args: unknown[]): boolean => {
    const m = args[0] as ClusterMessage | null;
    const handle = args[1] as Partial<Closable> | undefined;
    if (m !== null && typeof m === 'object' && m.cmd === 'NODE_CLUSTER' && m.act === 'newconn' && typeof m.seq === 'number' && typeof handle?.close === 'function') {
      pending.set(m.seq, handle as Closable);
    }
    return send(...args);
  };
  child.on('internalMessage', (m) => {
    if (m !== null && typeof m === 'object' && m.cmd === 'NODE_CLUSTER' && typeof m.ack === 'number') pending.delete(m.ack);
  });
  worker.once('exit', () => {
    for (const handle of pending.values()) {
      try {
        handle.close();
      } catch {
        // already closed
      }
    }
    pending.clear();
  });
}
