/**
 * The daemon's connection under hostile input, over a real Unix socket with a
 * raw client that writes its own bytes. After every hostile input: the daemon
 * is up, a bystander client on another connection is unaffected, and the
 * hostile client's existing key handle still signs (when its framing survived).
 * Then ordering and pipelining: replies out of order, many in flight, and a
 * dropped connection failing pending calls.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { connect, type Client } from '../src/client/client.js';
import type { CryptoKey } from '../src/client/subtle.js';
import { encode } from '../src/protocol/cbor.js';
import { ConnectionClosedError } from '../src/protocol/errors.js';
import { FrameKind, encodeFrame } from '../src/protocol/frame.js';
import { Op, PROTOCOL_VERSION } from '../src/protocol/ops.js';
import { eventually, startTestDaemon, type TestDaemon } from './helpers/daemon.js';
import { RawClient, errorCode, rawFrame, rawHeader } from './helpers/raw-client.js';
import { TestOp, testNodes, withTestOps } from './helpers/test-ops.js';

const KEY_BYTES = Buffer.alloc(32, 0x5a);
const HMAC_PARAMS = { name: 'HMAC', hash: 'SHA-256' };

let t: TestDaemon;
let bystander: Client;
let bystanderKey: CryptoKey;

before(async () => {
  t = await startTestDaemon({ operations: withTestOps() });
  bystander = await t.connect('bystander');
  bystanderKey = await bystander.subtle.importKey('raw', KEY_BYTES, HMAC_PARAMS, false, ['sign', 'verify']);
});
after(async () => {
  await t.stop();
});

/** The daemon still serves, the bystander's connection and key are untouched. */
async function assertHealthy(): Promise<void> {
  assert.equal(await bystander.ping('still there'), 'still there');
  const tag = await bystander.subtle.sign('HMAC', bystanderKey, Buffer.from('m'));
  assert.equal(Buffer.from(tag).toString('hex'), createHmac('sha256', KEY_BYTES).update('m').digest('hex'));
  assert.equal(t.daemon.dm.liveNodes(bystander.info.clientId as never), 1);
}

/** A raw connection past HELLO that holds one HMAC key. */
async function rawWithKey(name: string): Promise<{ raw: RawClient; key: string }> {
  const raw = await RawClient.ready(t.socketPath, name);
  const r = await raw.call(Op.IMPORT_KEY, { format: 'raw', keyData: KEY_BYTES, algorithm: HMAC_PARAMS, extractable: false, usages: ['sign'] });
  assert.equal(r.kind, FrameKind.RESPONSE, JSON.stringify(r.payload));
  return { raw, key: (r.payload as { handle: string }).handle };
}

/** The raw client's key still signs on its connection. */
async function assertKeyWorks(raw: RawClient, key: string): Promise<void> {
  const r = await raw.call(Op.SIGN, { algorithm: 'HMAC', key, data: Buffer.from('m') });
  assert.equal(r.kind, FrameKind.RESPONSE, JSON.stringify(r.payload));
  assert.equal(Buffer.from(r.payload as Uint8Array).toString('hex'), createHmac('sha256', KEY_BYTES).update('m').digest('hex'));
}

async function closeAndCheckReleased(raw: RawClient, name: string): Promise<void> {
  raw.destroy();
  await eventually(() => t.daemon.dm.liveNodes(`local/${name}` as never) === 0, 5000, `nodes of ${name} released`);
}

