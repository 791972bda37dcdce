/**
 * Hostile input, driven by fast-check (STYLE.md: properties, not examples).
 * Cases start from valid frames of every operation (test/helpers/fuzz-harness.ts)
 * and random argument maps, then flip bits, truncate, insert, delete, rewrite
 * length fields, kinds, ops and ids, splice CBOR between frames, duplicate
 * and drop frames, and split the stream at random points.
 *
 *   1. the frame decoder alone: how the bytes are chunked (or paused) never
 *      changes what is decoded, it agrees with an independent reference of
 *      the framing rules, and the CBOR decoder only ever throws BAD_FRAME;
 *   2. the whole request chain in-process (Connection → handlers → Data
 *      Manager, over a fake socket): every frame owed a reply gets exactly
 *      one, typed, or the daemon closed the connection; nothing is logged as
 *      a bug; no request fails with INTERNAL; no node outlives its connection;
 *   3. the same over a real Unix socket, with a well-behaved client working
 *      alongside, then `daemon.dm.liveNodes() === 0`.
 *
 * CI runs ≥ 100 000 cases in total; `npm run fuzz` (scripts/fuzz.mjs) runs
 * more: CRYPTOD_FUZZ_SCALE multiplies every count, CRYPTOD_FUZZ_SEED replays
 * a run (fast-check prints the seed and the shrunk case of a failure).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import { decode } from '../src/protocol/cbor.js';
import { CryptodError, errorCodes } from '../src/protocol/errors.js';
import { FrameKind, FrameReader, encodeFrame, type FrameSink } from '../src/protocol/frame.js';
import { Op, PROTOCOL_VERSION } from '../src/protocol/ops.js';
import { eventually, startTestDaemon } from './helpers/daemon.js';
import {
  ChainHarness,
  expectedReplies,
  fuzzCase,
  owedIncludes,
  prologue,
  bind,
  render,
  split,
  type Case,
  type Handles,
  type Reply,
} from './helpers/fuzz-harness.js';
import { RawClient } from './helpers/raw-client.js';

const SCALE = Number(process.env.CRYPTOD_FUZZ_SCALE ?? 1);
const RUNS = {
  decoder: Math.round(40_000 * SCALE),
  chain: Math.round(60_000 * SCALE),
  socket: Math.round(3_000 * SCALE),
};
const SEED = process.env.CRYPTOD_FUZZ_SEED === undefined ? undefined : Number(process.env.CRYPTOD_FUZZ_SEED);
const params = (numRuns: number): fc.Parameters<unknown> => (SEED === undefined ? { numRuns } : { numRuns, seed: SEED });

const MAX_FRAME = 64 * 1024;
const CODES = new Set(errorCodes());
const HELLO_ID = 0x7ffffff0;
const hello = (): Buffer => encodeFrame(FrameKind.REQUEST, HELLO_ID, Op.HELLO, { version: PROTOCOL_VERSION, client: 'fuzz' });

/** The bytes a case sends: its HELLO (clean most of the time), then its frames. */
function caseBytes(c: Case, h: Handles): Buffer {
  const first =
    c.hello.t === 'clean' ? hello() : c.hello.t === 'args' ? encodeFrame(FrameKind.REQUEST, HELLO_ID, Op.HELLO, c.hello.args) : Buffer.alloc(0);
  return Buffer.concat([first, render(c, h)]);
}

/** Handle-shaped strings for cases that never reach a daemon. */
const FAKE_HANDLES = Object.fromEntries(prologue().flatMap((p) => p.names).map((n, i) => [n, Buffer.alloc(16, i + 1).toString('base64url').slice(0, 22)])) as Handles;

/** Checks every reply of one case; returns what is wrong, or nothing. */
function checkReplies(replies: readonly Reply[], owed: readonly number[], closedByDaemon: boolean, problems: readonly string[]): string[] {
  const bad = [...problems];
  for (const r of replies) {
    if (r.kind === FrameKind.ERROR) {
      if (r.code === null || !CODES.has(r.code)) bad.push(`untyped error code ${r.code} for request ${r.id}`);
      if (r.code === 'CRYPTOD_ERR_INTERNAL') bad.push(`INTERNAL for request ${r.id} (op ${r.op}): a handler threw something other than a CryptodError`);
    }
  }
  const got = replies.map((r) => r.id);
  if (!owedIncludes(owed, got)) bad.push(`replies to requests that were not sent, or two replies to one: owed ${owed.join(',')}, got ${got.join(',')}`);
  if (!closedByDaemon && got.length !== owed.length) bad.push(`${owed.length} replies owed, ${got.length} sent, and the connection was not closed`);
  return bad;
}

