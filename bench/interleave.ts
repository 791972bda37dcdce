/**
 * Interleaved rounds: every figure compared with in-process node:crypto is
 * measured in rounds that alternate the sides (in-process, cryptod…,
 * in-process, cryptod…), so that whatever else the shared machine does in a
 * moment hits both sides of the comparison. Each side's figure is the median
 * of its rounds, shown with the spread (slowest–fastest round); each ratio is
 * the median of the per-round ratios, also with its spread.
 *
 *   round 1:  A₁ B₁ C₁      ratio B/A = median(B₁/A₁, B₂/A₂, …)
 *   round 2:  A₂ B₂ C₂
 *   …
 */
import type { Result } from './measure.js';
import type { RowKind } from './report.js';

/** Rounds per comparison; the issue asks for at least five. */
export const ROUNDS = Math.max(5, Number(process.env.BENCH_ROUNDS ?? 5));

export interface Side {
  workload: string;
  mode: string;
  kind: RowKind;
  run: () => Promise<Result>;
}

export interface Spread {
  median: number;
  min: number;
  max: number;
}

/** One side over all rounds: the median round's figures, and the spreads. */
export interface Interleaved {
  workload: string;
  mode: string;
  kind: RowKind;
  /** The round whose ops/s is the median; its p50/p99 are shown. */
  r: Result;
  opsPerSec: Spread;
  p50: Spread;
  cpuPerOpNs?: Spread;
  /** ÷ the reference side (the first), round by round; absent on the reference itself. */
  ratio?: Spread;
  /** p50 − the reference's p50, round by round (ns); for the socket-floor comparison. */
  p50Above?: Spread;
}

export function spread(xs: readonly number[]): Spread {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return { median: NaN, min: NaN, max: NaN };
  const mid = s.length >> 1;
  const median = s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0]!, max: s[s.length - 1]! };
}

/**
 * Run `sides` in alternation for {@link ROUNDS} rounds; the first side is the
 * reference every other side is divided by. `log` prints each round's line.
 */
export async function interleave(sides: readonly Side[], log: (line: string) => void = () => {}, rounds = ROUNDS): Promise<Interleaved[]> {
  const results: Result[][] = sides.map(() => []);
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < sides.length; i++) {
      const r = await sides[i]!.run();
      results[i]!.push(r);
      log(`  round ${round + 1}/${rounds}  ${sides[i]!.mode.padEnd(44)} ${Math.round(r.opsPerSec).toLocaleString('en-US').padStart(12)} ops/s${r.cpuPerOpNs === undefined ? '' : `  cpu ${(r.cpuPerOpNs / 1000).toFixed(2)} µs/op`}`);
    }
  }
  const ref = results[0]!;
  return sides.map((side, i) => {
    const rs = results[i]!;
    const ops = spread(rs.map((r) => r.opsPerSec));
    const median = [...rs].sort((a, b) => a.opsPerSec - b.opsPerSec)[rs.length >> 1]!;
    const out: Interleaved = { workload: side.workload, mode: side.mode, kind: side.kind, r: median, opsPerSec: ops, p50: spread(rs.map((r) => r.p50)) };
    if (rs.every((r) => r.cpuPerOpNs !== undefined)) out.cpuPerOpNs = spread(rs.map((r) => r.cpuPerOpNs!));
    if (i > 0) {
      out.ratio = spread(rs.map((r, k) => r.opsPerSec / ref[k]!.opsPerSec));
      out.p50Above = spread(rs.map((r, k) => r.p50 - ref[k]!.p50));
    }
    return out;
  });
}
