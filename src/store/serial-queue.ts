/**
 * Runs async tasks one at a time, in the order they were queued.
 *
 * The SQLite driver is synchronous but a keystore transaction may await
 * between statements; while it does, no other statement may run on the same
 * connection, or it would become part of the open transaction. Every user of
 * a connection therefore goes through that connection's queue.
 *
 *   run(a) ─▶ [a running] ─▶ [b] ─▶ [c]      a task's failure fails only its own caller
 */
export class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();

  /** Queue `task`; resolves or rejects with its outcome. */
  run<T>(task: () => Promise<T> | T): Promise<T> {
    const result = this.#tail.then(task);
    this.#tail = result.catch(() => undefined);
    return result;
  }

  /** Resolves once everything queued so far has finished. */
  async idle(): Promise<void> {
    await this.#tail;
  }
}
