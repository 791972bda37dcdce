/**
 * FrameReader and encodeFrame (src/protocol/frame.ts): a stream split at every
 * byte boundary (and every pair, for a short stream) gives the same frames;
 * oversize frames are reported and skipped without allocating their size;
 * short length fields are reported and skipped; encodeFrame round trips.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import fc from 'fast-check';
import { decode, encode, type CborValue } from '../src/protocol/cbor.js';
import { FrameKind, FrameReader, HEADER_SIZE, MIN_LENGTH, encodeFrame, encodeFrameHead, type FrameSink } from '../src/protocol/frame.js';
import { rawHeader } from './helpers/raw-client.js';

type Event =
  | { e: 'frame'; kind: number; id: number; op: number; payload: string }
  | { e: 'oversize'; kind: number; id: number; op: number; length: number }
  | { e: 'malformed'; length: number };

/** A sink that records what the reader reported; payloads are copied (they are views of the chunk). */
class Recorder implements FrameSink {
  readonly events: Event[] = [];
  maxPending = 0;
  frame(kind: number, id: number, op: number, buf: Buffer, start: number, end: number): void {
    this.events.push({ e: 'frame', kind, id, op, payload: buf.subarray(start, end).toString('hex') });
  }
  oversize(kind: number, id: number, op: number, length: number): void {
    this.events.push({ e: 'oversize', kind, id, op, length });
  }
  malformed(length: number): void {
    this.events.push({ e: 'malformed', length });
  }
}

function feed(max: number, chunks: Buffer[]): Recorder {
  const rec = new Recorder();
  const reader = new FrameReader(max, rec);
  for (const c of chunks) {
    reader.push(c);
    rec.maxPending = Math.max(rec.maxPending, reader.pending);
  }
  assert.equal(reader.pending, 0, 'a complete stream leaves nothing pending');
  return rec;
}

function splitAt(buf: Buffer, cuts: number[]): Buffer[] {
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of [...cuts, buf.length]) {
    // Copies, so a reader that kept a view of an earlier chunk would be caught by the zeroing below.
    out.push(Buffer.from(buf.subarray(prev, c)));
    prev = c;
  }
  return out;
}

const MAX = 4096;

/** Several frames: empty payload, small, one that needs a 2-byte length head, one near the maximum. */
function sampleStream(): { bytes: Buffer; expected: Event[] } {
  const frames: Array<[FrameKind, number, number, CborValue | undefined]> = [
    [FrameKind.REQUEST, 1, 0x0001, { version: 1, client: 'a' }],
    [FrameKind.REQUEST, 2, 0x0002, undefined],
    [FrameKind.RESPONSE, 0xffffffff, 0xffff, new Uint8Array(300).fill(7)],
    [FrameKind.ERROR, 4, 0x0010, { code: 'CRYPTOD_ERR_X', message: 'ü' }],
    [FrameKind.REQUEST, 5, 0x0042, new Uint8Array(MAX - MIN_LENGTH - 5).fill(1)],
    [FrameKind.REQUEST, 6, 0x0002, 'last'],
  ];
  const bytes = Buffer.concat(frames.map(([k, id, op, p]) => encodeFrame(k, id, op, p)));
  const expected: Event[] = frames.map(([kind, id, op, p]) => ({
    e: 'frame',
    kind,
    id,
    op,
    payload: p === undefined ? '' : encode(p).toString('hex'),
  }));
  return { bytes, expected };
}

