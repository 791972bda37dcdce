/**
 * Data Manager (design notes 1 and 2): index, hierarchy and cascade, busy,
 * accessors, references, quota, "not found" without an oracle, ids.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BusyError, InternalError, InvalidArgumentError, NotFoundError, QuotaError } from '../src/protocol/errors.js';
import { DataManager, type DataNodeAccessor, type DataNodeId, type NodeType, type NodeValue } from '../src/state/data-manager.js';
import { NodeIdGenerator, clientId, isNodeIdShape } from '../src/state/ids.js';

const A = clientId('uid:1/a');
const B = clientId('uid:2/b');

/** A node value that records when it was disposed, in one shared sequence. */
class Val implements NodeValue {
  disposed = 0;
  constructor(
    readonly name: string,
    readonly log: string[] = [],
  ) {}
  dispose(): void {
    this.disposed++;
    this.log.push(this.name);
  }
}

function notFound(fn: () => unknown): string {
  let message = '';
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof NotFoundError, `expected NotFoundError, got ${String(err)}`);
    assert.equal(err.code, 'CRYPTOD_ERR_NOT_FOUND');
    message = err.message;
    return true;
  });
  return message;
}

/** The accessor's node, for reaching the internal `release()` like an accessor does. */
function nodeOf(acc: DataNodeAccessor<NodeValue>): Parameters<DataManager['release']>[0] {
  return (acc as unknown as { node: Parameters<DataManager['release']>[0] }).node;
}

describe('add and lookup', () => {
  test('a root node is found by its client and id, with its type and value', () => {
    const dm = new DataManager();
    const v = new Val('k');
    const id = dm.add(A, 'key', v);
    assert.ok(isNodeIdShape(id));
    using acc = dm.acquire<Val>(A, id);
    assert.equal(acc.id, id);
    assert.equal(acc.clientId, A);
    assert.equal(acc.type, 'key');
    assert.equal(acc.value, v);
    assert.equal(acc.alive, true);
    assert.equal(dm.liveNodes(A), 1);
    assert.equal(dm.liveNodes(), 1);
  });

  test('a child is added under the node behind an accessor and found like any node', () => {
    const dm = new DataManager();
    const key = dm.add(A, 'key', new Val('k'));
    let child: DataNodeId;
    {
      using parent = dm.acquire(A, key);
      child = dm.add(A, 'hmac', new Val('c'), { parent, exclusive: true });
    }
    using acc = dm.acquire(A, child, 'hmac');
    assert.equal(acc.type, 'hmac');
    assert.equal(dm.liveNodes(A), 2);
  });

  test('acquire checks the expected type without side effects', () => {
    const dm = new DataManager();
    const id = dm.add(A, 'hash', new Val('h'), { exclusive: true });
    assert.throws(() => dm.acquire(A, id, 'key'), (e: unknown) => e instanceof InvalidArgumentError && /expected a key handle/.test(e.message));
    assert.throws(() => dm.acquire(A, id, ['key', 'hmac']), InvalidArgumentError);
    // The refused acquire did not mark the exclusive node busy.
    using acc = dm.acquire(A, id, ['hash', 'hmac']);
    assert.equal(acc.type, 'hash');
  });

  test('lookup is two Map hits: its cost does not grow with the number of nodes (O(1))', () => {
    const timeLookups = (dm: DataManager, ids: DataNodeId[]): number => {
      const rounds = 200_000;
      let best = Infinity;
      for (let r = 0; r < 5; r++) {
        const t0 = process.hrtime.bigint();
        for (let i = 0; i < rounds; i++) {
          const acc = dm.acquire(A, ids[i % ids.length]!);
          acc[Symbol.dispose]();
        }
        best = Math.min(best, Number(process.hrtime.bigint() - t0));
      }
      return best;
    };
    const small = new DataManager({ maxNodesPerClient: 1_000_000 });
    const smallIds = Array.from({ length: 16 }, (_, i) => small.add(A, 'key', new Val(`s${i}`)));
    const big = new DataManager({ maxNodesPerClient: 1_000_000 });
    const bigIds: DataNodeId[] = [];
    for (let i = 0; i < 200_000; i++) bigIds.push(big.add(A, 'key', new Val('')));
    for (let i = 0; i < 50_000; i++) big.add(B, 'key', new Val(''));
    // Look up the same 16 nodes in both, so only the index size differs.
    const probe = bigIds.filter((_, i) => i % 12_500 === 0);
    timeLookups(small, smallIds); // warm up
    const tSmall = timeLookups(small, smallIds);
    const tBig = timeLookups(big, probe);
    // A linear scan would be ~10^4 times slower; hash lookups stay within a small factor.
    assert.ok(tBig < tSmall * 8, `lookups among 250k nodes took ${tBig}ns vs ${tSmall}ns among 16`);
  });
});

