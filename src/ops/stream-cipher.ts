/**
 * AEAD streams: CIPHER_CREATE, CIPHER_UPDATE, CIPHER_FINAL — encryption and
 * decryption of inputs of any size in the segmented format of
 * docs/formats.md "AEAD stream format" (src/ops/stream-format.ts).
 *
 * A stream is an EXCLUSIVE data node of type 'cipher', a child of its key
 * (design notes 1 and 2): busy while a request works on it, released with
 * its key or its connection. The daemon holds at most one segment of a
 * stream (≤ 1 MiB + 16 bytes); the caller feeds it in pieces of any size and
 * concatenates the replies:
 *
 *   encrypt:  create.header ‖ update₁ ‖ update₂ ‖ … ‖ final   = the stream
 *   decrypt:  update₁ ‖ update₂ ‖ … ‖ final                  = the plaintext
 *
 * A decrypting stream replies with a segment's plaintext only after that
 * segment's tag verified; a stream that is truncated, extended, reordered or
 * modified fails with CRYPTOD_ERR_DECRYPT_FAILED at the latest at
 * CIPHER_FINAL. Any failed CIPHER_UPDATE or CIPHER_FINAL (other than BUSY or a
 * malformed request) deletes the stream: its state can no longer be trusted.
 */
import type { HandlerResult, Operation, RequestContext } from './operation.js';
import type { CborValue } from '../protocol/cbor.js';
import { InvalidArgumentError, UnsupportedError } from '../protocol/errors.js';
import { Op } from '../protocol/ops.js';
import { normalizeAlgorithm } from './algorithms.js';
import { CipherCreate, CipherFinal, CipherUpdate, INLINE_REGION } from '../protocol/messages/contexts.js';
import { kindOf } from './args.js';
import { aeadCipherOf, paramBytes } from './cipher.js';
import { addContext, forEachSlice, SLICE } from './contexts.js';
import { orRelease, outputRegion, windowRegion, type OutputRegion } from './windows.js';
import { acquireKey } from './key.js';
import {
  DEFAULT_SEGMENT_SIZE,
  MAX_SEGMENT_SIZE,
  MIN_SEGMENT_SIZE,
  outputTooSmall,
  StreamOpener,
  StreamSealer,
  streamCipherId,
} from './stream-format.js';

type StreamValue = StreamSealer | StreamOpener;

/**
 * Largest `data` of one CIPHER_UPDATE / CIPHER_FINAL. It bounds the work of a
 * request and keeps every reply (input plus at most 1.6 % of tags) below the
 * 64 MiB a client accepts, whatever maxFrame the daemon is configured with.
 */
export const MAX_STREAM_UPDATE = 16 * 1024 * 1024;

function segmentSizeParam(v: CborValue): number {
  if (v === undefined) return DEFAULT_SEGMENT_SIZE;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < MIN_SEGMENT_SIZE || v > MAX_SEGMENT_SIZE) {
    throw new InvalidArgumentError(
      `expected 'algorithm.segmentSize' to be an integer from ${MIN_SEGMENT_SIZE} to ${MAX_SEGMENT_SIZE} (plaintext bytes per segment), got ${typeof v === 'number' ? v : kindOf(v)}`,
      { detail: { field: 'algorithm.segmentSize', min: MIN_SEGMENT_SIZE, max: MAX_SEGMENT_SIZE } },
    );
  }
  return v;
}

function create(ctx: RequestContext, raw: CborValue): HandlerResult {
  const args = CipherCreate.args.parse(raw);
  const mode = args.mode;
  const alg = normalizeAlgorithm(args.algorithm);
  if (alg.name !== 'AES-GCM' && alg.name !== 'ChaCha20-Poly1305') {
    throw new UnsupportedError(`AEAD streams support AES-GCM and ChaCha20-Poly1305, got ${alg.name}`, { detail: { field: 'algorithm.name' } });
  }
  const additionalData = paramBytes(alg.params, 'additionalData');
  // A decrypting stream reads its segment size from the stream header.
  const segmentSize = mode === 'encrypt' ? segmentSizeParam(alg.params.segmentSize) : 0;
  using key = acquireKey(ctx, args.key);
  key.value.require(alg.name, mode);
  const id = streamCipherId(aeadCipherOf(key.value));
  if (mode === 'encrypt') {
    const sealer = new StreamSealer(id, key.value.secret, segmentSize, additionalData);
    const handle = addContext(ctx, 'cipher', sealer, key);
    return { handle, header: sealer.header, segmentSize };
  }
  // The opener borrows the key bytes until it has read the header; the key
  // node outlives it because a child holds a reference on its parent.
  const handle = addContext(ctx, 'cipher', new StreamOpener(id, key.value.secret, additionalData), key);
  return { handle };
}

function join(out: Buffer[]): Buffer {
  if (out.length === 1) return out[0]!;
  return Buffer.concat(out);
}

/**
 * CIPHER_UPDATE (`last` false) and CIPHER_FINAL (`last` true). The input is
 * `data`, or a region of a shared-memory window (§6.16, CIPHER_UPDATE only),
 * whose output then goes into the window too; the window's accessor is held
 * until the output is written.
 */