describe('splitting', () => {
  test('one chunk, and the stream split at every single byte boundary, give the same frames', () => {
    const { bytes, expected } = sampleStream();
    assert.ok(bytes.length > MAX);
    assert.deepEqual(feed(MAX, [bytes]).events, expected);
    for (let cut = 0; cut <= bytes.length; cut++) {
      const rec = feed(MAX, splitAt(bytes, [cut]));
      assert.deepEqual(rec.events, expected, `split at ${cut}`);
    }
  });

  test('one byte per chunk gives the same frames', () => {
    const { bytes, expected } = sampleStream();
    const chunks = Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1));
    assert.deepEqual(feed(MAX, chunks).events, expected);
  });

  test('a short stream split at every pair of boundaries gives the same frames', () => {
    const frames: Array<[number, number, CborValue | undefined]> = [
      [7, 0x0002, undefined],
      [8, 0x0010, { a: new Uint8Array([1, 2]) }],
      [9, 0x0003, [1, 'x']],
    ];
    const bytes = Buffer.concat(frames.map(([id, op, p]) => encodeFrame(FrameKind.REQUEST, id, op, p)));
    const expected: Event[] = frames.map(([id, op, p]) => ({ e: 'frame', kind: 1, id, op, payload: p === undefined ? '' : encode(p).toString('hex') }));
    let runs = 0;
    for (let a = 0; a <= bytes.length; a++) {
      for (let b = a; b <= bytes.length; b++) {
        assert.deepEqual(feed(MAX, splitAt(bytes, [a, b])).events, expected, `split at ${a} and ${b}`);
        runs++;
      }
    }
    assert.ok(runs > 500);
  });

  test('random splits of random frame sequences give the frames that were encoded', () => {
    const frameArb = fc.record({
      kind: fc.constantFrom(FrameKind.REQUEST, FrameKind.RESPONSE, FrameKind.ERROR),
      id: fc.nat({ max: 0xffffffff }),
      op: fc.nat({ max: 0xffff }),
      payload: fc.option(fc.uint8Array({ maxLength: 200 }), { nil: undefined }),
    });
    fc.assert(
      fc.property(fc.array(frameArb, { minLength: 1, maxLength: 8 }), fc.array(fc.nat(), { maxLength: 10 }), (frames, rawCuts) => {
        const bytes = Buffer.concat(frames.map((f) => encodeFrame(f.kind, f.id, f.op, f.payload)));
        const cuts = [...new Set(rawCuts.map((c) => c % (bytes.length + 1)))].sort((x, y) => x - y);
        const rec = feed(MAX, splitAt(bytes, cuts));
        assert.deepEqual(
          rec.events,
          frames.map((f) => ({ e: 'frame', kind: f.kind, id: f.id, op: f.op, payload: f.payload === undefined ? '' : encode(f.payload).toString('hex') })),
        );
      }),
      { numRuns: 500 },
    );
  });

  test('a frame completed across chunks is a stable buffer; in-chunk frames are views of their chunk', () => {
    const seen: Buffer[] = [];
    const reader = new FrameReader(MAX, {
      frame: (_k, _i, _o, buf, start, end) => void seen.push(buf.subarray(start, end)),
      oversize: () => assert.fail('no oversize frame here'),
      malformed: () => assert.fail('no malformed frame here'),
    });
    const f = encodeFrame(FrameKind.REQUEST, 1, 2, new Uint8Array([5, 6, 7]));
    const a = Buffer.from(f.subarray(0, 5));
    const b = Buffer.from(f.subarray(5));
    reader.push(a);
    reader.push(b);
    a.fill(0);
    b.fill(0);
    assert.equal(Buffer.from(decode(seen[0]!) as Uint8Array).toString('hex'), '050607');
    // In one chunk, the payload is a view: no copy per frame.
    const c = Buffer.from(f);
    reader.push(c);
    c.fill(0);
    assert.equal(seen[1]!.toString('hex'), '00000000');
  });
});