test(`frame decoder: ${RUNS.decoder} cases — chunking and pausing never change the frames; CBOR errors are BAD_FRAME`, () => {
  let frames = 0;
  let undecodable = 0;
  fc.assert(
    fc.property(fuzzCase, fc.array(fc.nat(), { maxLength: 8 }), fc.nat({ max: 16 }), (c, cuts, pauseAt) => {
      const bytes = caseBytes(c, FAKE_HANDLES);
      const run = (chunks: Buffer[], pauseOn: number | null): string[] => {
        const events: string[] = [];
        let reader!: FrameReader;
        const sink: FrameSink = {
          frame(kind, id, op, buf, start, end) {
            events.push(`f ${kind} ${id} ${op} ${buf.subarray(start, end).toString('hex')}`);
            if (events.length === pauseOn) reader.pause();
          },
          oversize(kind, id, op, length) {
            events.push(`o ${kind} ${id} ${op} ${length}`);
            if (events.length === pauseOn) reader.pause();
          },
          malformed(length) {
            events.push(`m ${length}`);
            if (events.length === pauseOn) reader.pause();
          },
        };
        reader = new FrameReader(MAX_FRAME, sink);
        for (const chunk of chunks) {
          reader.push(Buffer.from(chunk)); // a copy per chunk, as sockets deliver
          reader.resume();
        }
        return events;
      };
      const whole = run([bytes], null);
      assert.deepEqual(run(split(bytes, cuts), pauseAt), whole);
      if (bytes.length <= 200) assert.deepEqual(run([...bytes].map((b) => Buffer.from([b])), pauseAt), whole);
      // An independent reading of the framing rules agrees on how many frames there are.
      assert.equal(expectedReplies(bytes, MAX_FRAME).length, whole.length);
      for (const e of whole) {
        if (!e.startsWith('f ')) continue;
        frames++;
        const payload = Buffer.from(e.split(' ')[4]!, 'hex');
        if (payload.length === 0) continue;
        try {
          decode(payload);
        } catch (err) {
          undecodable++;
          assert.ok(err instanceof CryptodError && err.code === 'CRYPTOD_ERR_BAD_FRAME', `decode threw ${String(err)}`);
        }
      }
    }),
    params(RUNS.decoder),
  );
  assert.ok(frames > RUNS.decoder && undecodable > 0, 'the cases exercised too little of the decoder');
});

