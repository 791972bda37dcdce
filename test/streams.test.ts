/**
 * AEAD streams through a real daemon: round trips of every size class, a
 * reference decoder written from docs/formats.md (so the document and the
 * code agree byte for byte), tampering of every class, back-pressure, the
 * raw protocol's errors and lifetimes, and a fast-check property.
 */
import assert from 'node:assert/strict';
import { createDecipheriv, createHash, hkdfSync, randomBytes, type CipherGCMTypes } from 'node:crypto';
import { Readable, Writable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import type { Client } from '../src/client/client.js';
import { STREAM_HEADER_LENGTH, STREAM_SEGMENT_SIZE_OFFSET, STREAM_TAG_LENGTH, type AeadStreamParams } from '../src/client/streams.js';
import type { CryptoKey } from '../src/client/subtle.js';
import { BusyError, CryptodError, DecryptError } from '../src/protocol/errors.js';
import { Op } from '../src/protocol/ops.js';
import * as format from '../src/ops/stream-format.js';
import { eventually, startTestDaemon, type TestDaemon } from './helpers/daemon.js';

type Alg = 'AES-GCM' | 'ChaCha20-Poly1305';

let t: TestDaemon;
let c: Client;
before(async () => {
  t = await startTestDaemon();
  c = await t.connect('streams');
});
after(async () => {
  await c.close();
  await t.stop();
});

async function importKey(raw: Buffer, name: Alg, usages: Array<'encrypt' | 'decrypt'> = ['encrypt', 'decrypt']): Promise<CryptoKey> {
  return c.subtle.importKey('raw', raw, { name }, false, usages);
}

/** Feed `data` in the given chunk sizes (cycled), collect the output. */
async function through(stream: Transform, data: Buffer, chunks: number[] = [data.length || 1]): Promise<Buffer> {
  const pieces: Buffer[] = [];
  let off = 0;
  let i = 0;
  while (off < data.length) {
    const n = Math.max(1, chunks[i++ % chunks.length]!);
    pieces.push(data.subarray(off, off + n));
    off += n;
  }
  const out: Buffer[] = [];
  await pipeline(Readable.from(pieces), stream, async (source: AsyncIterable<Buffer>) => {
    for await (const b of source) out.push(b);
  });
  return Buffer.concat(out);
}

function seal(key: CryptoKey, params: AeadStreamParams, data: Buffer, chunks?: number[]): Promise<Buffer> {
  return through(c.createEncryptStream(key, params), data, chunks);
}
function open(key: CryptoKey, params: AeadStreamParams, data: Buffer, chunks?: number[]): Promise<Buffer> {
  return through(c.createDecryptStream(key, params), data, chunks);
}

/** docs/formats.md "Decrypting", implemented independently of src/ops/stream-format.ts. */
function referenceOpen(raw: Buffer, stream: Buffer, additionalData = Buffer.alloc(0)): Buffer {
  const header = stream.subarray(0, 49);
  assert.equal(header.subarray(0, 4).toString('latin1'), 'CDAS');
  assert.equal(header[4], 1);
  const labels: Record<number, [string, string]> = { 1: ['AES-128-GCM', 'aes-128-gcm'], 2: ['AES-192-GCM', 'aes-192-gcm'], 3: ['AES-256-GCM', 'aes-256-gcm'], 4: ['ChaCha20-Poly1305', 'chacha20-poly1305'] };
  const [label, cipher] = labels[header[5]!]!;
  const S = header.readUInt32BE(6);
  const subkey = Buffer.from(hkdfSync('sha256', raw, header.subarray(10, 42), Buffer.from(`cryptod AEAD stream v1 ${label}`, 'ascii'), raw.length));
  const aad = Buffer.concat([header, additionalData]);
  const out: Buffer[] = [];
  let off = 49;
  for (let i = 0; ; i++) {
    const last = stream.length - off <= S + 16;
    const seg = stream.subarray(off, last ? stream.length : off + S + 16);
    const nonce = Buffer.concat([header.subarray(42, 49), Buffer.from([i >>> 24, (i >>> 16) & 255, (i >>> 8) & 255, i & 255, last ? 1 : 0])]);
    const d = createDecipheriv(cipher as CipherGCMTypes, subkey, nonce, { authTagLength: 16 });
    d.setAAD(aad);
    d.setAuthTag(seg.subarray(seg.length - 16));
    out.push(d.update(seg.subarray(0, seg.length - 16)));
    d.final();
    off += seg.length;
    if (last) return Buffer.concat(out);
  }
}

function isDecryptError(e: unknown): boolean {
  return e instanceof DecryptError && e.code === 'CRYPTOD_ERR_DECRYPT_FAILED';
}

describe('AEAD stream round trips', () => {
  test('the client and the daemon agree on the header layout', () => {
    assert.equal(STREAM_HEADER_LENGTH, format.HEADER_LENGTH);
    assert.equal(STREAM_SEGMENT_SIZE_OFFSET, format.SEGMENT_SIZE_OFFSET);
    assert.equal(STREAM_TAG_LENGTH, format.TAG_LENGTH);
    assert.equal(format.HEADER_LENGTH, format.MAGIC.length + 2 + 4 + format.SALT_LENGTH + format.PREFIX_LENGTH);
  });

  test('0 B, 1 B, one segment, one segment + 1, several segments — every cipher, as docs/formats.md says', async () => {
    const S = 1024;
    for (const [name, bits, id] of [['AES-GCM', 128, 1], ['AES-GCM', 192, 2], ['AES-GCM', 256, 3], ['ChaCha20-Poly1305', 256, 4]] as const) {
      const raw = randomBytes(bits / 8);
      const key = await importKey(raw, name);
      const additionalData = randomBytes(33);
      for (const size of [0, 1, S - 1, S, S + 1, 2 * S, 5 * S + 17]) {
        const pt = randomBytes(size);
        const params = { name, additionalData, segmentSize: S };
        const ct = await seal(key, params, pt, [100, 7, 3000]);
        const segments = Math.max(1, Math.ceil(size / S));
        assert.equal(ct.length, 49 + size + 16 * segments, `${name}-${bits} ${size} B`);
        assert.equal(ct.subarray(0, 4).toString('latin1'), 'CDAS');
        assert.equal(ct[4], 1);
        assert.equal(ct[5], id);
        assert.equal(ct.readUInt32BE(6), S);
        assert.deepEqual(referenceOpen(raw, ct, additionalData), pt);
        assert.deepEqual(await open(key, { name, additionalData }, ct, [1, 50, 2000]), pt);
      }
      await key.release();
    }
  });

  test('two streams of the same plaintext under one key share no salt, nonce prefix or ciphertext', async () => {
    const key = await importKey(randomBytes(32), 'AES-GCM');
    const pt = Buffer.alloc(4096, 7);
    const [a, b] = await Promise.all([seal(key, { name: 'AES-GCM' }, pt), seal(key, { name: 'AES-GCM' }, pt)]);
    assert.notDeepEqual(a.subarray(10, 49), b.subarray(10, 49));
    assert.notDeepEqual(a.subarray(49), b.subarray(49));
  });

  test('20 MiB round trip with the default segment size, streamed on both sides', async () => {
    const key = await importKey(randomBytes(32), 'ChaCha20-Poly1305');
    const block = randomBytes(1024 * 1024 + 3); // not a multiple of the segment size
    const total = 20 * 1024 * 1024;
    const source = async function* (): AsyncGenerator<Buffer> {
      for (let off = 0, i = 0; off < total; i++) {
        const n = Math.min(block.length, total - off);
        const chunk = Buffer.from(block.subarray(0, n));
        chunk.writeUInt32BE(i, 0);
        off += n;
        yield chunk;
      }
    };
    const inHash = createHash('sha256');
    const outHash = createHash('sha256');
    let ctLength = 0;
    let ptLength = 0;
    const ctChunks: Buffer[] = [];
    await pipeline(
      source,
      async function* (src: AsyncIterable<Buffer>) {
        for await (const b of src) {
          inHash.update(b);
          yield b;
        }
      },
      c.createEncryptStream(key, { name: 'ChaCha20-Poly1305' }),
      async (src: AsyncIterable<Buffer>) => {
        for await (const b of src) {
          ctLength += b.length;
          ctChunks.push(b);
        }
      },
    );
    const segments = Math.ceil(total / format.DEFAULT_SEGMENT_SIZE);
    assert.equal(ctLength, 49 + total + 16 * segments);
    await pipeline(Readable.from(ctChunks), c.createDecryptStream(key, 'ChaCha20-Poly1305'), async (src: AsyncIterable<Buffer>) => {
      for await (const b of src) {
        ptLength += b.length;
        outHash.update(b);
      }
    });
    assert.equal(ptLength, total);
    assert.equal(outHash.digest('hex'), inHash.digest('hex'));
  });

  test('requests carry whole segments, at most 256 KiB of them (the first decrypt piece: header + one segment)', async () => {
    const key = await importKey(randomBytes(16), 'AES-GCM');
    const S = 4096;
    const sizes: Array<[number, number]> = [];
    const conn = c.connection;
    const original = conn.request.bind(conn);
    const originalTail = conn.requestWithTail.bind(conn);
    conn.request = (op, payload, options) => {
      const data = (payload as { data?: Uint8Array } | undefined)?.data;
      if ((op === Op.CIPHER_UPDATE || op === Op.CIPHER_FINAL) && data !== undefined) sizes.push([op, data.length]);
      return original(op, payload, options);
    };
    conn.requestWithTail = (op, fields, tailKey, tail) => {
      if (op === Op.CIPHER_UPDATE || op === Op.CIPHER_FINAL) sizes.push([op, tail.length]);
      return originalTail(op, fields, tailKey, tail);
    };
    try {
      // 100 segments: pieces of 64 whole segments (256 KiB), then the rest.
      const pt = randomBytes(100 * S + 5);
      const ct = await seal(key, { name: 'AES-GCM', segmentSize: S }, pt, [1, 10_000, 333, 100_000, 300_000]);
      const updates = sizes.filter(([op]) => op === Op.CIPHER_UPDATE).map(([, n]) => n);
      assert.ok(updates.every((n) => n % S === 0 && n <= 256 * 1024), `encrypt pieces ${JSON.stringify(sizes)}`);
      assert.ok(updates.includes(64 * S), `encrypt pieces of 64 segments ${JSON.stringify(sizes)}`);
      sizes.length = 0;
      assert.deepEqual(await open(key, { name: 'AES-GCM' }, ct, [3, 100_000, 5000, 400_000]), pt);
      assert.ok(sizes.length > 0 && sizes[0]![1] === 49 + S + 16, 'first piece');
      const rest = sizes.slice(1).filter(([op]) => op === Op.CIPHER_UPDATE).map(([, n]) => n);
      assert.ok(rest.every((n) => n % (S + 16) === 0 && n <= 256 * 1024), `decrypt pieces ${JSON.stringify(sizes)}`);
      assert.ok(rest.includes(63 * (S + 16)), `decrypt pieces of 63 segments ${JSON.stringify(sizes)}`);
    } finally {
      conn.request = original;
      conn.requestWithTail = originalTail;
    }
  });

  test('pieces sent ahead of their replies round-trip in order, also under tight daemon limits and with segments sliced by the daemon', async () => {
    const raw = randomBytes(32);
    const data = randomBytes(3 * 1024 * 1024 + 1234);
    for (const [limits, segmentSize] of [[{ maxInflightPerConnection: 2, maxInflightBytesPerConnection: 1024 }, undefined], [{ maxFrame: 16 * 1024 }, 4096], [{}, 1024 * 1024]] as const) {
      const d = await startTestDaemon({ limits });
      try {
        await using cl = await d.connect();
        const key = await cl.subtle.importKey('raw', raw, { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
        const params = segmentSize === undefined ? { name: 'AES-GCM' } : { name: 'AES-GCM', segmentSize };
        const sealed = await through(cl.createEncryptStream(key, params), data, [1024 * 1024, 77, 300_000]);
        assert.deepEqual(referenceOpen(raw, sealed), data, JSON.stringify(limits));
        assert.deepEqual(await through(cl.createDecryptStream(key, { name: 'AES-GCM' }), sealed, [999_999, 5]), data);
      } finally {
        await d.stop();
      }
    }
  });

  test('a segment whose sealed form cannot fit the daemon\'s frame is refused at once, naming the largest that fits; the connection works on', async () => {
    const d = await startTestDaemon({ limits: { maxFrame: 16 * 1024 } });
    try {
      await using cl = await d.connect();
      const key = await cl.subtle.importKey('raw', randomBytes(32), { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
      await assert.rejects(
        through(cl.createEncryptStream(key, { name: 'AES-GCM', segmentSize: 65536 }), randomBytes(100_000)),
        (e: unknown) => e instanceof CryptodError && e.code === 'CRYPTOD_ERR_INVALID_ARGUMENT' && /segmentSize of at most 16288/.test(e.message),
      );
      const data = randomBytes(50_000);
      const sealed = await through(cl.createEncryptStream(key, { name: 'AES-GCM', segmentSize: 16288 }), data);
      assert.deepEqual(await through(cl.createDecryptStream(key, { name: 'AES-GCM' }), sealed, [7000]), data);
    } finally {
      await d.stop();
    }
  });

  test('a slow reader slows the writer: memory stays bounded (back-pressure)', async () => {
    const key = await importKey(randomBytes(32), 'AES-GCM');
    // Large writes (1 MiB, 16 segments each) and a slow sink: the stream must
    // not turn one write into 16 segments sitting in its readable buffer.
    const total = 8 * 1024 * 1024;
    let produced = 0;
    let consumed = 0;
    let maxAhead = 0;
    let maxBuffered = 0;
    const chunk = randomBytes(1024 * 1024);
    const source = new Readable({
      highWaterMark: 1,
      objectMode: true,
      read() {
        if (produced >= total) return void this.push(null);
        produced += chunk.length;
        this.push(chunk);
      },
    });
    const enc = c.createEncryptStream(key, { name: 'AES-GCM' });
    const sink = new Writable({
      highWaterMark: 16 * 1024,
      write(b: Buffer, _enc, cb) {
        consumed += b.length;
        maxAhead = Math.max(maxAhead, produced - consumed);
        maxBuffered = Math.max(maxBuffered, enc.readableLength);
        setTimeout(cb, 1); // a slow disk
      },
    });
    await pipeline(source, enc, sink);
    assert.ok(consumed > total);
    assert.ok(maxBuffered <= 2 * (64 * 1024 + 16), `the stream buffers at most ~one segment of output, saw ${maxBuffered}`);
    assert.ok(maxAhead < 4 * 1024 * 1024, `at most a few MiB between producer and consumer, saw ${maxAhead}`);
  });

  test('property: any size and any chunking on either side round-trips', async () => {
    const keys = {
      'AES-GCM': await importKey(randomBytes(24), 'AES-GCM'),
      'ChaCha20-Poly1305': await importKey(randomBytes(32), 'ChaCha20-Poly1305'),
    };
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom<Alg>('AES-GCM', 'ChaCha20-Poly1305'),
        fc.integer({ min: 0, max: 6000 }),
        fc.integer({ min: 1024, max: 2048 }),
        fc.array(fc.integer({ min: 1, max: 3000 }), { minLength: 1, maxLength: 6 }),
        fc.array(fc.integer({ min: 1, max: 3000 }), { minLength: 1, maxLength: 6 }),
        fc.option(fc.uint8Array({ maxLength: 40 }), { nil: undefined }),
        async (name, size, segmentSize, encChunks, decChunks, additionalData) => {
          const pt = randomBytes(size);
          const ct = await seal(keys[name], { name, segmentSize, ...(additionalData ? { additionalData } : {}) }, pt, encChunks);
          assert.equal(ct.length, 49 + size + 16 * Math.max(1, Math.ceil(size / segmentSize)));
          const back = await open(keys[name], { name, ...(additionalData ? { additionalData } : {}) }, ct, decChunks);
          assert.deepEqual(back, pt);
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('AEAD stream tampering', () => {
  const S = 1024;
  let raw: Buffer;
  let key: CryptoKey;
  let pt: Buffer;
  let ct: Buffer;
  const ad = Buffer.from('context');
  const seg = (i: number): [number, number] => [49 + i * (S + 16), 49 + (i + 1) * (S + 16)];

  before(async () => {
    raw = randomBytes(32);
    key = await importKey(raw, 'AES-GCM');
    pt = randomBytes(4 * S + 904); // segments 0..3 full, segment 4 short and last
    ct = await seal(key, { name: 'AES-GCM', segmentSize: S, additionalData: ad }, pt);
    assert.equal(ct.length, 49 + pt.length + 5 * 16);
  });

  /** Decrypt; expect DecryptError; return what was released before it. */
  async function rejected(stream: Buffer, what: string, params: AeadStreamParams = { name: 'AES-GCM', additionalData: ad }, k = key): Promise<Buffer> {
    const out: Buffer[] = [];
    await assert.rejects(
      pipeline(Readable.from([stream]), c.createDecryptStream(k, params), async (src: AsyncIterable<Buffer>) => {
        for await (const b of src) out.push(b);
      }),
      (e: unknown) => isDecryptError(e) || assert.fail(`${what}: expected DecryptError, got ${String(e)}`),
    );
    const released = Buffer.concat(out);
    assert.deepEqual(released, pt.subarray(0, released.length), `${what}: only authentic plaintext is released`);
    return released;
  }

  test('a flipped bit in any segment fails at that segment; nothing after it is released', async () => {
    for (const i of [0, 2, 4]) {
      for (const where of ['first byte', 'tag']) {
        const bad = Buffer.from(ct);
        const [start, end] = seg(i);
        bad[where === 'tag' ? Math.min(end, bad.length) - 1 : start]! ^= 0x01;
        const released = await rejected(bad, `segment ${i} ${where}`);
        assert.ok(released.length <= i * S, `segment ${i}: at most the ${i} segments before it were released, got ${released.length} bytes`);
      }
    }
  });

  test('a modified header fails (salt, prefix, segment size, algorithm, magic)', async () => {
    for (const [what, offset] of [['magic', 0], ['algorithm', 5], ['segment size', 8], ['salt', 20], ['nonce prefix', 45]] as const) {
      const bad = Buffer.from(ct);
      bad[offset]! ^= 0x02;
      const released = await rejected(bad, what);
      assert.equal(released.length, 0, what);
    }
    const v2 = Buffer.from(ct);
    v2[4] = 2;
    await assert.rejects(open(key, { name: 'AES-GCM', additionalData: ad }, v2), { code: 'CRYPTOD_ERR_UNSUPPORTED' });
  });

  test('dropping the last segment, or cutting anywhere, fails', async () => {
    await rejected(ct.subarray(0, seg(4)[0]), 'last segment dropped');
    await rejected(ct.subarray(0, seg(1)[0]), 'all but the first segment dropped');
    await rejected(ct.subarray(0, 49), 'header only');
    await rejected(ct.subarray(0, 30), 'header cut');
    await rejected(Buffer.alloc(0), 'empty');
    await rejected(ct.subarray(0, ct.length - 1), 'last byte cut');
    await rejected(ct.subarray(0, seg(2)[0] + 100), 'cut inside a segment');
  });

  test('dropping the last segment of a plaintext that fills its segments exactly fails', async () => {
    const even = randomBytes(4 * S);
    const sealed = await seal(key, { name: 'AES-GCM', segmentSize: S }, even);
    assert.equal(sealed.length, 49 + 4 * (S + 16));
    assert.deepEqual(await open(key, { name: 'AES-GCM' }, sealed), even);
    await assert.rejects(open(key, { name: 'AES-GCM' }, sealed.subarray(0, 49 + 3 * (S + 16))), isDecryptError);
  });

  test('swapped, duplicated or appended segments fail', async () => {
    const part = (i: number): Buffer => ct.subarray(...seg(i));
    const header = ct.subarray(0, 49);
    const tail = ct.subarray(seg(4)[0]);
    await rejected(Buffer.concat([header, part(0), part(2), part(1), part(3), tail]), 'segments 1 and 2 swapped');
    await rejected(Buffer.concat([header, part(0), part(1), part(1), part(2), part(3), tail]), 'segment 1 duplicated');
    await rejected(Buffer.concat([ct, part(0)]), 'a segment appended after the last');
    await rejected(Buffer.concat([ct, Buffer.from([0])]), 'one byte appended');
    await rejected(Buffer.concat([ct, ct]), 'a second stream appended');
  });

  test('wrong additionalData, wrong key, or a key of another algorithm fails', async () => {
    await rejected(ct, 'no additionalData', { name: 'AES-GCM' });
    await rejected(ct, 'other additionalData', { name: 'AES-GCM', additionalData: Buffer.from('Context') });
    await rejected(ct, 'other key', { name: 'AES-GCM', additionalData: ad }, await importKey(randomBytes(32), 'AES-GCM'));
    const aes128 = await importKey(raw.subarray(0, 16), 'AES-GCM');
    await assert.rejects(open(aes128, { name: 'AES-GCM', additionalData: ad }, ct), (e: unknown) => isDecryptError(e) && /sealed with AES-256-GCM, the key is AES-128-GCM/.test((e as Error).message));
    const chacha = await importKey(raw, 'ChaCha20-Poly1305');
    await assert.rejects(open(chacha, { name: 'ChaCha20-Poly1305', additionalData: ad }, ct), isDecryptError);
  });
});

describe('AEAD stream protocol', () => {
  test('CIPHER_CREATE validates its arguments and the key', async () => {
    const key = await importKey(randomBytes(32), 'AES-GCM');
    const encOnly = await importKey(randomBytes(32), 'AES-GCM', ['encrypt']);
    const create = (args: Record<string, unknown>) => c.request(Op.CIPHER_CREATE, { key: key.handle, mode: 'encrypt', algorithm: { name: 'AES-GCM' }, ...args } as never);
    const expect = async (p: Promise<unknown>, code: string, mentions: RegExp) =>
      assert.rejects(p, (e: unknown) => e instanceof CryptodError && e.code === code && mentions.test(e.message));
    await expect(create({ mode: 'wrap' }), 'CRYPTOD_ERR_INVALID_ARGUMENT', /'mode'.*'encrypt' or 'decrypt'/);
    await expect(create({ mode: undefined }), 'CRYPTOD_ERR_INVALID_ARGUMENT', /'mode'/);
    await expect(create({ algorithm: { name: 'AES-GCM', segmentSize: 100 } }), 'CRYPTOD_ERR_INVALID_ARGUMENT', /segmentSize.*1024 to 1048576.*got 100/);
    await expect(create({ algorithm: { name: 'AES-GCM', segmentSize: 2 ** 21 } }), 'CRYPTOD_ERR_INVALID_ARGUMENT', /segmentSize/);
    await expect(create({ algorithm: { name: 'AES-GCM', additionalData: 'text' } }), 'CRYPTOD_ERR_INVALID_ARGUMENT', /additionalData.*byte string/);
    await expect(create({ algorithm: { name: 'HMAC' } }), 'CRYPTOD_ERR_UNSUPPORTED', /AES-GCM and ChaCha20-Poly1305/);
    await expect(create({ algorithm: { name: 'ChaCha20-Poly1305' } }), 'CRYPTOD_ERR_INVALID_KEY', /AES-GCM key/);
    await expect(create({ key: encOnly.handle, mode: 'decrypt' }), 'CRYPTOD_ERR_INVALID_KEY', /'decrypt'/);
    await expect(create({ key: 'AAAAAAAAAAAAAAAAAAAAAA' }), 'CRYPTOD_ERR_NOT_FOUND', /no such handle/);
    const ok = (await create({ algorithm: { name: 'AES-GCM', segmentSize: 2048 } })) as { handle: string; header: Uint8Array; segmentSize: number };
    assert.equal(ok.segmentSize, 2048);
    assert.equal(ok.header.length, 49);
    await expect(c.request(Op.CIPHER_UPDATE, { handle: ok.handle }), 'CRYPTOD_ERR_INVALID_ARGUMENT', /'data'/);
    await expect(c.request(Op.CONTEXT_UPDATE, { handle: ok.handle, data: Buffer.alloc(1) }), 'CRYPTOD_ERR_INVALID_ARGUMENT', /cipher stream context/);
    await c.request(Op.RELEASE, { handle: ok.handle });
  });

  test('raw protocol: header ‖ updates ‖ final is the stream; the final deletes the context', async () => {
    const raw = randomBytes(16);
    const key = await importKey(raw, 'AES-GCM');
    const { handle, header } = (await c.request(Op.CIPHER_CREATE, { key: key.handle, mode: 'encrypt', algorithm: { name: 'AES-GCM', segmentSize: 1024 } })) as {
      handle: string;
      header: Uint8Array;
    };
    const pt = randomBytes(3000);
    const parts = [Buffer.from(header)];
    parts.push(Buffer.from((await c.request(Op.CIPHER_UPDATE, { handle, data: pt.subarray(0, 1024) })) as Uint8Array));
    assert.equal(parts[1]!.length, 0, 'a full segment is held back until the daemon knows it is not the last');
    parts.push(Buffer.from((await c.request(Op.CIPHER_UPDATE, { handle, data: pt.subarray(1024, 2500) })) as Uint8Array));
    assert.equal(parts[2]!.length, 2 * (1024 + 16), 'segments 0 and 1: 2500 bytes are more than two segments');
    parts.push(Buffer.from((await c.request(Op.CIPHER_FINAL, { handle, data: pt.subarray(2500) })) as Uint8Array));
    assert.deepEqual(referenceOpen(raw, Buffer.concat(parts)), pt);
    await assert.rejects(c.request(Op.CIPHER_UPDATE, { handle, data: Buffer.alloc(1) }), { code: 'CRYPTOD_ERR_NOT_FOUND' });
  });

  test('BUSY: a second request during a multi-MiB update is refused; the stream is intact', async () => {
    const raw = randomBytes(32);
    const key = await importKey(raw, 'AES-GCM');
    const { handle, header } = (await c.request(Op.CIPHER_CREATE, { key: key.handle, mode: 'encrypt', algorithm: { name: 'AES-GCM' } })) as { handle: string; header: Uint8Array };
    const big = randomBytes(3 * 1024 * 1024 + 1);
    const first = c.request(Op.CIPHER_UPDATE, { handle, data: big });
    const second = c.request(Op.CIPHER_UPDATE, { handle, data: Buffer.from('intruder') });
    const third = c.request(Op.CIPHER_FINAL, { handle });
    await assert.rejects(second, BusyError);
    await assert.rejects(third, BusyError);
    const body = Buffer.from((await first) as Uint8Array);
    const last = Buffer.from((await c.request(Op.CIPHER_FINAL, { handle })) as Uint8Array);
    assert.deepEqual(referenceOpen(raw, Buffer.concat([header, body, last])), big);
  });

  test('a failed decryption deletes the stream context', async () => {
    const key = await importKey(randomBytes(32), 'ChaCha20-Poly1305');
    const { handle } = (await c.request(Op.CIPHER_CREATE, { key: key.handle, mode: 'decrypt', algorithm: { name: 'ChaCha20-Poly1305' } })) as { handle: string };
    await assert.rejects(c.request(Op.CIPHER_UPDATE, { handle, data: Buffer.from('XXXX not a cryptod stream at all, certainly not one!') }), (e: unknown) => isDecryptError(e) && /magic|CDAS/.test((e as Error).message));
    await assert.rejects(c.request(Op.CIPHER_FINAL, { handle }), { code: 'CRYPTOD_ERR_NOT_FOUND' });
  });

  test('releasing the key releases its streams (cascade); destroying a client stream releases its context', async () => {
    const other = await t.connect('streams-cascade');
    const id = other.info.clientId as never;
    const key = await other.subtle.importKey('raw', randomBytes(32), { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
    const { handle } = (await other.request(Op.CIPHER_CREATE, { key: key.handle, mode: 'encrypt', algorithm: { name: 'AES-GCM' } })) as { handle: string };
    const { handle: dec } = (await other.request(Op.CIPHER_CREATE, { key: key.handle, mode: 'decrypt', algorithm: { name: 'AES-GCM' } })) as { handle: string };
    assert.equal(t.daemon.dm.liveNodes(id), 3);
    await key.release();
    await assert.rejects(other.request(Op.CIPHER_UPDATE, { handle, data: Buffer.alloc(10) }), { code: 'CRYPTOD_ERR_NOT_FOUND' });
    await assert.rejects(other.request(Op.CIPHER_FINAL, { handle: dec }), { code: 'CRYPTOD_ERR_NOT_FOUND' });
    assert.equal(t.daemon.dm.liveNodes(id), 0);

    const key2 = await other.subtle.importKey('raw', randomBytes(32), { name: 'AES-GCM' }, false, ['encrypt']);
    const s = other.createEncryptStream(key2, { name: 'AES-GCM' });
    s.write(randomBytes(100_000));
    await new Promise((resolve) => s.once('data', resolve)); // the context exists once output flows
    assert.equal(t.daemon.dm.liveNodes(id), 2);
    s.destroy();
    await eventually(() => t.daemon.dm.liveNodes(id) === 1, 2000, 'the destroyed stream to release its context');
    await sleep(10);
    await other.close();
    await eventually(() => t.daemon.dm.liveNodes(id) === 0, 2000, 'the connection to release the key');
  });
});
