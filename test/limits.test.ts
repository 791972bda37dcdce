/**
 * Every limit of src/config/limits.ts, each hit on purpose through a real
 * daemon: its own typed error, or — for requests in flight — back-pressure
 * that slows the client without failing anything.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, test } from 'node:test';
import { connect } from '../src/client/client.js';
import type { Operation } from '../src/ops/operation.js';
import { resolveLimits } from '../src/config/limits.js';
import { allOperations } from '../src/ops/index.js';
import { asArgs, optInt } from '../src/ops/args.js';
import { CryptodError, ExpiredError, MemoryLimitError, NotFoundError, QuotaError, TooManyConnectionsError } from '../src/protocol/errors.js';
import { FrameKind } from '../src/protocol/frame.js';
import { Op, type OpCode } from '../src/protocol/ops.js';
import { DIGEST_CONTEXT_COST } from '../src/ops/contexts.js';
import { eventually, startTestDaemon } from './helpers/daemon.js';
import { RawClient, errorCode, rawHeader } from './helpers/raw-client.js';
import { TestOp, withTestOps } from './helpers/test-ops.js';

/** `{ ms, pad? }` → null after `ms`; counts how many run at once. */
const TRACK = 0x7f20 as OpCode;
function tracker(): { op: Operation; running: () => number; max: () => number } {
  let running = 0;
  let max = 0;
  return {
    running: () => running,
    max: () => max,
    op: {
      op: TRACK,
      access: { kind: 'none' },
      handle: async (_ctx, raw) => {
        running++;
        max = Math.max(max, running);
        try {
          await sleep(optInt(asArgs(raw), 'ms', 0, 10_000) ?? 0, undefined, { ref: false });
          return null;
        } finally {
          running--;
        }
      },
    },
  };
}

async function rejectsWith(p: Promise<unknown>, cls: abstract new (...a: never[]) => CryptodError, mentions?: RegExp): Promise<CryptodError> {
  let caught: unknown;
  await p.then(
    () => assert.fail(`expected ${cls.name}`),
    (err: unknown) => (caught = err),
  );
  assert.ok(caught instanceof cls, `expected ${cls.name}, got ${String(caught)}`);
  if (mentions !== undefined) assert.match((caught as Error).message, mentions);
  return caught as CryptodError;
}

const handle = (r: unknown): string => (r as { handle: string }).handle;

describe('limits are validated at start', () => {
  test('each new limit has a range', () => {
    for (const [k, v] of [
      ['maxInflightBytesPerConnection', 10],
      ['maxConnectionsPerClient', 0],
      ['contextIdleMs', -1],
      ['maxContextMemory', 1000],
      ['maxConnections', 1],
      ['helloTimeoutMs', 0],
    ] as const) {
      assert.throws(() => resolveLimits({ [k]: v }), (err: unknown) => err instanceof CryptodError && err.code === 'CRYPTOD_ERR_CONFIG' && err.message.includes(k));
    }
  });

  test('the per-uid connection cap stays below the overall one (the rest is the operator\'s reserve) and follows it by default', () => {
    assert.throws(
      () => resolveLimits({ maxConnections: 100, maxConnectionsPerUid: 100 }),
      (err: unknown) => err instanceof CryptodError && err.code === 'CRYPTOD_ERR_CONFIG' && /maxConnectionsPerUid must be an integer from 1 to 99/.test(err.message),
    );
    assert.equal(resolveLimits({ maxConnections: 100 }).maxConnectionsPerUid, 25);
    assert.equal(resolveLimits({}).maxConnectionsPerUid, 128);
    assert.equal(resolveLimits({}).maxConnections, 512);
  });
});

describe('frame size', () => {
  test('an oversize frame: FRAME_TOO_LARGE, the connection survives', async () => {
    const t = await startTestDaemon({ limits: { maxFrame: 2048 } });
    try {
      const raw = await RawClient.ready(t.socketPath);
      raw.write(Buffer.concat([rawHeader(7 + 5000, FrameKind.REQUEST, 9, Op.DIGEST), Buffer.alloc(5000)]));
      assert.equal(errorCode(await raw.reply(9)), 'CRYPTOD_ERR_FRAME_TOO_LARGE');
      assert.equal((await raw.call(Op.PING, 'still here')).payload, 'still here');
      raw.destroy();
    } finally {
      await t.stop();
    }
  });
});

