/**
 * Hash and HMAC contexts: handler-level tests of the exclusive nodes (busy,
 * slicing, cascade, disposal), then the client's createHash / createHmac
 * through a real daemon, including BUSY over the raw protocol.
 */
import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { after, before, describe, test } from 'node:test';
import type { HandlerResult, RequestContext } from '../src/ops/operation.js';
import { DEFAULT_LIMITS } from '../src/config/limits.js';
import type { CborValue } from '../src/protocol/cbor.js';
import { BusyError, CryptodError, NotFoundError } from '../src/protocol/errors.js';
import { Op } from '../src/protocol/ops.js';
import { SLICE, contextOperations } from '../src/ops/contexts.js';
import { KeyNode, addKey, type KeyUsage } from '../src/ops/key.js';
import { DataManager, type DataNodeId } from '../src/state/data-manager.js';
import { clientId } from '../src/state/ids.js';
import { eventually, startTestDaemon, type TestDaemon } from './helpers/daemon.js';

function context(): RequestContext {
  const owned = new Set<DataNodeId>();
  return {
    clientId: clientId('local/contexts-test'),
    clientName: 'contexts-test',
    dm: new DataManager(),
    owner: { own: (id) => void owned.add(id), disown: (id) => void owned.delete(id) },
    limits: DEFAULT_LIMITS,
    daemon: { startedAt: 0, version: 'test', status: () => null },
  };
}

function run(ctx: RequestContext, op: number, args: CborValue): HandlerResult | Promise<HandlerResult> {
  const operation = contextOperations.find((o) => o.op === op);
  assert.ok(operation);
  return operation.handle(ctx, args);
}

function handleOf(r: HandlerResult | Promise<HandlerResult>): string {
  const h = (r as { handle?: unknown }).handle;
  assert.equal(typeof h, 'string');
  return h as string;
}

function hmacKey(ctx: RequestContext, secret: Buffer, hash = 'SHA-256', usages: KeyUsage[] = ['sign', 'verify']): string {
  const node = new KeyNode({ algorithm: { name: 'HMAC', hash: { name: hash }, length: secret.length * 8 }, type: 'secret', extractable: false, usages, secret: Buffer.from(secret) });
  return (addKey(ctx, node) as { handle: string }).handle;
}

function code(fn: () => unknown, expected: string, mentions?: RegExp): void {
  assert.throws(fn, (err: unknown) => err instanceof CryptodError && err.code === expected && (mentions === undefined || mentions.test(err.message)));
}