describe('hostile input', () => {
  test('garbage whose first bytes read as a huge length: FRAME_TOO_LARGE, daemon and others unaffected', async () => {
    const { raw } = await rawWithKey('garbage1');
    raw.write(Buffer.from('GARBAGE!GARBAGE!GARBAGE!'));
    const f = await raw.next();
    assert.equal(errorCode(f), 'CRYPTOD_ERR_FRAME_TOO_LARGE');
    assert.equal(f.id, Buffer.from('GARBAGE!GARBAGE!').readUInt32BE(5));
    // The daemon now skips what the length announced; the client cannot resynchronize, so it closes.
    await closeAndCheckReleased(raw, 'garbage1');
    await assertHealthy();
  });

  test('a length field below 7: BAD_FRAME with id 0, its bytes skipped, the connection goes on', async () => {
    const { raw, key } = await rawWithKey('short');
    raw.write(Buffer.from([0, 0, 0, 3, 0xee, 0xee, 0xee]));
    const f = await raw.next();
    assert.equal(errorCode(f), 'CRYPTOD_ERR_BAD_FRAME');
    assert.equal(f.id, 0);
    await assertKeyWorks(raw, key);
    await closeAndCheckReleased(raw, 'short');
    await assertHealthy();
  });

  test('random garbage on many connections, before or after HELLO: the daemon stays up and nothing leaks', async () => {
    const before = t.daemon.dm.liveNodes();
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 200 }), fc.boolean(), async (bytes, afterHello) => {
        const raw = afterHello ? (await rawWithKey('fuzz')).raw : await RawClient.connect(t.socketPath);
        raw.write(bytes);
        await sleep(1);
        raw.destroy();
        await raw.whenClosed;
      }),
      { numRuns: 100 },
    );
    await eventually(() => t.daemon.dm.liveNodes() === before, 5000, 'fuzz connections released');
    await eventually(() => t.daemon.status().connections === 1, 5000, 'fuzz connections closed');
    await assertHealthy();
  });

  test('a frame of another kind: BAD_FRAME with its id; the connection goes on', async () => {
    const { raw, key } = await rawWithKey('kind');
    for (const kind of [0, FrameKind.RESPONSE, FrameKind.ERROR, 255]) {
      raw.write(rawFrame(kind, 77, Op.PING));
      const f = await raw.reply(77);
      assert.equal(errorCode(f), 'CRYPTOD_ERR_BAD_FRAME');
      assert.match(String((f.payload as { message: string }).message), new RegExp(`got kind ${kind}`));
    }
    await assertKeyWorks(raw, key);
    await closeAndCheckReleased(raw, 'kind');
    await assertHealthy();
  });

  test('undecodable CBOR payloads: BAD_FRAME with the request id; the connection goes on', async () => {
    const { raw, key } = await rawWithKey('cbor');
    const payloads = ['ff', '5f4101ff', '1c', 'a1', 'a2616101616102', '0000', 'c000', '62c328', 'a10102', Buffer.alloc(40, 0x81).toString('hex') + '00'];
    let id = 1;
    for (const op of [Op.PING, Op.SIGN, Op.IMPORT_KEY, Op.HELLO]) {
      for (const p of payloads) {
        raw.write(rawFrame(FrameKind.REQUEST, id, op, Buffer.from(p, 'hex')));
        const f = await raw.reply(id);
        assert.equal(errorCode(f), 'CRYPTOD_ERR_BAD_FRAME', `op ${op} payload ${p}`);
        assert.equal(f.op, op);
        id++;
      }
    }
    await assertKeyWorks(raw, key);
    await closeAndCheckReleased(raw, 'cbor');
    await assertHealthy();
  });

  test('an unknown op: UNKNOWN_OP with its id; the connection goes on', async () => {
    const { raw, key } = await rawWithKey('unknown');
    for (const op of [0x0000, 0x7777, 0xffff]) {
      raw.send(5, op, { anything: 1 });
      const f = await raw.reply(5);
      assert.equal(errorCode(f), 'CRYPTOD_ERR_UNKNOWN_OP');
      assert.equal(f.op, op);
    }
    await assertKeyWorks(raw, key);
    await closeAndCheckReleased(raw, 'unknown');
    await assertHealthy();
  });

  test('a request before HELLO: HANDSHAKE, and HELLO still works after it', async () => {
    const live = t.daemon.dm.liveNodes();
    const raw = await RawClient.connect(t.socketPath);
    for (const op of [Op.PING, Op.STATUS, Op.DIGEST, Op.GENERATE_KEY, Op.HASH_CREATE]) {
      const f = await raw.call(op, op === Op.DIGEST ? { algorithm: 'SHA-256', data: Buffer.from('x') } : undefined);
      assert.equal(errorCode(f), 'CRYPTOD_ERR_HANDSHAKE', `op ${op}`);
    }
    assert.equal(t.daemon.dm.liveNodes(), live, 'no node was made before the handshake');
    assert.equal((await raw.call(Op.HELLO, { version: PROTOCOL_VERSION, client: 'late' })).kind, FrameKind.RESPONSE);
    assert.equal((await raw.call(Op.PING, 'p')).payload, 'p');
    raw.destroy();
    await assertHealthy();
  });

  test('HELLO with bad arguments: INVALID_ARGUMENT, and a good HELLO after it works', async () => {
    const raw = await RawClient.connect(t.socketPath);
    for (const args of [undefined, 1, 'hello', [], { client: 'x' }, { version: '1' }, { version: 1, client: '' }, { version: 1, client: '../etc' }, { version: 1, client: 'x'.repeat(65) }]) {
      const f = await raw.call(Op.HELLO, args);
      assert.equal(errorCode(f), 'CRYPTOD_ERR_INVALID_ARGUMENT', JSON.stringify(args));
    }
    assert.equal((await raw.call(Op.HELLO, { version: PROTOCOL_VERSION, client: 'fine' })).kind, FrameKind.RESPONSE);
    raw.destroy();
    await assertHealthy();
  });

  test('HELLO with version 2: PROTOCOL_VERSION, then the daemon closes the connection', async () => {
    const raw = await RawClient.connect(t.socketPath);
    const f = await raw.call(Op.HELLO, { version: 2, client: 'future' });
    assert.equal(errorCode(f), 'CRYPTOD_ERR_PROTOCOL_VERSION');
    assert.deepEqual({ ...(f.payload as { detail: object }).detail }, { supported: PROTOCOL_VERSION, requested: 2 });
    await raw.whenClosed;
    await eventually(() => t.daemon.status().connections === 1, 5000, 'the connection gone from the daemon');
    await assertHealthy();
  });

  // Regression: after a version mismatch the daemon only half-closed (end()),
  // so a peer that kept its side open kept a connection in the daemon forever.
  test('HELLO with version 2 from a client that keeps its side open: the daemon still closes it', async () => {
    const raw = await RawClient.connect(t.socketPath, { allowHalfOpen: true });
    const f = await raw.call(Op.HELLO, { version: 2, client: 'stubborn' });
    assert.equal(errorCode(f), 'CRYPTOD_ERR_PROTOCOL_VERSION');
    await eventually(() => raw.ended, 5000, 'the daemon ending its side');
    await eventually(() => t.daemon.status().connections === 1, 5000, 'the daemon dropping the half-open connection');
    raw.destroy();
    await assertHealthy();
  });

  test('a second HELLO: HANDSHAKE; the first session and its key go on', async () => {
    const { raw, key } = await rawWithKey('twice');
    const f = await raw.call(Op.HELLO, { version: PROTOCOL_VERSION, client: 'other-name' });
    assert.equal(errorCode(f), 'CRYPTOD_ERR_HANDSHAKE');
    await assertKeyWorks(raw, key);
    assert.equal(t.daemon.dm.liveNodes('local/other-name' as never), 0);
    await closeAndCheckReleased(raw, 'twice');
    await assertHealthy();
  });

  test('an oversize frame: FRAME_TOO_LARGE with its id and op, then a request on the SAME connection works', async () => {
    const { raw, key } = await rawWithKey('big');
    const max = t.daemon.limits.maxFrame;
    const length = max + 100_000;
    raw.write(rawHeader(length, FrameKind.REQUEST, 4242, Op.SIGN));
    // The body arrives in many writes; a request frame hidden inside it must stay skipped.
    const body = Buffer.alloc(length - 7, 0x41);
    encodeFrame(FrameKind.REQUEST, 999, Op.PING, 'hidden').copy(body, 1000);
    for (let off = 0; off < body.length; off += 65_536) {
      raw.write(body.subarray(off, off + 65_536));
      if (off % (1 << 20) === 0) await sleep(1);
    }
    const f = await raw.reply(4242, 10_000);
    assert.equal(errorCode(f), 'CRYPTOD_ERR_FRAME_TOO_LARGE');
    assert.equal(f.op, Op.SIGN);
    assert.deepEqual({ ...(f.payload as { detail: object }).detail }, { maxFrame: max, length });
    await assertKeyWorks(raw, key);
    assert.ok(!raw.queued.some((q) => q.id === 999), 'the frame inside the skipped body was not run');
    await closeAndCheckReleased(raw, 'big');
    await assertHealthy();
  });

  test('an oversize frame before HELLO is answered too, and HELLO works after it', async () => {
    const raw = await RawClient.connect(t.socketPath);
    const length = t.daemon.limits.maxFrame + 1;
    raw.write(Buffer.concat([rawHeader(length, FrameKind.REQUEST, 7, Op.HELLO), Buffer.alloc(length - 7)]));
    assert.equal(errorCode(await raw.reply(7)), 'CRYPTOD_ERR_FRAME_TOO_LARGE');
    assert.equal((await raw.call(Op.HELLO, { version: PROTOCOL_VERSION, client: 'after-big' })).kind, FrameKind.RESPONSE);
    raw.destroy();
    await assertHealthy();
  });

  test('frames split into 1-byte writes are read as if whole', async () => {
    const raw = await RawClient.connect(t.socketPath);
    const bytes = Buffer.concat([
      encodeFrame(FrameKind.REQUEST, 1, Op.HELLO, { version: PROTOCOL_VERSION, client: 'dribble' }),
      encodeFrame(FrameKind.REQUEST, 2, Op.IMPORT_KEY, { format: 'raw', keyData: KEY_BYTES, algorithm: HMAC_PARAMS, extractable: false, usages: ['sign'] }),
      encodeFrame(FrameKind.REQUEST, 3, Op.PING, 'drip'),
    ]);
    for (const b of bytes) {
      raw.write(Buffer.from([b]));
      await new Promise(setImmediate);
    }
    assert.equal((await raw.reply(1)).kind, FrameKind.RESPONSE);
    const key = (await raw.reply(2)).payload as { handle: string };
    assert.equal((await raw.reply(3)).payload, 'drip');
    await assertKeyWorks(raw, key.handle);
    await closeAndCheckReleased(raw, 'dribble');
    await assertHealthy();
  });

  test('a request that fails in its handler leaves the connection and its handles usable', async () => {
    const { raw, key } = await rawWithKey('failing');
    const bad = [
      [Op.SIGN, { algorithm: 'HMAC', key: 'A'.repeat(22), data: Buffer.from('x') }, 'CRYPTOD_ERR_NOT_FOUND'],
      [Op.SIGN, { algorithm: 'HMAC', key: 'short', data: Buffer.from('x') }, 'CRYPTOD_ERR_INVALID_ARGUMENT'],
      [Op.SIGN, { algorithm: 'HMAC', key }, 'CRYPTOD_ERR_INVALID_ARGUMENT'],
      [Op.DIGEST, { algorithm: 'MD5', data: Buffer.from('x') }, undefined],
      [Op.RELEASE, { handle: 'B'.repeat(22) }, 'CRYPTOD_ERR_NOT_FOUND'],
    ] as const;
    for (const [op, args, code] of bad) {
      const f = await raw.call(op, args);
      const got = errorCode(f);
      if (code !== undefined) assert.equal(got, code, JSON.stringify(args));
      assert.notEqual(got, 'CRYPTOD_ERR_INTERNAL');
    }
    await assertKeyWorks(raw, key);
    await closeAndCheckReleased(raw, 'failing');
    await assertHealthy();
  });

  test('an exclusive node in use: a second request on it is refused at once with BUSY', async () => {
    const raw = await RawClient.ready(t.socketPath, 'busy');
    const handle = (await raw.call(TestOp.NODE_ADD, {})).payload as string;
    raw.send(1, TestOp.NODE_USE, { handle, ms: 300 });
    const started = Date.now();
    const second = await raw.call(TestOp.NODE_USE, { handle });
    assert.equal(errorCode(second), 'CRYPTOD_ERR_BUSY');
    assert.ok(Date.now() - started < 250, 'refused, not queued');
    assert.deepEqual({ ...(await raw.reply(1)).payload as object }, { alive: true });
    assert.deepEqual({ ...(await raw.call(TestOp.NODE_USE, { handle })).payload as object }, { alive: true });
    await closeAndCheckReleased(raw, 'busy');
  });

  // Regression (fixed in connection.ts `own()`): a node created by a request
  // that finished after its connection closed was never released.
  test('a node created after its connection closed is released at once', async () => {
    const before = { live: t.daemon.dm.liveNodes(), disposed: testNodes.disposed, created: testNodes.created };
    const raw = await RawClient.ready(t.socketPath, 'late-node');
    raw.send(1, TestOp.NODE_ADD, { delayMs: 100 });
    await sleep(10);
    raw.destroy();
    await eventually(() => testNodes.created === before.created + 1, 5000, 'the late node to be created');
    await eventually(() => t.daemon.dm.liveNodes() === before.live, 5000, 'the late node to be released');
    assert.equal(testNodes.disposed, before.disposed + 1);
    assert.equal(testNodes.doubleDisposed, 0);
  });
});