test(`request chain in-process: ${RUNS.chain} cases — typed error or closed connection, no bug logged, no node leaked`, async (t) => {
  const hx = new ChainHarness({ maxFrame: MAX_FRAME });
  const codes = new Map<string, number>();
  let ok = 0;
  let closed = 0;
  const started = performance.now();
  await fc.assert(
    fc.asyncProperty(fuzzCase, async (c) => {
      const handles = await hx.ensureOwner();
      // Counted as a difference, so that after a leak fast-check shrinks to the case that leaks, not to any case.
      const strayBefore = hx.dm.liveNodes() - hx.owner!.conn.ownedCount;
      const s = hx.open();
      const bytes = caseBytes(c, handles);
      for (const chunk of split(bytes, c.cuts)) s.socket.feed(Buffer.from(chunk));
      await hx.settle(s);
      const replies = s.socket.out.replies;
      const bad = checkReplies(replies, expectedReplies(bytes, MAX_FRAME), s.socket.closedByDaemon, s.socket.out.problems);
      // The peer hangs up; everything this connection made must go with it.
      s.socket.destroy();
      await hx.settle(s);
      const owner = hx.owner!;
      const stray = hx.dm.liveNodes() - owner.conn.ownedCount - strayBefore;
      if (stray !== 0) bad.push(`${stray} nodes outlived their connection`);
      const bugs = hx.logs.splice(0).filter((l) => l.level === 'error');
      for (const b of bugs) bad.push(`logged as a bug: ${b.msg} ${JSON.stringify(b.fields)}`);
      assert.deepEqual(bad, []);
      for (const r of replies) {
        if (r.kind === FrameKind.RESPONSE) ok++;
        else codes.set(r.code!, (codes.get(r.code!) ?? 0) + 1);
      }
      if (s.socket.closedByDaemon) closed++;
    }),
    params(RUNS.chain),
  );
  const owner = hx.owner;
  if (owner !== null) {
    owner.socket.destroy();
    await hx.settle(owner);
  }
  assert.equal(hx.dm.liveNodes(), 0);
  assert.equal(hx.dm.memoryUsed(), 0);
  t.diagnostic(`${RUNS.chain} cases in ${((performance.now() - started) / 1000).toFixed(1)} s: ${ok} successful replies, ${closed} connections closed by the daemon, audit lines ${hx.auditLines}`);
  t.diagnostic(`error codes: ${[...codes].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k.replace('CRYPTOD_ERR_', '')} ${v}`).join(', ')}`);
  // The cases reached the handlers, not just the framing layer.
  assert.ok(ok > RUNS.chain / 2, `only ${ok} requests succeeded`);
  for (const code of ['CRYPTOD_ERR_BAD_FRAME', 'CRYPTOD_ERR_INVALID_ARGUMENT', 'CRYPTOD_ERR_UNKNOWN_OP', 'CRYPTOD_ERR_NOT_FOUND']) {
    assert.ok((codes.get(code) ?? 0) > 0, `no case produced ${code}`);
  }
});

test(`over a real socket: ${RUNS.socket} cases, a well-behaved client alongside, no node left after`, { timeout: 300_000 * Math.max(1, SCALE) }, async (t) => {
  const td = await startTestDaemon({ limits: { maxFrame: MAX_FRAME } });
  const started = performance.now();
  let goodRequests = 0;
  try {
    // The owner: same client as the fuzz connections, so its handles are theirs to use (and abuse).
    let owner: RawClient | null = null;
    let handles = {} as Handles;
    let ownerNodes = 0;
    const ensureOwner = async (): Promise<Handles> => {
      if (owner !== null && !owner.ended && td.daemon.dm.liveNodes() === ownerNodes) return handles;
      owner?.destroy();
      await eventually(() => td.daemon.dm.liveNodes() === 0, 5000, 'the previous owner’s nodes to go');
      owner = await RawClient.ready(td.socketPath, 'fuzz');
      handles = {} as Handles;
      for (const step of prologue()) {
        const r = await owner.call(step.op, bind(step.payload, handles));
        assert.equal(r.kind, FrameKind.RESPONSE, `prologue ${step.names.join(',')}: ${JSON.stringify(r.payload)}`);
        const v = r.payload as { handle?: string; publicKey?: { handle: string }; privateKey?: { handle: string } };
        if (step.names.length === 2) {
          handles[step.names[0]!] = v.publicKey!.handle;
          handles[step.names[1]!] = v.privateKey!.handle;
        } else {
          handles[step.names[0]!] = v.handle!;
        }
      }
      ownerNodes = td.daemon.dm.liveNodes();
      return handles;
    };
    const good = await td.connect('good');
    const goodData = Buffer.from('still fine');
    const goodDigest = createHash('sha256').update(goodData).digest('hex');

    await fc.assert(
      fc.asyncProperty(fuzzCase, async (c) => {
        const h = await ensureOwner();
        const raw = await RawClient.connect(td.socketPath);
        const bytes = caseBytes(c, h);
        const owed = expectedReplies(bytes, MAX_FRAME);
        for (const chunk of split(bytes, c.cuts)) raw.write(Buffer.from(chunk));
        // A well-behaved request while the hostile bytes are being handled.
        const goodReply = good.subtle.digest('SHA-256', goodData);
        const deadline = Date.now() + 5000;
        while (raw.queued.length < owed.length && !raw.ended) {
          if (Date.now() > deadline) assert.fail(`${owed.length} replies owed, ${raw.queued.length} received within 5 s`);
          await new Promise((r) => setTimeout(r, raw.queued.length === 0 ? 0 : 1));
        }
        await new Promise(setImmediate);
        const replies: Reply[] = raw.queued.map((f) => {
          const p = f.payload as { code?: unknown; message?: unknown } | undefined;
          return { kind: f.kind, id: f.id, op: f.op, code: typeof p?.code === 'string' ? p.code : null, message: null, value: f.payload };
        });
        const bad = checkReplies(replies, owed, raw.ended, []);
        assert.deepEqual(bad, []);
        assert.equal(Buffer.from(await goodReply).toString('hex'), goodDigest);
        goodRequests++;
        raw.destroy();
        await raw.whenClosed;
      }),
      params(RUNS.socket),
    );
    (owner as RawClient | null)?.destroy();
    await good.close();
    await eventually(() => td.daemon.dm.liveNodes() === 0, 5000, 'every node to be released');
    assert.equal(td.daemon.dm.memoryUsed(), 0);
    t.diagnostic(`${RUNS.socket} socket cases in ${((performance.now() - started) / 1000).toFixed(1)} s; the well-behaved client made ${goodRequests} requests, all correct`);
  } finally {
    await td.stop();
  }
});
