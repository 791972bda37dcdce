/**
 * Multi-part hash and HMAC on the client: `client.createHash(algorithm)` and
 * `client.createHmac(key)`, backed by an exclusive context node in the
 * daemon (HASH_CREATE / HMAC_CREATE, CONTEXT_UPDATE, CONTEXT_FINAL).
 *
 * Updates stream: an input is sent as updates of at most INLINE_UPDATE
 * (256 KiB), which the daemon finishes before it reads the next frame, so
 * they are written one after the other without waiting for replies — the
 * daemon hashes one while the next is on its way (docs/protocol.md §6.8).
 * What is sent and not yet answered is bounded by a window (UPDATE_WINDOW
 * bytes, and below the daemon's in-flight limits from HELLO); the input's
 * bytes go to the socket as they are, not copied into frames, and `update()`
 * resolves once the socket took them and the window has room, so the caller
 * may reuse its buffer then. On a Unix socket an input of WINDOW_MIN_UPDATE
 * bytes or more goes through the connection's shared-memory window instead
 * (window.ts, protocol.md §6.16): copied into free slots, and only the
 * slots' places are sent; the daemon hashes them where they are. `digest()` waits for every update's
 * reply before it asks for the digest. If any request fails the context is
 * broken — a digest over part of the data would be wrong — and every later
 * call rejects with that error (an update that already resolved may thus
 * report its failure through the next call).
 *
 * The daemon handle is created lazily, by the first `update()` or
 * `digest()`: the daemon chooses the handle, so the first update has to wait
 * one round trip for it whether creation starts now or then; creating it
 * lazily means an object that is never used costs the daemon nothing (no node
 * to leak, no creation error that nobody awaits), and `createHash` can stay
 * synchronous like node:crypto's. The price is that a bad algorithm or an
 * unusable key is reported by the first `update()` or `digest()`, not here.
 *
 * @example
 * ```ts
 * await using h = client.createHmac(key);     // an HMAC key with usage 'sign'
 * for await (const chunk of file) await h.update(chunk);
 * const tag = await h.digest();
 * ```
 */
import { ConnectionClosedError, InvalidArgumentError, NotFoundError } from '../protocol/errors.js';
import { ContextFinal, ContextUpdate, INLINE_UPDATE, Release } from '../protocol/messages/index.js';
import type { DaemonConnection } from './connection.js';
import { WINDOW_MIN_UPDATE, type ClientWindow } from './window.js';
import { bytesOf, toArrayBuffer } from './subtle.js';

/**
 * Bytes of a request frame that are not `data`: the frame header after its
 * length field (7) and the CBOR map `{ handle: <22 chars>, data: <bytes> }`
 * (≤ 42), rounded up.
 */
const REQUEST_OVERHEAD = 64;

/** Largest `data` that fits one request frame to this daemon. */
export function maxDataPerRequest(conn: DaemonConnection): number {
  return conn.hello.limits.maxFrame - REQUEST_OVERHEAD;
}

/**
 * Update bytes sent and not yet answered, at most: 32 updates of 256 KiB keep
 * the daemon busy across the socket's round trip without holding much memory.
 */
export const UPDATE_WINDOW = 8 * 1024 * 1024;

export class DigestContext implements AsyncDisposable {
  readonly #conn: DaemonConnection;
  readonly #create: () => Promise<{ handle: string }>;
  readonly #what: string;
  #handle: Promise<string> | null = null;
  /** Settles when every request queued so far has settled. */
  #tail: Promise<unknown> = Promise.resolve();
  #error: Error | null = null;
  #state: 'open' | 'finalizing' | 'done' | 'released' = 'open';
  /** Updates sent and not yet answered: their count and bytes (the window). */
  #unacked = 0;
  #unackedBytes = 0;
  /** Wakes the sender waiting for room in the window, or digest() waiting for none unanswered. */
  #wake: (() => void) | null = null;

  /**
   * @internal use `client.createHash` / `client.createHmac`; `create` sends
   * the creating request (HASH_CREATE or HMAC_CREATE) when first needed.
   */
  constructor(conn: DaemonConnection, create: () => Promise<{ handle: string }>, what: string) {
    this.#conn = conn;
    this.#create = create;
    this.#what = what;
  }

