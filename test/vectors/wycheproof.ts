/**
 * Loader for the Wycheproof vectors vendored in test/vectors/data (see the
 * README there for provenance and licence). A missing directory or file is a hard failure with a
 * message that says where the vectors were looked for: a vector suite that
 * quietly runs nothing proves nothing.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CryptodError } from '../../src/protocol/errors.js';

/** The vendored files sit beside this loader, so the suites run from the repository alone. */
export const VECTORS_DIR = resolve(dirname(fileURLToPath(import.meta.url)), 'data');

export type Result = 'valid' | 'invalid' | 'acceptable';

export interface WycheproofTest {
  tcId: number;
  comment: string;
  flags: string[];
  result: Result;
  [field: string]: unknown;
}

export interface WycheproofGroup<T extends WycheproofTest> {
  type: string;
  tests: T[];
  [field: string]: unknown;
}

export interface WycheproofFile<T extends WycheproofTest, G = Record<string, unknown>> {
  algorithm: string;
  numberOfTests: number;
  testGroups: Array<WycheproofGroup<T> & G>;
}

/** Read `<name>_test.json`; checks that the file holds as many tests as it declares. */
export function loadVectors<T extends WycheproofTest, G = Record<string, unknown>>(name: string): WycheproofFile<T, G> {
  if (!existsSync(VECTORS_DIR)) {
    throw new Error(`Wycheproof vectors not found: expected the directory ${VECTORS_DIR} (test/vectors/data in the repository)`);
  }
  const file = join(VECTORS_DIR, `${name}_test.json`);
  if (!existsSync(file)) throw new Error(`Wycheproof vector file not found: ${file}`);
  const parsed = JSON.parse(readFileSync(file, 'utf8')) as WycheproofFile<T, G>;
  const count = parsed.testGroups.reduce((n, g) => n + g.tests.length, 0);
  assert.equal(count, parsed.numberOfTests, `${name}: the file declares ${parsed.numberOfTests} tests but holds ${count}`);
  assert.ok(count > 0, `${name}: no tests in the file`);
  return parsed;
}

export const unhex = (s: string): Buffer => Buffer.from(s, 'hex');

/**
 * Per-file bookkeeping: every case is counted exactly once as passed or as an
 * explicit, reasoned exclusion; `assertComplete` fails if the sum differs from
 * the file's total (a loader or filter bug that runs 0 cases fails here).
 */
export class Tally {
  readonly ran = { valid: 0, invalid: 0, acceptable: 0 };
  readonly excluded = new Map<number, string>();
  readonly #seen = new Set<number>();

  constructor(readonly name: string, readonly total: number) {}

  #mark(tcId: number): void {
    assert.ok(!this.#seen.has(tcId), `${this.name}: tcId ${tcId} counted twice`);
    this.#seen.add(tcId);
  }

  ran1(test: WycheproofTest): void {
    this.#mark(test.tcId);
    this.ran[test.result]++;
  }

  exclude(test: WycheproofTest, why: string): void {
    this.#mark(test.tcId);
    this.excluded.set(test.tcId, why);
  }

  get count(): number {
    return this.ran.valid + this.ran.invalid + this.ran.acceptable;
  }

  assertComplete(expected: { ran: number; excluded?: number }): void {
    assert.equal(this.count + this.excluded.size, this.total, `${this.name}: ${this.count} run + ${this.excluded.size} excluded ≠ ${this.total} in the file`);
    assert.equal(this.count, expected.ran, `${this.name}: expected ${expected.ran} cases to run, ran ${this.count}`);
    assert.equal(this.excluded.size, expected.excluded ?? 0, `${this.name}: unexpected exclusions: ${[...this.excluded].map(([id, why]) => `#${id} ${why}`).join('; ')}`);
  }
}

/** Run `fn` over items in concurrent batches (pipelined requests on one connection). */
export async function inBatches<T>(items: readonly T[], size: number, fn: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(fn));
}

export type Outcome<T> = { ok: true; value: T } | { ok: false; error: CryptodError };

/**
 * Settle a request: a value, or a *typed* rejection. Anything else (a plain
 * Error, an internal error, a dropped connection) is a crash and fails the test.
 */
export async function outcome<T>(p: Promise<T>, what: string): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await p };
  } catch (err) {
    assert.ok(err instanceof CryptodError, `${what}: rejected with an untyped error: ${String(err)}`);
    assert.notEqual(err.code, 'CRYPTOD_ERR_INTERNAL', `${what}: internal error: ${err.message}`);
    assert.notEqual(err.code, 'CRYPTOD_ERR_CONNECTION_CLOSED', `${what}: the connection dropped`);
    return { ok: false, error: err };
  }
}

export const hexOf = (b: ArrayBuffer | Uint8Array): string => Buffer.from(b instanceof ArrayBuffer ? new Uint8Array(b) : b).toString('hex');
