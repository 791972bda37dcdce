/**
 * The client's shared-memory window (docs/protocol.md §6.16): one per
 * connection, opened the first time a large update needs it, cut into slots
 * of INLINE_REGION (1 MiB). An update copies its piece into a free slot and
 * sends only `{ window, offset, length }`; an AEAD stream's update (a piece
 * of at most INLINE_UPDATE) has the daemon write its output into the same
 * slot, which holds the piece, the segment held back and their tags. The
 * slot is free again when the reply comes. The bytes never pass through the socket: the daemon reads and
 * writes them where they are; pages of a slot never written cost no memory.
 *
 *   first large update ─▶ WINDOW_OFFER { size } ─▶ memory file (sealed) ─SCM_RIGHTS─▶ daemon
 *                      ─▶ WINDOW_ATTACH { offer } ─▶ { handle }  ─▶ ClientWindow
 *   any failure (no addon, TCP, an old daemon, a refusal) ─▶ null: this connection sends inline
 */
import { closeSync } from 'node:fs';
import { createConnection } from 'node:net';
import { INLINE_REGION, WindowAttach, WindowOffer } from '../protocol/messages/index.js';
import { abstractPath, windowAddon, type WindowAddon } from '../protocol/window-addon.js';
import type { DaemonConnection } from './connection.js';

/**
 * Bytes of one slot: a hash update's piece (INLINE_REGION, which the daemon
 * finishes before it reads the next frame, so such pieces pipeline), or an
 * AEAD stream's piece (at most INLINE_UPDATE) and its output.
 */
export const WINDOW_SLOT = INLINE_REGION;
/** The window a connection asks for: 16 slots. */
export const WINDOW_BYTES = 16 * WINDOW_SLOT;
/** Updates shorter than this go inline: copying them into a slot saves nothing. */
export const WINDOW_MIN_UPDATE = 16 * 1024;

export class ClientWindow {
  readonly handle: string;
  readonly slotSize = WINDOW_SLOT;
  readonly #addon: WindowAddon;
  readonly #buffer: ArrayBuffer;
  #bytes: Uint8Array;
  /** Offsets of the free slots. */
  readonly #free: number[] = [];
  readonly #waiting: Array<(offset: number | null) => void> = [];
  #released = false;

  constructor(addon: WindowAddon, handle: string, buffer: ArrayBuffer) {
    this.#addon = addon;
    this.handle = handle;
    this.#buffer = buffer;
    this.#bytes = new Uint8Array(buffer);
    for (let off = 0; off + this.slotSize <= buffer.byteLength; off += this.slotSize) this.#free.push(off);
  }

  get bytes(): Uint8Array {
    return this.#bytes;
  }

  /** A free slot's offset, waiting for one; null once the window is released. */
  take(): Promise<number | null> {
    if (this.#released) return Promise.resolve(null);
    const off = this.#free.pop();
    if (off !== undefined) return Promise.resolve(off);
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  /** The slot at `offset` is free again (its update was answered). */
  give(offset: number): void {
    if (this.#released) return;
    const next = this.#waiting.shift();
    if (next !== undefined) next(offset);
    else this.#free.push(offset);
  }

  /** Unmap this side (the connection closed: the daemon dropped its node). Waiters get null. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#bytes = new Uint8Array(0);
    this.#addon.releaseWindow(this.#buffer);
    for (const w of this.#waiting.splice(0)) w(null);
  }
}

/**
 * Open a window of `size` bytes on `conn`, or null when this connection
 * cannot have one (no addon here, the daemon offers none, a refusal): the
 * caller then sends inline. Errors of the connection itself are thrown.
 */
export async function openWindow(conn: DaemonConnection, size: number): Promise<ClientWindow | null> {
  const addon = windowAddon();
  if (addon === null) return null;
  let offered: { socket: string; offer: Uint8Array };
  try {
    offered = await conn.call(WindowOffer, { size });
  } catch (err) {
    if (conn.closed) throw err;
    return null; // UNSUPPORTED, QUOTA, or a daemon older than windows: inline it is
  }
  const { fd, buffer } = addon.createWindow(size);
  try {
    await sendDescriptor(addon, abstractPath(offered.socket), fd, offered.offer);
  } catch {
    closeSync(fd);
    addon.releaseWindow(buffer);
    // The daemon drops the offer by itself (it expires); its ATTACH would only wait for nothing.
    return null;
  }
  closeSync(fd);
  try {
    const { handle } = await conn.call(WindowAttach, { offer: offered.offer });
    return new ClientWindow(addon, handle, buffer);
  } catch (err) {
    addon.releaseWindow(buffer);
    if (conn.closed) throw err;
    return null;
  }
}

/** Connect to the daemon's window socket, send `fd` with `offer`, hang up. */
function sendDescriptor(addon: WindowAddon, path: string, fd: number, offer: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = createConnection(path);
    s.once('error', reject);
    s.once('connect', () => {
      try {
        const sockFd = (s as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
        if (typeof sockFd !== 'number' || sockFd < 0) throw new Error('the window socket has no descriptor');
        addon.sendFd(sockFd, fd, offer);
        resolve();
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      } finally {
        s.destroy();
      }
    });
  });
}
