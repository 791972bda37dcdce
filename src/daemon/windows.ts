/**
 * The daemon's side of shared-memory windows (docs/protocol.md §6.16): an
 * abstract Unix socket that receives clients' memory files, and the offers
 * that say which file belongs to which connection.
 *
 *   WINDOW_OFFER ──▶ offer(): 32 random bytes, remembered with the peer (uid, pid), size and connection
 *   client ──connect @cryptod-window-…──▶ #accept (paused: libuv never reads it)
 *            └─ one message: the offer + SCM_RIGHTS fd ─▶ offer matched (constant time), the sender's
 *                                                        SO_PEERCRED uid and pid = the offer's,
 *                                                        seals and size checked (mapWindow) ─▶ arrived
 *   WINDOW_ATTACH ──▶ take(): the arrived mapping (waiting up to ARRIVAL_MS) ─▶ a SharedWindow node
 *
 * The socket is abstract (Linux): it has no file and no permissions, so the
 * offer is the capability — 256 random bits, sent only over the connection
 * that asked — and the kernel's word on the sender is checked on top: the
 * same process as the connection, so another user cannot plant memory in a
 * victim's window even with the offer. Every descriptor received is closed
 * once mapped or refused. An offer not taken within OFFER_TTL_MS is dropped
 * with its mapping. Offers and windows count against
 * maxWindowsPerConnection together.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { closeSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from '../observe/logger.js';
import type { PeerProcess, WindowBroker } from '../ops/operation.js';
import { SharedWindow } from '../ops/windows.js';
import type { Limits } from '../config/limits.js';
import { ForbiddenError, InvalidArgumentError, NotFoundError, QuotaError } from '../protocol/errors.js';
import { abstractPath, type WindowAddon } from '../protocol/window-addon.js';

/** How long an offer waits for its WINDOW_ATTACH. */
export const OFFER_TTL_MS = 10_000;
/** How long WINDOW_ATTACH (and an accepted descriptor connection) waits for the memory file. */
export const ARRIVAL_MS = 2_000;
/**
 * Connections on the window socket waiting for their message, at most. A
 * sender with no offer pending is dropped at accept, so only processes that
 * asked for a window can hold these; the cap bounds even them.
 */
export const MAX_WAITING_SENDERS = 64;
const OFFER_BYTES = 32;

interface Offer {
  readonly owner: object;
  readonly peer: PeerProcess;
  readonly size: number;
  readonly token: Buffer;
  readonly timer: NodeJS.Timeout;
  /** The mapping once it arrived, or why it was refused. */
  outcome: { window: SharedWindow } | { error: Error } | null;
  wake: (() => void) | null;
  /** WINDOW_ATTACH has it (once). */
  taken: boolean;
}

export class DaemonWindows implements WindowBroker {
  readonly #addon: WindowAddon;
  readonly #peerOf: (socket: Socket) => PeerProcess;
  readonly #log: Logger;
  readonly #name = `@cryptod-window-${process.pid}-${randomBytes(8).toString('hex')}`;
  readonly #offers = new Map<string, Offer>();
  /** Offers and windows held, by connection. */
  readonly #held = new WeakMap<object, number>();
  #server: Promise<Server> | null = null;
  #closed = false;
  /** Accepted connections whose message has not arrived yet. */
  #waiting = 0;

  constructor(addon: WindowAddon, peerOf: (socket: Socket) => PeerProcess, log: Logger) {
    this.#addon = addon;
    this.#peerOf = peerOf;
    this.#log = log;
  }