describe('cascade', () => {
  test('deleting a parent makes its whole subtree NOT_FOUND and disposes each value once, children first', () => {
    const dm = new DataManager();
    const log: string[] = [];
    const vals = new Map<string, Val>();
    const ids = new Map<string, DataNodeId>();
    const parentOf: Record<string, string | null> = { root: null, a: 'root', b: 'root', a1: 'a', a2: 'a', a1x: 'a1', b1: 'b' };
    for (const [name, parent] of Object.entries(parentOf)) {
      const v = new Val(name, log);
      vals.set(name, v);
      if (parent === null) {
        ids.set(name, dm.add(A, 'key', v));
      } else {
        using p = dm.acquire(A, ids.get(parent)!);
        ids.set(name, dm.add(A, 'hash', v, { parent: p, exclusive: true }));
      }
    }
    const other = dm.add(A, 'key', new Val('other', log));
    assert.equal(dm.liveNodes(A), 8);

    assert.equal(dm.delete(A, ids.get('root')!), true);

    for (const id of ids.values()) notFound(() => dm.acquire(A, id));
    for (const v of vals.values()) assert.equal(v.disposed, 1, `${v.name} disposed ${v.disposed} times`);
    assert.equal(log.length, 7);
    for (const [name, parent] of Object.entries(parentOf)) {
      if (parent !== null) assert.ok(log.indexOf(name) < log.indexOf(parent), `${name} disposed after its parent ${parent}: ${log.join(',')}`);
    }
    // Only the subtree went.
    using acc = dm.acquire(A, other);
    assert.equal(dm.liveNodes(A), 1);
    // Deleting again, or deleting a node of the gone subtree, reports nothing to delete.
    assert.equal(dm.delete(A, ids.get('root')!), false);
    assert.equal(dm.delete(A, ids.get('a1x')!), false);
  });

  test('deleting a child leaves its parent alive and drops the parent back to its own reference', () => {
    const dm = new DataManager();
    const pv = new Val('p');
    const p = dm.add(A, 'key', pv);
    let c: DataNodeId;
    {
      using acc = dm.acquire(A, p);
      c = dm.add(A, 'hmac', new Val('c'), { parent: acc });
    }
    assert.equal(dm.delete(A, c), true);
    using still = dm.acquire(A, p);
    assert.equal(still.alive, true);
    still[Symbol.dispose]();
    assert.equal(dm.delete(A, p), true);
    assert.equal(pv.disposed, 1, 'the parent is freed as soon as it is deleted: no reference left over from the child');
  });

  test('a node of another client cannot be a parent (and the refusal is NOT_FOUND)', () => {
    const dm = new DataManager();
    const p = dm.add(A, 'key', new Val('p'));
    using acc = dm.acquire(A, p);
    notFound(() => dm.add(B, 'hmac', new Val('c'), { parent: acc }));
    assert.equal(dm.liveNodes(B), 0);
  });

  test('a deleted node cannot get new children', () => {
    const dm = new DataManager();
    const p = dm.add(A, 'key', new Val('p'));
    using acc = dm.acquire(A, p);
    dm.delete(A, p);
    notFound(() => dm.add(A, 'hmac', new Val('c'), { parent: acc }));
    assert.equal(dm.liveNodes(A), 1); // only the held, deleted parent
  });
});

