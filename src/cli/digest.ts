/**
 * `cryptod digest --algorithm ALG [FILE]`: hash a file (or stdin) through the
 * daemon and print the lowercase hex digest.
 *
 * Input of any size streams through one multi-part hash context
 * (HASH_CREATE, CONTEXT_UPDATE…, CONTEXT_FINAL). The context writes its
 * updates without waiting for their replies (src/client/contexts.ts), so the
 * daemon hashes one piece while the file's next chunk is read and sent; on
 * the Unix socket the pieces go through the connection's shared-memory
 * window (docs/protocol.md §6.16) and the daemon hashes them in place. A
 * file is read with read(2) into a few buffers used over and over; stdin
 * through a stream, coalesced into the same size.
 */
import { open, type FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { Client } from '../client/client.js';
import { UsageError, parseCommand, stringOpt, wantsHelp, type OptionSpec } from './args.js';
import { SOCKET_OPTION, connectCli } from './connect.js';
import { EXIT_OK, LocalFailure } from './output.js';

export const DIGEST_HELP = `Usage: cryptod digest --algorithm ALG [FILE]

Hash FILE (or stdin when FILE is absent or "-") through the daemon and print
the digest as lowercase hex followed by a newline. Input of any size streams
with bounded memory.

Options:
  -a, --algorithm ALG  SHA-1, SHA-256, SHA-384 or SHA-512 (required)
  -s, --socket PATH    daemon socket (default: $CRYPTOD_SOCKET, else
                       $XDG_RUNTIME_DIR/cryptod/cryptod.sock, else
                       /tmp/cryptod-$UID/cryptod.sock)
  -h, --help           show this help
`;

const OPTIONS: OptionSpec = {
  ...SOCKET_OPTION,
  algorithm: { type: 'string', short: 'a' },
};

/** Largest chunk per CONTEXT_UPDATE; 1 MiB amortises the round trip and fits the default 4 MiB frame. */
const CHUNK = 1024 * 1024;
/**
 * Chunks handed to the context and not yet taken by the socket, at most: the
 * file is read while earlier chunks are still being written, instead of
 * reading and writing in turn (the context's own window bounds what the
 * daemon has not answered).
 */
const CHUNKS_AHEAD = 4;
/** Room for the frame header and the CBOR map around the data. */
const FRAME_OVERHEAD = 256;

export async function digest(argv: readonly string[]): Promise<number> {
  if (wantsHelp(argv)) {
    process.stdout.write(DIGEST_HELP);
    return EXIT_OK;
  }
  const p = parseCommand('digest', argv, OPTIONS, 1);
  const algorithm = stringOpt(p, 'algorithm');
  if (algorithm === undefined) throw new UsageError("missing required option '--algorithm' (for example --algorithm SHA-256)", 'digest');
  const file = p.positionals[0];
  const name = file === undefined || file === '-' ? 'stdin' : file;

  // Open the input before connecting, so a missing file is reported as such
  // whether or not a daemon is running.
  const input = await openInput(file);
  try {
    const client = await connectCli(stringOpt(p, 'socket'));
    try {
      const hash = input instanceof FileReader ? await fileDigest(client, algorithm, input, name) : await streamDigest(client, algorithm, input, name);
      process.stdout.write(`${Buffer.from(hash).toString('hex')}\n`);
    } finally {
      await client.close();
    }
  } finally {
    if (input instanceof FileReader) await input.handle.close();
    else input.destroy();
  }
  return EXIT_OK;
}

/** A file opened by name: read with read(2) into buffers of our own, not through a stream. */
class FileReader {
  constructor(readonly handle: FileHandle) {}
}

async function openInput(file: string | undefined): Promise<Readable | FileReader> {
  if (file === undefined || file === '-') return process.stdin;
  try {
    return new FileReader(await open(file, 'r'));
  } catch (err) {
    throw new LocalFailure(`cannot open ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * One hash context fed by `produce`, which hands each chunk (at most
 * `chunkSize` bytes) to `send`. update() resolves once the socket or the
 * shared-memory window took the bytes; `send` leaves at most CHUNKS_AHEAD − 1
 * of them pending when it returns, so a producer rotating through
 * CHUNKS_AHEAD buffers may refill the one it sent CHUNKS_AHEAD sends ago. A
 * failure is reported by the await in `send` or by digest(); CONTEXT_FINAL
 * frees the context, and on any failure it is released here (closing the
 * connection would too, but an explicit release says so).
 */
async function digestThrough(
  client: Client,
  algorithm: string,
  produce: (send: (data: Buffer) => Promise<void>, chunkSize: number) => Promise<void>,
): Promise<ArrayBuffer> {
  const chunkSize = Math.min(CHUNK, client.info.limits.maxFrame - FRAME_OVERHEAD);
  // The context is created by the first update (or digest): an unknown
  // algorithm is reported there, as a daemon error with its code.
  const hash = client.createHash(algorithm);
  let finished = false;
  try {
    const ahead: Promise<void>[] = [];
    await produce(async (data) => {
      const sent = hash.update(data);
      sent.catch(() => undefined); // reported by the await below, or by digest(); never unhandled meanwhile
      ahead.push(sent);
      if (ahead.length >= CHUNKS_AHEAD) await ahead.shift();
    }, chunkSize);
    await Promise.all(ahead);
    const result = await hash.digest();
    finished = true;
    return result;
  } finally {
    if (!finished) await hash.release().catch(() => undefined);
  }
}

/**
 * A file read with read(2) straight into CHUNKS_AHEAD buffers used over and
 * over: a read stream allocates a fresh buffer per chunk, and a fresh MiB is
 * a new mapping whose pages fault in one by one (more than the hashing
 * costs, on some machines).
 */
function fileDigest(client: Client, algorithm: string, input: FileReader, name: string): Promise<ArrayBuffer> {
  return digestThrough(client, algorithm, async (send, chunkSize) => {
    const ring = Array.from({ length: CHUNKS_AHEAD }, () => Buffer.allocUnsafeSlow(chunkSize));
    for (let turn = 0; ; turn++) {
      const buf = ring[turn % CHUNKS_AHEAD]!;
      let n: number;
      try {
        n = (await input.handle.read(buf, 0, chunkSize, null)).bytesRead;
      } catch (err) {
        throw new LocalFailure(`cannot read ${name}: ${(err as Error).message}`, { cause: err });
      }
      if (n === 0) return;
      await send(buf.subarray(0, n));
    }
  });
}

/**
 * A stream (stdin): its chunks (64 KiB from a pipe) coalesced into
 * full-size updates, rotating through CHUNKS_AHEAD buffers; a chunk that is
 * full-size already goes as it is.
 */
function streamDigest(client: Client, algorithm: string, input: Readable, name: string): Promise<ArrayBuffer> {
  return digestThrough(client, algorithm, async (send, chunkSize) => {
    const ring: Buffer[] = [];
    let turn = 0;
    const nextBuffer = (): Buffer => {
      const i = turn++ % CHUNKS_AHEAD;
      return (ring[i] ??= Buffer.allocUnsafeSlow(chunkSize));
    };
    let acc = nextBuffer();
    let fill = 0;
    const iterator = input[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    for (;;) {
      let next: IteratorResult<Buffer>;
      try {
        next = await iterator.next();
      } catch (err) {
        throw new LocalFailure(`cannot read ${name}: ${(err as Error).message}`, { cause: err });
      }
      if (next.done === true) break;
      const chunk = next.value;
      if (fill === 0 && chunk.length === chunkSize) {
        await send(chunk);
        continue;
      }
      let off = 0;
      while (off < chunk.length) {
        const n = Math.min(chunkSize - fill, chunk.length - off);
        chunk.copy(acc, fill, off, off + n);
        fill += n;
        off += n;
        if (fill === chunkSize) {
          await send(acc);
          acc = nextBuffer();
          fill = 0;
        }
      }
    }
    if (fill > 0) await send(acc.subarray(0, fill));
  });
}
