/**
 * A key manager on a real SQLite keystore and local KEK in a temporary
 * directory, with a ManualClock, and a KEK wrapper that can be told to fail.
 */
import type { KekProvider } from '../../src/kek/provider.js';
import { LocalKekProvider } from '../../src/kek/local.js';
import { OperationError } from '../../src/protocol/errors.js';
import { ManualClock } from '../../src/keys/clock.js';
import { KeyManager, type KeyManagerOptions } from '../../src/keys/manager.js';
import { openSqliteKeystore, type SqliteKeystore } from '../../src/store/sqlite/sqlite-store.js';
import { makeTempDir, type TempDir } from '../store/tmpdir.js';

/** 2030-01-01T00:00:00Z: a round instant so windows read well in failures. */
export const T0 = Date.UTC(2030, 0, 1);
export const SEC = 1_000;
export const MIN = 60 * SEC;
export const HOUR = 60 * MIN;
export const DAY = 24 * HOUR;

/** Delegates to a real KEK; `failWraps` (`failUnwraps`) makes the next n wraps (unwraps) throw. */
export class FlakyKek implements KekProvider {
  readonly #inner: KekProvider;
  failWraps = 0;
  /** The next n unwraps throw. */
  failUnwraps = 0;
  wraps = 0;
  unwraps = 0;
  wrapAttempts: number[] = [];
  readonly #clock: ManualClock;

  constructor(inner: KekProvider, clock: ManualClock) {
    this.#inner = inner;
    this.#clock = clock;
  }

  get id(): string {
    return this.#inner.id;
  }

  async wrap(plaintext: Uint8Array, aad: Uint8Array): Promise<Buffer> {
    this.wrapAttempts.push(this.#clock.now());
    if (this.failWraps > 0) {
      this.failWraps--;
      throw new OperationError('injected KEK failure');
    }
    this.wraps++;
    return this.#inner.wrap(plaintext, aad);
  }

  async unwrap(blob: Uint8Array, aad: Uint8Array): Promise<Buffer> {
    if (this.failUnwraps > 0) {
      this.failUnwraps--;
      throw new OperationError('injected KEK failure');
    }
    this.unwraps++;
    return this.#inner.unwrap(blob, aad);
  }

  async close(): Promise<void> {
    await this.#inner.close();
  }
}

export interface Env {
  dir: TempDir;
  store: SqliteKeystore;
  kek: FlakyKek;
  clock: ManualClock;
  managers: KeyManager[];
  open(extra?: Partial<KeyManagerOptions>): Promise<KeyManager>;
  cleanup(): Promise<void>;
}

export async function openEnv(options: { start?: number; clock?: ManualClock; dir?: TempDir } = {}): Promise<Env> {
  const dir = options.dir ?? makeTempDir('cryptod-keys-');
  const store = await openSqliteKeystore({ dataDir: dir.path });
  const clock = options.clock ?? new ManualClock(options.start ?? T0);
  const kek = new FlakyKek(await LocalKekProvider.open({ dir: dir.path, store }), clock);
  const env: Env = {
    dir, store, kek, clock, managers: [],
    async open(extra = {}) {
      const m = await KeyManager.open({ store, kek, clock, ...extra });
      env.managers.push(m);
      return m;
    },
    async cleanup() {
      for (const m of env.managers) await m.close();
      await kek.close();
      await store.close();
      if (options.dir === undefined) await dir.cleanup();
    },
  };
  return env;
}

/** Advance the clock to `t` and wait for the work the timers started. */
export async function advanceTo(env: { clock: ManualClock }, m: KeyManager | KeyManager[], t: number): Promise<void> {
  env.clock.advanceTo(t);
  for (const x of Array.isArray(m) ? m : [m]) await x.settle();
}

export function isZero(b: Buffer): boolean {
  return b.every((x) => x === 0);
}
