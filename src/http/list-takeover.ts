/**
 * Where the LIST rewriter (list-method.ts) runs: only on the connections
 * that send LIST.
 *
 * node:http lets llhttp read a TCP (or TLS) socket directly, in C++, with
 * no JavaScript between the kernel and the parser. A 'data' listener on
 * the socket — which the rewriter needs, since it must see the bytes
 * first — turns that off for the connection's life: every read becomes a
 * Buffer, a stream push and an event before the parser runs (about 12 µs
 * more per request on the bench machine, bench/vault-http.ts). Most
 * connections never send LIST (encrypt, decrypt, sign…), so they keep the
 * direct path, and a connection moves to the rewriter at its first LIST:
 *
 *   direct path ─▶ llhttp refuses "LIS…" (HPE_INVALID_METHOD at the S)
 *     ─▶ clientError: the refused request's bytes are in the error
 *        (rawPacket, from bytesParsed − 2)
 *     ─▶ the socket's own parser is detached from it (its 'data' listener
 *        removed; node:http stops feeding it once a 'data' listener of
 *        ours is added); responses to requests before the LIST still go
 *        out first
 *     ─▶ a Duplex over the socket, the rewriter on every chunk, handed to
 *        the same server as a new connection ('connection' or, on HTTPS,
 *        'secureConnection', the documented way to inject one): the LIST
 *        request and everything after it are parsed there, on the same
 *        keep-alive connection
 *
 * A request line cut by TCP inside the method ("L" | "IST …") reaches the
 * refusal with the first bytes already consumed in an earlier read; the
 * parser accepted them as the start of a method and refused at an "S"
 * followed by "T ", which only LIST gives among Vault's methods, so they
 * are taken to be "LI". Anything else refused is not LIST and gets the
 * usual 400.
 */
import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import type { Server } from 'node:http';
import { ListMethodRewriter } from './list-method.js';

/** What llhttp's refusal carries (node:http's prepareError). */
interface ParseError extends NodeJS.ErrnoException {
  readonly bytesParsed?: number;
  readonly rawPacket?: Buffer;
}

/** The fields node:http keeps on a socket that this module reads. */
interface HttpSocket extends Socket {
  /** The response being written on this socket, if any (node:http). */
  _httpMessage?: { writableFinished: boolean; once(event: 'finish' | 'close', fn: () => void): unknown } | null;
}

const LIST = Buffer.from('LIST ', 'latin1');

/**
 * The refused request's bytes, from its first, when the refusal is a LIST
 * (the method's first bytes restored when an earlier read had them), else
 * null.
 */
export function refusedList(err: ParseError): Buffer | null {
  if (err.code !== 'HPE_INVALID_METHOD' || err.rawPacket === undefined || err.bytesParsed === undefined) return null;
  const raw = err.rawPacket;
  const at = err.bytesParsed; // the refused byte: the S of LIST
  if (at < 0 || at >= raw.length) return null;
  const missing = Math.max(0, 2 - at); // bytes of "LI" an earlier read had
  const candidate = Buffer.concat([LIST.subarray(0, missing), raw.subarray(at - 2 + missing)]);
  // As far as it goes (a read may end right after "LIS"), it starts "LIST ".
  const n = Math.min(LIST.length, candidate.length);
  return candidate.subarray(0, n).equals(LIST.subarray(0, n)) ? candidate : null;
}

/**
 * A socket carried through the LIST rewriter: reads are rewritten, then
 * given to the HTTP parser that node:http attaches to this Duplex; writes,
 * timeouts and closing go to the socket.
 */
export class ListingConnection extends Duplex {
  readonly socket: Socket;
  readonly #rewriter = new ListMethodRewriter();

  constructor(socket: Socket, first: Buffer) {
    super({ allowHalfOpen: true });
    this.socket = socket;
    this.#feed(first);
    socket.on('data', (c: Buffer) => this.#feed(c));
    socket.on('end', () => this.push(null));
    socket.on('timeout', () => this.emit('timeout'));
    socket.on('error', (e: Error) => this.destroy(e));
    socket.on('close', () => this.destroy());
  }

  #feed(chunk: Buffer): void {
    this.#rewriter.scan(chunk);
    if (!this.push(chunk)) this.socket.pause();
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, encoding: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.socket.write(chunk, encoding, cb);
  }

  override _writev(chunks: { chunk: Buffer; encoding: BufferEncoding }[], cb: (err?: Error | null) => void): void {
    this.socket.cork();
    for (let i = 0; i < chunks.length - 1; i++) this.socket.write(chunks[i]!.chunk, chunks[i]!.encoding);
    const last = chunks[chunks.length - 1]!;
    this.socket.write(last.chunk, last.encoding, cb);
    this.socket.uncork();
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.socket.end(cb);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.socket.destroy(err ?? undefined);
    cb(err);
  }

  /** node:http arms its keep-alive and request timeouts through this. */
  setTimeout(ms: number, cb?: () => void): this {
    this.socket.setTimeout(ms);
    if (cb !== undefined) this.once('timeout', cb);
    return this;
  }

  setNoDelay(noDelay?: boolean): this {
    this.socket.setNoDelay(noDelay);
    return this;
  }

  setKeepAlive(enable?: boolean, delay?: number): this {
    this.socket.setKeepAlive(enable, delay);
    return this;
  }

  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress;
  }
}

/**
 * Moves `socket` from node:http's direct path onto a ListingConnection
 * that starts with `first` (the refused LIST and whatever followed it),
 * served by `server` as a new connection once the responses to the
 * requests before the LIST have gone out. `register` runs first, so the
 * caller can carry its per-connection state (peer, certificate) over.
 */
export function takeOver(server: Server, socket: Socket, first: Buffer, secure: boolean, register: (c: ListingConnection) => void): ListingConnection {
  // Detach the refusing parser: without its 'data' listener it sees no more
  // bytes, and adding ours makes node:http stop feeding it from C++.
  socket.removeAllListeners('data');
  const connection = new ListingConnection(socket, first);
  register(connection);
  const start = (): void => {
    const pending = (socket as HttpSocket)._httpMessage;
    if (pending != null && !pending.writableFinished) {
      // A response to a request before the LIST is still being written: it goes out first.
      pending.once('finish', () => setImmediate(start));
      return;
    }
    // The old parser's keep-alive timer (set as its last response finished) is the new connection's to set.
    socket.setTimeout(0);
    server.emit(secure ? 'secureConnection' : 'connection', connection);
  };
  start();
  return connection;
}
