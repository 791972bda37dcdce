/**
 * Write batching (src/protocol/frame-batch.ts): the client coalesces the
 * requests issued in one tick into one socket write, the daemon the replies
 * it produces in one tick. First the batch itself (the frames are byte for
 * byte encodeFrame's, undo and failed encodes leave nothing behind, a batch
 * with key material is zeroed once written, buffers are recycled); then over
 * a real daemon: one write per tick, and nothing else changes — results,
 * ids, order, typed errors, back-pressure, a socket closed mid-batch.
 *
 * Socket writes are observed with a spy on net.Socket.prototype.write (the
 * real write still runs): the daemon runs in this process, so request frames
 * (kind 1) are the client's writes and reply frames (kind 2, 3) the daemon's.
 */
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import type { Client } from '../src/client/client.js';
import { MAX_DEPTH, type CborValue } from '../src/protocol/cbor.js';
import { BadFrameError, ConnectionClosedError, FrameTooLargeError, InvalidArgumentError } from '../src/protocol/errors.js';
import { FrameKind, encodeFrame } from '../src/protocol/frame.js';
import { BATCH_FLUSH_BYTES, FrameBatch } from '../src/protocol/frame-batch.js';
import { Op } from '../src/protocol/ops.js';
import { startTestDaemon, type TestDaemon } from './helpers/daemon.js';
import { framesIn, replyWrites, requestWrites, spyWrites } from './helpers/frame-writes.js';
import { RawClient } from './helpers/raw-client.js';
import { TestOp, withTestOps } from './helpers/test-ops.js';

const KEY_BYTES = Buffer.alloc(32, 0x3c);
const HMAC_PARAMS = { name: 'HMAC', hash: 'SHA-256' };

describe('FrameBatch', () => {
  const payload: fc.Arbitrary<CborValue> = fc.oneof(
    fc.constant(undefined),
    fc.string(),
    fc.integer(),
    fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u)),
    fc.dictionary(fc.string({ maxLength: 8 }), fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.uint8Array({ maxLength: 40 }).map((u) => Buffer.from(u)))),
  );

  test('the frames it queues are byte for byte what encodeFrame makes, across flushes and buffer growth', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 1, max: 0xffffffff }), fc.integer({ min: 0, max: 0xffff }), payload, fc.boolean()), { maxLength: 60 }), fc.integer({ min: 1, max: 20 }), (frames, every) => {
        const batch = new FrameBatch();
        const written: Buffer[] = [];
        const flush = (): void => batch.flush((bytes, done) => {
          written.push(Buffer.from(bytes));
          done();
        });
        frames.forEach(([id, op, p, sensitive], i) => {
          const length = batch.add(FrameKind.REQUEST, id, op, p, sensitive);
          assert.equal(length, encodeFrame(FrameKind.REQUEST, id, op, p).length - 4);
          if (i % every === every - 1) flush();
        });
        flush();
        assert.equal(batch.size, 0);
        const expected = Buffer.concat(frames.map(([id, op, p]) => encodeFrame(FrameKind.REQUEST, id, op, p)));
        assert.deepEqual(Buffer.concat(written), expected);
      }),
      { numRuns: 200 },
    );
  });

  test('undo takes back the last frame and zeroes it; a payload that fails to encode queues nothing', () => {
    const b2 = new FrameBatch();
    b2.add(FrameKind.REQUEST, 1, Op.PING, 'first', false);
    const before = b2.size;
    const undone = 4 + b2.add(FrameKind.REQUEST, 2, Op.PING, Buffer.alloc(100, 0xaa), true);
    b2.undo();
    assert.equal(b2.size, before);
    let nested: CborValue = 1;
    for (let i = 0; i <= MAX_DEPTH; i++) nested = [nested];
    assert.throws(() => b2.add(FrameKind.REQUEST, 3, Op.PING, { secret: Buffer.alloc(50, 0xbb), deep: nested }, true), BadFrameError);
    assert.equal(b2.size, before);
    b2.add(FrameKind.REQUEST, 4, Op.PING, 'last', false);
    let ids: number[] | undefined;
    b2.flush((bytes, done) => {
      ids = framesIn(bytes)?.map((f) => f.id);
      // The space after the queued frames held the undone and the failed frame: zeroed, not left there.
      const after = Buffer.from(bytes.buffer, bytes.byteOffset + bytes.length, before + undone - bytes.length);
      assert.ok(after.every((x) => x === 0), 'taken-back bytes are still in the buffer');
      done();
    });
    assert.deepEqual(ids, [1, 4]);
  });

  test('a batch that carried a sensitive frame is zeroed once written; a buffer back from the socket takes the next frames', () => {
    const batch = new FrameBatch();
    const bases: ArrayBufferLike[] = [];
    const held: Array<{ bytes: Buffer; done: () => void }> = [];
    batch.add(FrameKind.REQUEST, 1, Op.PING, 'plain', false);
    batch.add(FrameKind.REQUEST, 2, Op.IMPORT_KEY, { keyData: Buffer.alloc(32, 0x77) }, true);
    batch.flush((bytes, done) => held.push({ bytes, done }));
    const first = held[0]!;
    assert.ok(first.bytes.includes(Buffer.alloc(32, 0x77)), 'the key bytes went to the socket');
    first.done();
    assert.ok(first.bytes.every((x) => x === 0), 'the written batch was not zeroed');
    for (let i = 0; i < 6; i++) {
      batch.add(FrameKind.REQUEST, 10 + i, Op.PING, 'x', false);
      batch.flush((bytes, done) => {
        bases.push(bytes.buffer);
        const copy = Buffer.from(bytes);
        done();
        assert.deepEqual(bytes, copy, 'a batch without key material is left as written');
      });
    }
    assert.equal(new Set(bases).size, 1, 'a buffer written at once should be reused');
    // While the socket holds a buffer, the next frames go into another.
    const holding: Array<() => void> = [];
    for (let i = 0; i < 3; i++) {
      batch.add(FrameKind.REQUEST, 20 + i, Op.PING, 'y', false);
      batch.flush((bytes, done) => {
        bases.push(bytes.buffer);
        holding.push(done);
      });
    }
    assert.equal(new Set(bases.slice(-3)).size, 3);
    for (const done of holding) done();
    batch.add(FrameKind.REQUEST, 30, Op.PING, 'z', false);
    batch.flush((bytes, done) => {
      assert.equal(bytes.buffer, bases[bases.length - 3], 'the first buffer back is the one kept');
      done();
    });
  });
});

