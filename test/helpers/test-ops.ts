/**
 * Operations that exist only in tests, registered next to the real ones with
 * `startTestDaemon({ operations: withTestOps() })`. They give the connection
 * and shutdown tests requests whose timing the test controls (a slow request,
 * a node created after an await) independently of any real crypto handler.
 * Their codes sit in 0x7fxx, a range docs/protocol.md never assigns.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Operation } from '../../src/ops/operation.js';
import { CryptodError } from '../../src/protocol/errors.js';
import type { OpCode } from '../../src/protocol/ops.js';
import type { NodeValue } from '../../src/state/data-manager.js';
import { allOperations } from '../../src/ops/index.js';
import { asArgs, bool, nodeId, optInt } from '../../src/ops/args.js';

export const TestOp = {
  /** `{ ms, echo? }` → waits `ms`, replies `echo` (or null). */
  SLOW: 0x7f01 as OpCode,
  /** `{ delayMs?, exclusive? }` → after `delayMs`, adds a 'hash' node owned by the connection; replies its handle. */
  NODE_ADD: 0x7f02 as OpCode,
  /** `{ handle, ms? }` → acquires the node, holds it `ms`, replies `{ alive }`. */
  NODE_USE: 0x7f03 as OpCode,
  /** `{ us }` → keeps the event loop busy for `us` microseconds (a synchronous operation that long), replies null. */
  SPIN: 0x7f04 as OpCode,
} as const;

/** Counts how many test node values were made and disposed, across every daemon in the process. */
export const testNodes = { created: 0, disposed: 0, doubleDisposed: 0 };

class TestNodeValue implements NodeValue {
  #disposed = false;
  constructor() {
    testNodes.created++;
  }
  dispose(): void {
    if (this.#disposed) testNodes.doubleDisposed++;
    this.#disposed = true;
    testNodes.disposed++;
  }
}

export const testOperations: Operation[] = [
  {
    op: TestOp.SLOW,
    access: { kind: 'none' },
    handle: async (_ctx, raw) => {
      const args = asArgs(raw);
      // Unref'd: an operation abandoned by a test must not keep the test process alive.
      await sleep(optInt(args, 'ms', 0, 60_000) ?? 0, undefined, { ref: false });
      return args.echo ?? null;
    },
  },
  {
    op: TestOp.NODE_ADD,
    access: { kind: 'none' },
    handle: async (ctx, raw) => {
      const args = raw === undefined ? {} : asArgs(raw);
      const delay = optInt(args, 'delayMs', 0, 60_000) ?? 0;
      if (delay > 0) await sleep(delay, undefined, { ref: false });
      const id = ctx.dm.add(ctx.clientId, 'hash', new TestNodeValue(), { owner: ctx.owner, exclusive: bool(args, 'exclusive', true) });
      ctx.owner.own(id);
      return id;
    },
  },
  {
    op: TestOp.NODE_USE,
    access: { kind: 'none' },
    handle: async (ctx, raw) => {
      const args = asArgs(raw);
      using acc = ctx.dm.acquire(ctx.clientId, nodeId(args, 'handle'), 'hash');
      const ms = optInt(args, 'ms', 0, 60_000) ?? 0;
      if (ms > 0) await sleep(ms, undefined, { ref: false });
      return { alive: acc.alive };
    },
  },
  {
    op: TestOp.SPIN,
    access: { kind: 'none' },
    handle: (_ctx, raw) => {
      const until = performance.now() + (optInt(asArgs(raw), 'us', 0, 1_000_000) ?? 0) / 1000;
      while (performance.now() < until);
      return null;
    },
  },
];

/** Every real operation plus the test ones. */
export function withTestOps(): Operation[] {
  return [...allOperations(), ...testOperations];
}

/** What instrumented handlers did: how many ran, how many are still running, how they failed. */
export interface OperationStats {
  started: number;
  /** Handler promises not yet settled: operations in flight. */
  pending: number;
  /** Failures by error code ('not a CryptodError' for anything else). */
  failures: Map<string, number>;
}

/**
 * Wrap handlers to watch them from outside the daemon: whether an operation
 * is in flight, and whether every failure was a clean, typed one.
 */
export function instrument(operations: readonly Operation[]): { operations: Operation[]; stats: OperationStats } {
  const stats: OperationStats = { started: 0, pending: 0, failures: new Map() };
  const fail = (err: unknown): void => {
    const code = err instanceof CryptodError ? err.code : 'not a CryptodError';
    stats.failures.set(code, (stats.failures.get(code) ?? 0) + 1);
  };
  const wrapped = operations.map(
    (op): Operation => ({
      ...op,
      handle(ctx, args) {
        stats.started++;
        let result;
        try {
          result = op.handle(ctx, args);
        } catch (err) {
          fail(err);
          throw err;
        }
        if (!(result instanceof Promise)) return result;
        stats.pending++;
        return result.then(
          (value) => {
            stats.pending--;
            return value;
          },
          (err: unknown) => {
            stats.pending--;
            fail(err);
            throw err;
          },
        );
      },
    }),
  );
  return { operations: wrapped, stats };
}