function step(ctx: RequestContext, raw: CborValue, last: boolean): HandlerResult | Promise<HandlerResult> {
  const args = last ? CipherFinal.args.parse(raw) : CipherUpdate.args.parse(raw);
  const region = 'window' in args ? windowRegion(ctx, args) : null;
  const { data, output, acc } = orRelease(region, () => {
    const output = region !== null && 'window' in args ? outputRegion(region, args.outputOffset, args.outputLength) : null;
    const data = region === null ? (args as { data?: Uint8Array }).data : region.data;
    if (data !== undefined && data.length > MAX_STREAM_UPDATE) {
      throw new InvalidArgumentError(`expected 'data' of at most ${MAX_STREAM_UPDATE} bytes per request, got ${data.length}; send the stream in smaller pieces`, {
        detail: { field: region === null ? 'data' : 'length', max: MAX_STREAM_UPDATE },
      });
    }
    return { data, output, acc: ctx.dm.acquire<StreamValue>(ctx.clientId, args.handle, 'cipher') };
  });
  const handle = args.handle;
  const out: Buffer[] = [];
  const finish = (): HandlerResult => {
    if (last) {
      acc.value.final(out);
      ctx.dm.delete(ctx.clientId, handle);
    }
    return output === null ? join(out) : { length: writeOutput(out, output, acc.value instanceof StreamOpener) };
  };
  const fail = (err: unknown): never => {
    for (const b of out) b.fill(0); // plaintext of a request that fails never leaves
    ctx.dm.delete(ctx.clientId, handle);
    throw err;
  };
  if (data === undefined || data.length <= (region === null ? SLICE : INLINE_REGION)) {
    using held = acc;
    using _window = region?.acc;
    try {
      // Sealed straight into the window when the output region does not overlap the input (the
      // client's layout, client/streams.ts) and the addon is there; else through `out`.
      if (output !== null && !last && data !== undefined && held.value instanceof StreamSealer && 'window' in args && apart(args, output)) {
        const n = held.value.updateInto(data, output.bytes, output.offset, output.length);
        if (n !== null) return { length: n };
      }
      if (data !== undefined) held.value.update(data, out);
      return finish();
    } catch (err) {
      return fail(err);
    }
  }
  const input = data;
  return (async () => {
    using held = acc;
    using _window = region?.acc;
    try {
      await forEachSlice(held, input, (slice) => held.value.update(slice, out));
      return finish();
    } catch (err) {
      return fail(err);
    }
  })();
}

/** Whether a request's input region and output region share no byte. */
function apart(input: { offset: number; length: number }, output: OutputRegion): boolean {
  return output.offset >= input.offset + input.length || output.offset + output.length <= input.offset;
}

/**
 * Copy `out` into the window's output region; `plaintext` (a decrypting
 * stream's output) is zeroed here once copied, so it lives on only in the
 * client's window, as it would in the client's buffers. The stream has
 * already moved on, so output that does not fit cannot be given back later:
 * the request fails and, like any failed update, ends the stream.
 */
function writeOutput(out: Buffer[], region: OutputRegion, plaintext: boolean): number {
  let total = 0;
  for (const b of out) total += b.length;
  if (total > region.length) throw outputTooSmall(total, region.length);
  let at = region.offset;
  for (const b of out) {
    region.bytes.set(b, at);
    at += b.length;
    if (plaintext) b.fill(0);
  }
  return total;
}

export const streamCipherOperations: Operation[] = [
  {
    /**
     * `{ key, mode: 'encrypt' | 'decrypt', algorithm: { name, additionalData?, segmentSize? } }`
     * → encrypt: `{ handle, header, segmentSize }` — `header` is the first 49
     *   bytes of the stream; `segmentSize` (plaintext bytes per segment,
     *   1024..1048576, default 65536) is taken from the request.
     * → decrypt: `{ handle }` — the segment size is read from the stream header.
     * `name` must match the key (AES-GCM of any size, or ChaCha20-Poly1305) and
     * the key's usages must include `mode`. The stream is a child of the key.
     */
    op: Op.CIPHER_CREATE,
    access: { kind: 'none' },
    handle: create,
  },
  {
    /**
     * `{ handle, data }` → bytes: the output that `data` completes. Encrypt:
     * sealed segments; decrypt: verified plaintext. One segment is held back
     * until more data or CIPHER_FINAL says whether it is the last, so the
     * reply may be empty. At most 16 MiB of `data`; over 256 KiB it is
     * processed in slices while the stream stays busy.
     */
    op: Op.CIPHER_UPDATE,
    access: { kind: 'none' },
    // Done synchronously (≤ 256 KiB), the stream holds none of `data`: whole segments are sealed
    // or opened in place into new buffers, a partial one is copied into the stream's own; so a
    // stream of updates reuses the connection's joining buffer.
    keepsNoInput: true,
    handle: (ctx, raw) => step(ctx, raw, false),
  },
  {
    /**
     * `{ handle, data? }` → bytes: `data` as for CIPHER_UPDATE, then the last
     * segment (encrypt: sealed with the last flag; decrypt: verified as the
     * last). The stream is deleted afterwards, on success and on failure.
     */
    op: Op.CIPHER_FINAL,
    access: { kind: 'none' },
    keepsNoInput: true,
    handle: (ctx, raw) => step(ctx, raw, true),
  },
];
