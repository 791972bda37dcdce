/**
 * The client end of one daemon connection: request ids, pipelining (many
 * requests in flight, replies matched by id in any order), batched writes,
 * and typed errors rebuilt from the wire.
 */
import { createConnection, isIP, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { CborFloat, decode, type CborValue } from '../protocol/cbor.js';
import { Hello, type Message, type ResultOf } from '../protocol/messages/index.js';
import { BadFrameError, ConnectionClosedError, CryptodError, errorFromWire } from '../protocol/errors.js';
import { DEFAULT_MAX_FRAME, FrameKind, FrameReader, encodeFrameHead, type FrameSink } from '../protocol/frame.js';
import { BATCH_FLUSH_BYTES, FrameBatch } from '../protocol/frame-batch.js';
import { PROTOCOL_VERSION, opName } from '../protocol/ops.js';
import type { AnySchema, Schema } from '../protocol/schema.js';
import { openWindow, WINDOW_BYTES, WINDOW_SLOT, type ClientWindow } from './window.js';

interface Pending {
  resolve(value: CborValue): void;
  reject(err: Error): void;
  /** Zero the reply frame's payload after decoding (it carries key material). */
  sensitive: boolean;
  /** Decode the reply's byte strings into ArrayBuffers of their own (RequestOptions.freshBytes). */
  fresh: boolean;
}

export interface RequestOptions {
  /** The request carries key material: its frame is zeroed once written. */
  sensitiveRequest?: boolean;
  /** The reply carries key material: byte strings are copied out and the frame zeroed. */
  sensitiveReply?: boolean;
  /**
   * @internal The reply's byte strings are decoded into fresh ArrayBuffers
   * of their own (cbor.ts `decode`'s freshBytes), which `client.subtle`
   * hands out as its results without a second copy. Not with sensitiveReply.
   */
  freshBytes?: boolean;
}

/** The HELLO reply (docs/protocol.md §4); limits a daemon of another version omits are absent. */
export type HelloReply = ResultOf<typeof Hello>;

/** TLS material for a `tls://` daemon (PEM contents, as node:tls takes them). */
export interface TlsClientOptions {
  /** This client's certificate (its subject CN becomes the client name). */
  cert: string | Buffer;
  /** Its private key. */
  key: string | Buffer;
  /** CA certificate(s) the daemon's certificate must chain to. */
  ca: string | Buffer | Array<string | Buffer>;
  /** Name to check the daemon's certificate against; default the host. */
  servername?: string;
}

/** Where the daemon listens: a Unix socket path, or a mutual-TLS TCP address. */
export type DaemonTarget = string | { host: string; port: number; tls: TlsClientOptions };

export class DaemonConnection implements FrameSink {
  readonly #socket: Socket;
  readonly #reader: FrameReader;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #closed: Error | null = null;
  /**
   * Requests issued in this tick, encoded one after another into one buffer
   * (protocol/frame-batch.ts) and written with one socket write on
   * process.nextTick (at once when BATCH_FLUSH_BYTES are queued): a lone
   * request waits no longer than it did for its own write, and 256 requests
   * issued together cost one write instead of a writev of 256 buffers.
   */
  readonly #batch = new FrameBatch();
  #flushQueued = false;
  #hello: HelloReply | null = null;
  #drained: (() => void) | null = null;
  /** The shared-memory window (window.ts): null until asked for; resolves to null where there is none. */
  #window: Promise<ClientWindow | null> | null;

  /** Whether `client.subtle` carries a tick's small digests, signatures and verifications as batch frames (coalesce.ts). */
  readonly coalesce: boolean;
  /** Called when a tick's requests are about to be written: the coalescer adds its groups (coalesce.ts). */
  beforeTickFlush: (() => void) | null = null;

  private constructor(socket: Socket, windows: boolean, coalesce: boolean) {
    this.#socket = socket;
    this.coalesce = coalesce;
    this.#window = windows ? null : Promise.resolve(null);
    // Replies are bounded by the daemon's max frame; accept up to the protocol maximum.
    this.#reader = new FrameReader(64 * 1024 * 1024, this);
    socket.on('data', (chunk: Buffer) => this.#reader.push(chunk));
    socket.on('error', (err) => this.#fail(new ConnectionClosedError(`connection to the daemon failed: ${err.message}`, { cause: err })));
    socket.on('close', () => this.#fail(new ConnectionClosedError('the daemon closed the connection')));
  }

  static async open(target: DaemonTarget, clientName: string, token?: string, options: { windows?: boolean; coalesce?: boolean } = {}): Promise<DaemonConnection> {
    const socket = await (typeof target === 'string' ? openUnix(target) : openTls(target));
    socket.setNoDelay?.(true);
    // Windows exist only beside a Unix socket: over TCP the daemon is perhaps on another host.
    const conn = new DaemonConnection(socket, typeof target === 'string' && options.windows !== false, options.coalesce !== false);
    try {
      // A token is a secret: its frame is zeroed once written.
      conn.#hello = await conn.call(Hello, { version: PROTOCOL_VERSION, client: clientName, token }, { sensitiveRequest: token !== undefined }, 'the HELLO reply');
    } catch (err) {
      socket.destroy();
      throw err;
    }
    return conn;
  }

  get hello(): HelloReply {
    if (this.#hello === null) throw new ConnectionClosedError('handshake not complete');
    return this.#hello;
  }

  get closed(): boolean {
    return this.#closed !== null;
  }

  /**
   * This connection's shared-memory window, opened on first use; null when
   * it cannot have one (then every byte goes inline). Shared by every
   * context of the connection.
   */
  window(): Promise<ClientWindow | null> {
    this.#window ??= (async () => {
      const max = this.hello.limits.maxWindowBytes ?? 0;
      const size = Math.min(WINDOW_BYTES, max - (max % WINDOW_SLOT));
      if (size < WINDOW_SLOT) return null;
      const w = await openWindow(this, size);
      if (w !== null && this.#closed !== null) w.release();
      return w !== null && this.#closed === null ? w : null;
    })().catch(() => null);
    return this.#window;
  }

  get inflight(): number {
    return this.#pending.size;
  }

  /**
   * Send `message`'s request. `args` has the type the declaration gives a
   * sender (src/protocol/messages/), so a misspelt or missing field fails to
   * compile; it is not checked here at run time, the daemon checks it on
   * arrival. The reply is returned as decoded.
   */
  send<I extends CborValue>(message: Message<Schema<unknown, I, boolean>, AnySchema>, args: NoInfer<I>, options?: RequestOptions): Promise<CborValue> {
    return this.request(message.op, args, options);
  }

  /** {@link send}, then check the reply against the declared result; `what` names it in errors. */
  async call<I extends CborValue, R>(
    message: Message<Schema<unknown, I, boolean>, Schema<R, unknown, boolean>>,
    args: NoInfer<I>,
    options?: RequestOptions,
    what = 'the reply',
  ): Promise<R> {
    return message.result.parse(await this.request(message.op, args, options), what);
  }

  /** A raw request: `client.request` for tools and tests; the client's own requests go through {@link send}. */
  request(op: number, payload?: CborValue, options?: RequestOptions): Promise<CborValue> {
    if (this.#closed !== null) return Promise.reject(this.#closed);
    const id = this.#takeId();
    const sensitive = options?.sensitiveRequest === true;
    // Encoded in place after this tick's other requests; a sensitive one has the whole batch zeroed once written.
    const length = this.#batch.add(FrameKind.REQUEST, id, op, payload, sensitive);
    const max = this.#hello?.limits.maxFrame ?? DEFAULT_MAX_FRAME;
    if (length > max) {
      this.#batch.undo();
      return Promise.reject(
        errorFromWire('CRYPTOD_ERR_FRAME_TOO_LARGE', `${opName(op)} request of ${length} bytes exceeds the daemon's maximum frame size of ${max} bytes; split the input (use a context or stream)`, { maxFrame: max }),
      );
    }
    return new Promise<CborValue>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, sensitive: options?.sensitiveReply === true, fresh: options?.freshBytes === true });
      if (this.#batch.size >= BATCH_FLUSH_BYTES) this.#flush();
      else this.#queueFlush();
    });
  }

  /**
   * A request whose payload is `fields` plus `tailKey` → `tail`, written
   * without copying `tail` into a frame (encodeFrameHead): `written`
   * resolves once the socket handed `tail` to the kernel — the caller must
   * not modify it before — and `reply` with the daemon's answer. Not for
   * key material (the bytes are the caller's, this side cannot zero them).
   */
  requestWithTail(op: number, fields: { readonly [k: string]: CborValue }, tailKey: string, tail: Uint8Array): { reply: Promise<CborValue>; written: Promise<void> } {
    if (this.#closed !== null) return { reply: Promise.reject(this.#closed), written: Promise.resolve() };
    const id = this.#takeId();
    const head = encodeFrameHead(FrameKind.REQUEST, id, op, fields, tailKey, tail.length);
    const max = this.#hello?.limits.maxFrame ?? DEFAULT_MAX_FRAME;
    if (head.length - 4 + tail.length > max) {
      const err = errorFromWire('CRYPTOD_ERR_FRAME_TOO_LARGE', `${opName(op)} request of ${head.length - 4 + tail.length} bytes exceeds the daemon's maximum frame size of ${max} bytes; split the input`, { maxFrame: max });
      return { reply: Promise.reject(err), written: Promise.resolve() };
    }
    let written!: () => void;
    const writtenPromise = new Promise<void>((resolve) => (written = resolve));
    const reply = new Promise<CborValue>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, sensitive: false, fresh: false });
      // The head goes out now, after the requests queued before it, so that the tail follows it directly.
      this.#batch.addBytes(head);
      this.#flush();
      // Called once flushed, or with an error when the socket is destroyed: the bytes are free either way.
      this.#socket.write(tail, () => written());
    });
    return { reply, written: writtenPromise };
  }

  #takeId(): number {
    let id = this.#nextId;
    while (this.#pending.has(id)) id = (id % 0xffffffff) + 1;
    this.#nextId = (id % 0xffffffff) + 1;
    return id;
  }

  /** Wait for every pending request, then end the connection. */
  async close(): Promise<void> {
    if (this.#closed === null && this.#pending.size > 0) {
      await new Promise<void>((res) => (this.#drained = res));
    }
    if (this.#closed === null) {
      this.#closed = new ConnectionClosedError('the client closed the connection');
      await new Promise<void>((res) => {
        this.#socket.once('close', () => res());
        this.#socket.end();
      });
    }
  }

  /** Drop the connection at once; pending requests fail. */
  destroy(): void {
    this.#socket.destroy();
  }

  // ── FrameSink ──────────────────────────────────────────────────────────
  frame(kind: number, id: number, _op: number, buf: Buffer, start: number, end: number): void {
    const p = this.#pending.get(id);
    if (p === undefined) {
      if (id === 0 && kind === FrameKind.ERROR) {
        // An error about a frame the daemon could not attribute: fail everything.
        this.#fail(this.#decodeError(buf, start, end));
        this.#socket.destroy();
      }
      return;
    }
    this.#pending.delete(id);
    try {
      if (kind === FrameKind.RESPONSE) {
        let value = start === end ? undefined : decode(buf, start, end, 'number', p.fresh && !p.sensitive);
        if (p.sensitive) {
          value = copyBytes(value);
          buf.fill(0, start, end);
        }
        p.resolve(value);
      } else if (kind === FrameKind.ERROR) {
        p.reject(this.#decodeError(buf, start, end));
      } else {
        p.reject(new BadFrameError(`unexpected frame kind ${kind} from the daemon`));
      }
    } catch (err) {
      p.reject(err instanceof Error ? err : new BadFrameError(String(err)));
    }
    if (this.#pending.size === 0) this.#drained?.();
  }

  oversize(_kind: number, id: number): void {
    this.#pending.get(id)?.reject(new BadFrameError('the daemon sent a reply larger than the client accepts'));
    this.#pending.delete(id);
  }

  malformed(): void {
    this.#fail(new BadFrameError('the daemon sent a malformed frame'));
    this.#socket.destroy();
  }

  #decodeError(buf: Buffer, start: number, end: number): CryptodError {
    const v = start === end ? undefined : decode(buf, start, end);
    if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array || v instanceof CborFloat) {
      return new BadFrameError('the daemon sent an error frame without a code');
    }
    return errorFromWire(v.code, v.message, v.detail);
  }

  #queueFlush(): void {
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    process.nextTick(this.#flushTick);
  }

  readonly #flushTick = (): void => {
    if (!this.#flushQueued) return;
    // The tick's coalesced calls join this write (coalesce.ts); not in #flush itself, which also runs between a head and its tail.
    this.beforeTickFlush?.();
    this.#flush();
  };

  /** Write the requests queued so far (FrameBatch), now. */
  #flush(): void {
    this.#flushQueued = false;
    this.#batch.flush(this.#writeBatch);
  }

  /** `done` zeroes (when sensitive) and recycles the batch buffer: once written, or at once when the socket is gone. */
  readonly #writeBatch = (bytes: Buffer, done: () => void): void => {
    if (this.#socket.destroyed) done();
    else this.#socket.write(bytes, done);
  };

  #fail(err: Error): void {
    if (this.#closed === null) this.#closed = err;
    // The daemon dropped its side with the connection; this side unmaps once the window has opened.
    void this.#window?.then((w) => w?.release());
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) p.reject(err);
    this.#drained?.();
  }
}

