/**
 * The small-operation rows of `npm run bench` alone, for measuring a change to
 * the per-request path without the hour the whole run takes: the socket
 * floor (echo vs PING), HMAC-SHA256 64 B (in-process, 1 in flight, pipelined
 * 256, and the same with the CPU of client and daemon together) and
 * AES-256-GCM 1 KiB (in-process, pipelined 256), in interleaved
 * rounds (bench/interleave.ts), with the daemon's CPU per operation from
 * STATUS. The daemon runs in its own process from src/ (through tsx), so no
 * build is needed; extra node flags for it (e.g. `--cpu-prof`) go in
 * BENCH_DAEMON_NODE_FLAGS. Prints one table; writes nothing.
 *
 *   node --import tsx bench/small-ops.ts
 *   BENCH_ROUNDS=7 BENCH_SECONDS=1 node --import tsx bench/small-ops.ts
 */
import { spawn } from 'node:child_process';
import { createCipheriv, createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, type Client } from '../src/client/client.js';
import { startEcho } from './echo.js';
import { interleave, type Interleaved, type Side } from './interleave.js';
import { measureLoop, measurePipelined, selfCpu, type CpuProbe } from './measure.js';
import { stopChild } from './tools.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 1);
const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');

const dir = mkdtempSync(join(tmpdir(), 'cdb-small-'));
const socket = join(dir, 'cryptod.sock');
const flags = (process.env.BENCH_DAEMON_NODE_FLAGS ?? '').split(' ').filter((f) => f !== '');
const child = spawn(process.execPath, [...flags, '--import', 'tsx', join(repo, 'src/cli/main.ts'), 'serve', '--data-dir', dir, '--socket', socket, '--log-level', 'warn'], {
  stdio: ['ignore', 'inherit', 'inherit'],
  cwd: repo,
});
let client: Client | undefined;
const lines: string[] = [];
try {
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      client = await connect({ socket, clientName: 'bench-small' });
      break;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const c = client;
  const daemonCpu: CpuProbe = async () => {
    const st = (await c.status()) as { process: { cpuUserUs: number; cpuSystemUs: number } };
    return st.process.cpuUserUs + st.process.cpuSystemUs;
  };
  const report = (ixs: Interleaved[]): void => {
    for (const ix of ixs) {
      const cpu = ix.cpuPerOpNs === undefined ? '' : `cpu ${(ix.cpuPerOpNs.median / 1000).toFixed(2)} µs/op (${(ix.cpuPerOpNs.min / 1000).toFixed(2)}–${(ix.cpuPerOpNs.max / 1000).toFixed(2)})`;
      const ratio = ix.ratio === undefined ? '' : `${ix.ratio.median.toFixed(2)}× (${ix.ratio.min.toFixed(2)}–${ix.ratio.max.toFixed(2)})`;
      const above = ix.p50Above === undefined ? '' : `p50 +${(ix.p50Above.median / 1000).toFixed(1)} µs`;
      lines.push(`${ix.workload.padEnd(24)} ${ix.mode.padEnd(32)} ${Math.round(ix.opsPerSec.median).toLocaleString('en-US').padStart(9)} ops/s  p50 ${(ix.p50.median / 1000).toFixed(1).padStart(7)} µs  ${cpu}  ${ratio}  ${above}`);
      console.log(lines[lines.length - 1]);
    }
  };
  const log = (l: string): void => console.log(l);

  const echo = await startEcho();
  try {
    report(await interleave([
      { workload: 'round trip', mode: 'echo, 1 in flight', kind: 'baseline', run: () => measureLoop(SECONDS, () => echo.roundTrip()) },
      { workload: 'round trip', mode: 'PING, 1 in flight', kind: 'cryptod', run: () => measureLoop(SECONDS, () => c.ping(), undefined, daemonCpu) },
    ], log));
  } finally {
    await echo.close();
  }

  const subtle = c.subtle;
  const hmacKeyBytes = randomBytes(32);
  const msg64 = randomBytes(64);
  const hmacKey = await subtle.importKey('raw', hmacKeyBytes, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  const hmac: Side[] = [
    { workload: 'HMAC-SHA256 64 B', mode: 'in-process', kind: 'in-process', run: () => measureLoop(SECONDS, () => createHmac('sha256', hmacKeyBytes).update(msg64).digest(), undefined, selfCpu) },
    { workload: 'HMAC-SHA256 64 B', mode: 'cryptod, 1 in flight', kind: 'cryptod', run: () => measureLoop(SECONDS, () => subtle.sign('HMAC', hmacKey, msg64), undefined, daemonCpu) },
    { workload: 'HMAC-SHA256 64 B', mode: 'cryptod, pipelined (256)', kind: 'cryptod', run: () => measurePipelined(SECONDS, 256, () => subtle.sign('HMAC', hmacKey, msg64), undefined, daemonCpu) },
    // The same, with the CPU of both processes: pipelined throughput on two cores is bounded by their sum.
    { workload: 'HMAC-SHA256 64 B', mode: 'pipelined (256), client+daemon CPU', kind: 'cryptod', run: () => measurePipelined(SECONDS, 256, () => subtle.sign('HMAC', hmacKey, msg64), undefined, async () => (await daemonCpu()) + (selfCpu() as number)) },
  ];
  report(await interleave(hmac, log));

  const aesKeyBytes = randomBytes(32);
  const msg1k = randomBytes(1024);
  const aesKey = await subtle.importKey('raw', aesKeyBytes, 'AES-GCM', false, ['encrypt']);
  report(await interleave([
    {
      workload: 'AES-256-GCM 1 KiB', mode: 'in-process', kind: 'in-process',
      run: () => measureLoop(SECONDS, () => {
        const ci = createCipheriv('aes-256-gcm', aesKeyBytes, randomBytes(12));
        return Buffer.concat([ci.update(msg1k), ci.final(), ci.getAuthTag()]);
      }, 1024, selfCpu),
    },
    { workload: 'AES-256-GCM 1 KiB', mode: 'cryptod, pipelined (256)', kind: 'cryptod', run: () => measurePipelined(SECONDS, 256, () => subtle.encrypt({ name: 'AES-GCM', iv: randomBytes(12) }, aesKey, msg1k), 1024, daemonCpu) },
  ], log));
} finally {
  await client?.close().catch(() => {});
  child.kill('SIGTERM');
  await stopChild(child);
  rmSync(dir, { recursive: true, force: true });
}
console.log(`\n${lines.join('\n')}`);