describe('oversize and malformed frames', () => {
  const allocSizes: number[] = [];
  const realAlloc = Buffer.allocUnsafeSlow;
  afterEach(() => {
    Buffer.allocUnsafeSlow = realAlloc;
    allocSizes.length = 0;
  });
  const watchAllocations = (): void => {
    Buffer.allocUnsafeSlow = ((n: number) => {
      allocSizes.push(n);
      return realAlloc(n);
    }) as typeof Buffer.allocUnsafeSlow;
  };

  /** An oversize frame of `bodyLength` bytes after its header, then a good frame. */
  function oversizeStream(bodyLength: number): { bytes: Buffer; length: number; after: Buffer } {
    const length = MIN_LENGTH + bodyLength;
    const body = Buffer.alloc(bodyLength, 0xab);
    // Bytes inside the skipped body that look like frame headers must stay skipped.
    encodeFrame(FrameKind.REQUEST, 666, 0x0002).copy(body, 0);
    const after = encodeFrame(FrameKind.REQUEST, 43, 0x0002, 'after');
    return { bytes: Buffer.concat([rawHeader(length, FrameKind.REQUEST, 42, 0x0010), body, after]), length, after };
  }

  test('is reported with its id and op, its body skipped across many chunks, the next frame intact, nothing allocated for it', () => {
    const { bytes, length } = oversizeStream(1024 * 1024);
    watchAllocations();
    const chunks: Buffer[] = [];
    for (let i = 0; i < bytes.length; i += 1000) chunks.push(bytes.subarray(i, i + 1000));
    const rec = feed(MAX, chunks);
    assert.deepEqual(rec.events, [
      { e: 'oversize', kind: 1, id: 42, op: 0x0010, length },
      { e: 'frame', kind: 1, id: 43, op: 2, payload: encode('after').toString('hex') },
    ]);
    assert.ok(rec.maxPending <= HEADER_SIZE, `pending grew to ${rec.maxPending}`);
    assert.ok(
      allocSizes.every((n) => n < 1024),
      `allocated ${allocSizes.join(', ')} bytes while skipping a ${length}-byte frame`,
    );
  });

  test('an oversize frame split at every byte boundary of its header and the frame after it', () => {
    const { bytes, length, after } = oversizeStream(3 * MAX);
    const expected: Event[] = [
      { e: 'oversize', kind: 1, id: 42, op: 0x0010, length },
      { e: 'frame', kind: 1, id: 43, op: 2, payload: encode('after').toString('hex') },
    ];
    const interesting = [...Array.from({ length: 40 }, (_, i) => i), ...Array.from({ length: 40 }, (_, i) => bytes.length - i)];
    for (const cut of interesting) {
      const rec = feed(MAX, splitAt(bytes, [cut]));
      assert.deepEqual(rec.events, expected, `split at ${cut}`);
      // At most a header of the oversize frame, or the frame after it, is ever held.
      assert.ok(rec.maxPending <= Math.max(HEADER_SIZE, after.length), `pending grew to ${rec.maxPending}`);
    }
    const oneByOne = Array.from({ length: 64 }, (_, i) => bytes.subarray(i, i + 1));
    oneByOne.push(bytes.subarray(64));
    assert.deepEqual(feed(MAX, oneByOne).events, expected);
  });

  test('the maximum is inclusive: a frame of exactly the maximum length is delivered', () => {
    const payload = new Uint8Array(MAX - MIN_LENGTH - 3).fill(9); // 0x59 + u16 length + bytes
    const f = encodeFrame(FrameKind.REQUEST, 1, 2, payload);
    assert.equal(f.readUInt32BE(0), MAX);
    assert.equal(feed(MAX, [f]).events[0]!.e, 'frame');
    const g = encodeFrame(FrameKind.REQUEST, 1, 2, new Uint8Array(MAX - MIN_LENGTH - 2));
    assert.equal(g.readUInt32BE(0), MAX + 1);
    assert.equal(feed(MAX, [g]).events[0]!.e, 'oversize');
  });

  test('a frame of the largest u32 length is skipped too', () => {
    const reader = new FrameReader(MAX, new Recorder());
    reader.push(rawHeader(0xffffffff, 1, 9, 9));
    reader.push(Buffer.alloc(1 << 20));
    assert.ok(reader.pending <= HEADER_SIZE);
  });

  test('a length field below 7 is reported as malformed and its bytes skipped', () => {
    const good = encodeFrame(FrameKind.REQUEST, 3, 2);
    for (let len = 0; len < MIN_LENGTH; len++) {
      const bad = Buffer.concat([Buffer.from([0, 0, 0, len]), Buffer.alloc(len, 0xee)]);
      const bytes = Buffer.concat([bad, good]);
      const expected: Event[] = [
        { e: 'malformed', length: len },
        { e: 'frame', kind: 1, id: 3, op: 2, payload: '' },
      ];
      for (let cut = 0; cut <= bytes.length; cut++) {
        assert.deepEqual(feed(MAX, splitAt(bytes, [cut])).events, expected, `length ${len}, split at ${cut}`);
      }
    }
  });
});

