/**
 * Model-based test of the Data Manager: random sequences of add root / add
 * child / delete / acquire / dispose accessor / deleteClient across three
 * clients, checked after every step against a model that only knows the rules
 * of design notes 1 and 2:
 *
 *   findable(n)  ⇔ n was not deleted (directly, by cascade, or with its client)
 *   freed(n)     ⇔ deleted(n) ∧ no accessor on n is held ∧ every child is freed
 *   busy(n)      ⇔ n is exclusive ∧ an accessor on n is held
 *
 * and that every value is disposed exactly when it is freed, once, after its
 * children, never while an accessor on it or on a descendant is held.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { BusyError, NotFoundError, QuotaError } from '../src/protocol/errors.js';
import { DataManager, type ClientId, type DataNodeAccessor, type DataNodeId, type NodeType, type NodeValue } from '../src/state/data-manager.js';
import { clientId } from '../src/state/ids.js';

const CLIENTS = [clientId('uid:1/a'), clientId('uid:1/b'), clientId('uid:2/a')];
const TYPES: NodeType[] = ['key', 'hash', 'hmac', 'cipher'];
const MAX_NODES = 6;
const NUM_RUNS = Number(process.env.CRYPTOD_PROPERTY_RUNS ?? 500);

type Cmd =
  | { t: 'addRoot'; c: number; type: number; exclusive: boolean }
  | { t: 'addChild'; acc: number; c: number; type: number; exclusive: boolean }
  | { t: 'delete'; node: number; c: number }
  | { t: 'acquire'; node: number; c: number }
  | { t: 'dispose'; acc: number }
  | { t: 'deleteClient'; c: number };

const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  { arbitrary: fc.record({ t: fc.constant('addRoot' as const), c: fc.nat(2), type: fc.nat(3), exclusive: fc.boolean() }), weight: 4 },
  { arbitrary: fc.record({ t: fc.constant('addChild' as const), acc: fc.nat(), c: fc.nat(9), type: fc.nat(3), exclusive: fc.boolean() }), weight: 3 },
  { arbitrary: fc.record({ t: fc.constant('delete' as const), node: fc.nat(), c: fc.nat(9) }), weight: 3 },
  { arbitrary: fc.record({ t: fc.constant('acquire' as const), node: fc.nat(), c: fc.nat(9) }), weight: 4 },
  { arbitrary: fc.record({ t: fc.constant('dispose' as const), acc: fc.nat() }), weight: 4 },
  { arbitrary: fc.record({ t: fc.constant('deleteClient' as const), c: fc.nat(2) }), weight: 1 },
);

interface MNode {
  id: DataNodeId;
  client: ClientId;
  type: NodeType;
  exclusive: boolean;
  parent: MNode | null;
  children: MNode[];
  deleted: boolean;
  held: number;
  value: Probe;
}

interface MAcc {
  node: MNode;
  acc: DataNodeAccessor<NodeValue>;
}

/** A value that checks, at the moment it is disposed, what the model says about it. */
class Probe implements NodeValue {
  disposals = 0;
  node!: MNode;
  constructor(readonly violations: string[]) {}
  dispose(): void {
    this.disposals++;
    const n = this.node;
    if (this.disposals > 1) this.violations.push(`${n.id} disposed ${this.disposals} times`);
    if (!n.deleted) this.violations.push(`${n.id} disposed while not deleted`);
    const heldBelow = (m: MNode): boolean => m.held > 0 || m.children.some(heldBelow);
    if (heldBelow(n)) this.violations.push(`${n.id} disposed while an accessor on it or a descendant is held`);
    for (const c of n.children) if (c.value.disposals !== 1) this.violations.push(`${n.id} disposed before its child ${c.id}`);
  }
}

const freed = (n: MNode): boolean => n.deleted && n.held === 0 && n.children.every(freed);

function markDeleted(n: MNode): void {
  n.deleted = true;
  for (const c of n.children) markDeleted(c);
}

/** A client index: 0–2 is one of the clients, 3–9 means "the node's own client" (most operations should be legitimate). */
function pickClient(c: number, own: ClientId): ClientId {
  return c < CLIENTS.length ? CLIENTS[c]! : own;
}

