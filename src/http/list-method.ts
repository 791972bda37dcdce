/**
 * The `LIST` method, which Vault clients send (hvac `list_keys`, node-vault
 * `list()`) and Node's HTTP parser (llhttp) refuses before any handler runs.
 *
 * The bytes are rewritten before the parser sees them: at the start of each
 * request `LIST` becomes `LINK`, a method llhttp knows, of the same length
 * (nothing shifts) and sharing the prefix `LI` (so a request line split after
 * `L` or `LI` by TCP still parses). The router reads LINK as LIST; a real
 * LINK request is therefore served as LIST, which no Vault endpoint minds.
 *
 * Finding "the start of each request" on a keep-alive connection means
 * following the message framing, as the parser will (RFC 9112 §6):
 *
 *   start ─▶ method bytes (rewritten) ─▶ head, to the empty line
 *     ─▶ body: Content-Length bytes │ chunked: size line, data, CRLF … 0, trailers
 *     ─▶ start (the next request)
 *
 * The scan rewrites in place, in the chunk the socket read, so it must run
 * before the parser's own 'data' listener (prependListener). Anything it
 * cannot follow (a malformed head) the parser refuses itself and closes the
 * connection, so a confused scan cannot smuggle a request past the parser:
 * at worst it leaves a LIST unrewritten and the client gets a 400.
 */

const CR = 0x0d;
const LF = 0x0a;
/** Longest head the scan keeps to read the framing headers from; llhttp's own limit (16 KiB) refuses longer ones anyway. */
const MAX_HEAD = 16 * 1024;

type State = 'start' | 'method' | 'head' | 'body' | 'chunk-size' | 'chunk-data' | 'chunk-crlf' | 'trailers' | 'opaque';

export class ListMethodRewriter {
  #state: State = 'start';
  /** Bytes of the method seen so far (state 'method'). */
  #methodAt = 0;
  /** Whether this request's method started "LI" (and so may be LIST). */
  #maybeList = false;
  /** The framing headers of the head being read. */
  #contentLength: number | null = null;
  #chunked = false;
  #headLength = 0;
  /** Bytes of the current head line so far, and its text when it may be a framing header (c… or t…). */
  #lineLength = 0;
  #line = '';
  /** Whether the last head byte before the current position was CR (a line may end CR | LF across chunks). */
  #lastCR = false;
  /** Body or chunk bytes still to skip. */
  #remaining = 0;
  /** How many trailer lines since the last chunk (an empty one ends the message). */
  #trailerLineEmpty = true;

  /** Rewrite `chunk` in place; call for every chunk, in order. */
  scan(chunk: Buffer): void {
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      switch (this.#state) {
        case 'start': {
          // Blank lines before a request line are tolerated (RFC 9112 §2.2).
          const c = chunk[i]!;
          if (c === CR || c === LF) {
            i++;
            break;
          }
          this.#state = 'method';
          this.#methodAt = 0;
          this.#maybeList = false;
          break;
        }
        case 'method': {
          const c = chunk[i]!;
          const at = this.#methodAt++;
          if (at === 0) this.#maybeList = c === 0x4c; // L
          else if (at === 1) this.#maybeList &&= c === 0x49; // I
          else if (at === 2 && this.#maybeList) {
            if (c === 0x53) chunk[i] = 0x4e; // S → N
            else this.#maybeList = false;
          } else if (at === 3 && this.#maybeList) {
            if (c === 0x54) chunk[i] = 0x4b; // T → K
            this.#maybeList = false;
          }
          if (c === 0x20) {
            this.#state = 'head';
            this.#contentLength = null;
            this.#chunked = false;
            this.#headLength = 0;
            this.#lineLength = -1; // the rest of the request line: never a header
            this.#line = '';
          }
          i++;
          break;
        }
        case 'head': {
          // Only lines starting c/C or t/T can be Content-Length or
          // Transfer-Encoding: the others (the token among them) are never
          // copied out of the buffer.
          const lf = chunk.indexOf(LF, i);
          const end = lf === -1 ? n : lf;
          if (this.#lineLength === 0 && end > i) {
            const first = chunk[i]! | 0x20;
            if (first === 0x63 || first === 0x74) this.#line = '\0';
          }
          if (this.#line !== '' && this.#line.length < 256) this.#line += chunk.toString('latin1', i, end);
          if (this.#lineLength >= 0) this.#lineLength += end - i;
          if (end > i) this.#lastCR = chunk[end - 1] === CR;
          this.#headLength += end - i + (lf === -1 ? 0 : 1);
          if (lf === -1) {
            i = n;
            break;
          }
          i = lf + 1;
          const length = this.#lineLength;
          const line = this.#line;
          this.#lineLength = 0;
          this.#line = '';
          if (line !== '') this.#header(line.slice(1));
          // An empty line (or a lone CR) ends the head.
          if (length === 0 || (length === 1 && this.#lastCR)) this.#endOfHead();
          break;
        }
        case 'body': {
          const take = Math.min(this.#remaining, n - i);
          i += take;
          this.#remaining -= take;
          if (this.#remaining === 0) this.#state = 'start';
          break;
        }
        case 'chunk-size': {
          const lf = chunk.indexOf(LF, i);
          const end = lf === -1 ? n : lf;
          if (this.#line.length < 1024) this.#line += chunk.toString('latin1', i, end);
          if (lf === -1) {
            i = n;
            break;
          }
          i = lf + 1;
          const size = parseInt(this.#line.split(';')[0]!.trim(), 16);
          this.#line = '';
          if (!Number.isSafeInteger(size) || size < 0) {
            this.#state = 'opaque';
            break;
          }
          if (size === 0) {
            this.#state = 'trailers';
            this.#trailerLineEmpty = true;
          } else {
            this.#remaining = size;
            this.#state = 'chunk-data';
          }
          break;
        }
        case 'chunk-data': {
          const take = Math.min(this.#remaining, n - i);
          i += take;
          this.#remaining -= take;
          if (this.#remaining === 0) {
            this.#state = 'chunk-crlf';
            this.#remaining = 2;
          }
          break;
        }
        case 'chunk-crlf': {
          // CRLF after the chunk's data (a bare LF is tolerated).
          const c = chunk[i++]!;
          if (c === LF) this.#state = 'chunk-size';
          break;
        }
        case 'trailers': {
          const c = chunk[i++]!;
          if (c === LF) {
            if (this.#trailerLineEmpty) this.#state = 'start';
            this.#trailerLineEmpty = true;
          } else if (c !== CR) {
            this.#trailerLineEmpty = false;
          }
          break;
        }
        case 'opaque':
          // Lost the framing (the parser refuses such a message and closes): rewrite nothing more.
          return;
      }
    }
  }

  #header(line: string): void {
    const colon = line.indexOf(':');
    if (colon === -1) return;
    const name = line.slice(0, colon).trim().toLowerCase();
    if (name === 'content-length') this.#contentLength = Number(line.slice(colon + 1).trim());
    else if (name === 'transfer-encoding' && /\bchunked\b/i.test(line.slice(colon + 1))) this.#chunked = true;
  }

  #endOfHead(): void {
    const length = this.#contentLength ?? 0;
    const chunked = this.#chunked;
    if (this.#headLength > MAX_HEAD || (!chunked && !(Number.isSafeInteger(length) && length >= 0))) {
      this.#state = 'opaque';
      return;
    }
    if (chunked) {
      this.#state = 'chunk-size';
      this.#line = '';
    } else if (length > 0) {
      this.#state = 'body';
      this.#remaining = length;
    } else {
      this.#state = 'start';
    }
  }
}
