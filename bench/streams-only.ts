/**
 * `npm run bench:streams`: only the large-input rows of bench/run.ts (SHA-256
 * through a hash context, `cryptod digest FILE`, the AES-256-GCM encrypt
 * stream), in interleaved rounds against their in-process sides, printed to
 * the console — for working on the stream path without the whole run.
 *
 * With BENCH_CPU_PROF=DIR the daemon and this process both run under
 * `--cpu-prof` and leave their .cpuprofile files in DIR (open them in Chrome
 * DevTools, or summarize with `node dist/bench/profile-top.js FILE`). Pick
 * the rows with BENCH_STREAM_ROWS=hash,digest,aead (default all three).
 * BENCH_DAEMON_PREFIX runs the daemon under a command (strace -c, perf stat).
 * BENCH_ROUNDS, BENCH_STREAM_MIB as in bench/run.ts.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Session } from 'node:inspector/promises';
import { fileURLToPath } from 'node:url';
import { connect } from '../src/client/client.js';
import { interleave, ROUNDS, type Side } from './interleave.js';
import type { CpuProbe } from './measure.js';
import { aeadStreamSides, digestFileSides, hashStreamSides } from './streams.js';

const STREAM_MIB = Number(process.env.BENCH_STREAM_MIB ?? 256);
const ROWS = new Set((process.env.BENCH_STREAM_ROWS ?? 'hash,digest,aead').split(','));
const PROFILE_DIR = process.env.BENCH_CPU_PROF;
const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../..');
const main = join(repo, 'dist/src/cli/main.js');

async function run(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'cdb-streams-'));
  const socket = join(dir, 'cryptod.sock');
  const prof = PROFILE_DIR === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', resolve(PROFILE_DIR), '--cpu-prof-name', 'daemon.cpuprofile'];
  // BENCH_DAEMON_PREFIX: a command the daemon runs under (e.g. 'strace -c -f -o /tmp/daemon.strace').
  const prefix = (process.env.BENCH_DAEMON_PREFIX ?? '').split(' ').filter((w) => w !== '');
  const argv = [...prof, main, 'serve', '--data-dir', dir, '--socket', socket, '--log-level', 'warn'];
  const child = prefix.length === 0 ? spawn(process.execPath, argv, { stdio: ['ignore', 'inherit', 'inherit'] }) : spawn(prefix[0]!, [...prefix.slice(1), process.execPath, ...argv], { stdio: ['ignore', 'inherit', 'inherit'] });
  const deadline = Date.now() + 10_000;
  let client;
  for (;;) {
    try {
      client = await connect({ socket, clientName: 'bench-streams' });
      break;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  // The client side's profile: taken through the inspector, so only the measured rows are in it.
  const session = PROFILE_DIR === undefined ? null : new Session();
  try {
    const daemonCpu: CpuProbe = async () => {
      const st = (await client.status()) as { process: { cpuUserUs: number; cpuSystemUs: number } };
      return st.process.cpuUserUs + st.process.cpuSystemUs;
    };
    const sets: Side[][] = [];
    const inline = await connect({ socket, clientName: 'bench-streams', windows: false });
    if (ROWS.has('hash')) sets.push(hashStreamSides(client, STREAM_MIB, daemonCpu, inline));
    if (ROWS.has('digest')) sets.push(await digestFileSides(dir, socket, STREAM_MIB, daemonCpu, main));
    if (ROWS.has('aead')) sets.push(aeadStreamSides(client, STREAM_MIB, daemonCpu));
    if (session !== null) {
      session.connect();
      await session.post('Profiler.enable');
      await session.post('Profiler.start');
    }
    for (const sides of sets) {
      console.log(`${sides[0]!.workload}: ${ROUNDS} interleaved rounds`);
      for (const ix of await interleave(sides, (line) => console.log(line))) {
        const ratio = ix.ratio === undefined ? '' : `  ${ix.ratio.median.toFixed(2)}× (${ix.ratio.min.toFixed(2)}–${ix.ratio.max.toFixed(2)})`;
        const cpu = ix.cpuPerOpNs === undefined ? '' : `  cpu ${(ix.cpuPerOpNs.median / 1000).toFixed(0)} µs/MiB`;
        console.log(`= ${ix.mode.padEnd(48)} ${((ix.r.mbPerSec ?? 0)).toFixed(0).padStart(6)} MB/s${cpu}${ratio}`);
      }
    }
    if (session !== null) {
      const { profile } = await session.post('Profiler.stop');
      writeFileSync(join(resolve(PROFILE_DIR!), 'client.cpuprofile'), JSON.stringify(profile));
      session.disconnect();
    }
  } finally {
    await client.close().catch(() => {});
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
}

await run();