describe('reply size', () => {
  test('a reply larger than maxFrame is refused with FRAME_TOO_LARGE (detail.reply), never sent; the connection survives', async () => {
    const t = await startTestDaemon({ limits: { maxFrame: 2048 } });
    try {
      const raw = await RawClient.ready(t.socketPath);
      // A 64-byte request whose reply would be ~5 KiB: a client sized its reader by HELLO's maxFrame.
      const big = await raw.call(Op.RANDOM, { length: 5000 });
      assert.equal(big.kind, FrameKind.ERROR);
      assert.equal(errorCode(big), 'CRYPTOD_ERR_FRAME_TOO_LARGE');
      const detail = (big.payload as { detail: Record<string, unknown> }).detail;
      assert.equal(detail.maxFrame, 2048);
      assert.equal(detail.reply, true);
      assert.ok((detail.length as number) > 5000);
      const small = await raw.call(Op.RANDOM, { length: 1000 });
      assert.equal(small.kind, FrameKind.RESPONSE);
      assert.equal((small.payload as Uint8Array).length, 1000);
      assert.equal((await raw.call(Op.PING, 'still here')).payload, 'still here');
      raw.destroy();
    } finally {
      await t.stop();
    }
  });
});

describe('requests in flight per connection: back-pressure, never an error', () => {
  test('pipelining 50x the count limit: all succeed, never more than the limit at once', async () => {
    const tr = tracker();
    const t = await startTestDaemon({ operations: [...allOperations(), tr.op], limits: { maxInflightPerConnection: 4 } });
    try {
      const c = await t.connect('pipeliner');
      const results = await Promise.all(Array.from({ length: 200 }, () => c.request(TRACK, { ms: 2 })));
      assert.equal(results.length, 200);
      assert.ok(results.every((r) => r === null));
      assert.ok(tr.max() <= 4, `${tr.max()} requests ran at once, the limit is 4`);
      assert.ok(tr.max() >= 2, 'the requests did not overlap at all: the test does not exercise the limit');
    } finally {
      await t.stop();
    }
  });

  test('pipelining large requests: the byte limit bounds what is held in flight', async () => {
    const tr = tracker();
    const size = 256 * 1024;
    // Four requests of 256 KiB reach the 1 MiB limit: reading pauses until one finishes.
    const t = await startTestDaemon({ operations: [...allOperations(), tr.op], limits: { maxInflightBytesPerConnection: 1024 * 1024 } });
    try {
      const c = await t.connect('big-pipeliner');
      const pad = randomBytes(size);
      const results = await Promise.all(Array.from({ length: 60 }, () => c.request(TRACK, { ms: 3, pad })));
      assert.ok(results.every((r) => r === null));
      assert.ok(tr.max() <= 4, `${tr.max()} requests of 256 KiB were held at once, the byte limit allows 4`);
      assert.ok(tr.max() >= 2, 'the requests did not overlap at all: the test does not exercise the limit');
    } finally {
      await t.stop();
    }
  });
});

describe('connections per client', () => {
  test('HELLO beyond the limit: TOO_MANY_CONNECTIONS, the connection is closed, others are unaffected', async () => {
    const t = await startTestDaemon({ limits: { maxConnectionsPerClient: 2 } });
    try {
      const a = await t.connect('svc');
      const b = await t.connect('svc');
      const err = await rejectsWith(connect({ socket: t.socketPath, clientName: 'svc' }), TooManyConnectionsError, /2 connections open, the limit is 2/);
      assert.equal(err.detail?.limit, 2);
      // The daemon closed it: only two connections of 'svc' remain.
      await eventually(() => t.daemon.status().connections === 2, 2000, 'the refused connection to close');
      // A raw client that pipelines a request after the refused HELLO gets no service either.
      const raw = await RawClient.connect(t.socketPath);
      raw.send(1, Op.HELLO, { version: 1, client: 'svc' });
      raw.send(2, Op.DIGEST, { algorithm: 'SHA-256', data: Buffer.from('x') });
      assert.equal(errorCode(await raw.reply(1)), 'CRYPTOD_ERR_TOO_MANY_CONNECTIONS');
      const second = await raw.reply(2).catch(() => null);
      assert.ok(second === null || second.kind === FrameKind.ERROR, 'a request after a refused HELLO was served');
      await raw.whenClosed;
      // Another client name is another client.
      const other = await t.connect('other');
      assert.equal(await other.ping('ok'), 'ok');
      // Closing one frees a slot.
      await a.close();
      await eventually(() => t.daemon.status().connections === 2, 2000, 'the closed connection to go');
      const again = await t.connect('svc');
      assert.equal(await again.ping(1), 1);
      assert.equal(await b.ping(2), 2);
    } finally {
      await t.stop();
    }
  });
});

