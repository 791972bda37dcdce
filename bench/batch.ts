/**
 * The batched rows of bench/run.ts: many items in one request frame
 * (`client.subtle.signBatch`, docs/protocol.md §6.15), counted in items per
 * second, with the daemon's CPU per item.
 *
 * Run alone (`npm run bench:batch`, after `npm run build`) it measures just
 * the HMAC-SHA256 64 B comparison — in-process, pipelined, batched — in
 * interleaved rounds against a daemon of its own and prints the rows, for a
 * quick look while working on the hot path; it writes no file.
 * BENCH_SECONDS, BENCH_ROUNDS as for bench/run.ts; BENCH_CPU_PROF=DIR starts
 * the daemon with `--cpu-prof` into DIR.
 */
import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { connect } from '../src/client/client.js';
import type { SubtleClient, CryptoKey } from '../src/client/subtle.js';
import { interleave, type Side } from './interleave.js';
import { measureLoop, measurePipelined, selfCpu, type CpuProbe } from './measure.js';

/** Items per request frame, as the target names it. */
export const BATCH_ITEMS = 64;
/** Batch frames kept in flight: enough that the daemon always has the next one read while it signs this one. */
export const BATCH_WINDOW = 4;

/** HMAC-SHA256 over `msg`, BATCH_ITEMS per frame, BATCH_WINDOW frames in flight; rates count items. */
export function hmacBatchedSide(subtle: SubtleClient, key: CryptoKey, msg: Uint8Array, seconds: number, daemonCpu: CpuProbe): Side {
  const items = Array.from({ length: BATCH_ITEMS }, () => msg);
  return {
    workload: 'HMAC-SHA256 64 B',
    mode: `cryptod, batched (${BATCH_ITEMS} per frame), pipelined (${BATCH_WINDOW})`,
    kind: 'cryptod',
    run: () => measurePipelined(seconds, BATCH_WINDOW, () => subtle.signBatch('HMAC', key, items), undefined, daemonCpu, BATCH_ITEMS),
  };
}

async function quick(): Promise<void> {
  const seconds = Number(process.env.BENCH_SECONDS ?? 1);
  const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
  const dir = mkdtempSync(join(tmpdir(), 'cdbb-'));
  const socket = join(dir, 'cryptod.sock');
  const prof = process.env.BENCH_CPU_PROF;
  const child = spawn(process.execPath, [...(prof ? ['--cpu-prof', '--cpu-prof-dir', prof] : []), join(repo, 'dist/src/cli/main.js'), 'serve', '--data-dir', dir, '--socket', socket, '--log-level', 'warn'], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  try {
    let client;
    for (const deadline = Date.now() + 10_000; ; ) {
      try {
        client = await connect({ socket, clientName: 'bench-batch' });
        break;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    const daemonCpu: CpuProbe = async () => {
      const st = (await client.status()) as { process: { cpuUserUs: number; cpuSystemUs: number } };
      return st.process.cpuUserUs + st.process.cpuSystemUs;
    };
    const keyBytes = randomBytes(32);
    const msg = randomBytes(64);
    const key = await client.subtle.importKey('raw', keyBytes, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    const sides: Side[] = [
      { workload: 'HMAC-SHA256 64 B', mode: 'in-process node:crypto', kind: 'in-process', run: () => measureLoop(seconds, () => createHmac('sha256', keyBytes).update(msg).digest(), undefined, selfCpu) },
      { workload: 'HMAC-SHA256 64 B', mode: 'cryptod, pipelined (256)', kind: 'cryptod', run: () => measurePipelined(seconds, 256, () => client.subtle.sign('HMAC', key, msg), undefined, daemonCpu) },
      hmacBatchedSide(client.subtle, key, msg, seconds, daemonCpu),
    ];
    for (const ix of await interleave(sides, (line) => console.log(line))) {
      const cpu = ix.cpuPerOpNs === undefined ? '' : `  CPU/op ${(ix.cpuPerOpNs.median / 1000).toFixed(2)} (${(ix.cpuPerOpNs.min / 1000).toFixed(2)}–${(ix.cpuPerOpNs.max / 1000).toFixed(2)}) µs`;
      const ratio = ix.ratio === undefined ? '' : `  ${ix.ratio.median.toFixed(2)}× (${ix.ratio.min.toFixed(2)}–${ix.ratio.max.toFixed(2)})`;
      console.log(`${ix.mode.padEnd(48)} ${Math.round(ix.opsPerSec.median).toLocaleString('en-US').padStart(10)} ops/s${cpu}${ratio}`);
    }
    await client.close();
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  quick().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