function run(cmds: Cmd[], maxNodes = MAX_NODES): void {
  const dm = new DataManager({ maxNodesPerClient: maxNodes });
  const violations: string[] = [];
  const nodes: MNode[] = [];
  const held: MAcc[] = [];
  const live = (c: ClientId): number => nodes.filter((n) => n.client === c && !freed(n)).length;

  const add = (client: ClientId, typeIx: number, exclusive: boolean, parent: MAcc | null): void => {
    const type = TYPES[typeIx]!;
    const value = new Probe(violations);
    const expectQuota = live(client) >= maxNodes;
    const expectNotFound = parent !== null && (parent.node.deleted || parent.node.client !== client);
    let id: DataNodeId;
    try {
      id = dm.add(client, type, value, parent === null ? { exclusive } : { exclusive, parent: parent.acc });
    } catch (err) {
      if (expectQuota) assert.ok(err instanceof QuotaError, `expected QuotaError, got ${String(err)}`);
      else if (expectNotFound) assert.ok(err instanceof NotFoundError, `expected NotFoundError, got ${String(err)}`);
      else throw err;
      return;
    }
    assert.ok(!expectQuota && !expectNotFound, `add succeeded; expected ${expectQuota ? 'QuotaError' : 'NotFoundError'}`);
    assert.ok(!nodes.some((n) => n.id === id), `id ${id} handed out twice`);
    const node: MNode = { id, client, type, exclusive, parent: parent?.node ?? null, children: [], deleted: false, held: 0, value };
    value.node = node;
    parent?.node.children.push(node);
    nodes.push(node);
  };

  const step = (c: Cmd): void => {
    switch (c.t) {
      case 'addRoot':
        add(CLIENTS[c.c]!, c.type, c.exclusive, null);
        return;
      case 'addChild': {
        const p = held[c.acc % Math.max(held.length, 1)];
        if (p === undefined) return;
        add(pickClient(c.c, p.node.client), c.type, c.exclusive, p);
        return;
      }
      case 'delete': {
        const n = nodes[c.node % Math.max(nodes.length, 1)];
        if (n === undefined) return;
        const client = pickClient(c.c, n.client);
        const expected = !n.deleted && client === n.client;
        // The model changes first: values are disposed inside the call and check the model then.
        if (expected) markDeleted(n);
        assert.equal(dm.delete(client, n.id), expected, `delete(${client}, ${n.id})`);
        return;
      }
      case 'acquire': {
        const n = nodes[c.node % Math.max(nodes.length, 1)];
        if (n === undefined) return;
        const client = pickClient(c.c, n.client);
        if (n.deleted || client !== n.client) {
          assert.throws(() => dm.acquire(client, n.id), NotFoundError);
        } else if (n.exclusive && n.held > 0) {
          assert.throws(() => dm.acquire(client, n.id), BusyError);
        } else {
          const acc = dm.acquire(client, n.id, n.type);
          assert.equal(acc.value, n.value);
          n.held++;
          held.push({ node: n, acc });
        }
        return;
      }
      case 'dispose': {
        const i = c.acc % Math.max(held.length, 1);
        const h = held[i];
        if (h === undefined) return;
        held.splice(i, 1);
        h.node.held--;
        h.acc[Symbol.dispose]();
        return;
      }
      case 'deleteClient': {
        const client = CLIENTS[c.c]!;
        const expected = nodes.filter((n) => n.client === client && !n.deleted);
        for (const n of expected) markDeleted(n);
        assert.equal(dm.deleteClient(client), expected.length);
        return;
      }
    }
  };

  const check = (): void => {
    assert.deepEqual(violations, []);
    const heldBy = new Map<MNode, MAcc[]>();
    for (const h of held) heldBy.set(h.node, [...(heldBy.get(h.node) ?? []), h]);
    for (const n of nodes) {
      assert.equal(n.value.disposals, freed(n) ? 1 : 0, `${n.id}: disposed ${n.value.disposals}, model says freed=${freed(n)}`);
      // Findability, probed without changing state: a successful probe is released at once.
      if (n.deleted) {
        assert.throws(() => dm.acquire(n.client, n.id), NotFoundError);
      } else if (n.exclusive && n.held > 0) {
        assert.throws(() => dm.acquire(n.client, n.id), BusyError);
      } else {
        dm.acquire(n.client, n.id)[Symbol.dispose]();
      }
      const mine = heldBy.get(n) ?? [];
      assert.equal(mine.length, n.held);
      for (const h of mine) assert.equal(h.acc.alive, !n.deleted);
    }
    let total = 0;
    const stats = new Map(dm.stats().map((s) => [s.clientId, s]));
    for (const client of CLIENTS) {
      const mine = nodes.filter((n) => n.client === client && !freed(n));
      total += mine.length;
      assert.equal(dm.liveNodes(client), mine.length, `live nodes of ${client}`);
      const s = stats.get(client);
      if (mine.length === 0) {
        assert.equal(s, undefined, `stats of ${client} with no live node`);
        continue;
      }
      assert.ok(s !== undefined);
      assert.equal(s.busy, mine.filter((n) => n.exclusive && n.held > 0).length, `busy nodes of ${client}`);
      const byType: Partial<Record<NodeType, number>> = {};
      for (const n of mine) byType[n.type] = (byType[n.type] ?? 0) + 1;
      assert.deepEqual(s.byType, byType);
    }
    assert.equal(dm.liveNodes(), total);
  };

  for (const c of cmds) {
    step(c);
    check();
  }

  // Tear down: every accessor goes, every client goes; nothing may be left.
  for (let h = held.pop(); h !== undefined; h = held.pop()) {
    h.node.held--;
    h.acc[Symbol.dispose]();
    check();
  }
  for (const client of CLIENTS) {
    for (const n of nodes) if (n.client === client) markDeleted(n);
    dm.deleteClient(client);
    check();
  }
  assert.equal(dm.liveNodes(), 0);
  assert.deepEqual(dm.stats(), []);
  for (const n of nodes) assert.equal(n.value.disposals, 1);
}

test(`the Data Manager agrees with the model after every step (${NUM_RUNS} runs)`, () => {
  fc.assert(
    fc.property(fc.array(cmd, { minLength: 1, maxLength: 80 }), (cmds) => run(cmds)),
    { numRuns: NUM_RUNS },
  );
});

test('a long run with a large quota keeps the model and the Data Manager in step', () => {
  fc.assert(
    fc.property(fc.array(cmd, { minLength: 200, maxLength: 300 }), (cmds) => run(cmds, 1000)),
    { numRuns: 30 },
  );
});
