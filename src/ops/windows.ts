/**
 * Shared-memory windows (docs/protocol.md §6.16): WINDOW_OFFER,
 * WINDOW_ATTACH, and reading a region of a window where an update names one
 * instead of carrying `data`.
 *
 *   WINDOW_OFFER { size } ──▶ broker.offer ──▶ { socket, offer }
 *   client: memory file ──SCM_RIGHTS + offer──▶ broker (src/daemon/windows.ts): seals checked, mapped
 *   WINDOW_ATTACH { offer } ──▶ broker.take ──▶ a 'window' node of the connection ──▶ { handle, size }
 *   CONTEXT_UPDATE { handle, window, offset, length } ──▶ windowRegion(): a view, held while used
 *
 * A window is a shared (not exclusive) node: several updates may read
 * different regions of it at once. An operation reading a region holds the
 * window's accessor, so a RELEASE (or the connection closing) meanwhile
 * unmaps it only after that operation ends — the view never goes empty
 * under the hash. The client may write the region while the daemon reads it;
 * that corrupts only its own result, never the daemon (the memory file
 * cannot shrink: its seals were checked before it was mapped).
 */
import type { Operation, RequestContext } from './operation.js';
import { InvalidArgumentError, UnsupportedError } from '../protocol/errors.js';
import { WindowAttach, WindowOffer } from '../protocol/messages/index.js';
import { Op } from '../protocol/ops.js';
import type { Handle } from '../protocol/schema.js';
import type { DataNodeAccessor, NodeValue } from '../state/data-manager.js';

/** A window's value: the daemon's mapping of the client's memory file. */
export class SharedWindow implements NodeValue {
  readonly #release: () => void;
  #bytes: Uint8Array;

  /** `release` unmaps (once); the broker passes it. */
  constructor(bytes: Uint8Array, release: () => void) {
    this.#bytes = bytes;
    this.#release = release;
  }

  get bytes(): Uint8Array {
    return this.#bytes;
  }

  dispose(): void {
    if (this.#bytes.length === 0) return;
    this.#bytes = new Uint8Array(0);
    this.#release();
  }
}

/**
 * The bytes of `{ window, offset, length }`, with the window's accessor: the
 * caller holds it (`using`) for as long as it reads the view.
 */
export function windowRegion(ctx: RequestContext, region: { window: Handle; offset: number; length: number }): { acc: DataNodeAccessor<SharedWindow>; data: Uint8Array } {
  const acc = ctx.dm.acquire<SharedWindow>(ctx.clientId, region.window, ['window']);
  const size = acc.value.bytes.length;
  if (region.offset > size || region.length > size - region.offset) {
    acc[Symbol.dispose]();
    throw new InvalidArgumentError(`the region ${region.offset}+${region.length} is outside the window (${size} bytes)`, {
      detail: { field: 'length', offset: region.offset, length: region.length, size },
    });
  }
  return { acc, data: acc.value.bytes.subarray(region.offset, region.offset + region.length) };
}

/** Where an operation writes its output into a window: a region of the same window as its input. */
export interface OutputRegion {
  readonly bytes: Uint8Array;
  readonly offset: number;
  readonly length: number;
}

/** The output region `{ offset, length }` of the window `region` reads from, checked to lie inside it. */
export function outputRegion(region: { acc: DataNodeAccessor<SharedWindow> }, offset: number, length: number): OutputRegion {
  const bytes = region.acc.value.bytes;
  if (offset > bytes.length || length > bytes.length - offset) {
    throw new InvalidArgumentError(`the output region ${offset}+${length} is outside the window (${bytes.length} bytes)`, {
      detail: { field: 'outputLength', offset, length, size: bytes.length },
    });
  }
  return { bytes, offset, length };
}

/**
 * `f()`, giving back the accessor of `region` (null: no window) if it throws;
 * when it returns, the caller holds the accessor and disposes it (`using`).
 */
export function orRelease<T>(region: { acc: DataNodeAccessor<SharedWindow> } | null, f: () => T): T {
  try {
    return f();
  } catch (err) {
    region?.acc[Symbol.dispose]();
    throw err;
  }
}

function broker(ctx: RequestContext): NonNullable<RequestContext['daemon']['windows']> {
  const b = ctx.daemon.windows;
  if (b === undefined) {
    throw new UnsupportedError('this daemon has no shared-memory windows (native addon missing, not Linux, or maxWindowBytes 0); send data inline', { detail: { op: 'WINDOW_OFFER' } });
  }
  if (ctx.peer === undefined || ctx.peer === null) {
    throw new UnsupportedError('shared-memory windows work only on a Unix-socket connection whose peer the kernel names (SO_PEERCRED); send data inline', { detail: { op: 'WINDOW_OFFER' } });
  }
  return b;
}

export const windowOperations: Operation[] = [
  {
    /** `{ size }` → `{ socket, offer }`. */
    op: Op.WINDOW_OFFER,
    access: { kind: 'none' },
    handle: async (ctx, raw) => {
      const { size } = WindowOffer.args.parse(raw);
      const b = broker(ctx);
      const max = ctx.limits.maxWindowBytes;
      if (size > max) {
        throw new InvalidArgumentError(`expected a window size from 1 to ${max} bytes (maxWindowBytes), got ${size}`, { detail: { field: 'size', min: 1, max } });
      }
      const { socket, offer } = await b.offer(ctx.owner, ctx.peer!, size, ctx.limits);
      return { socket, offer };
    },
  },
  {
    /** `{ offer }` → `{ handle, size }`. */
    op: Op.WINDOW_ATTACH,
    access: { kind: 'none' },
    handle: async (ctx, raw) => {
      const { offer } = WindowAttach.args.parse(raw);
      const window = await broker(ctx).take(ctx.owner, offer);
      let id;
      try {
        id = ctx.dm.add(ctx.clientId, 'window', window, { owner: ctx.owner });
      } catch (err) {
        window.dispose();
        throw err;
      }
      ctx.owner.own(id);
      return { handle: id, size: window.bytes.length };
    },
  },
];
