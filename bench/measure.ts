/** Timing loops for bench/run.ts: throughput plus per-operation latency percentiles. */

export interface Result {
  ops: number;
  seconds: number;
  opsPerSec: number;
  /** Nanoseconds. */
  p50: number;
  p99: number;
  mbPerSec?: number;
  /** CPU time per operation of the process that did the work (ns), when a CPU probe was given. */
  cpuPerOpNs?: number;
}

/**
 * Cumulative CPU time (µs) of the process doing the work: this process
 * ({@link selfCpu}) for in-process rows, the daemon's (STATUS `process`) for
 * cryptod rows. Read just before and just after the measured window.
 */
export type CpuProbe = () => number | Promise<number>;

export const selfCpu: CpuProbe = () => {
  const c = process.cpuUsage();
  return c.user + c.system;
};

/** Warm-up before each measurement; also passed to bench/pkcs11-bench.c so its rows warm up alike. */
export const WARMUP_MS = 300;
const MAX_SAMPLES = 200_000;

function summarize(latencies: Float64Array, n: number, seconds: number, bytesPerOp?: number): Result {
  const sample = Array.from(latencies.subarray(0, Math.min(n, MAX_SAMPLES))).sort((a, b) => a - b);
  const pick = (q: number): number => sample[Math.min(sample.length - 1, Math.floor(q * sample.length))] ?? NaN;
  const opsPerSec = n / seconds;
  const r: Result = { ops: n, seconds, opsPerSec, p50: pick(0.5), p99: pick(0.99) };
  if (bytesPerOp !== undefined) r.mbPerSec = (opsPerSec * bytesPerOp) / 1e6;
  return r;
}

/** One operation at a time: each op's latency is a full round trip. */
export async function measureLoop(seconds: number, fn: () => unknown, bytesPerOp?: number, cpu?: CpuProbe): Promise<Result> {
  const warmEnd = Date.now() + WARMUP_MS;
  while (Date.now() < warmEnd) await fn();
  const lat = new Float64Array(MAX_SAMPLES);
  let n = 0;
  const cpu0 = cpu === undefined ? 0 : await cpu();
  const start = process.hrtime.bigint();
  const end = start + BigInt(Math.round(seconds * 1e9));
  for (;;) {
    const t0 = process.hrtime.bigint();
    await fn();
    const t1 = process.hrtime.bigint();
    if (n < MAX_SAMPLES) lat[n] = Number(t1 - t0);
    n++;
    if (t1 >= end) break;
  }
  const r = summarize(lat, n, Number(process.hrtime.bigint() - start) / 1e9, bytesPerOp);
  if (cpu !== undefined) r.cpuPerOpNs = ((await cpu()) - cpu0) * 1000 / n;
  return r;
}

/** `window` operations kept in flight; latency is issue-to-completion of each. */
export async function measurePipelined(seconds: number, window: number, fn: () => Promise<unknown>, bytesPerOp?: number, cpu?: CpuProbe, opsPerCall = 1): Promise<Result> {
  const run = async (durationMs: number, lat: Float64Array | null): Promise<{ n: number; s: number }> => {
    let n = 0;
    const start = process.hrtime.bigint();
    const end = start + BigInt(Math.round(durationMs * 1e6));
    let stop = false;
    const worker = async (): Promise<void> => {
      while (!stop) {
        const t0 = process.hrtime.bigint();
        await fn();
        const t1 = process.hrtime.bigint();
        if (lat !== null && n < MAX_SAMPLES) lat[n] = Number(t1 - t0);
        n++;
        if (t1 >= end) stop = true;
      }
    };
    await Promise.all(Array.from({ length: window }, worker));
    return { n, s: Number(process.hrtime.bigint() - start) / 1e9 };
  };
  await run(WARMUP_MS, null);
  const lat = new Float64Array(MAX_SAMPLES);
  const cpu0 = cpu === undefined ? 0 : await cpu();
  const { n, s } = await run(seconds * 1000, lat);
  // A batched call does `opsPerCall` operations: rates count operations, latencies calls.
  const r = summarize(lat, n, s, bytesPerOp === undefined ? undefined : bytesPerOp * opsPerCall);
  r.ops = n * opsPerCall;
  r.opsPerSec *= opsPerCall;
  if (cpu !== undefined) r.cpuPerOpNs = ((await cpu()) - cpu0) * 1000 / r.ops;
  return r;
}