describe('context handlers', () => {
  test('hash contexts of every hash match node:crypto; the final deletes the node', () => {
    const ctx = context();
    for (const [name, node] of [['SHA-1', 'sha1'], ['SHA-256', 'sha256'], ['sha-384', 'sha384'], ['SHA-512', 'sha512']] as const) {
      const handle = handleOf(run(ctx, Op.HASH_CREATE, { algorithm: name }));
      const parts = [randomBytes(10), Buffer.alloc(0), randomBytes(1000)];
      for (const data of parts) assert.equal(run(ctx, Op.CONTEXT_UPDATE, { handle, data }), null);
      const digest = run(ctx, Op.CONTEXT_FINAL, { handle });
      assert.deepEqual(digest, createHash(node).update(Buffer.concat(parts)).digest());
      code(() => run(ctx, Op.CONTEXT_UPDATE, { handle, data: Buffer.alloc(1) }), 'CRYPTOD_ERR_NOT_FOUND');
      code(() => run(ctx, Op.CONTEXT_FINAL, { handle }), 'CRYPTOD_ERR_NOT_FOUND');
    }
    assert.equal(ctx.dm.liveNodes(), 0, 'every context node was freed');
  });

  test('HMAC contexts use the key and its hash; the key needs usage sign', () => {
    const ctx = context();
    const secret = randomBytes(40);
    for (const [hash, node] of [['SHA-256', 'sha256'], ['SHA-512', 'sha512']] as const) {
      const key = hmacKey(ctx, secret, hash);
      const handle = handleOf(run(ctx, Op.HMAC_CREATE, { key }));
      run(ctx, Op.CONTEXT_UPDATE, { handle, data: Buffer.from('abc') });
      run(ctx, Op.CONTEXT_UPDATE, { handle, data: Buffer.from('def') });
      assert.deepEqual(run(ctx, Op.CONTEXT_FINAL, { handle }), createHmac(node, secret).update('abcdef').digest());
    }
    const verifyOnly = hmacKey(ctx, secret, 'SHA-256', ['verify']);
    code(() => run(ctx, Op.HMAC_CREATE, { key: verifyOnly }), 'CRYPTOD_ERR_INVALID_KEY', /'sign'/);
    const aes = (addKey(ctx, new KeyNode({ algorithm: { name: 'AES-GCM', length: 128 }, type: 'secret', extractable: false, usages: ['encrypt'], secret: randomBytes(16) })) as { handle: string }).handle;
    code(() => run(ctx, Op.HMAC_CREATE, { key: aes }), 'CRYPTOD_ERR_INVALID_KEY', /AES-GCM key.*HMAC/);
  });

  test('bad arguments are typed errors', () => {
    const ctx = context();
    code(() => run(ctx, Op.HASH_CREATE, { algorithm: 'MD5' }), 'CRYPTOD_ERR_UNSUPPORTED');
    code(() => run(ctx, Op.HASH_CREATE, { algorithm: 'AES-GCM' }), 'CRYPTOD_ERR_INVALID_ARGUMENT', /hash/);
    code(() => run(ctx, Op.HASH_CREATE, {}), 'CRYPTOD_ERR_INVALID_ARGUMENT', /'algorithm'/);
    code(() => run(ctx, Op.HMAC_CREATE, { key: 42 }), 'CRYPTOD_ERR_INVALID_ARGUMENT', /'key'/);
    const handle = handleOf(run(ctx, Op.HASH_CREATE, { algorithm: 'SHA-256' }));
    code(() => run(ctx, Op.CONTEXT_UPDATE, { handle }), 'CRYPTOD_ERR_INVALID_ARGUMENT', /'data'.*byte string.*nothing/);
    code(() => run(ctx, Op.CONTEXT_UPDATE, { handle, data: 'text' }), 'CRYPTOD_ERR_INVALID_ARGUMENT', /'data'/);
    code(() => run(ctx, Op.CONTEXT_UPDATE, { handle: 'x', data: Buffer.alloc(1) }), 'CRYPTOD_ERR_INVALID_ARGUMENT', /'handle'/);
    const key = hmacKey(ctx, randomBytes(32));
    code(() => run(ctx, Op.CONTEXT_UPDATE, { handle: key, data: Buffer.alloc(1) }), 'CRYPTOD_ERR_INVALID_ARGUMENT', /refers to a key, expected a hash or hmac handle/);
    // The context is untouched by the failed requests.
    assert.deepEqual(run(ctx, Op.CONTEXT_FINAL, { handle }), createHash('sha256').digest());
  });

  test('a large update is sliced; the context is busy until it ends, and a refused request changes nothing', async () => {
    const ctx = context();
    const handle = handleOf(run(ctx, Op.HASH_CREATE, { algorithm: 'SHA-256' }));
    const big = randomBytes(4 * SLICE + 123);
    const pending = run(ctx, Op.CONTEXT_UPDATE, { handle, data: big });
    assert.ok(pending instanceof Promise, 'an update over one slice is asynchronous');
    assert.throws(() => run(ctx, Op.CONTEXT_UPDATE, { handle, data: Buffer.from('intruder') }), BusyError);
    assert.throws(() => run(ctx, Op.CONTEXT_FINAL, { handle }), BusyError);
    assert.equal(ctx.dm.stats()[0]?.busy, 1);
    assert.equal(await pending, null);
    assert.equal(ctx.dm.stats()[0]?.busy, 0);
    assert.deepEqual(run(ctx, Op.CONTEXT_FINAL, { handle }), createHash('sha256').update(big).digest());
  });

  test('releasing the key deletes its HMAC contexts, even during a sliced update', async () => {
    const ctx = context();
    const key = hmacKey(ctx, randomBytes(32));
    const a = handleOf(run(ctx, Op.HMAC_CREATE, { key }));
    const b = handleOf(run(ctx, Op.HMAC_CREATE, { key }));
    const pending = run(ctx, Op.CONTEXT_UPDATE, { handle: b, data: randomBytes(8 * SLICE) });
    assert.ok(ctx.dm.delete(ctx.clientId, key as DataNodeId));
    code(() => run(ctx, Op.CONTEXT_UPDATE, { handle: a, data: Buffer.alloc(1) }), 'CRYPTOD_ERR_NOT_FOUND');
    await assert.rejects(Promise.resolve(pending), (e: unknown) => e instanceof NotFoundError && /released while this request/.test(e.message));
    code(() => run(ctx, Op.CONTEXT_FINAL, { handle: b }), 'CRYPTOD_ERR_NOT_FOUND');
    assert.equal(ctx.dm.liveNodes(), 0, 'key and contexts were freed once the update let go');
  });
});

