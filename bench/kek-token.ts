/**
 * The pkcs11 KEK provider on a SoftHSM2 token: what one wrap and one unwrap
 * cost (beside the local provider), and whether token calls block the event
 * loop — the p99 delay of a timer that a well-behaved client would see,
 * idle and beside 8 concurrent streams of token unwraps (async calls on the
 * thread pool, as the provider makes them), and beside the same calls made
 * synchronously (what the provider avoids).
 *
 * Interleaved rounds (A, B, A, B…), median of ROUNDS. Writes
 * docs/benchmarks-kek.md. Run: `node --import tsx bench/kek-token.ts`
 * (needs softhsm2; BENCH_SECONDS per measurement, default 1; BENCH_ROUNDS, default 5).
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Pkcs11KekProvider } from '../src/kek/pkcs11/provider.js';
import { gcmUnwrap, gcmWrap } from '../src/kek/gcm-blob.js';
import { keyVersionAad } from '../src/kek/provider.js';
import { pkcs11Module } from '../src/kek/pkcs11/token.js';
import type { AesGCM as AesGcmParams } from 'pkcs11js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 1);
const ROUNDS = Math.max(5, Number(process.env.BENCH_ROUNDS ?? 5));
const MODULE = '/usr/lib/softhsm/libsofthsm2.so';
const here = dirname(fileURLToPath(import.meta.url));
const OUT = process.env.BENCH_OUT ?? resolve(here, '../docs/benchmarks-kek.md');

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function perOp(fn: () => Promise<unknown>): Promise<number> {
  const end = process.hrtime.bigint() + BigInt(Math.round(SECONDS * 1e9));
  let n = 0;
  const t0 = process.hrtime.bigint();
  while (process.hrtime.bigint() < end) {
    await fn();
    n++;
  }
  return Number(process.hrtime.bigint() - t0) / n / 1000; // µs per op
}

/** p99 of the event loop's delay (ms) while `load` runs for SECONDS. */
async function loopP99(load: (stop: () => boolean) => Promise<unknown>): Promise<number> {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  const end = Date.now() + SECONDS * 1000;
  await load(() => Date.now() >= end);
  h.disable();
  return h.percentile(99) / 1e6;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'cryptod-bench-hsm-'));
  const conf = join(dir, 'softhsm2.conf');
  writeFileSync(conf, `directories.tokendir = ${dir}\nobjectstore.backend = file\nlog.level = ERROR\n`);
  process.env.SOFTHSM2_CONF = conf;
  const pin = randomBytes(6).toString('hex');
  execFileSync('softhsm2-util', ['--init-token', '--free', '--label', 'bench', '--pin', pin, '--so-pin', pin], { stdio: 'pipe' });
  const kek = await Pkcs11KekProvider.open({ provider: 'hsm', module: MODULE, token: 'bench', pin, sessions: 4, retryMs: 0, keyLabel: 'bench', create: true });
  const localKey = randomBytes(32);
  const secret = randomBytes(32);
  const aad = keyVersionAad('bench', 1);
  const tokenBlob = await kek.wrap(secret, aad);
  const localBlob = gcmWrap(localKey, secret, aad);

  // A synchronous twin of the provider's unwrap, on its own session: what the provider does not do.
  const p = pkcs11Module();
  const lib = new p.PKCS11();
  lib.load(MODULE);
  try { lib.C_Initialize({ flags: p.CKF_OS_LOCKING_OK }); } catch { /* shared */ }
  const slot = lib.C_GetSlotList(true).find((s) => lib.C_GetTokenInfo(s).label.trim() === 'bench')!;
  const s = lib.C_OpenSession(slot, p.CKF_SERIAL_SESSION);
  try { lib.C_Login(s, p.CKU_USER, pin); } catch { /* logged in */ }
  lib.C_FindObjectsInit(s, [{ type: p.CKA_LABEL, value: 'bench' }]);
  const [key] = lib.C_FindObjects(s, 1);
  lib.C_FindObjectsFinal(s);
  const gcmAad = Buffer.concat([Buffer.from([0x02]), aad]);
  const syncUnwrap = (): Buffer => {
    lib.C_DecryptInit(s, { mechanism: p.CKM_AES_GCM, parameter: { type: p.CK_PARAMS_AES_GCM, iv: tokenBlob.subarray(1, 13), aad: gcmAad, ivBits: 96, tagBits: 128 } as AesGcmParams }, key!);
    return lib.C_Decrypt(s, tokenBlob.subarray(13), Buffer.alloc(64));
  };
  syncUnwrap();

  const rows: Record<string, number[]> = {
    'token wrap (µs/op, one at a time)': [], 'token unwrap (µs/op, one at a time)': [],
    'local wrap (µs/op)': [], 'local unwrap (µs/op)': [],
    'loop p99 idle (ms)': [], 'loop p99 beside 8 streams of async token unwraps (ms)': [], 'loop p99 beside synchronous token unwraps (ms)': [],
  };
  for (let r = 0; r < ROUNDS; r++) {
    rows['token wrap (µs/op, one at a time)']!.push(await perOp(() => kek.wrap(secret, aad)));
    rows['local wrap (µs/op)']!.push(await perOp(async () => gcmWrap(localKey, secret, aad)));
    rows['token unwrap (µs/op, one at a time)']!.push(await perOp(async () => (await kek.unwrap(tokenBlob, aad)).fill(0)));
    rows['local unwrap (µs/op)']!.push(await perOp(async () => gcmUnwrap(localKey, localBlob, aad, 'local').fill(0)));
    rows['loop p99 idle (ms)']!.push(await loopP99(async (stop) => { while (!stop()) await new Promise((res) => setTimeout(res, 5)); }));
    rows['loop p99 beside 8 streams of async token unwraps (ms)']!.push(await loopP99((stop) => Promise.all(Array.from({ length: 8 }, async () => { while (!stop()) (await kek.unwrap(tokenBlob, aad)).fill(0); }))));
    rows['loop p99 beside synchronous token unwraps (ms)']!.push(await loopP99(async (stop) => { while (!stop()) { for (let i = 0; i < 200; i++) syncUnwrap(); await new Promise((res) => setImmediate(res)); } }));
  }
  await kek.close();
  rmSync(dir, { recursive: true, force: true });

  const lines = [
    '# KEK provider benchmarks',
    '',
    `Generated by \`node --import tsx bench/kek-token.ts\` (SoftHSM2 ${execFileSync('softhsm2-util', ['--version']).toString().trim()}, Node ${process.version}, ${ROUNDS} interleaved rounds of ${SECONDS} s, median). ` +
      'A wrap/unwrap is of a 32-byte key with AES-256-GCM; the token computes it (CKM_AES_GCM), the local provider uses node:crypto.',
    '',
    '| measurement | median | rounds |',
    '|---|---:|---|',
    ...Object.entries(rows).map(([k, v]) => `| ${k} | ${median(v).toFixed(k.includes('ms') ? 2 : 1)} | ${v.map((x) => x.toFixed(k.includes('ms') ? 2 : 1)).join(', ')} |`),
    '',
    'The synchronous row calls C_DecryptInit + C_Decrypt on the loop 200 times between yields, as a provider without the *Async calls would under load; ' +
      'the provider itself runs C_Encrypt/C_Decrypt on the thread pool and only the C_*Init call on the loop.',
    '',
  ];
  writeFileSync(OUT, lines.join('\n'));
  console.log(lines.join('\n'));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