  /**
   * Add `data` to the digest. The bytes are read when the request is sent,
   * which can be after this returns if earlier calls are still running: do
   * not modify `data` until the returned promise settles.
   */
  update(data: ArrayBuffer | ArrayBufferView): Promise<void> {
    const view = bytesOf(data, 'data');
    const closed = this.#refuse();
    if (closed !== null) return Promise.reject(closed);
    return this.#enqueue(async (handle) => {
      const limits = this.#conn.hello.limits;
      const maxCount = Math.max(1, (limits.maxInflightPerConnection ?? 64) >> 1);
      const window = view.length >= WINDOW_MIN_UPDATE ? await this.#conn.window() : null;
      if (window !== null && (await this.#throughWindow(handle, window, view, maxCount))) return;
      const piece = Math.min(INLINE_UPDATE, maxDataPerRequest(this.#conn));
      const maxBytes = Math.min(UPDATE_WINDOW, limits.maxInflightBytesPerConnection ?? UPDATE_WINDOW);
      // Even an empty update goes to the daemon: it checks the handle.
      const written: Promise<void>[] = [];
      let off = 0;
      do {
        const end = Math.min(off + piece, view.length);
        while (this.#unacked > 0 && (this.#unacked >= maxCount || this.#unackedBytes + (end - off) > maxBytes)) await this.#settled();
        if (this.#error !== null) throw this.#error;
        written.push(this.#send(handle, view.subarray(off, end)));
        off = end;
      } while (off < view.length);
      // The caller may reuse its buffer once the socket took the bytes.
      await Promise.all(written);
    });
  }

  /** The digest (or HMAC tag) of everything updated. The context is gone afterwards. */
  digest(): Promise<ArrayBuffer> {
    const closed = this.#refuse();
    if (closed !== null) return Promise.reject(closed);
    this.#state = 'finalizing';
    return this.#enqueue(async (handle) => {
      while (this.#unacked > 0) await this.#settled();
      if (this.#error !== null) throw this.#error;
      const d = await this.#conn.call(ContextFinal, { handle });
      this.#state = 'done';
      return toArrayBuffer(d);
    });
  }

  /**
   * Delete the context in the daemon now (requests still running on it fail
   * with CRYPTOD_ERR_NOT_FOUND). Idempotent; nothing to do after `digest()`.
   */
  async release(): Promise<void> {
    if (this.#state === 'released' || this.#state === 'done') return;
    this.#state = 'released';
    const handle = this.#handle;
    if (handle === null || this.#conn.closed) return;
    let id: string;
    try {
      id = await handle;
    } catch {
      return; // never created
    }
    try {
      await this.#conn.send(Release, { handle: id });
    } catch (err) {
      // Already gone: finalized concurrently, or released with its key.
      if (!(err instanceof NotFoundError)) throw err;
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }

  #refuse(): Error | null {
    if (this.#error !== null) return this.#error;
    if (this.#state === 'open') return null;
    return new NotFoundError(
      this.#state === 'released' ? `the ${this.#what} context was released` : `digest() was already called on this ${this.#what} context; create a new one`,
    );
  }

  #enqueue<T>(run: (handle: string) => Promise<T>): Promise<T> {
    const result = this.#tail.then(async () => {
      if (this.#error !== null) throw this.#error;
      if (this.#state === 'released') throw new NotFoundError(`the ${this.#what} context was released`);
      try {
        return await run(await this.#ensureHandle());
      } catch (err) {
        this.#error ??= err instanceof Error ? err : new InvalidArgumentError(String(err));
        throw err;
      }
    });
    this.#tail = result.catch(() => undefined);
    return result;
  }

  /**
   * Send one update without waiting for its reply; `data` goes to the socket
   * as it is (no copy into a frame), the returned promise says when the
   * socket took it. The reply only counts down the window, or breaks the context.
   */
  #send(handle: string, data: Uint8Array): Promise<void> {
    // ContextUpdate's arguments, `{ handle, data }`, with `data` written after the head.
    const { reply, written } = this.#conn.requestWithTail(ContextUpdate.op, { handle }, 'data', data);
    this.#track(reply, data.length);
    return written;
  }

  /** Count an update sent and not yet answered (`bytes` of them in the socket); its reply counts it down, or breaks the context. */
  #track(reply: Promise<unknown>, bytes: number, answered?: () => void): void {
    this.#unacked++;
    this.#unackedBytes += bytes;
    const done = (): void => {
      this.#unacked--;
      this.#unackedBytes -= bytes;
      answered?.();
      const wake = this.#wake;
      this.#wake = null;
      wake?.();
    };
    reply.then(done, (err: unknown) => {
      this.#error ??= err instanceof Error ? err : new InvalidArgumentError(String(err));
      done();
    });
  }

  /**
   * Send `view` as updates that name regions of the connection's
   * shared-memory window: each piece is copied into a free slot (so the
   * caller may reuse `view` once this returns) and the slot is given back
   * when its update is answered. Pieces of a slot (INLINE_REGION) at most,
   * which the daemon finishes before it reads the next frame, so they
   * pipeline as inline updates do. False when the window went away
   * before the first piece (the connection closed): the caller goes inline,
   * and meets the closed connection there.
   */
  async #throughWindow(handle: string, window: ClientWindow, view: Uint8Array, maxCount: number): Promise<boolean> {
    let off = 0;
    while (off < view.length) {
      while (this.#unacked >= maxCount) await this.#settled();
      if (this.#error !== null) throw this.#error;
      const slot = await window.take();
      if (slot === null) {
        if (off === 0) return false;
        throw new ConnectionClosedError('the connection closed during the update');
      }
      const n = Math.min(window.slotSize, view.length - off);
      window.bytes.set(view.subarray(off, off + n), slot);
      off += n;
      this.#track(this.#conn.send(ContextUpdate, { handle, window: window.handle, offset: slot, length: n }), 0, () => window.give(slot));
    }
    return true;
  }

  /** Resolves when the next unanswered update settles. */
  #settled(): Promise<void> {
    return new Promise((resolve) => (this.#wake = resolve));
  }

  #ensureHandle(): Promise<string> {
    this.#handle ??= this.#create().then((r) => r.handle);
    return this.#handle;
  }
}