// Regression: the connection's in-flight limit paused the socket, but every
// frame already in the chunk being parsed still ran. The reader now stops mid-chunk.
describe('pause and resume', () => {
  test('pause() inside frame() holds back the rest of the chunk until resume()', () => {
    const frames = Array.from({ length: 10 }, (_, i) => encodeFrame(FrameKind.REQUEST, i, 2, i));
    const bytes = Buffer.concat(frames);
    const got: number[] = [];
    const reader: FrameReader = new FrameReader(MAX, {
      frame: (_k, id) => {
        got.push(id);
        if (id % 3 === 2) reader.pause();
      },
      oversize: () => assert.fail('no oversize frame here'),
      malformed: () => assert.fail('no malformed frame here'),
    });
    reader.push(bytes);
    assert.deepEqual(got, [0, 1, 2]);
    reader.push(encodeFrame(FrameKind.REQUEST, 10, 2)); // read while paused: queued behind the rest
    assert.deepEqual(got, [0, 1, 2]);
    reader.resume();
    assert.deepEqual(got, [0, 1, 2, 3, 4, 5]);
    reader.resume();
    assert.deepEqual(got, [0, 1, 2, 3, 4, 5, 6, 7, 8]);
    reader.resume();
    assert.deepEqual(got, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    reader.resume(); // not paused: nothing happens
    assert.equal(reader.pending, 0);
  });

  test('pausing at random frames and resuming gives every frame once, in order, for any split', () => {
    fc.assert(
      fc.property(fc.array(fc.nat({ max: 200 }), { minLength: 1, maxLength: 12 }), fc.array(fc.nat(), { maxLength: 6 }), fc.array(fc.boolean(), { minLength: 1 }), (sizes, rawCuts, pauses) => {
        const bytes = Buffer.concat(sizes.map((n, i) => encodeFrame(FrameKind.REQUEST, i, 2, new Uint8Array(n))));
        const cuts = [...new Set(rawCuts.map((c) => c % (bytes.length + 1)))].sort((x, y) => x - y);
        const got: number[] = [];
        let k = 0;
        const reader: FrameReader = new FrameReader(MAX, {
          frame: (_k, id) => {
            got.push(id);
            if (pauses[k++ % pauses.length]) reader.pause();
          },
          oversize: () => assert.fail('no oversize frame here'),
          malformed: () => assert.fail('no malformed frame here'),
        });
        for (const c of splitAt(bytes, cuts)) reader.push(c);
        for (let i = 0; i < sizes.length + 1; i++) reader.resume();
        assert.deepEqual(got, sizes.map((_, i) => i));
      }),
      { numRuns: 500 },
    );
  });
});

describe('encodeFrame', () => {
  test('header fields and payload round trip through the reader', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(FrameKind.REQUEST, FrameKind.RESPONSE, FrameKind.ERROR),
        fc.nat({ max: 0xffffffff }),
        fc.nat({ max: 0xffff }),
        fc.option(fc.oneof(fc.string(), fc.uint8Array(), fc.dictionary(fc.string(), fc.integer())), { nil: undefined }),
        fc.boolean(),
        (kind, id, op, payload, sensitive) => {
          const f = encodeFrame(kind, id, op, payload, sensitive);
          assert.equal(f.readUInt32BE(0), f.length - 4);
          const rec = feed(MAX * 16, [f]);
          assert.deepEqual(rec.events, [{ e: 'frame', kind, id, op, payload: payload === undefined ? '' : encode(payload).toString('hex') }]);
        },
      ),
      { numRuns: 500 },
    );
  });

  test('a frame without payload is just the 11-byte header', () => {
    assert.equal(encodeFrame(FrameKind.REQUEST, 1, 2).toString('hex'), '00000007' + '01' + '00000001' + '0002');
  });

  test('a large frame, then small ones: the scratch buffer is not left holding the large one', () => {
    const big = encodeFrame(FrameKind.RESPONSE, 1, 2, new Uint8Array(2 * 1024 * 1024).fill(3));
    assert.equal(big.length, HEADER_SIZE + 5 + 2 * 1024 * 1024);
    const small = encodeFrame(FrameKind.RESPONSE, 2, 2, 'x');
    assert.deepEqual(feed(MAX, [small]).events, [{ e: 'frame', kind: 2, id: 2, op: 2, payload: encode('x').toString('hex') }]);
  });

  test('a payload that cannot be encoded throws and the next frame is unaffected', () => {
    let deep: CborValue = 1;
    for (let i = 0; i < 40; i++) deep = [deep];
    assert.throws(() => encodeFrame(FrameKind.REQUEST, 1, 2, deep));
    assert.equal(encodeFrame(FrameKind.REQUEST, 5, 6, 'ok').toString('hex'), encodeFrame(FrameKind.REQUEST, 5, 6, 'ok').toString('hex'));
    assert.deepEqual(decode(encodeFrame(FrameKind.REQUEST, 5, 6, 'ok'), HEADER_SIZE), 'ok');
  });
});