function openUnix(socketPath: string): Promise<Socket> {
  return new Promise<Socket>((res, rej) => {
    const s = createConnection(socketPath);
    s.once('connect', () => {
      s.removeAllListeners('error');
      res(s);
    });
    s.once('error', (err: NodeJS.ErrnoException) => {
      rej(
        new ConnectionClosedError(
          err.code === 'ENOENT' || err.code === 'ECONNREFUSED'
            ? `no cryptod is listening on ${socketPath} (${err.code}); start one with \`cryptod serve\` or set CRYPTOD_SOCKET`
            : `cannot connect to cryptod at ${socketPath}: ${err.message}`,
          { cause: err, detail: { socket: socketPath } },
        ),
      );
    });
  });
}

/**
 * Mutual TLS (docs/protocol.md §1): the daemon's certificate is checked
 * against `ca` and the host name; ours goes to the daemon. With TLS 1.3 the
 * daemon checks our certificate after our side of the handshake is done, so
 * a refusal shows up as the HELLO failing with ConnectionClosedError.
 */
function openTls(target: { host: string; port: number; tls: TlsClientOptions }): Promise<Socket> {
  const where = `tls://${target.host}:${target.port}`;
  return new Promise<Socket>((res, rej) => {
    const { servername, ...material } = target.tls;
    // SNI carries host names only (RFC 6066 §3); an IP is still checked against the certificate's SANs.
    const sni = servername ?? (isIP(target.host) === 0 ? target.host : undefined);
    const s = tlsConnect({ host: target.host, port: target.port, ...material, minVersion: 'TLSv1.2', ...(sni === undefined ? {} : { servername: sni }) });
    s.once('secureConnect', () => {
      s.removeAllListeners('error');
      res(s);
    });
    s.once('error', (err: NodeJS.ErrnoException) => {
      rej(new ConnectionClosedError(`cannot connect to cryptod at ${where}: ${err.message}`, { cause: err, detail: { url: where } }));
    });
  });
}

/** Deep-copy byte strings out of a frame buffer that is about to be zeroed. */
function copyBytes(v: CborValue): CborValue {
  if (v instanceof Uint8Array) {
    const out = Buffer.alloc(v.length); // never the shared pool
    out.set(v);
    return out;
  }
  if (Array.isArray(v)) return v.map(copyBytes);
  if (v !== null && typeof v === 'object') {
    const out: { [k: string]: CborValue } = {};
    for (const [k, item] of Object.entries(v)) out[k] = copyBytes(item);
    return out;
  }
  return v;
}
