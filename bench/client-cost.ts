/**
 * The client's CPU per small operation, old client against new, in the same
 * interleaved rounds: HMAC-SHA256 64 B and AES-256-GCM 1 KiB pipelined (256)
 * through `client.subtle` and through the managed-key methods, each beside
 * in-process node:crypto. One daemon (this tree's src/, through tsx) serves
 * both clients; the other client is loaded from BENCH_OLD_TREE (a checkout of
 * an earlier commit, with node_modules beside it), so the daemon's CPU per op
 * is the same code for both and the difference is the client's. Without
 * BENCH_OLD_TREE only this tree's client runs. Client CPU is this process's
 * `process.cpuUsage()` over the measured window (the measuring loop's own
 * cost included, equally on both sides), daemon CPU is STATUS `process`.
 * Extra node flags for the daemon go in BENCH_DAEMON_NODE_FLAGS. Prints one
 * table; writes nothing.
 *
 *   BENCH_OLD_TREE=/tmp/old node --import tsx bench/client-cost.ts
 */
import { spawn } from 'node:child_process';
import { createCipheriv, createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as thisClient from '../src/client/client.js';
import { interleave, spread, type Interleaved, type Side } from './interleave.js';
import { measureLoop, measurePipelined, selfCpu, type CpuProbe, type Result } from './measure.js';
import { stopChild } from './tools.js';

type Client = thisClient.Client;
const SECONDS = Number(process.env.BENCH_SECONDS ?? 1);
const WINDOW = 256;
const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const oldTree = process.env.BENCH_OLD_TREE;

const dir = mkdtempSync(join(tmpdir(), 'cdb-clientcost-'));
const socket = join(dir, 'cryptod.sock');
const config = join(dir, 'cryptod.yaml');
writeFileSync(config, ['keys:', '  bench-aes: { type: aes256-gcm, rotationPeriod: 30d }', '  bench-mac: { type: hmac-sha256, rotationPeriod: 30d }', ''].join('\n'), { mode: 0o600 });
const flags = (process.env.BENCH_DAEMON_NODE_FLAGS ?? '').split(' ').filter((f) => f !== '');
const child = spawn(process.execPath, [...flags, '--import', 'tsx', join(repo, 'src/cli/main.ts'), 'serve', '--data-dir', dir, '--socket', socket, '--config', config, '--log-level', 'warn'], {
  stdio: ['ignore', 'inherit', 'inherit'],
  cwd: repo,
});

async function connectRetry(connect: typeof thisClient.connect, name: string): Promise<Client> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      return await connect({ socket, clientName: name });
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

const clients: Array<{ label: string; c: Client }> = [];
const lines: string[] = [];
try {
  const fresh = await connectRetry(thisClient.connect, 'bench-new');
  if (oldTree !== undefined) {
    const old = (await import(pathToFileURL(join(oldTree, 'src/client/client.ts')).href)) as typeof thisClient;
    clients.push({ label: 'old', c: await connectRetry(old.connect, 'bench-old') });
  }
  clients.push({ label: 'new', c: fresh });
  const probe = clients[0]!.c;
  const daemonCpu = async (): Promise<number> => {
    const st = (await probe.status()) as { process: { cpuUserUs: number; cpuSystemUs: number } };
    return st.process.cpuUserUs + st.process.cpuSystemUs;
  };
  /** Client CPU/op per side label, one figure per round. */
  const clientCpu = new Map<string, number[]>();
  /** Pipelined `fn`, with daemon CPU as the Result's cpuPerOpNs and this process's CPU recorded under `key`. */
  const piped = async (key: string, fn: () => Promise<unknown>, bytes?: number): Promise<Result> => {
    const mine: number[] = [];
    const probeBoth: CpuProbe = async () => {
      const d = await daemonCpu();
      mine.push(selfCpu() as number);
      return d;
    };
    const r = await measurePipelined(SECONDS, WINDOW, fn, bytes, probeBoth);
    const perOp = ((mine[1]! - mine[0]!) * 1000) / r.ops!;
    clientCpu.set(key, [...(clientCpu.get(key) ?? []), perOp]);
    return r;
  };
  const log = (l: string): void => console.log(l);
  const us = (ns: number): string => (ns / 1000).toFixed(2);
  const report = (ixs: Interleaved[]): void => {
    for (const ix of ixs) {
      const key = `${ix.workload}|${ix.mode}`;
      const cl = clientCpu.get(key);
      const clientCol = cl === undefined ? '' : (() => {
        const s = spread(cl);
        return `client ${us(s.median)} µs/op (${us(s.min)}–${us(s.max)})`;
      })();
      const cpu = ix.cpuPerOpNs === undefined ? '' : `${ix.kind === 'in-process' ? 'cpu' : 'daemon'} ${us(ix.cpuPerOpNs.median)} µs/op (${us(ix.cpuPerOpNs.min)}–${us(ix.cpuPerOpNs.max)})`;
      const ratio = ix.ratio === undefined ? '' : `${ix.ratio.median.toFixed(2)}× (${ix.ratio.min.toFixed(2)}–${ix.ratio.max.toFixed(2)})`;
      lines.push(`${ix.workload.padEnd(26)} ${ix.mode.padEnd(28)} ${Math.round(ix.opsPerSec.median).toLocaleString('en-US').padStart(9)} ops/s  ${clientCol}  ${cpu}  ${ratio}`);
      console.log(lines[lines.length - 1]);
    }
  };
  const side = (workload: string, mode: string, fn: () => Promise<unknown>, bytes?: number): Side => ({
    workload, mode, kind: 'cryptod', run: () => piped(`${workload}|${mode}`, fn, bytes),
  });

  const hmacKeyBytes = randomBytes(32);
  const msg64 = randomBytes(64);
  const aesKeyBytes = randomBytes(32);
  const msg1k = randomBytes(1024);
  const hmacKeys = await Promise.all(clients.map(({ c }) => c.subtle.importKey('raw', hmacKeyBytes, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign'])));
  const aesKeys = await Promise.all(clients.map(({ c }) => c.subtle.importKey('raw', aesKeyBytes, 'AES-GCM', false, ['encrypt'])));

  report(await interleave([
    { workload: 'HMAC-SHA256 64 B', mode: 'in-process', kind: 'in-process', run: () => measureLoop(SECONDS, () => createHmac('sha256', hmacKeyBytes).update(msg64).digest(), undefined, selfCpu) },
    ...clients.map(({ label, c }, i) => side('HMAC-SHA256 64 B', `${label} subtle.sign`, () => c.subtle.sign('HMAC', hmacKeys[i]!, msg64))),
    ...clients.map(({ label, c }) => side('HMAC-SHA256 64 B', `${label} managed mac`, () => c.mac('bench-mac', msg64))),
  ], log));

  const inProcessAes = (): Buffer => {
    const ci = createCipheriv('aes-256-gcm', aesKeyBytes, randomBytes(12));
    return Buffer.concat([ci.update(msg1k), ci.final(), ci.getAuthTag()]);
  };
  report(await interleave([
    { workload: 'AES-256-GCM 1 KiB', mode: 'in-process', kind: 'in-process', run: () => measureLoop(SECONDS, inProcessAes, 1024, selfCpu) },
    ...clients.map(({ label, c }, i) => side('AES-256-GCM 1 KiB', `${label} subtle.encrypt`, () => c.subtle.encrypt({ name: 'AES-GCM', iv: randomBytes(12) }, aesKeys[i]!, msg1k), 1024)),
    ...clients.map(({ label, c }) => side('AES-256-GCM 1 KiB', `${label} managed encrypt`, () => c.encrypt('bench-aes', msg1k), 1024)),
  ], log));
} finally {
  for (const { c } of clients) await c.close().catch(() => {});
  child.kill('SIGTERM');
  await stopChild(child);
  rmSync(dir, { recursive: true, force: true });
}
console.log(`\n${lines.join('\n')}`);
