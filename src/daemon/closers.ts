/**
 * What an assembly has opened, closed in the reverse order of opening — the
 * shape of TC39's AsyncDisposableStack, which Node 20 does not have.
 *
 * Each part is registered right after it opened, so a start that fails half
 * way closes exactly what was opened, and a normal stop closes everything,
 * from the same list: the close order is written once, as the open order.
 */

import { InternalError } from '../protocol/errors.js';

export type Closer = () => Promise<void> | void;

export class CloseStack {
  readonly #closers: Array<{ name: string; close: Closer }> = [];
  #closing: Promise<void> | null = null;

  /** Close `close` (named for the log) before everything registered earlier. */
  defer(name: string, close: Closer): void {
    if (this.#closing !== null) throw new InternalError(`cannot register ${name}: the stack is closing`);
    this.#closers.push({ name, close });
  }

  /** How many parts are open. */
  get size(): number {
    return this.#closers.length;
  }

  /**
   * Close every part, last registered first. A part that fails to close does
   * not keep the others open: the failure goes to `onError` and the first one
   * is rethrown once all are closed. Idempotent.
   */
  close(onError: (name: string, err: unknown) => void = () => undefined): Promise<void> {
    this.#closing ??= (async () => {
      let first: { err: unknown } | null = null;
      for (let c = this.#closers.pop(); c !== undefined; c = this.#closers.pop()) {
        try {
          await c.close();
        } catch (err) {
          onError(c.name, err);
          first ??= { err };
        }
      }
      if (first !== null) throw first.err;
    })();
    return this.#closing;
  }
}