describe('chunks of joined frames', () => {
  test('bytes copied out of a chunk (a frame split across chunks, or held while paused) are zeroed in the chunk', () => {
    const secret = Buffer.alloc(200, 0x5a);
    const f = encodeFrame(FrameKind.REQUEST, 9, 0x0111, { material: secret });
    for (let cut = 1; cut < f.length; cut++) {
      const chunks = splitAt(f, [cut]);
      const payloads: string[] = [];
      const reader = new FrameReader(MAX, {
        frame: (_k, _i, _o, buf, start, end) => {
          payloads.push(buf.subarray(start, end).toString('hex'));
          buf.fill(0, start, end); // what the connection does for a sensitive request
        },
        oversize: () => assert.fail('no oversize frame here'),
        malformed: () => assert.fail('no malformed frame here'),
      });
      for (const c of chunks) reader.push(c);
      assert.equal(payloads.length, 1);
      assert.equal(payloads[0], encode({ material: secret }).toString('hex'));
      for (const c of chunks) assert.ok(!c.some((b) => b !== 0), `cut at ${cut}: a chunk still holds bytes of the frame`);
    }
    // Paused: later chunks are joined to what was held back.
    const rec: string[] = [];
    const reader = new FrameReader(MAX, {
      frame: (_k, _i, _o, buf, start, end) => void rec.push(buf.subarray(start, end).toString('hex')),
      oversize: () => assert.fail('no oversize frame here'),
      malformed: () => assert.fail('no malformed frame here'),
    });
    reader.pause();
    const [a, b] = splitAt(f, [100]);
    reader.push(a!);
    reader.push(b!);
    assert.ok(!a!.some((x) => x !== 0) && !b!.some((x) => x !== 0), 'chunks held while paused are zeroed once joined');
    reader.resume();
    assert.deepEqual(rec, [encode({ material: secret }).toString('hex')]);
  });
});

test('encodeFrameHead followed by its tail is byte for byte the frame encodeFrame makes', () => {
  fc.assert(
    fc.property(
      fc.dictionary(fc.string({ maxLength: 8 }).filter((k) => k !== 'data'), fc.oneof(fc.string(), fc.integer(), fc.uint8Array({ maxLength: 40 }).map((u) => Buffer.from(u)))),
      fc.integer({ min: 0, max: 70_000 }),
      fc.integer({ min: 1, max: 0xffffffff }),
      (fields, n, id) => {
        const tail = Buffer.alloc(n, n & 0xff);
        const head = encodeFrameHead(FrameKind.REQUEST, id, 0x42, fields, 'data', n);
        assert.deepEqual(Buffer.concat([head, tail]), encodeFrame(FrameKind.REQUEST, id, 0x42, { ...fields, data: tail }));
      },
    ),
    { numRuns: 200 },
  );
});

test('split frames: a joined buffer the sink is done with is reused; one it keeps is not; only frames the sink calls sensitive are wiped in the chunk', () => {
  const payloads: Buffer[] = [];
  const bases: ArrayBufferLike[] = [];
  const SENSITIVE = 9;
  const reader = new FrameReader(1 << 20, {
    frame: (_k, _i, op, buf, start, end) => {
      payloads.push(Buffer.from(buf.subarray(start, end)));
      bases.push(buf.buffer);
      return op !== 7; // op 7 keeps its buffer
    },
    sensitive: (op) => op === SENSITIVE,
    oversize: () => assert.fail('no oversize frame here'),
    malformed: () => assert.fail('no malformed frame here'),
  });
  const frames = [1, 1, 7, 1, 1, SENSITIVE].map((op, i) => encodeFrame(FrameKind.REQUEST, i + 1, op, Buffer.alloc(3000 - i * 100, i + 1)));
  const chunks: Buffer[] = [];
  for (const f of frames) {
    const copy = Buffer.from(f);
    reader.push(copy.subarray(0, 1000));
    reader.push(copy.subarray(1000));
    chunks.push(copy);
  }
  assert.equal(payloads.length, 6);
  payloads.forEach((p, i) => assert.deepEqual(decode(p), Buffer.alloc(3000 - i * 100, i + 1)));
  assert.equal(bases[1], bases[0], 'the second frame is joined in the first one\'s buffer');
  assert.equal(bases[2], bases[1], 'op 7 still gets the spare buffer');
  assert.notEqual(bases[3], bases[2], 'but keeps it: the next frame gets a new one');
  assert.equal(bases[4], bases[3]);
  // Non-sensitive frames are left in their chunks; the sensitive one is zeroed there.
  assert.deepEqual(chunks[0], frames[0]);
  assert.ok(chunks[5]!.every((b) => b === 0));
});
