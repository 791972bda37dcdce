/**
 * Data-key benchmarks (design note 5), each daemon in its own process:
 *
 *   1. AES-256-GCM encrypt of 1 KiB with a cached data key vs a managed key
 *      vs an uncached data key under a KEK held in a SoftHSM2 token (a
 *      daemon with cache capacity 0, 64 data keys taken in turn, so each
 *      request unwraps in the token), in interleaved rounds (A, B, C, A, B,
 *      C…); ratios are the medians of the per-round ratios (a neighbour's
 *      load hits every part of a round alike).
 *   2. Unwraps per 10,000 operations on 100 hot data keys, from a cold cache
 *      (a second daemon on the same keystore, which has not seen the keys).
 *   3. p99 of a well-behaved client (managed-key encrypt, one request at a
 *      time) beside a client causing cold misses on a KEK that takes 50 ms
 *      per unwrap (bench/datakey-noise.ts, its own process), vs the same
 *      client alone: interleaved rounds, median p99.
 *
 * `npm run bench:datakeys`; BENCH_SECONDS (per round, default 1),
 * BENCH_ROUNDS (default 5), BENCH_OUT (default docs/benchmarks-datakeys.md).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, type Client } from '../src/client/client.js';
import { measureLoop, measurePipelined, type Result } from './measure.js';
import { fmtOps, fmtUs } from './report.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 1);
const ROUNDS = Math.max(5, Number(process.env.BENCH_ROUNDS ?? 5));
const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..');
const OUT = process.env.BENCH_OUT ?? join(repo, 'docs/benchmarks-datakeys.md');
const WINDOW = 32;

async function daemonProcess(dataDir: string, socket: string, slowMs = 0, extraEnv: NodeJS.ProcessEnv = {}): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(here, 'datakey-daemon.ts')], {
    env: { ...process.env, DATA_DIR: dataDir, SOCKET: socket, SLOW_UNWRAP_MS: String(slowMs), ...extraEnv },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((ok, fail) => {
    child.stdout!.on('data', (b: Buffer) => {
      if (b.toString().includes('ready')) ok();
    });
    child.once('exit', (code) => fail(new Error(`bench daemon exited with ${code}`)));
  });
  return child;
}

async function stop(child: ChildProcess): Promise<void> {
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function cacheStats(c: Client): Promise<{ unwraps: number; hits: number; misses: number }> {
  return (await c.status()).cache as { unwraps: number; hits: number; misses: number };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'cdk-bench-'));
  const children: ChildProcess[] = [];
  const lines: string[] = [];
  const log = (s: string): void => {
    console.log(s);
    lines.push(s);
  };
  try {
    const data = join(dir, 'data');
    const d1 = await daemonProcess(data, join(dir, 'd1.sock'));
    children.push(d1);
    const c1 = await connect({ socket: join(dir, 'd1.sock'), clientName: 'bench' });
    await c1.keys.create('bench-kek', { type: 'aes256-kwp' });
    await c1.keys.create('bench-aes', { type: 'aes256-gcm' });
    const kb = Buffer.alloc(1024, 7);

    // A KEK in a SoftHSM2 token, on a daemon of its own (its own keystore: a daemon without the provider could not load the key) that caches no data key.
    const tokenConf = join(dir, 'softhsm2.conf');
    mkdirSync(join(dir, 'tokens'));
    writeFileSync(tokenConf, `directories.tokendir = ${join(dir, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\n`);
    const pin = randomBytes(6).toString('hex');
    execFileSync('softhsm2-util', ['--init-token', '--free', '--label', 'bench-dk', '--pin', pin, '--so-pin', pin], { env: { ...process.env, SOFTHSM2_CONF: tokenConf }, stdio: 'pipe' });
    const d4 = await daemonProcess(join(dir, 'data-token'), join(dir, 'd4.sock'), 0, { SOFTHSM2_CONF: tokenConf, TOKEN_LABEL: 'bench-dk', TOKEN_PIN: pin, NO_CACHE: '1' });
    children.push(d4);
    const c4 = await connect({ socket: join(dir, 'd4.sock'), clientName: 'bench' });
    await c4.keys.create('bench-token-kek', { type: 'aes256-kwp', provider: 'hsm' });
    const tokenKeys = await Promise.all(Array.from({ length: 2 * WINDOW }, () => c4.dataKeys.generate({ kek: 'bench-token-kek' })));
    let turn = 0;

    // 1. cached data key vs managed key vs uncached (token unwrap each time), interleaved
    const { wrappedKey } = await c1.dataKeys.generate({ kek: 'bench-kek' });
    const a: Result[] = [];
    const b: Result[] = [];
    const u: Result[] = [];
    const u0 = await cacheStats(c4);
    for (let i = 0; i < ROUNDS; i++) {
      a.push(await measurePipelined(SECONDS, WINDOW, () => c1.dataKeys.encrypt(wrappedKey, kb), 1024));
      b.push(await measurePipelined(SECONDS, WINDOW, () => c1.encrypt('bench-aes', kb), 1024));
      u.push(await measurePipelined(SECONDS, WINDOW, () => c4.dataKeys.encrypt(tokenKeys[turn++ % tokenKeys.length]!.wrappedKey, kb), 1024));
    }
    const u1 = await cacheStats(c4);
    const uOps = u1.misses - u0.misses + u1.hits - u0.hits;
    const ra = median(a.map((r) => r.opsPerSec));
    const rb = median(b.map((r) => r.opsPerSec));
    log(`## Data keys (bench/datakeys.ts, ${ROUNDS} interleaved rounds of ${SECONDS} s, ${WINDOW} requests in flight)`);
    log('');
    log('| workload | median ops/s | median p50 | median p99 |');
    log('|---|---|---|---|');
    log(`| AES-256-GCM 1 KiB encrypt, cached data key | ${fmtOps(ra)} | ${fmtUs(median(a.map((r) => r.p50)))} | ${fmtUs(median(a.map((r) => r.p99)))} |`);
    log(`| AES-256-GCM 1 KiB encrypt, managed key | ${fmtOps(rb)} | ${fmtUs(median(b.map((r) => r.p50)))} | ${fmtUs(median(b.map((r) => r.p99)))} |`);
    log(`| AES-256-GCM 1 KiB encrypt, uncached data key: unwrap in the SoftHSM2 token each time | ${fmtOps(median(u.map((r) => r.opsPerSec)))} | ${fmtUs(median(u.map((r) => r.p50)))} | ${fmtUs(median(u.map((r) => r.p99)))} |`);
    log('');
    const ratios = a.map((x, i) => x.opsPerSec / b[i]!.opsPerSec);
    log(`Cached data key / managed key, median of the per-round ratios: **${median(ratios).toFixed(2)}×** (target ≥ 0.9×; per round: ${ratios.map((r) => r.toFixed(2)).join(', ')}).`);
    const tokenRatios = a.map((x, i) => x.opsPerSec / u[i]!.opsPerSec);
    log(`Cached data key / uncached token unwrap, median of the per-round ratios: **${median(tokenRatios).toFixed(1)}×** (per round: ${tokenRatios.map((r) => r.toFixed(1)).join(', ')}); ` +
      `token unwraps during the uncached rows: ${u1.unwraps - u0.unwraps} for ${uOps} requests (a request that coincides with another on the same wrapped key shares its unwrap).`);
    log('');

    // 2. unwraps per 10,000 operations on 100 hot keys, from a cold cache
    const hot = await Promise.all(Array.from({ length: 100 }, () => c1.dataKeys.generate({ kek: 'bench-kek' })));
    const d2 = await daemonProcess(data, join(dir, 'd2.sock'));
    children.push(d2);
    const c2 = await connect({ socket: join(dir, 'd2.sock'), clientName: 'bench' });
    const before = await cacheStats(c2);
    for (let i = 0; i < 10_000; i += 100) await Promise.all(hot.map((h) => c2.dataKeys.encrypt(h.wrappedKey, kb)));
    const after = await cacheStats(c2);
    log(`Unwraps per 10,000 encryptions over 100 hot data keys, starting cold: **${after.unwraps - before.unwraps}** ` +
      `(hits ${after.hits - before.hits}, misses ${after.misses - before.misses}).`);
    log('');

    // 3. a well-behaved client beside cold misses on a 50 ms KEK
    const cold = await Promise.all(Array.from({ length: Math.ceil(16 * 25 * ROUNDS * SECONDS) }, () => c1.dataKeys.generate({ kek: 'bench-kek' })));
    const d3 = await daemonProcess(data, join(dir, 'd3.sock'), 50);
    children.push(d3);
    const good = await connect({ socket: join(dir, 'd3.sock'), clientName: 'good' });
    const keysFile = join(dir, 'cold-keys.bin');
    writeFileSync(keysFile, Buffer.concat(cold.flatMap((g) => {
      const n = Buffer.alloc(2);
      n.writeUInt16BE(g.wrappedKey.length);
      return [n, Buffer.from(g.wrappedKey)];
    })));
    let next = 0;
    const quiet: Result[] = [];
    const loaded: Result[] = [];
    let missesDuring = 0;
    for (let i = 0; i < ROUNDS; i++) {
      quiet.push(await measureLoop(SECONDS, () => good.encrypt('bench-aes', kb)));
      const s0 = await cacheStats(good);
      const noise = spawn(process.execPath, ['--import', 'tsx', join(here, 'datakey-noise.ts')], {
        env: { ...process.env, SOCKET: join(dir, 'd3.sock'), KEYS_FILE: keysFile, KEYS_FROM: String(next) },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      const ready = new Promise<void>((ok) => noise.stdout!.on('data', (b: Buffer) => {
        out += b.toString();
        if (out.includes('ready')) ok();
      }));
      const exited = new Promise((r) => noise.once('exit', r));
      await ready;
      noise.kill('SIGUSR2');
      loaded.push(await measureLoop(SECONDS, () => good.encrypt('bench-aes', kb)));
      noise.kill('SIGTERM');
      await exited;
      next += Number(/used (\d+)/.exec(out)?.[1] ?? 0);
      missesDuring += (await cacheStats(good)).unwraps - s0.unwraps;
    }
    const pq = median(quiet.map((r) => r.p99));
    const pl = median(loaded.map((r) => r.p99));
    log(`Well-behaved client (managed-key encrypt 1 KiB, one request at a time), ${ROUNDS} interleaved rounds:`);
    log('');
    log('| beside | median p50 | median p99 |');
    log('|---|---|---|');
    log(`| nothing | ${fmtUs(median(quiet.map((r) => r.p50)))} | ${fmtUs(pq)} |`);
    log(`| 16 clients' cold misses on a 50 ms KEK (${missesDuring} unwraps in ${ROUNDS} rounds) | ${fmtUs(median(loaded.map((r) => r.p50)))} | ${fmtUs(pl)} |`);
    log('');
    log(`p99 beside the slow KEK / alone: **${(pl / pq).toFixed(2)}×** (target ≤ 1.5×).`);
    for (const c of [c1, c2, c4, good]) await c.close();
  } finally {
    for (const c of children) await stop(c).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
  writeFileSync(OUT, `# Data-key benchmarks\n\nGenerated by \`npm run bench:datakeys\` (${new Date().toISOString().slice(0, 10)}, ${process.platform} ${process.arch}, ${cpus().length} cores, load average ${loadavg().map((x) => x.toFixed(1)).join(' ')} at the end, Node ${process.version}). Under load the per-round ratios scatter widely; read the medians with that in mind.\n\n${lines.join('\n')}\n`);
}

await main();