describe('busy', () => {
  test('a second acquire of an exclusive node is refused at once with BusyError', () => {
    const dm = new DataManager();
    const id = dm.add(A, 'hash', new Val('h'), { exclusive: true });
    const first = dm.acquire(A, id);
    assert.throws(
      () => dm.acquire(A, id),
      (e: unknown) => e instanceof BusyError && e.code === 'CRYPTOD_ERR_BUSY' && /hash context is in use/.test(e.message),
    );
    first[Symbol.dispose]();
    using again = dm.acquire(A, id);
    assert.equal(again.id, id);
  });

  test('a non-exclusive node can be acquired many times at once', () => {
    const dm = new DataManager();
    const v = new Val('k');
    const id = dm.add(A, 'key', v);
    const accs = Array.from({ length: 100 }, () => dm.acquire(A, id));
    assert.equal(dm.stats()[0]!.busy, 0);
    dm.delete(A, id);
    for (const acc of accs.slice(1)) acc[Symbol.dispose]();
    assert.equal(v.disposed, 0, 'one accessor still holds the key');
    accs[0]![Symbol.dispose]();
    assert.equal(v.disposed, 1);
  });

  test('`using` releases the accessor when the function throws: not busy, references back', () => {
    const dm = new DataManager();
    const v = new Val('h');
    const id = dm.add(A, 'hash', v, { exclusive: true });
    const useAndFail = (): void => {
      using acc = dm.acquire(A, id);
      assert.equal(dm.stats()[0]!.busy, 1);
      void acc.value;
      throw new Error('handler failed');
    };
    assert.throws(useAndFail, /handler failed/);
    assert.equal(dm.stats()[0]!.busy, 0);
    using again = dm.acquire(A, id); // not busy
    again[Symbol.dispose]();
    // Only the owner's reference is left: deleting frees at once.
    dm.delete(A, id);
    assert.equal(v.disposed, 1);
  });

  test('`using` in an async function releases when it rejects after an await', async () => {
    const dm = new DataManager();
    const id = dm.add(A, 'hash', new Val('h'), { exclusive: true });
    const op = async (): Promise<void> => {
      using _acc = dm.acquire(A, id);
      await new Promise((r) => setTimeout(r, 5));
      throw new Error('late failure');
    };
    const running = op();
    assert.throws(() => dm.acquire(A, id), BusyError, 'busy across the await');
    await assert.rejects(running, /late failure/);
    using again = dm.acquire(A, id);
    assert.equal(again.alive, true);
  });
});

describe('references', () => {
  test('a node deleted while an accessor is held: NOT_FOUND to lookups, value usable, disposed with the accessor', () => {
    const dm = new DataManager();
    const v = new Val('k');
    const id = dm.add(A, 'key', v);
    const acc = dm.acquire<Val>(A, id);
    assert.equal(dm.delete(A, id), true);
    notFound(() => dm.acquire(A, id));
    assert.equal(dm.delete(A, id), false);
    assert.equal(acc.alive, false);
    assert.equal(acc.value, v);
    assert.equal(v.disposed, 0);
    assert.equal(dm.liveNodes(A), 1, 'still counted until freed');
    acc[Symbol.dispose]();
    assert.equal(v.disposed, 1);
    assert.equal(dm.liveNodes(A), 0);
    assert.deepEqual(dm.stats(), []);
  });

  test("a child keeps its parent's value alive until the child is freed", () => {
    const dm = new DataManager();
    const log: string[] = [];
    const pv = new Val('parent', log);
    const cv = new Val('child', log);
    const p = dm.add(A, 'key', pv);
    let c: DataNodeId;
    {
      using acc = dm.acquire(A, p);
      c = dm.add(A, 'hmac', cv, { parent: acc, exclusive: true });
    }
    const held = dm.acquire(A, c); // an operation in flight on the child
    dm.delete(A, p);
    notFound(() => dm.acquire(A, p));
    notFound(() => dm.acquire(A, c));
    assert.deepEqual(log, [], 'neither value is disposed while the child is held');
    assert.equal(dm.liveNodes(A), 2);
    held[Symbol.dispose]();
    assert.deepEqual(log, ['child', 'parent']);
    assert.equal(dm.liveNodes(), 0);
  });

  test('an accessor used after it was disposed throws; disposing twice is harmless', () => {
    const dm = new DataManager();
    const v = new Val('k');
    const id = dm.add(A, 'key', v);
    const acc = dm.acquire(A, id);
    acc[Symbol.dispose]();
    acc[Symbol.dispose]();
    assert.throws(() => acc.value, InternalError);
    assert.equal(acc.alive, false);
    dm.delete(A, id);
    assert.equal(v.disposed, 1, 'the second dispose did not put a second reference');
  });

  test('a put below zero throws InternalError (reached through the internal release())', () => {
    const dm = new DataManager();
    const v = new Val('k');
    const id = dm.add(A, 'key', v);
    const acc = dm.acquire(A, id);
    const node = nodeOf(acc);
    acc[Symbol.dispose]();
    dm.delete(A, id); // last reference: freed
    assert.equal(v.disposed, 1);
    assert.throws(() => dm.release(node), (e: unknown) => e instanceof InternalError && /below zero/.test(e.message));
    assert.equal(v.disposed, 1, 'the failed put did not dispose again');
    assert.equal(dm.liveNodes(), 0);
  });
});