describe('resource exhaustion', () => {
  test('a flood of connections beyond the file-descriptor limit: the daemon survives and serves again', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cd-'));
    const socketPath = join(dir, 'd.sock');
    // Its own process, with few descriptors, so the flood exhausts them (EMFILE on accept).
    const child = spawn('sh', ['-c', `ulimit -n 64 && exec "${process.execPath}" --import tsx test/helpers/daemon-child.ts "${socketPath}"`], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
    try {
      await new Promise<void>((res, rej) => {
        child.stdout.on('data', () => res());
        child.on('exit', () => rej(new Error(`daemon exited early: ${stderr}`)));
      });
      const flood = Array.from({ length: 200 }, () => {
        const s = createConnection(socketPath);
        s.on('error', () => {});
        return s;
      });
      await sleep(500);
      assert.equal(child.exitCode, null, `the daemon died under the flood: ${stderr}`);
      for (const s of flood) s.destroy();
      // Once the descriptors are free again, a real client gets through.
      const deadline = Date.now() + 10_000;
      let pong: unknown;
      while (pong !== 'alive') {
        assert.ok(Date.now() < deadline, 'no client got through after the flood');
        try {
          const c = await connect({ socket: socketPath, clientName: 'after-flood' });
          pong = await c.ping('alive');
          await c.close();
        } catch {
          await sleep(50); // descriptors not free yet
        }
      }
    } finally {
      child.kill('SIGTERM');
      const code = await exited;
      rmSync(dir, { recursive: true, force: true });
      assert.equal(code, 0, `the daemon did not stop cleanly: ${stderr}`);
    }
  });
});