  async offer(owner: object, peer: PeerProcess, size: number, limits: Limits): Promise<{ socket: string; offer: Uint8Array }> {
    const held = this.#held.get(owner) ?? 0;
    if (held >= limits.maxWindowsPerConnection) {
      throw new QuotaError(`this connection already holds ${held} shared-memory windows or offers, the limit is ${limits.maxWindowsPerConnection} (maxWindowsPerConnection); release one`, {
        detail: { limit: limits.maxWindowsPerConnection },
      });
    }
    await this.#listen();
    const token = randomBytes(OFFER_BYTES);
    const id = token.subarray(0, 16).toString('hex');
    const timer = setTimeout(() => this.#drop(id, 'expired'), OFFER_TTL_MS).unref();
    this.#offers.set(id, { owner, peer, size, token, timer, outcome: null, wake: null, taken: false });
    this.#held.set(owner, held + 1);
    return { socket: this.#name, offer: token };
  }

  async take(owner: object, offer: Uint8Array): Promise<SharedWindow> {
    const id = Buffer.from(offer.subarray(0, 16)).toString('hex');
    const o = this.#offers.get(id);
    if (o === undefined || o.taken || o.owner !== owner || offer.length !== OFFER_BYTES || !timingSafeEqual(o.token, offer)) {
      throw new NotFoundError(`no window offer of this connection matches (an offer is taken once, within ${OFFER_TTL_MS / 1000} s of WINDOW_OFFER)`, { detail: { field: 'offer' } });
    }
    o.taken = true;
    if (o.outcome === null) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, ARRIVAL_MS);
        o.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    // Dropped meanwhile (expired, daemon closing): #drop settled it and stopped counting it.
    const dropped = this.#offers.get(id) !== o;
    this.#offers.delete(id);
    clearTimeout(o.timer);
    const outcome = o.outcome;
    if (outcome !== null && 'window' in outcome) return outcome.window;
    if (!dropped) this.#unhold(owner);
    throw outcome?.error ?? new InvalidArgumentError(`no memory file arrived for this offer within ${ARRIVAL_MS} ms; send it on ${this.#name} before WINDOW_ATTACH`, {
      detail: { field: 'offer', reason: 'not-sent' },
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const id of [...this.#offers.keys()]) this.#drop(id, 'closed');
    const server = this.#server;
    this.#server = null;
    if (server !== null) {
      const s = await server.catch(() => null);
      await new Promise<void>((resolve) => (s === null ? resolve() : s.close(() => resolve())));
    }
  }

  #listen(): Promise<Server> {
    this.#server ??= new Promise<Server>((resolve, reject) => {
      const server = createServer({ pauseOnConnect: true }, (socket) => this.#accept(socket));
      server.once('error', reject);
      server.listen(abstractPath(this.#name), () => {
        server.off('error', reject);
        server.on('error', (err) => this.#log.warn('window socket failed', { error: err.message }));
        resolve(server);
      });
    });
    const s = this.#server;
    s.catch(() => {
      if (this.#server === s) this.#server = null;
    });
    return s;
  }

  /** A connection on the window socket: read its one message without libuv (paused), then close it. */
  #accept(socket: Socket): void {
    socket.on('error', () => undefined);
    const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
    if (this.#closed || typeof fd !== 'number' || fd < 0) {
      socket.destroy();
      return;
    }
    let sender: PeerProcess;
    try {
      sender = this.#peerOf(socket);
    } catch {
      socket.destroy();
      return;
    }
    // Only a process with an offer waiting may send; anyone else is dropped before a byte is read.
    if (this.#waiting >= MAX_WAITING_SENDERS || !this.#expects(sender)) {
      socket.destroy();
      return;
    }
    this.#waiting++;
    const deadline = Date.now() + ARRIVAL_MS;
    const done = (): void => {
      this.#waiting--;
      socket.destroy();
    };
    // The message was sent right after connect, so it is nearly always there at once; the
    // socket is paused (libuv's read(2) would drop the descriptor), hence a poll otherwise,
    // 1 ms apart at first and backing off to 64 ms.
    let delay = 1;
    const poll = (): void => {
      let got: ReturnType<WindowAddon['recvFd']>;
      try {
        got = this.#addon.recvFd(fd, OFFER_BYTES);
      } catch {
        done();
        return;
      }
      if (got === null) {
        if (Date.now() < deadline && !this.#closed) setTimeout(poll, (delay = Math.min(64, delay * 2))).unref();
        else done();
        return;
      }
      done();
      this.#received(got, sender);
    };
    poll();
  }

  /** An offer of process `p` is waiting for its memory file. */
  #expects(p: PeerProcess): boolean {
    for (const o of this.#offers.values()) if (o.outcome === null && o.peer.pid === p.pid && o.peer.uid === p.uid) return true;
    return false;
  }

  #received(got: { fd: number; payload: Buffer; truncated: boolean }, sender: PeerProcess): void {
    try {
      if (got.fd < 0 || got.payload.length !== OFFER_BYTES || got.truncated) return;
      const o = this.#offers.get(got.payload.subarray(0, 16).toString('hex'));
      if (o === undefined || o.outcome !== null || !timingSafeEqual(o.token, got.payload)) return;
      if (sender.uid !== o.peer.uid || sender.pid !== o.peer.pid) {
        this.#settle(o, { error: new ForbiddenError('the memory file for this window came from another process than the connection that asked for it; send it from the same process', {
          detail: { field: 'offer', reason: 'other-process' },
        }) });
        return;
      }
      let mapped: { buffer: ArrayBuffer; size: number };
      try {
        mapped = this.#addon.mapWindow(got.fd, o.size);
      } catch (err) {
        const tooLarge = (err as { code?: unknown }).code === 'EFBIG';
        this.#settle(o, { error: new InvalidArgumentError(
          tooLarge ? `the memory file for this window is empty or larger than the ${o.size} bytes offered` : `the memory file for this window cannot be used: ${(err as Error).message}`,
          { detail: { field: 'offer', reason: tooLarge ? 'size' : 'not-sealed', expected: o.size } },
        ) });
        return;
      }
      if (mapped.size !== o.size) {
        this.#addon.releaseWindow(mapped.buffer);
        this.#settle(o, { error: new InvalidArgumentError(`the memory file for this window has ${mapped.size} bytes, the offer asked for ${o.size}`, {
          detail: { field: 'offer', reason: 'size', size: mapped.size, expected: o.size },
        }) });
        return;
      }
      const owner = o.owner;
      const window = new SharedWindow(new Uint8Array(mapped.buffer), () => {
        this.#addon.releaseWindow(mapped.buffer);
        this.#unhold(owner);
      });
      this.#settle(o, { window });
    } finally {
      if (got.fd >= 0) closeSync(got.fd);
    }
  }

  #settle(o: Offer, outcome: NonNullable<Offer['outcome']>): void {
    o.outcome = outcome;
    const wake = o.wake;
    o.wake = null;
    wake?.();
  }

  /** An offer never taken: its mapping (if any) goes, and it stops counting. */
  #drop(id: string, why: 'expired' | 'closed'): void {
    const o = this.#offers.get(id);
    if (o === undefined) return;
    this.#offers.delete(id);
    clearTimeout(o.timer);
    const outcome = o.outcome;
    if (outcome !== null && 'window' in outcome) outcome.window.dispose();
    else this.#unhold(o.owner);
    this.#settle(o, { error: new NotFoundError(`the window offer ${why === 'closed' ? 'ended with the daemon' : 'expired'}`) });
  }

  #unhold(owner: object): void {
    const n = (this.#held.get(owner) ?? 1) - 1;
    if (n <= 0) this.#held.delete(owner);
    else this.#held.set(owner, n);
  }
}
