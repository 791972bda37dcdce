/**
 * The key manager's side of Keystore.onCommit (keys/freshness.ts): a pushed
 * generation starts a catch-up at once, without waiting for an operation, and
 * the change log stays the source of truth (a push at or below the generation
 * held does nothing; a lost push is caught by the next check).
 *
 * The PostgreSQL keystore pushes through LISTEN/NOTIFY; SQLite cannot push,
 * so a thin wrapper around the real SQLite store stands in for it here and
 * emits when the test says so. Everything beneath it is real.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LocalKekProvider } from '../../src/kek/local.js';
import { KeyManager } from '../../src/keys/manager.js';
import type { ChangeSet, Keystore, KeystoreReader, KeystoreTx } from '../../src/store/keystore.js';
import { openSqliteKeystore, type SqliteKeystore } from '../../src/store/sqlite/sqlite-store.js';
import { makeTempDir } from '../store/tmpdir.js';

/** A real SQLite store that pushes only when told (and, like PostgreSQL, has no maybeChanged). */
class PushingStore implements Keystore {
  readonly backend = 'sqlite-push';
  readonly #inner: SqliteKeystore;
  readonly #listeners = new Set<(generation: number) => void>();
  changesSinceCalls = 0;

  constructor(inner: SqliteKeystore) {
    this.#inner = inner;
  }
  transaction<T>(fn: (tx: KeystoreTx) => Promise<T> | T): Promise<T> {
    return this.#inner.transaction(fn);
  }
  read<T>(fn: (r: KeystoreReader) => Promise<T> | T): Promise<T> {
    return this.#inner.read(fn);
  }
  generation(): Promise<number> {
    return this.#inner.generation();
  }
  changesSince(since: number): Promise<ChangeSet> {
    this.changesSinceCalls++;
    return this.#inner.changesSince(since);
  }
  onCommit(listener: (generation: number) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
  push(generation: number): void {
    for (const l of this.#listeners) l(generation);
  }
  get listeners(): number {
    return this.#listeners.size;
  }
  close(): Promise<void> {
    return this.#inner.close();
  }
}

test('a pushed generation makes the manager catch up at once; stale pushes do nothing', async () => {
  const dir = makeTempDir('cd-push-');
  const writerStore = await openSqliteKeystore({ dataDir: dir.path });
  const kekA = await LocalKekProvider.open({ dir: dir.path, store: writerStore });
  const writer = await KeyManager.open({ store: writerStore, kek: kekA });
  const pushing = new PushingStore(await openSqliteKeystore({ dataDir: dir.path }));
  const kekB = await LocalKekProvider.open({ dir: dir.path, store: pushing });
  const reader = await KeyManager.open({ store: pushing, kek: kekB });
  try {
    assert.equal(pushing.listeners, 1, 'the manager listens');
    await writer.create('pushed', { type: 'hmac-sha256' });
    assert.equal(reader.entry('pushed'), undefined);
    assert.equal(reader.freshen(), null, 'without maybeChanged, nothing is known before a push');

    const gen = await writerStore.generation();
    pushing.push(gen);
    const wait = reader.freshen();
    assert.ok(wait !== null, 'an operation starting during the catch-up waits for it');
    await wait;
    assert.ok(reader.entry('pushed') !== undefined, 'caught up without any operation asking');
    assert.equal(reader.catchUps, 1);

    // A duplicate or late push (generation already held) costs nothing.
    const calls = pushing.changesSinceCalls;
    pushing.push(gen);
    pushing.push(gen - 1);
    await reader.settle();
    assert.equal(reader.catchUps, 1);
    assert.equal(pushing.changesSinceCalls, calls);

    // A lost push: the poll (refresh) still finds the change in the log.
    await writer.rotate('pushed');
    assert.equal(reader.entry('pushed')!.versions.length, 1);
    assert.deepEqual(await reader.refresh(), ['pushed']);
    assert.equal(reader.entry('pushed')!.versions.length, 2);

    // Pushes during a burst of commits share catch-ups that never miss the last one.
    for (let i = 0; i < 5; i++) {
      await writer.rotate('pushed');
      pushing.push(await writerStore.generation());
    }
    await reader.freshen();
    await reader.settle();
    assert.equal(reader.entry('pushed')!.versions.length, 7);
  } finally {
    await reader.close();
    assert.equal(pushing.listeners, 0, 'closing the manager stops listening');
    await writer.close();
    await kekB.close();
    await kekA.close();
    await pushing.close();
    await writerStore.close();
    await dir.cleanup();
  }
});
