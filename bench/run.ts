/**
 * `npm run bench`: the same work in-process (node:crypto) and through the
 * daemon, side by side in one run, written to docs/benchmarks.md.
 *
 * The daemon runs in its own process (as in production), started from the
 * compiled dist/ on a temporary socket; this process is the client.
 * Options: BENCH_SECONDS (per measurement, default 2), BENCH_STREAM_MIB
 * (default 256), BENCH_OUT (default docs/benchmarks.md).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, createHmac, createCipheriv, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, type Client } from '../src/client/client.js';
import { measureLoop, measurePipelined, type Result } from './measure.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 2);
const STREAM_MIB = Number(process.env.BENCH_STREAM_MIB ?? 256);
const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../..');
const OUT = process.env.BENCH_OUT ?? join(repo, 'docs/benchmarks.md');

interface Row {
  workload: string;
  mode: string;
  r: Result;
}

async function startDaemonProcess(): Promise<{ child: ChildProcess; socket: string; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'cdb-'));
  const socket = join(dir, 'cryptod.sock');
  const main = join(repo, 'dist/src/cli/main.js');
  // Managed keys for the managed-key rows; reloading this file is the reload-under-load case.
  const config = join(dir, 'cryptod.yaml');
  writeFileSync(
    config,
    ['keys:', '  bench-aes: { type: aes256-gcm, rotationPeriod: 30d }', '  bench-mac: { type: hmac-sha256, rotationPeriod: 30d }', '  bench-ed: { type: ed25519, rotationPeriod: 30d }', ''].join('\n'),
  );
  const child = spawn(process.execPath, [main, 'serve', '--data-dir', dir, '--socket', socket, '--config', config, '--log-level', 'warn'], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      const c = await connect({ socket, clientName: 'probe' });
      await c.close();
      break;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return { child, socket, dir };
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  const add = (workload: string, mode: string, r: Result): void => {
    rows.push({ workload, mode, r });
    console.log(`${workload.padEnd(28)} ${mode.padEnd(30)} ${fmtOps(r.opsPerSec).padStart(12)} ops/s  p50 ${fmtUs(r.p50)}  p99 ${fmtUs(r.p99)}${r.mbPerSec ? `  ${r.mbPerSec.toFixed(0)} MB/s` : ''}`);
  };
  const { child, socket, dir } = await startDaemonProcess();
  let client: Client | undefined;
  try {
    client = await connect({ socket, clientName: 'bench' });
    const subtle = client.subtle;

    // ── HMAC-SHA256, 64 B ───────────────────────────────────────────────
    const hmacKeyBytes = randomBytes(32);
    const msg64 = randomBytes(64);
    add('HMAC-SHA256 64 B', 'in-process node:crypto', await measureLoop(SECONDS, () => createHmac('sha256', hmacKeyBytes).update(msg64).digest()));
    const hmacKey = await subtle.importKey('raw', hmacKeyBytes, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    add('HMAC-SHA256 64 B', 'cryptod, 1 in flight', await measureLoop(SECONDS, () => subtle.sign('HMAC', hmacKey, msg64)));
    add('HMAC-SHA256 64 B', 'cryptod, pipelined (256)', await measurePipelined(SECONDS, 256, () => subtle.sign('HMAC', hmacKey, msg64)));

    // ── AES-256-GCM, 1 KiB ──────────────────────────────────────────────
    const aesKeyBytes = randomBytes(32);
    const msg1k = randomBytes(1024);
    add(
      'AES-256-GCM encrypt 1 KiB',
      'in-process node:crypto',
      await measureLoop(SECONDS, () => {
        const c = createCipheriv('aes-256-gcm', aesKeyBytes, randomBytes(12));
        const out = Buffer.concat([c.update(msg1k), c.final(), c.getAuthTag()]);
        return out;
      }, 1024),
    );
    const aesKey = await subtle.importKey('raw', aesKeyBytes, 'AES-GCM', false, ['encrypt', 'decrypt']);
    add('AES-256-GCM encrypt 1 KiB', 'cryptod, 1 in flight', await measureLoop(SECONDS, () => subtle.encrypt({ name: 'AES-GCM', iv: randomBytes(12) }, aesKey, msg1k), 1024));
    add('AES-256-GCM encrypt 1 KiB', 'cryptod, pipelined (256)', await measurePipelined(SECONDS, 256, () => subtle.encrypt({ name: 'AES-GCM', iv: randomBytes(12) }, aesKey, msg1k), 1024));

    // ── Ed25519 sign ────────────────────────────────────────────────────
    const { privateKey } = generateKeyPairSync('ed25519');
    add('Ed25519 sign 64 B', 'in-process node:crypto', await measureLoop(SECONDS, () => sign(null, msg64, privateKey)));
    const pkcs8 = privateKey.export({ format: 'der', type: 'pkcs8' });
    const edKey = await subtle.importKey('pkcs8', pkcs8, 'Ed25519', false, ['sign']);
    add('Ed25519 sign 64 B', 'cryptod, 1 in flight', await measureLoop(SECONDS, () => subtle.sign('Ed25519', edKey, msg64)));
    add('Ed25519 sign 64 B', 'cryptod, pipelined (64)', await measurePipelined(SECONDS, 64, () => subtle.sign('Ed25519', edKey, msg64)));

    // ── managed keys (by name; versioned, self-describing output) ──────
    add('managed AES-256-GCM 1 KiB', 'cryptod encrypt, pipelined (256)', await measurePipelined(SECONDS, 256, () => client!.encrypt('bench-aes', msg1k), 1024));
    const sealed = await client.encrypt('bench-aes', msg1k);
    add('managed AES-256-GCM 1 KiB', 'cryptod decrypt, pipelined (256)', await measurePipelined(SECONDS, 256, () => client!.decrypt('bench-aes', sealed), 1024));
    add('managed HMAC-SHA256 64 B', 'cryptod mac, pipelined (256)', await measurePipelined(SECONDS, 256, () => client!.mac('bench-mac', msg64)));
    add('managed Ed25519 sign 64 B', 'cryptod sign, pipelined (64)', await measurePipelined(SECONDS, 64, () => client!.sign('bench-ed', msg64)));

    // ── reload under load: the same pipelined mac load, with and without a
    // configuration reload every 50 ms (readers must not wait on it).
    add('managed mac during reloads', 'steady state, pipelined (64)', await measurePipelined(SECONDS, 64, () => client!.mac('bench-mac', msg64)));
    {
      let reloads = 0;
      let stop = false;
      const admin = await connect({ socket, clientName: 'bench-admin' });
      const reloader = (async () => {
        while (!stop) {
          await admin.reload();
          reloads++;
          await new Promise((r) => setTimeout(r, 50));
        }
      })();
      const r = await measurePipelined(SECONDS, 64, () => client!.mac('bench-mac', msg64));
      stop = true;
      await reloader;
      await admin.close();
      add('managed mac during reloads', `reload every 50 ms (${reloads} reloads), pipelined (64)`, r);
    }

    // ── SHA-256 over a stream ───────────────────────────────────────────
    const chunk = randomBytes(1024 * 1024);
    const total = STREAM_MIB;
    {
      const t0 = process.hrtime.bigint();
      const h = createHash('sha256');
      for (let i = 0; i < total; i++) h.update(chunk);
      h.digest();
      add(`SHA-256 ${total} MiB stream`, 'in-process node:crypto', streamResult(t0, total));
    }
    {
      const t0 = process.hrtime.bigint();
      const h = client.createHash('SHA-256');
      for (let i = 0; i < total; i++) await h.update(chunk);
      await h.digest();
      add(`SHA-256 ${total} MiB stream`, 'cryptod hash context, 1 MiB chunks', streamResult(t0, total));
    }
  } finally {
    await client?.close().catch(() => {});
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
  writeFileSync(OUT, render(rows));
  console.log(`\nwrote ${OUT}`);
}

function streamResult(t0: bigint, mib: number): Result {
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  return { ops: mib, seconds: s, opsPerSec: mib / s, p50: NaN, p99: NaN, mbPerSec: (mib * 1024 * 1024) / s / 1e6 };
}

function fmtOps(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

function fmtUs(ns: number): string {
  if (!Number.isFinite(ns)) return '—';
  return `${(ns / 1000).toFixed(1)} µs`;
}

function render(rows: Row[]): string {
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  const lines = [
    '# Benchmarks',
    '',
    'Generated by `npm run bench` (bench/run.ts); do not edit by hand.',
    '',
    `- Date: ${new Date().toISOString().slice(0, 10)}`,
    `- Machine: ${cpus().length} × ${cpu}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node.js ${process.version}, ${process.platform}`,
    `- Each measurement runs ${SECONDS} s after a warm-up; the daemon runs in its own process on a Unix socket, this process is the client.`,
    '- "1 in flight": one request at a time (latency per round trip). "pipelined (N)": N requests kept in flight on one connection.',
    '',
    '| workload | mode | ops/s | MB/s | p50 latency | p99 latency | vs in-process |',
    '|---|---|---:|---:|---:|---:|---:|',
  ];
  const base = new Map<string, number>();
  for (const row of rows) if (row.mode.startsWith('in-process')) base.set(row.workload, row.r.opsPerSec);
  // Managed-key rows compare with the same primitive in-process.
  const same: Record<string, string> = {
    'managed AES-256-GCM 1 KiB': 'AES-256-GCM encrypt 1 KiB',
    'managed HMAC-SHA256 64 B': 'HMAC-SHA256 64 B',
    'managed Ed25519 sign 64 B': 'Ed25519 sign 64 B',
  };
  for (const [m, w] of Object.entries(same)) {
    const b = base.get(w);
    if (b !== undefined) base.set(m, b);
  }
  for (const { workload, mode, r } of rows) {
    const b = base.get(workload);
    const ratio = b === undefined ? '' : `${(r.opsPerSec / b).toFixed(2)}×`;
    lines.push(`| ${workload} | ${mode} | ${fmtOps(r.opsPerSec)} | ${r.mbPerSec ? r.mbPerSec.toFixed(0) : ''} | ${fmtUs(r.p50)} | ${fmtUs(r.p99)} | ${ratio} |`);
  }
  lines.push('', 'Targets of the first version (reported, never asserted in tests): pipelined HMAC ≥ 150,000 ops/s on one connection; Ed25519 sign through the daemon ≥ 0.8× in-process; one-in-flight p50 ≤ 100 µs.', '');
  return lines.join('\n');
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