describe('live nodes per client', () => {
  test('QUOTA, counted over all connections of the client', async () => {
    const t = await startTestDaemon({ limits: { maxNodesPerClient: 3 } });
    try {
      const a = await t.connect('q');
      const b = await t.connect('q');
      await a.request(Op.HASH_CREATE, { algorithm: 'SHA-256' });
      await b.request(Op.HASH_CREATE, { algorithm: 'SHA-256' });
      await a.request(Op.HASH_CREATE, { algorithm: 'SHA-256' });
      await rejectsWith(b.request(Op.HASH_CREATE, { algorithm: 'SHA-256' }), QuotaError);
    } finally {
      await t.stop();
    }
  });
});

describe('idle contexts expire', () => {
  test('an unused context is released and reported EXPIRED; a used one, a held one and keys stay', async () => {
    const t = await startTestDaemon({ operations: withTestOps(), limits: { contextIdleMs: 300 } });
    try {
      const c = await t.connect('idle');
      const idle = handle(await c.request(Op.HASH_CREATE, { algorithm: 'SHA-256' }));
      const busy = handle(await c.request(Op.HASH_CREATE, { algorithm: 'SHA-256' }));
      const key = await c.subtle.importKey('raw', randomBytes(32), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
      const held = (await c.request(TestOp.NODE_ADD, {})) as string;
      const holding = c.request(TestOp.NODE_USE, { handle: held, ms: 1000 });
      const liveBefore = t.daemon.dm.liveNodes();
      for (let i = 0; i < 20; i++) {
        await c.request(Op.CONTEXT_UPDATE, { handle: busy, data: Buffer.from([i]) });
        await sleep(50);
      }
      // 1000 ms: well past 125 % of the idle time for `idle`; `busy` was used every 50 ms.
      await rejectsWith(c.request(Op.CONTEXT_UPDATE, { handle: idle, data: Buffer.from('x') }), ExpiredError, /--context-idle-ms/);
      assert.equal(t.daemon.dm.liveNodes(), liveBefore - 1, 'exactly the idle context was released');
      // RELEASE of it is NOT_FOUND (the client library tolerates that on release).
      await rejectsWith(c.request(Op.RELEASE, { handle: idle }), NotFoundError);
      // The used context, the key and the node held by a request in flight are all there.
      assert.equal((await c.request(Op.CONTEXT_FINAL, { handle: busy })) instanceof Uint8Array, true);
      assert.equal((await c.subtle.sign('HMAC', key, Buffer.from('m'))).byteLength, 32);
      assert.equal(((await holding) as { alive: boolean }).alive, true);
    } finally {
      await t.stop();
    }
  });

  test('the memory of expired handles is bounded: the oldest are forgotten and become NOT_FOUND', async () => {
    const t = await startTestDaemon({ limits: { contextIdleMs: 100 } });
    try {
      const c = await t.connect('many');
      const n = 4096 + 10;
      const ids = (await Promise.all(Array.from({ length: n }, () => c.request(Op.HASH_CREATE, { algorithm: 'SHA-256' })))).map(handle);
      await eventually(() => t.daemon.dm.liveNodes() === 0, 3000, 'every context to expire');
      await rejectsWith(c.request(Op.CONTEXT_UPDATE, { handle: ids[0]!, data: Buffer.alloc(1) }), NotFoundError);
      await rejectsWith(c.request(Op.CONTEXT_UPDATE, { handle: ids[n - 1]!, data: Buffer.alloc(1) }), ExpiredError);
      // Another client never learns about this client's expired handles.
      const spy = await t.connect('spy');
      await rejectsWith(spy.request(Op.CONTEXT_UPDATE, { handle: ids[n - 1]!, data: Buffer.alloc(1) }), NotFoundError);
    } finally {
      await t.stop();
    }
  });
});

describe('total context memory', () => {
  test('MEMORY_LIMIT when the daemon-wide budget is used up; released contexts refund it', async () => {
    const budget = 64 * 1024;
    const t = await startTestDaemon({ limits: { maxContextMemory: budget, maxContextMemoryPerClient: budget } });
    try {
      const a = await t.connect('a');
      const b = await t.connect('b');
      const fit = budget / DIGEST_CONTEXT_COST;
      const made: string[] = [];
      for (let i = 0; i < fit; i++) made.push(handle(await (i % 2 ? a : b).request(Op.HASH_CREATE, { algorithm: 'SHA-256' })));
      assert.equal(t.daemon.dm.memoryUsed(), budget);
      // The budget is shared: client `a` is refused because of what `b` holds too.
      const err = await rejectsWith(a.request(Op.HASH_CREATE, { algorithm: 'SHA-512' }), MemoryLimitError, /context memory is used up/);
      assert.deepEqual({ ...err.detail }, { scope: 'daemon', budget, used: budget, cost: DIGEST_CONTEXT_COST });
      await b.request(Op.RELEASE, { handle: made[0]! });
      await a.request(Op.HASH_CREATE, { algorithm: 'SHA-512' });
      await b.close();
      await eventually(() => t.daemon.dm.memoryUsed() === (fit / 2 + 1) * DIGEST_CONTEXT_COST, 2000, 'b’s contexts to be refunded');
    } finally {
      await t.stop();
    }
    assert.equal(t.daemon.dm.memoryUsed(), 0);
  });

  test('one client filling its share gets MEMORY_LIMIT (scope client); the others still get contexts', async () => {
    const share = 16 * DIGEST_CONTEXT_COST;
    const t = await startTestDaemon({ limits: { maxContextMemory: 4 * share } });
    try {
      const greedy = await t.connect('greedy');
      const second = await t.connect('greedy'); // the same client: the share is per ClientId, not per connection
      const other = await t.connect('other');
      assert.equal(greedy.info.limits.maxContextMemoryPerClient, share, 'a quarter of the total by default');
      for (let i = 0; i < 16; i++) await (i % 2 ? greedy : second).request(Op.HASH_CREATE, { algorithm: 'SHA-256' });
      const err = await rejectsWith(second.request(Op.HASH_CREATE, { algorithm: 'SHA-256' }), MemoryLimitError, /this client's share of context memory is used up/);
      assert.deepEqual({ ...err.detail }, { scope: 'client', budget: share, used: share, cost: DIGEST_CONTEXT_COST });
      for (let i = 0; i < 16; i++) await other.request(Op.HASH_CREATE, { algorithm: 'SHA-256' });
      assert.equal(t.daemon.dm.memoryUsed(), 2 * share);
    } finally {
      await t.stop();
    }
  });

  test('streams are charged their buffers; a decrypting stream the largest segment a header may name', async () => {
    const t = await startTestDaemon({ limits: { maxContextMemory: 256 * 1024, maxContextMemoryPerClient: 256 * 1024 } });
    try {
      const c = await t.connect('streams');
      const key = await c.subtle.importKey('raw', randomBytes(32), { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
      const k = key.handle;
      const enc = handle(await c.request(Op.CIPHER_CREATE, { key: k, mode: 'encrypt', algorithm: { name: 'AES-GCM', segmentSize: 64 * 1024 } }));
      const used = t.daemon.dm.memoryUsed();
      assert.ok(used > 64 * 1024 && used < 70 * 1024, `an encrypting stream of 64 KiB segments is charged ${used} bytes`);
      await rejectsWith(c.request(Op.CIPHER_CREATE, { key: k, mode: 'decrypt', algorithm: { name: 'AES-GCM' } }), MemoryLimitError);
      await c.request(Op.CIPHER_FINAL, { handle: enc });
      assert.equal(t.daemon.dm.memoryUsed(), 0);
    } finally {
      await t.stop();
    }
  });
});


test('HELLO reports every named limit, as configured', async () => {
  const limits = {
    maxFrame: 64 * 1024,
    maxNodesPerClient: 7,
    maxInflightPerConnection: 9,
    maxInflightBytesPerConnection: 1 << 20,
    maxConnectionsPerClient: 3,
    maxConnectionsPerUid: 11,
    maxConnections: 40,
    helloTimeoutMs: 4321,
    contextIdleMs: 1234,
    maxContextMemory: 1 << 20,
    maxContextMemoryPerClient: 1 << 18,
    maxBatchItems: 17,
    maxWindowBytes: 1 << 21,
  };
  const t = await startTestDaemon({ limits });
  try {
    const c = await t.connect('limits');
    assert.deepEqual({ ...c.info.limits }, limits);
  } finally {
    await t.stop();
  }
});
