/**
 * The large-input rows of bench/run.ts, as sides for interleaved rounds
 * (bench/interleave.ts): SHA-256 through a hash context against node:crypto
 * in this process, `cryptod digest FILE` against `sha256sum FILE`, and an
 * AES-256-GCM encrypt stream against createCipheriv over the same segments.
 * One "op" is one MiB.
 */
import { spawn } from 'node:child_process';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Client } from '../src/client/client.js';
import type { Side } from './interleave.js';
import { selfCpu, type CpuProbe, type Result } from './measure.js';
import { findOnPath } from './tools.js';

const MiB = 1024 * 1024;
/** The stream's default segment size (docs/formats.md); the in-process side seals the same segments. */
const SEGMENT = 64 * 1024;

async function timed(mib: number, cpu: CpuProbe | undefined, body: () => Promise<void>): Promise<Result> {
  const c0 = cpu === undefined ? 0 : await cpu();
  const t0 = process.hrtime.bigint();
  await body();
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  const r: Result = { ops: mib, seconds: s, opsPerSec: mib / s, p50: NaN, p99: NaN, mbPerSec: (mib * MiB) / s / 1e6 };
  if (cpu !== undefined) r.cpuPerOpNs = (((await cpu()) - c0) * 1000) / mib;
  return r;
}

/** The hash-context side: SHA-256 over `mib` MiB of `chunk`, updates streamed. */
function hashContextRun(client: Client, chunk: Buffer, mib: number, daemonCpu: CpuProbe): () => Promise<Result> {
  return () => timed(mib, daemonCpu, async () => {
    const h = client.createHash('SHA-256');
    // Not awaited one by one: the context streams its updates (src/client/contexts.ts).
    const sent: Promise<void>[] = [];
    for (let i = 0; i < mib; i++) {
      const u = h.update(chunk);
      sent.push(u);
      if (sent.length >= 8) await sent.shift();
    }
    await Promise.all(sent);
    await h.digest();
  });
}

/**
 * SHA-256 over `mib` MiB in 1 MiB chunks. `client` uses a shared-memory
 * window where it can (docs/protocol.md §6.16); `inline`, a client connected
 * with `windows: false`, adds the side that sends every byte through the socket.
 */
export function hashStreamSides(client: Client, mib: number, daemonCpu: CpuProbe, inline?: Client): Side[] {
  const chunk = randomBytes(MiB);
  const workload = `SHA-256 ${mib} MiB stream`;
  return [
    {
      workload, mode: 'in-process node:crypto, 1 MiB chunks', kind: 'in-process',
      run: () => timed(mib, selfCpu, async () => {
        const h = createHash('sha256');
        for (let i = 0; i < mib; i++) h.update(chunk);
        h.digest();
      }),
    },
    { workload, mode: 'cryptod hash context, 1 MiB chunks (shared-memory window)', kind: 'cryptod', run: hashContextRun(client, chunk, mib, daemonCpu) },
    ...(inline === undefined ? [] : [{ workload, mode: 'cryptod hash context, 1 MiB chunks, through the socket', kind: 'cryptod' as const, run: hashContextRun(inline, chunk, mib, daemonCpu) }]),
  ];
}

function runCommand(file: string, args: readonly string[], env?: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'inherit'], ...(env === undefined ? {} : { env }) });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${file} ${args.join(' ')} exited with ${String(code)}`))));
  });
}

/** `cryptod digest FILE` (a new process each round, as a user runs it) against `sha256sum FILE`. */
export async function digestFileSides(dir: string, socket: string, mib: number, daemonCpu: CpuProbe, main: string): Promise<Side[]> {
  const file = join(dir, 'digest-input.bin');
  const data = randomBytes(mib * MiB);
  writeFileSync(file, data);
  const want = createHash('sha256').update(data).digest('hex');
  const sha256sum = findOnPath('sha256sum');
  if (sha256sum === undefined) throw new Error('sha256sum not found (coreutils)');
  const check = (out: string, who: string): void => {
    if (!out.startsWith(want)) throw new Error(`${who} printed ${out.trim()}, expected ${want}`);
  };
  const workload = `digest of a ${mib} MiB file`;
  return [
    {
      workload, mode: 'sha256sum FILE', kind: 'in-process',
      run: () => timed(mib, undefined, async () => check(await runCommand(sha256sum, [file]), 'sha256sum')),
    },
    {
      workload, mode: 'cryptod digest --algorithm SHA-256 FILE', kind: 'cryptod',
      run: () => timed(mib, daemonCpu, async () => check(await runCommand(process.execPath, [main, 'digest', '--algorithm', 'SHA-256', '--socket', socket, file]), 'cryptod digest')),
    },
    {
      workload, mode: 'cryptod digest FILE, CRYPTOD_NO_WINDOWS=1 (through the socket)', kind: 'cryptod',
      run: () => timed(mib, daemonCpu, async () => check(await runCommand(process.execPath, [main, 'digest', '--algorithm', 'SHA-256', '--socket', socket, file], { ...process.env, CRYPTOD_NO_WINDOWS: '1' }), 'cryptod digest')),
    },
  ];
}

/** AES-256-GCM over `mib` MiB, 64 KiB segments, fed in 1 MiB chunks. */
export function aeadStreamSides(client: Client, mib: number, daemonCpu: CpuProbe): Side[] {
  const chunk = randomBytes(MiB);
  const keyBytes = randomBytes(32);
  const workload = `AES-256-GCM ${mib} MiB stream`;
  let key: Promise<Awaited<ReturnType<Client['subtle']['importKey']>>> | null = null;
  return [
    {
      workload, mode: 'in-process createCipheriv, 64 KiB segments', kind: 'in-process',
      run: () => timed(mib, selfCpu, async () => {
        const iv = randomBytes(12);
        let n = 0;
        for (let i = 0; i < mib; i++) {
          for (let off = 0; off < MiB; off += SEGMENT) {
            iv.writeUInt32BE(n++, 8);
            const c = createCipheriv('aes-256-gcm', keyBytes, iv);
            c.update(chunk.subarray(off, off + SEGMENT));
            c.final();
            c.getAuthTag();
          }
        }
      }),
    },
    {
      workload, mode: 'cryptod encrypt stream, 64 KiB segments', kind: 'cryptod',
      run: () => timed(mib, daemonCpu, async () => {
        key ??= client.subtle.importKey('raw', keyBytes, 'AES-GCM', false, ['encrypt', 'decrypt']);
        const k = await key;
        let out = 0;
        await pipeline(
          Readable.from((function* () {
            for (let i = 0; i < mib; i++) yield chunk;
          })()),
          client.createEncryptStream(k, { name: 'AES-GCM', segmentSize: SEGMENT }),
          new Writable({ write(b: Buffer, _e, cb) { out += b.length; cb(); } }),
        );
        if (out < mib * MiB) throw new Error(`the encrypt stream produced ${out} bytes for ${mib} MiB`);
      }),
    },
  ];
}
