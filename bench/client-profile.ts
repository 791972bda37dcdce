/**
 * Only this tree's client, pipelined (256), for `--cpu-prof` of the client
 * process: BENCH_OP=sign|encrypt|mac|managed-encrypt picks the call,
 * BENCH_SECONDS the time (default 4). The daemon runs as in
 * bench/client-cost.ts. Prints ops/s and client CPU/op.
 *
 *   BENCH_OP=sign node --cpu-prof --cpu-prof-dir=/tmp/prof --import tsx bench/client-profile.ts
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, type Client } from '../src/client/client.js';
import { measurePipelined, selfCpu } from './measure.js';
import { stopChild } from './tools.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const OP = process.env.BENCH_OP ?? 'sign';
const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dir = mkdtempSync(join(tmpdir(), 'cdb-clientprof-'));
const socket = join(dir, 'cryptod.sock');
const config = join(dir, 'cryptod.yaml');
writeFileSync(config, ['keys:', '  bench-aes: { type: aes256-gcm, rotationPeriod: 30d }', '  bench-mac: { type: hmac-sha256, rotationPeriod: 30d }', ''].join('\n'), { mode: 0o600 });
const child = spawn(process.execPath, ['--import', 'tsx', join(repo, 'src/cli/main.ts'), 'serve', '--data-dir', dir, '--socket', socket, '--config', config, '--log-level', 'warn'], {
  stdio: ['ignore', 'inherit', 'inherit'],
  cwd: repo,
});
let client: Client | undefined;
try {
  const deadline = Date.now() + 20_000;
  while (client === undefined) {
    try {
      client = await connect({ socket, clientName: 'bench-profile' });
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const c = client;
  const msg64 = randomBytes(64);
  const msg1k = randomBytes(1024);
  const iv = randomBytes(12); // one IV for every call: this measures the client, not randomBytes (never do this with real data)
  const hmacKey = await c.subtle.importKey('raw', randomBytes(32), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  const aesKey = await c.subtle.importKey('raw', randomBytes(32), 'AES-GCM', false, ['encrypt']);
  const fns: Record<string, () => Promise<unknown>> = {
    sign: () => c.subtle.sign('HMAC', hmacKey, msg64),
    encrypt: () => c.subtle.encrypt({ name: 'AES-GCM', iv }, aesKey, msg1k),
    mac: () => c.mac('bench-mac', msg64),
    'managed-encrypt': () => c.encrypt('bench-aes', msg1k),
  };
  const fn = fns[OP];
  if (fn === undefined) throw new Error(`BENCH_OP must be one of ${Object.keys(fns).join(', ')}`);
  const r = await measurePipelined(SECONDS, 256, fn, undefined, selfCpu);
  console.log(`${OP}: ${Math.round(r.opsPerSec).toLocaleString('en-US')} ops/s, client CPU ${(r.cpuPerOpNs! / 1000).toFixed(2)} µs/op`);
} finally {
  await client?.close().catch(() => {});
  child.kill('SIGTERM');
  await stopChild(child);
  rmSync(dir, { recursive: true, force: true });
}