describe('createHash / createHmac through the daemon', () => {
  let t: TestDaemon;
  before(async () => {
    t = await startTestDaemon();
  });
  after(async () => {
    await t.stop();
  });

  test('createHash: several updates, updates not awaited, no update at all', async () => {
    await using c = await t.connect();
    const h = c.createHash('SHA-256');
    const parts = Array.from({ length: 50 }, (_, i) => randomBytes(i * 97));
    const updates = parts.map((p) => h.update(p)); // queued: never BUSY
    const d = await h.digest();
    await Promise.all(updates);
    assert.equal(Buffer.from(d).toString('hex'), createHash('sha256').update(Buffer.concat(parts)).digest('hex'));
    const empty = c.createHash({ name: 'SHA-512' });
    assert.equal(Buffer.from(await empty.digest()).toString('hex'), createHash('sha512').digest('hex'));
    await assert.rejects(h.update(Buffer.alloc(1)), (e: unknown) => e instanceof NotFoundError && /digest\(\) was already called/.test(e.message));
    await assert.rejects(h.digest(), NotFoundError);
  });

  test('createHash with a bad algorithm fails at the first use, and stays failed', async () => {
    await using c = await t.connect();
    const h = c.createHash('MD5');
    await assert.rejects(h.update(Buffer.from('x')), { code: 'CRYPTOD_ERR_UNSUPPORTED' });
    await assert.rejects(h.digest(), { code: 'CRYPTOD_ERR_UNSUPPORTED' });
    await h.release();
  });

  test('createHmac matches node:crypto; releasing the key makes the context NOT_FOUND', async () => {
    await using c = await t.connect();
    const secret = randomBytes(64);
    const key = await c.subtle.importKey('raw', secret, { name: 'HMAC', hash: 'SHA-384' }, false, ['sign']);
    const m = c.createHmac(key);
    await m.update(Buffer.from('hello '));
    await m.update(new Uint8Array(Buffer.from('world')));
    assert.equal(Buffer.from(await m.digest()).toString('hex'), createHmac('sha384', secret).update('hello world').digest('hex'));

    const live = c.createHmac(key);
    await live.update(Buffer.from('x'));
    const raw = c.createHmac(key);
    await raw.update(Buffer.from('y'));
    // Find the raw handle the way a protocol client would: make one explicitly.
    const { handle } = (await c.request(Op.HMAC_CREATE, { key: key.handle })) as { handle: string };
    await key.release();
    await assert.rejects(c.request(Op.CONTEXT_UPDATE, { handle, data: Buffer.from('z') }), { code: 'CRYPTOD_ERR_NOT_FOUND' });
    await assert.rejects(c.request(Op.CONTEXT_FINAL, { handle }), { code: 'CRYPTOD_ERR_NOT_FOUND' });
    // Updates stream (their replies are not awaited): the failure is reported by the next call.
    await live.update(Buffer.from('z'));
    await assert.rejects(live.digest(), { code: 'CRYPTOD_ERR_NOT_FOUND' });
    await assert.rejects(live.update(Buffer.from('z')), { code: 'CRYPTOD_ERR_NOT_FOUND' });
    await assert.rejects(raw.digest(), { code: 'CRYPTOD_ERR_NOT_FOUND' });
    await eventually(() => t.daemon.dm.liveNodes(c.info.clientId as never) === 0, 2000, 'the key and its contexts to be freed');
  });

  test('BUSY: a second request on a context during a multi-MiB update is refused at once; only accepted data is hashed', async () => {
    await using c = await t.connect();
    for (const second of ['update', 'final'] as const) {
      const { handle } = (await c.request(Op.HASH_CREATE, { algorithm: 'SHA-256' })) as { handle: string };
      const big = randomBytes(3 * 1024 * 1024 + 5);
      const first = c.request(Op.CONTEXT_UPDATE, { handle, data: big });
      const intruder = second === 'update' ? c.request(Op.CONTEXT_UPDATE, { handle, data: Buffer.from('not hashed') }) : c.request(Op.CONTEXT_FINAL, { handle });
      await assert.rejects(intruder, (e: unknown) => e instanceof BusyError && e.code === 'CRYPTOD_ERR_BUSY');
      assert.equal(await first, null);
      const digest = (await c.request(Op.CONTEXT_FINAL, { handle })) as Uint8Array;
      assert.equal(Buffer.from(digest).toString('hex'), createHash('sha256').update(big).digest('hex'));
    }
  });

  test('inputs larger than the maximum frame are split by the client', async () => {
    const small = await startTestDaemon({ limits: { maxFrame: 16 * 1024 } });
    try {
      await using c = await small.connect();
      assert.equal(c.info.limits.maxFrame, 16 * 1024);
      const data = randomBytes(1024 * 1024 + 7);
      await assert.rejects(c.subtle.digest('SHA-256', data), { code: 'CRYPTOD_ERR_FRAME_TOO_LARGE' });
      const h = c.createHash('SHA-256');
      await h.update(data);
      assert.equal(Buffer.from(await h.digest()).toString('hex'), createHash('sha256').update(data).digest('hex'));
    } finally {
      await small.stop();
    }
  });

  test('updates stream without waiting for replies, within the window and the daemon\'s in-flight limits', async () => {
    for (const limits of [{}, { maxInflightPerConnection: 2, maxInflightBytesPerConnection: 1024 }, { maxFrame: 16 * 1024 }]) {
      const d = await startTestDaemon({ limits });
      try {
        await using c = await d.connect();
        const h = c.createHash('SHA-256');
        const want = createHash('sha256');
        // One buffer, refilled after each update resolves: its bytes are in a frame by then.
        const buf = Buffer.alloc(700 * 1024 + 3);
        for (let i = 0; i < 24; i++) {
          buf.fill(i);
          buf.writeUInt32BE(i * 7919, i * 1000);
          want.update(buf);
          await h.update(buf);
        }
        assert.equal(Buffer.from(await h.digest()).toString('hex'), want.digest('hex'), JSON.stringify(limits));
        assert.equal(d.daemon.dm.liveNodes(c.info.clientId as never), 0);
      } finally {
        await d.stop();
      }
    }
  });

  test('release and await using free the daemon node; closing the connection frees the rest', async () => {
    const c = await t.connect('ctx-lifetime');
    const id = c.info.clientId as never;
    {
      await using h = c.createHash('SHA-256');
      await h.update(Buffer.from('a'));
      assert.equal(t.daemon.dm.liveNodes(id), 1);
    }
    assert.equal(t.daemon.dm.liveNodes(id), 0);
    const h = c.createHash('SHA-1');
    await h.update(Buffer.from('a'));
    await h.release();
    await h.release();
    await assert.rejects(h.update(Buffer.from('b')), /released/);
    assert.equal(t.daemon.dm.liveNodes(id), 0);
    const kept = c.createHash('SHA-1');
    await kept.update(Buffer.from('a'));
    assert.equal(t.daemon.dm.liveNodes(id), 1);
    await c.close();
    await eventually(() => t.daemon.dm.liveNodes(id) === 0, 2000, 'the connection to release its contexts');
  });

  test('property: any chunking, updates awaited or streamed, gives node:crypto\'s digest and HMAC', async () => {
    await using c = await t.connect();
    const secret = randomBytes(32);
    const key = await c.subtle.importKey('raw', secret, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    // One input, cut at random points; pieces up to 600 KiB cross the 256 KiB
    // updates the client cuts and the daemon's sliced path (over 256 KiB).
    const input = randomBytes(2 * 1024 * 1024);
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.oneof(fc.integer({ min: 0, max: 70_000 }), fc.integer({ min: 200_000, max: 600_000 })), { minLength: 1, maxLength: 8 }),
        fc.boolean(),
        fc.constantFrom('hash', 'hmac'),
        async (cuts, awaitEach, kind) => {
          const h = kind === 'hash' ? c.createHash('SHA-256') : c.createHmac(key);
          const want = kind === 'hash' ? createHash('sha256') : createHmac('sha256', secret);
          const pending: Promise<void>[] = [];
          let off = 0;
          for (const n of cuts) {
            const piece = input.subarray(off, Math.min(off + n, input.length));
            off += piece.length;
            want.update(piece);
            if (awaitEach) await h.update(piece);
            else pending.push(h.update(piece));
          }
          await Promise.all(pending);
          assert.deepEqual(Buffer.from(await h.digest()), want.digest());
        },
      ),
      { numRuns: 25 },
    );
  });
});