describe('quota', () => {
  test('the N+1th node of a client is refused with QuotaError; freeing one allows another', () => {
    const dm = new DataManager({ maxNodesPerClient: 3 });
    const vals = [new Val('1'), new Val('2'), new Val('3')];
    const ids = vals.map((v) => dm.add(A, 'key', v));
    const extra = new Val('4');
    assert.throws(
      () => dm.add(A, 'key', extra),
      (e: unknown) => e instanceof QuotaError && e.code === 'CRYPTOD_ERR_QUOTA' && e.detail?.limit === 3,
    );
    assert.equal(dm.liveNodes(A), 3);
    assert.equal(extra.disposed, 0, 'a refused value is the caller’s to dispose');
    dm.add(B, 'key', new Val('b')); // other clients have their own quota
    dm.delete(A, ids[0]!);
    dm.add(A, 'key', new Val('5'));
    assert.throws(() => dm.add(A, 'key', new Val('6')), QuotaError);
  });

  test('a deleted node still held by an operation counts until it is freed', () => {
    const dm = new DataManager({ maxNodesPerClient: 1 });
    const id = dm.add(A, 'key', new Val('1'));
    const acc = dm.acquire(A, id);
    dm.delete(A, id);
    assert.throws(() => dm.add(A, 'key', new Val('2')), QuotaError);
    acc[Symbol.dispose]();
    dm.add(A, 'key', new Val('3'));
  });

  test('the limit must be a positive integer', () => {
    assert.throws(() => new DataManager({ maxNodesPerClient: 0 }), InvalidArgumentError);
    assert.throws(() => new DataManager({ maxNodesPerClient: 1.5 }), InvalidArgumentError);
    assert.equal(new DataManager().maxNodesPerClient, 10_000);
  });
});

describe('not found, without an oracle', () => {
  test("another client's id, a released id and a made-up id all give the same NOT_FOUND message", () => {
    const dm = new DataManager();
    const mine = dm.add(A, 'key', new Val('a'));
    const theirs = dm.add(B, 'key', new Val('b'));
    const released = dm.add(A, 'key', new Val('r'));
    dm.delete(A, released);
    const madeUp = new NodeIdGenerator().next();
    const messages = [
      notFound(() => dm.acquire(A, theirs)),
      notFound(() => dm.acquire(A, released)),
      notFound(() => dm.acquire(A, madeUp)),
      notFound(() => dm.acquire(A, 'not-even-an-id' as DataNodeId)),
      notFound(() => dm.acquire(clientId('uid:3/nobody'), mine)),
    ];
    assert.equal(new Set(messages).size, 1, messages.join(' | '));
    // delete() tells nothing about other clients either.
    assert.equal(dm.delete(A, theirs), false);
    assert.equal(dm.delete(A, madeUp), false);
    using stillThere = dm.acquire(B, theirs);
    assert.equal(stillThere.alive, true);
  });
});

