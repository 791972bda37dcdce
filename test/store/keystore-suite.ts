/**
 * The behaviour every keystore backend must show. A backend's test file calls
 * `keystoreSuite('sqlite', open)`; `open` returns a fresh, empty store.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { InvalidArgumentError, NotFoundError } from '../../src/protocol/errors.js';
import type { Keystore, KeyVersionRecord, ManagedKeyRecord } from '../../src/store/keystore.js';

export interface OpenedStore {
  store: Keystore;
  cleanup(): Promise<void>;
}

export function keyRecord(name: string, over: Partial<ManagedKeyRecord> = {}): ManagedKeyRecord {
  return { name, type: 'aes-256-gcm', policy: { rotateEveryMs: 86_400_000, tags: ['a', 'b'], nested: { x: 1 } }, createdAt: 1_700_000_000_000, updatedAt: 1_700_000_000_000, disabled: false, ...over };
}

export function versionRecord(name: string, version: number, over: Partial<KeyVersionRecord> = {}): KeyVersionRecord {
  return { name, version, state: 'active', createdAt: 1_700_000_000_000, notBefore: 1_700_000_000_000 + version, notAfter: null, wrapped: randomBytes(61), kekId: 'local:0011223344556677', encryptions: 0, ...over };
}

class Boom extends Error {}

export function keystoreSuite(name: string, open: () => Promise<OpenedStore>): void {
  async function withStore(f: (store: Keystore) => Promise<void>): Promise<void> {
    const { store, cleanup } = await open();
    try {
      await f(store);
    } finally {
      await store.close();
      await cleanup();
    }
  }

  describe(`keystore contract: ${name}`, () => {
    it('puts, gets and lists keys', () => withStore(async (store) => {
      await store.transaction(async (tx) => {
        await tx.putKey(keyRecord('zeta'));
        await tx.putKey(keyRecord('alpha', { disabled: true, policy: {} }));
      });
      const [alpha, missing, all] = await store.read(async (r) => [await r.getKey('alpha'), await r.getKey('nope'), await r.listKeys()] as const);
      assert.deepEqual(alpha, keyRecord('alpha', { disabled: true, policy: {} }));
      assert.equal(missing, undefined);
      assert.deepEqual(all.map((k) => k.name), ['alpha', 'zeta']);
      assert.deepEqual(all[1], keyRecord('zeta'));
      await store.transaction((tx) => tx.putKey(keyRecord('zeta', { type: 'ed25519', updatedAt: 1_800_000_000_000 })));
      assert.equal((await store.read((r) => r.getKey('zeta')))?.type, 'ed25519');
    }));

    it('stores versions with their material, ordered by version', () => withStore(async (store) => {
      const v2 = versionRecord('k', 2, { notAfter: 1_900_000_000_000, state: 'decrypt-only', encryptions: 7 });
      const v1 = versionRecord('k', 1);
      await store.transaction(async (tx) => {
        await tx.putKey(keyRecord('k'));
        await tx.putVersion(v2);
        await tx.putVersion(v1);
      });
      const versions = await store.read((r) => r.getVersions('k'));
      assert.deepEqual(versions.map((v) => v.version), [1, 2]);
      assert.deepEqual(versions[1], { ...v2, wrapped: versions[1]?.wrapped });
      assert.ok(Buffer.from(v2.wrapped!).equals(Buffer.from(versions[1]!.wrapped!)));
      assert.equal(await store.read((r) => r.getVersion('k', 3)), undefined);
      assert.deepEqual(await store.read((r) => r.getVersions('other')), []);
      // Replace (rewrap) keeps the version number.
      const rewrapped = versionRecord('k', 1, { kekId: 'local:ffffffffffffffff' });
      await store.transaction((tx) => tx.putVersion(rewrapped));
      assert.equal((await store.read((r) => r.getVersion('k', 1)))?.kekId, 'local:ffffffffffffffff');
    }));

    it('keeps a key\'s versions when the key record is replaced', () => withStore(async (store) => {
      await store.transaction(async (tx) => {
        await tx.putKey(keyRecord('k'));
        await tx.putVersion(versionRecord('k', 1));
        await tx.putVersion(versionRecord('k', 2));
      });
      await store.transaction((tx) => tx.putKey(keyRecord('k', { updatedAt: 1_800_000_000_000, disabled: true })));
      assert.equal((await store.read((r) => r.getKey('k')))?.disabled, true);
      assert.deepEqual((await store.read((r) => r.getVersions('k'))).map((v) => v.version), [1, 2]);
    }));

    it('refuses a version of a missing key and invalid records', () => withStore(async (store) => {
      await assert.rejects(store.transaction((tx) => tx.putVersion(versionRecord('ghost', 1))), NotFoundError);
      await store.transaction((tx) => tx.putKey(keyRecord('k')));
      const bad: Array<[string, () => unknown]> = [
        ['empty name', () => keyRecord('')],
        ['policy with undefined', () => keyRecord('k', { policy: { a: undefined } })],
        ['policy with a Date', () => keyRecord('k', { policy: { a: new Date() } })],
      ];
      for (const [what, make] of bad) {
        await assert.rejects(store.transaction((tx) => tx.putKey(make() as ManagedKeyRecord)), InvalidArgumentError, what);
      }
      const badVersions: KeyVersionRecord[] = [
        versionRecord('k', 0),
        versionRecord('k', 1.5),
        versionRecord('k', 1, { wrapped: null }),
        versionRecord('k', 1, { state: 'destroyed' }),
        versionRecord('k', 1, { notBefore: 10, notAfter: 5 }),
        versionRecord('k', 1, { state: 'bogus' as never }),
        versionRecord('k', 1, { encryptions: -1 }),
      ];
      for (const v of badVersions) await assert.rejects(store.transaction((tx) => tx.putVersion(v)), InvalidArgumentError);
      assert.deepEqual(await store.read((r) => r.getVersions('k')), []);
    }));

    it('changes state, counts encryptions and destroys material for good', () => withStore(async (store) => {
      await store.transaction(async (tx) => {
        await tx.putKey(keyRecord('k'));
        await tx.putVersion(versionRecord('k', 1));
        await tx.putVersion(versionRecord('k', 2));
      });
      await store.transaction((tx) => tx.setVersionState('k', 1, 'decrypt-only'));
      assert.equal(await store.transaction((tx) => tx.addEncryptions('k', 2, 5)), 5);
      assert.equal(await store.transaction((tx) => tx.addEncryptions('k', 2, 3)), 8);
      await assert.rejects(store.transaction((tx) => tx.addEncryptions('k', 2, 0)), InvalidArgumentError);
      await assert.rejects(store.transaction((tx) => tx.addEncryptions('k', 9, 1)), NotFoundError);
      await assert.rejects(store.transaction((tx) => tx.setVersionState('k', 9, 'disabled')), NotFoundError);
      await store.transaction((tx) => tx.destroyVersionMaterial('k', 1));
      await store.transaction((tx) => tx.destroyVersionMaterial('k', 1)); // idempotent
      await store.transaction((tx) => tx.setVersionState('k', 2, 'destroyed'));
      const [v1, v2] = await store.read((r) => r.getVersions('k'));
      assert.equal(v1?.state, 'destroyed');
      assert.equal(v1?.wrapped, null);
      assert.equal(v2?.state, 'destroyed');
      assert.equal(v2?.wrapped, null);
      assert.equal(v2?.encryptions, 8);
      await assert.rejects(store.transaction((tx) => tx.setVersionState('k', 1, 'active')), InvalidArgumentError);
      await assert.rejects(store.transaction((tx) => tx.putVersion(versionRecord('k', 1))), InvalidArgumentError);
    }));

    it('rolls back everything when the callback throws', () => withStore(async (store) => {
      await store.transaction((tx) => tx.putKey(keyRecord('kept')));
      const before = await store.generation();
      const boom = new Boom('boom');
      await assert.rejects(store.transaction(async (tx) => {
        await tx.putKey(keyRecord('lost'));
        await tx.putVersion(versionRecord('lost', 1));
        await tx.putVersion(versionRecord('kept', 1));
        await tx.setMeta('m', 'v');
        await sleep(5);
        throw boom;
      }), (err) => err === boom);
      assert.equal(await store.read((r) => r.getKey('lost')), undefined);
      assert.deepEqual(await store.read((r) => r.getVersions('kept')), []);
      assert.equal(await store.read((r) => r.getMeta('m')), undefined);
      assert.equal(await store.generation(), before);
      // A synchronous throw behaves the same, and the store keeps working.
      await assert.rejects(store.transaction(() => { throw boom; }), (err) => err === boom);
      await store.transaction((tx) => tx.putKey(keyRecord('after')));
      assert.ok(await store.read((r) => r.getKey('after')));
    }));

    it('increments the generation once per committed change, never otherwise', () => withStore(async (store) => {
      const g0 = await store.generation();
      assert.equal(g0, 0);
      await store.transaction(async (tx) => {
        await tx.putKey(keyRecord('a'));
        await tx.putKey(keyRecord('b'));
      });
      assert.equal(await store.generation(), 1);
      assert.equal(await store.transaction((tx) => tx.getKey('a').then(() => 'read only')), 'read only');
      assert.equal(await store.generation(), 1, 'a transaction that wrote nothing does not count');
      await assert.rejects(store.transaction(async (tx) => { await tx.putKey(keyRecord('c')); throw new Boom(); }));
      assert.equal(await store.generation(), 1, 'a rolled back transaction does not count');
      await store.transaction((tx) => tx.setMeta('x', '1'));
      assert.equal(await store.generation(), 2);
      assert.equal(await store.read((r) => r.generation()), 2);
    }));

    it('changesSince names exactly the keys and meta keys changed', () => withStore(async (store) => {
      await store.transaction(async (tx) => {
        await tx.putKey(keyRecord('a'));
        await tx.putKey(keyRecord('b'));
        await tx.putVersion(versionRecord('a', 1));
      });
      const g1 = await store.generation();
      await store.transaction((tx) => tx.addEncryptions('a', 1, 1));
      await store.transaction(async (tx) => {
        await tx.putKey(keyRecord('c'));
        await tx.setMeta('kek.local', '{}');
        await tx.getKey('b'); // reads are not changes
      });
      const g3 = await store.generation();
      assert.deepEqual(await store.changesSince(g1), { generation: g3, names: ['a', 'c'], metaKeys: ['kek.local'], truncated: false });
      assert.deepEqual(await store.changesSince(0), { generation: g3, names: ['a', 'b', 'c'], metaKeys: ['kek.local'], truncated: false });
      assert.deepEqual(await store.changesSince(g3), { generation: g3, names: [], metaKeys: [], truncated: false });
      assert.equal((await store.changesSince(g3 + 5)).truncated, true, 'a generation from the future cannot be answered');
      await assert.rejects(store.changesSince(-1), InvalidArgumentError);
    }));

    it('serializes concurrent transactions of one process', () => withStore(async (store) => {
      let inside = 0;
      let maxInside = 0;
      const order: number[] = [];
      await Promise.all(Array.from({ length: 25 }, (_, i) => store.transaction(async (tx) => {
        inside += 1;
        maxInside = Math.max(maxInside, inside);
        const n = Number((await tx.getMeta('counter')) ?? '0');
        await sleep(i % 3); // yield mid-transaction: a lost update would show here
        await tx.setMeta('counter', String(n + 1));
        order.push(i);
        inside -= 1;
      })));
      assert.equal(maxInside, 1);
      assert.deepEqual(order, Array.from({ length: 25 }, (_, i) => i), 'run in call order');
      assert.equal(await store.read((r) => r.getMeta('counter')), '25');
      assert.equal(await store.generation(), 25);
    }));

    it('reads never see uncommitted writes, and do not wait for the writer', () => withStore(async (store) => {
      await store.transaction((tx) => tx.putKey(keyRecord('old')));
      let release!: () => void;
      const gate = new Promise<void>((resolve) => { release = resolve; });
      let wrote!: () => void;
      const written = new Promise<void>((resolve) => { wrote = resolve; });
      const tx = store.transaction(async (t) => {
        await t.putKey(keyRecord('new'));
        await t.putKey(keyRecord('old', { type: 'changed' }));
        assert.equal((await t.getKey('new'))?.name, 'new', 'a transaction sees its own writes');
        wrote();
        await gate;
      });
      await written;
      const seen = await store.read(async (r) => ({ n: await r.getKey('new'), o: await r.getKey('old'), g: await r.generation() }));
      assert.equal(seen.n, undefined);
      assert.equal(seen.o?.type, 'aes-256-gcm');
      assert.equal(seen.g, 1);
      assert.equal(await store.generation(), 1);
      release();
      await tx;
      assert.equal((await store.read((r) => r.getKey('old')))?.type, 'changed');
      assert.equal(await store.generation(), 2);
    }));

    it('refuses nested transactions and use of a finished transaction', () => withStore(async (store) => {
      let leaked: Parameters<Parameters<Keystore['transaction']>[0]>[0] | undefined;
      await assert.rejects(store.transaction(async (tx) => {
        leaked = tx;
        await store.transaction((inner) => inner.putKey(keyRecord('x')));
      }), /inside a transaction/);
      await assert.rejects(leaked!.putKey(keyRecord('late')), /already ended/);
      // Reads inside a transaction are fine (they see committed data).
      await store.transaction(async (tx) => {
        await tx.putKey(keyRecord('y'));
        assert.equal(await store.read((r) => r.getKey('y')), undefined);
      });
      assert.equal(await store.read((r) => r.getKey('x')), undefined);
      // Still refused in a later transaction, after an await (each transaction marks its context afresh).
      await assert.rejects(store.transaction(async () => {
        await new Promise((r) => setImmediate(r));
        await store.transaction((inner) => inner.putKey(keyRecord('z')));
      }), /inside a transaction/);
    }));

    it('stores meta strings', () => withStore(async (store) => {
      assert.equal(await store.read((r) => r.getMeta('schema.note')), undefined);
      await store.transaction(async (tx) => {
        await tx.setMeta('schema.note', 'héllo ✓');
        await tx.setMeta('empty', '');
      });
      await store.transaction((tx) => tx.setMeta('schema.note', 'replaced'));
      assert.equal(await store.read((r) => r.getMeta('schema.note')), 'replaced');
      assert.equal(await store.read((r) => r.getMeta('empty')), '');
      await assert.rejects(store.transaction((tx) => tx.setMeta('k', 42 as never)), InvalidArgumentError);
    }));

    it('finishes queued work on close and refuses work afterwards', () => withStore(async (store) => {
      const pending = store.transaction(async (tx) => { await sleep(10); await tx.putKey(keyRecord('late')); return 'done'; });
      await store.close();
      assert.equal(await pending, 'done');
      await assert.rejects(store.read((r) => r.listKeys()), /closed/);
      await assert.rejects(store.transaction((tx) => tx.listKeys()), /closed/);
    }));
  });
}