describe('over a real daemon', () => {
  let t: TestDaemon;
  let c: Client;
  before(async () => {
    t = await startTestDaemon({ operations: withTestOps() });
    // One frame per request: these tests are about frames and writes (test/coalesce.test.ts has the batch frames).
    c = await t.connect('batching', { coalesce: false });
  });
  after(async () => {
    await t.stop();
  });

  test('requests issued in one tick go out in one write; each gets its own result, matched by id', async () => {
    const key = await c.subtle.importKey('raw', KEY_BYTES, HMAC_PARAMS, false, ['sign']);
    await spyWrites(async (writes) => {
      const msgs = Array.from({ length: 200 }, (_, i) => Buffer.from(`message ${i}`));
      const tags = await Promise.all(msgs.map((m) => c.subtle.sign('HMAC', key, m)));
      tags.forEach((tag, i) => assert.equal(Buffer.from(tag).toString('hex'), createHmac('sha256', KEY_BYTES).update(msgs[i]!).digest('hex')));
      const mine = requestWrites(writes);
      assert.equal(mine.length, 1, `expected one write for 200 requests, got ${mine.length}`);
      const ids = framesIn(mine[0]!.bytes)!.map((f) => f.id);
      assert.equal(ids.length, 200);
      assert.equal(new Set(ids).size, 200, 'ids must be distinct');
      // The daemon answers a burst in few writes (each tick's replies in one).
      const replies = replyWrites(writes);
      assert.ok(replies.length < 200 && replies.some((w) => framesIn(w.bytes)!.length > 1), 'the daemon did not batch its replies');
    });
  });

  test('a tick of requests beyond BATCH_FLUSH_BYTES goes out in several writes of whole frames, in order', async () => {
    await spyWrites(async (writes) => {
      const blobs = Array.from({ length: 100 }, (_, i) => Buffer.alloc(1024, i));
      const replies = await Promise.all(blobs.map((b) => c.ping(b)));
      replies.forEach((r, i) => assert.ok(Buffer.from(r as Uint8Array).equals(blobs[i]!)));
      const mine = requestWrites(writes);
      assert.ok(mine.length >= Math.floor((100 * 1024) / BATCH_FLUSH_BYTES), `only ${mine.length} writes`);
      for (const w of mine) assert.ok(w.bytes.length < BATCH_FLUSH_BYTES + 2048, `a write of ${w.bytes.length} bytes`);
      const ids = mine.flatMap((w) => framesIn(w.bytes)!.map((f) => f.id));
      assert.equal(ids.length, 100);
      assert.deepEqual(ids, [...ids].sort((x, y) => x - y), 'frames out of order');
    });
  });

  test('a lone request is written on its own, in the tick it was made', async () => {
    await spyWrites(async (writes) => {
      const reply = c.ping('alone');
      assert.equal(requestWrites(writes).length, 0, 'nothing is written synchronously');
      await new Promise<void>((r) => process.nextTick(r));
      assert.equal(requestWrites(writes).length, 1);
      assert.equal(await reply, 'alone');
    });
  });

  test('typed errors, a frame too large and an unencodable payload in the middle of a batch leave the others intact', async () => {
    const d = await startTestDaemon({ operations: withTestOps(), limits: { maxFrame: 64 * 1024 } });
    try {
      const small = await d.connect('small-frames');
      let nested: CborValue = 1;
      for (let i = 0; i <= MAX_DEPTH; i++) nested = [nested];
      const outcomes = await spyWrites(async (writes) => {
        const jobs: Array<Promise<unknown>> = [];
        for (let i = 0; i < 30; i++) {
          if (i % 5 === 1) jobs.push(small.request(Op.SIGN, { algorithm: { name: 'HMAC' }, key: 'no-such-key', data: Buffer.alloc(1) }));
          else if (i % 5 === 2) jobs.push(small.ping(Buffer.alloc(70 * 1024, i)));
          else if (i % 5 === 3) jobs.push(new Promise((resolve, reject) => { try { small.ping(nested).then(resolve, reject); } catch (err) { reject(err); } }));
          else jobs.push(small.ping(`p${i}`));
        }
        const settled = await Promise.allSettled(jobs);
        assert.equal(requestWrites(writes).length, 1);
        return settled;
      });
      outcomes.forEach((o, i) => {
        if (i % 5 === 1) assert.ok(o.status === 'rejected' && o.reason instanceof InvalidArgumentError, `${i}: ${String((o as PromiseRejectedResult).reason)}`);
        else if (i % 5 === 2) assert.ok(o.status === 'rejected' && o.reason instanceof FrameTooLargeError, `${i}`);
        else if (i % 5 === 3) assert.ok(o.status === 'rejected' && o.reason instanceof BadFrameError, `${i}`);
        else assert.deepEqual(o, { status: 'fulfilled', value: `p${i}` });
      });
      assert.equal(await small.ping('after'), 'after');
    } finally {
      await d.stop();
    }
  });

  test('back-pressure: a batch far beyond the in-flight limits and the socket buffers arrives whole, every reply with its request', async () => {
    const d = await startTestDaemon({ operations: withTestOps(), limits: { maxInflightPerConnection: 4 } });
    try {
      const slow = await d.connect('pressure');
      const blobs = Array.from({ length: 300 }, (_, i) => randomBytes(16 * 1024 + i));
      const replies = await Promise.all(blobs.map((b, i) => (i % 2 === 0 ? slow.request(TestOp.SLOW, { ms: 1, echo: b }) : slow.ping(b))));
      replies.forEach((r, i) => assert.ok(Buffer.from(r as Uint8Array).equals(blobs[i]!), `reply ${i} is not its request's`));
      await slow.close();
    } finally {
      await d.stop();
    }
  });

  test('a socket destroyed with a batch queued fails every request of it with ConnectionClosedError', async () => {
    const gone = await t.connect('gone');
    const jobs = Array.from({ length: 50 }, (_, i) => gone.ping(`q${i}`));
    gone.connection.destroy();
    for (const j of jobs) await assert.rejects(j, ConnectionClosedError);
    await assert.rejects(gone.ping('later'), ConnectionClosedError);
    assert.equal(await c.ping('bystander'), 'bystander');
  });

  test('a socket closed by the daemon while a batch is in flight fails the pending requests, the next connection works', async () => {
    const d = await startTestDaemon({ operations: withTestOps(), limits: { shutdownGraceMs: 0 } });
    const cut = await d.connect('cut');
    const jobs = Array.from({ length: 40 }, (_, i) => cut.request(TestOp.SLOW, { ms: 2000, echo: i }));
    await new Promise((r) => setTimeout(r, 20));
    const stopping = d.stop();
    for (const j of jobs) await assert.rejects(j, ConnectionClosedError);
    await stopping;
  });

  test('key material: the client batch carrying an import is zeroed once written, and so is the daemon batch carrying an export', async () => {
    const secret = Buffer.alloc(32, 0x6d);
    await spyWrites(async (writes) => {
      const [key] = await Promise.all([c.subtle.importKey('raw', secret, HMAC_PARAMS, true, ['sign']), c.ping('beside'), c.ping('the import')]);
      const sent = requestWrites(writes).filter((w) => w.ops.has(Op.IMPORT_KEY));
      assert.equal(sent.length, 1);
      assert.ok(sent[0]!.written.every((x) => x === 0), 'the request batch with the key was not zeroed');
      const exported = Buffer.from(await c.subtle.exportKey('raw', key) as ArrayBuffer);
      assert.ok(exported.equals(secret));
      const exports = replyWrites(writes).filter((w) => w.ops.has(Op.EXPORT_KEY));
      assert.equal(exports.length, 1);
      assert.ok(exports[0]!.written.every((x) => x === 0), 'the reply batch with the exported key was not zeroed');
      assert.ok(!replyWrites(writes).some((w) => w.written.includes(secret)), 'key bytes are still in a reply buffer');
    });
  });

  test('raw pipelined frames: replies keep the request ids, across the daemon\'s reply batches', async () => {
    const raw = await RawClient.ready(t.socketPath, 'raw-batch');
    try {
      const frames = Array.from({ length: 100 }, (_, i) => encodeFrame(FrameKind.REQUEST, 1000 + i, Op.PING, `r${i}`));
      raw.write(Buffer.concat(frames));
      const got = [];
      for (let i = 0; i < frames.length; i++) got.push(await raw.next());
      assert.deepEqual(got.map((f) => [f.id, f.payload]), frames.map((_, i) => [1000 + i, `r${i}`]));
    } finally {
      raw.destroy();
    }
  });
});