describe('ordering and pipelining', () => {
  test('a slow request and a fast one pipelined: the fast reply arrives first', async () => {
    const raw = await RawClient.ready(t.socketPath, 'order');
    raw.write(Buffer.concat([encodeFrame(FrameKind.REQUEST, 1, TestOp.SLOW, { ms: 200, echo: 'slow' }), encodeFrame(FrameKind.REQUEST, 2, Op.PING, 'fast')]));
    const first = await raw.next();
    const second = await raw.next();
    assert.deepEqual([first.id, first.payload], [2, 'fast']);
    assert.deepEqual([second.id, second.payload], [1, 'slow']);
    raw.destroy();
  });

  test('a multi-MiB hash update (processed in slices) and a PING pipelined: the PING reply arrives first', async () => {
    const c = await t.connect('big-hash');
    // Raw requests: the client library splits its updates into 256 KiB ones, which are not sliced.
    const { handle } = (await c.request(Op.HASH_CREATE, { algorithm: 'SHA-256' })) as { handle: string };
    await c.request(Op.CONTEXT_UPDATE, { handle, data: Buffer.from('start') });
    const data = randomBytes(3 * 1024 * 1024);
    const order: string[] = [];
    const updating = c.request(Op.CONTEXT_UPDATE, { handle, data }).then(() => order.push('update'));
    await new Promise(setImmediate); // the update request is written before the ping
    const pinging = c.ping('p').then(() => order.push('ping'));
    await Promise.all([updating, pinging]);
    assert.deepEqual(order, ['ping', 'update']);
    const digest = Buffer.from((await c.request(Op.CONTEXT_FINAL, { handle })) as Uint8Array).toString('hex');
    const { createHash } = await import('node:crypto');
    assert.equal(digest, createHash('sha256').update('start').update(data).digest('hex'));
    await c.close();
  });

  test('thousands of requests in flight on one connection, replies matched by id in any order', async () => {
    const c = await t.connect('many');
    const key = await c.subtle.importKey('raw', KEY_BYTES, HMAC_PARAMS, false, ['sign']);
    const jobs: Array<Promise<void>> = [];
    for (let i = 0; i < 3000; i++) {
      const kind = i % 3;
      if (kind === 0) {
        jobs.push(c.request(TestOp.SLOW, { ms: (i * 7) % 23, echo: i }).then((r) => assert.equal(r, i)));
      } else if (kind === 1) {
        jobs.push(c.ping(`p${i}`).then((r) => assert.equal(r, `p${i}`)));
      } else {
        const msg = Buffer.from(`m${i}`);
        jobs.push(
          c.subtle.sign('HMAC', key, msg).then((tag) => assert.equal(Buffer.from(tag).toString('hex'), createHmac('sha256', KEY_BYTES).update(msg).digest('hex'))),
        );
      }
    }
    await Promise.all(jobs);
    await c.close();
    await assertHealthy();
  });

  test('more requests in flight than maxInflightPerConnection: the daemon stops reading, then catches up', async () => {
    const small = await startTestDaemon({ operations: withTestOps(), limits: { maxInflightPerConnection: 4 } });
    try {
      const c = await small.connect('throttled');
      const started = Date.now();
      const replies = await Promise.all(Array.from({ length: 40 }, (_, i) => c.request(TestOp.SLOW, { ms: 20, echo: i })));
      assert.deepEqual(replies, Array.from({ length: 40 }, (_, i) => i));
      // 40 requests of 20 ms, at most 4 at a time: at least 10 rounds.
      assert.ok(Date.now() - started >= 180, `took only ${Date.now() - started} ms: the limit was not applied`);
      await c.close();
    } finally {
      await small.stop();
    }
  });

  test('a connection dropped by the client fails its pending calls with ConnectionClosedError', async () => {
    const c = await t.connect('dropper');
    const pending = [c.request(TestOp.SLOW, { ms: 2000 }), c.request(TestOp.SLOW, { ms: 2000 }), c.ping()];
    await sleep(20);
    c.connection.destroy();
    for (const p of pending.slice(0, 2)) await assert.rejects(p, ConnectionClosedError);
    await assert.rejects(c.ping(), ConnectionClosedError);
  });

  test('a connection dropped by the daemon fails pending calls with ConnectionClosedError', async () => {
    const d = await startTestDaemon({ operations: withTestOps(), limits: { shutdownGraceMs: 0 } });
    const c = await d.connect('dropped');
    const pending = c.request(TestOp.SLOW, { ms: 3000 });
    await sleep(20);
    const stopping = d.stop();
    await assert.rejects(pending, ConnectionClosedError);
    await assert.rejects(c.ping(), ConnectionClosedError);
    await stopping;
  });
});