describe('ids', () => {
  test('100k generated ids are distinct and well-formed', () => {
    const gen = new NodeIdGenerator();
    const seen = new Set<string>();
    for (let i = 0; i < 100_000; i++) {
      const id = gen.next();
      assert.ok(isNodeIdShape(id));
      seen.add(id);
    }
    assert.equal(seen.size, 100_000);
  });

  test('an id is never handed out again after it was released', () => {
    const dm = new DataManager();
    const released = new Set<string>();
    for (let i = 0; i < 100_000; i++) {
      const id = dm.add(A, 'key', new Val(''));
      assert.ok(!released.has(id), `id ${id} reused after release`);
      released.add(id);
      dm.delete(A, id);
    }
    assert.equal(released.size, 100_000);
    assert.equal(dm.liveNodes(), 0);
  });

  test('ids of two Data Managers (two daemons) do not follow a guessable pattern', () => {
    const a = new NodeIdGenerator().next();
    const b = new NodeIdGenerator().next();
    // Same counter value, different random prefix.
    assert.notEqual(a, b);
    assert.equal(Buffer.from(a, 'base64url').subarray(8).toString('hex'), Buffer.from(b, 'base64url').subarray(8).toString('hex'));
  });
});

describe('deleteClient and stats', () => {
  test('deleteClient deletes every node of one client (cascade included) and only that client', () => {
    const dm = new DataManager();
    const vals: Val[] = [];
    const mk = (name: string): Val => {
      const v = new Val(name);
      vals.push(v);
      return v;
    };
    const k = dm.add(A, 'key', mk('k'));
    {
      using p = dm.acquire(A, k);
      dm.add(A, 'hmac', mk('c1'), { parent: p, exclusive: true });
      dm.add(A, 'cipher', mk('c2'), { parent: p, exclusive: true });
    }
    dm.add(A, 'hash', mk('h'), { exclusive: true });
    const b = dm.add(B, 'key', new Val('b'));
    assert.equal(dm.deleteClient(A), 4, 'the count includes nodes deleted by cascade');
    for (const v of vals) assert.equal(v.disposed, 1);
    assert.equal(dm.liveNodes(A), 0);
    assert.equal(dm.liveNodes(), 1);
    using acc = dm.acquire(B, b);
    assert.equal(acc.alive, true);
    assert.equal(dm.deleteClient(A), 0);
    assert.equal(dm.deleteClient(clientId('uid:9/none')), 0);
  });

  test('deleteClient leaves nodes held by operations alive until their accessors go', () => {
    const dm = new DataManager();
    const v = new Val('h');
    const id = dm.add(A, 'hash', v, { exclusive: true });
    const acc = dm.acquire(A, id);
    dm.deleteClient(A);
    assert.equal(v.disposed, 0);
    assert.equal(dm.liveNodes(A), 1);
    acc[Symbol.dispose]();
    assert.equal(v.disposed, 1);
    assert.equal(dm.liveNodes(), 0);
  });

  test('stats() counts live nodes by type and busy nodes, per client', () => {
    const dm = new DataManager();
    const types: NodeType[] = ['key', 'key', 'hash', 'hmac', 'cipher'];
    const ids = types.map((t) => dm.add(A, t, new Val(t), { exclusive: t !== 'key' }));
    dm.add(B, 'key', new Val('b'));
    const busy1 = dm.acquire(A, ids[2]!);
    const busy2 = dm.acquire(A, ids[3]!);
    const shared = dm.acquire(A, ids[0]!); // a key: not exclusive, never busy
    const byClient = new Map(dm.stats().map((s) => [s.clientId, s]));
    assert.deepEqual(byClient.get(A), { clientId: A, live: 5, busy: 2, byType: { key: 2, hash: 1, hmac: 1, cipher: 1 } });
    assert.deepEqual(byClient.get(B), { clientId: B, live: 1, busy: 0, byType: { key: 1 } });
    busy1[Symbol.dispose]();
    dm.delete(A, ids[3]!); // busy and deleted: still counted, still busy
    assert.deepEqual(
      dm.stats().find((s) => s.clientId === A),
      { clientId: A, live: 5, busy: 1, byType: { key: 2, hash: 1, hmac: 1, cipher: 1 } },
    );
    busy2[Symbol.dispose]();
    shared[Symbol.dispose]();
    assert.deepEqual(
      dm.stats().find((s) => s.clientId === A),
      { clientId: A, live: 4, busy: 0, byType: { key: 2, hash: 1, cipher: 1 } },
    );
    dm.deleteClient(A);
    assert.deepEqual(
      dm.stats().map((s) => s.clientId),
      [B],
    );
  });
});
