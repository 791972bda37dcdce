/**
 * A deliberately cheap HTTP/1.1 load generator for bench/vault-http.ts: the
 * daemon and the load share two cores, so every microsecond the client
 * spends is one the daemon does not get. node:http's client (an Agent,
 * ClientRequest and IncomingMessage per request, header objects both ways)
 * costs about as much as the server it measures.
 *
 * Here each connection is a keep-alive TCP socket that writes one
 * pre-built request (head and body in one buffer) and reads the reply with
 * the least parsing that is still correct for it: the status line, the
 * Content-Length header, then that many body bytes. One request at a time
 * per connection (no pipelining), as Vault clients send them.
 */
import { connect, type Socket } from 'node:net';

const CRLFCRLF = Buffer.from('\r\n\r\n');

/** A request ready to write: `POST path` with the token and the JSON body. */
export function buildRequest(path: string, token: string, body: string): Buffer {
  const b = Buffer.from(body);
  const head = `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Vault-Token: ${token}\r\nContent-Type: application/json\r\nContent-Length: ${b.length}\r\n\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), b]);
}

export interface RawReply {
  readonly status: number;
  readonly body: Buffer;
}

class RawConnection {
  readonly #socket: Socket;
  #buf: Buffer = Buffer.alloc(0);
  #pending: { resolve(r: RawReply): void; reject(e: Error): void } | null = null;
  /** Reply being read: status and body length once the head is in, else -1. */
  #status = -1;
  #need = -1;
  #headEnd = 0;

  constructor(socket: Socket) {
    this.#socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (c: Buffer) => this.#data(c));
    const fail = (e: Error): void => {
      const p = this.#pending;
      this.#pending = null;
      p?.reject(e);
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('connection closed by the server')));
  }

  request(bytes: Buffer): Promise<RawReply> {
    if (this.#pending !== null) return Promise.reject(new Error('one request at a time per connection'));
    return new Promise((resolve, reject) => {
      this.#pending = { resolve, reject };
      this.#socket.write(bytes);
    });
  }

  #data(c: Buffer): void {
    this.#buf = this.#buf.length === 0 ? c : Buffer.concat([this.#buf, c]);
    if (this.#status === -1) {
      const end = this.#buf.indexOf(CRLFCRLF);
      if (end === -1) return;
      const head = this.#buf.toString('latin1', 0, end);
      this.#status = Number(head.slice(9, 12));
      const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      this.#need = m === null ? 0 : Number(m[1]);
      this.#headEnd = end + 4;
    }
    if (this.#buf.length < this.#headEnd + this.#need) return;
    const body = this.#buf.subarray(this.#headEnd, this.#headEnd + this.#need);
    const status = this.#status;
    this.#buf = this.#buf.subarray(this.#headEnd + this.#need);
    this.#status = -1;
    const p = this.#pending;
    this.#pending = null;
    p?.resolve({ status, body });
  }

  close(): void {
    this.#socket.destroy();
  }
}

/** `size` keep-alive connections; `request` takes a free one (or waits for one). */
export class RawHttpPool {
  readonly #free: RawConnection[];
  readonly #all: RawConnection[];
  readonly #waiting: ((c: RawConnection) => void)[] = [];

  private constructor(conns: RawConnection[]) {
    this.#all = conns;
    this.#free = [...conns];
  }

  static async open(port: number, size: number): Promise<RawHttpPool> {
    const conns = await Promise.all(
      Array.from({ length: size }, () => new Promise<RawConnection>((res, rej) => {
        const s = connect({ host: '127.0.0.1', port }, () => {
          s.off('error', rej);
          res(new RawConnection(s));
        });
        s.once('error', rej);
      })),
    );
    return new RawHttpPool(conns);
  }

  /** Sends `bytes`; resolves with the reply, rejects unless its status is 200. */
  async request(bytes: Buffer): Promise<RawReply> {
    const c = this.#free.pop() ?? (await new Promise<RawConnection>((r) => this.#waiting.push(r)));
    try {
      const reply = await c.request(bytes);
      if (reply.status !== 200) throw new Error(`HTTP ${reply.status}: ${reply.body.toString()}`);
      return reply;
    } finally {
      const next = this.#waiting.shift();
      if (next !== undefined) next(c);
      else this.#free.push(c);
    }
  }

  close(): void {
    for (const c of this.#all) c.close();
  }
}
