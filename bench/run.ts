/**
 * `npm run bench`: the same work in-process (node:crypto), through the
 * daemon, and through the alternatives cryptod is compared with (ssh-agent,
 * a PKCS#11 token in-process and behind p11-kit server), side by side in one
 * run, written to docs/benchmarks.md.
 *
 * The daemon runs in its own process (as in production), started from the
 * compiled dist/ on a temporary socket; this process is the client.
 * An alternative whose tools are missing is skipped with one console line
 * naming the package (bench/install-alternatives.sh installs them all).
 * Options: BENCH_SECONDS (per measurement and round, default 1),
 * BENCH_ROUNDS (interleaved rounds, default and minimum 5), BENCH_STREAM_MIB
 * (default 256), BENCH_OUT (default docs/benchmarks.md).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, createHmac, createCipheriv, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, type Client } from '../src/client/client.js';
import { interleave, ROUNDS, type Side } from './interleave.js';
import { measureLoop, measurePipelined, selfCpu, WARMUP_MS, type CpuProbe, type Result } from './measure.js';
import { aeadStreamSides, digestFileSides, hashStreamSides } from './streams.js';
import { cborSection } from './cbor-codecs.js';
import { flatCostSection } from './flat-cost.js';
import { pkcs11Unavailable, startPkcs11, type Pkcs11Bench, type Pkcs11Workload } from './pkcs11.js';
import { fmtOps, fmtUs, render, targetsSection, type AlternativesRun, type NotMeasured, type Row, type RowKind } from './report.js';
import { sshAgentUnavailable, startSshAgent, type SshAgent } from './ssh-agent.js';
import { isSkip, type Skip } from './tools.js';
import { startEcho } from './echo.js';
import { hmacBatchedSide } from './batch.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 1);
const STREAM_MIB = Number(process.env.BENCH_STREAM_MIB ?? 256);
const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../..');
const OUT = process.env.BENCH_OUT ?? join(repo, 'docs/benchmarks.md');
/** Requests in flight for the pipelined Ed25519 rows: cryptod and ssh-agent alike. */
const ED25519_WINDOW = 64;

async function startDaemonProcess(): Promise<{ child: ChildProcess; socket: string; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'cdb-'));
  const socket = join(dir, 'cryptod.sock');
  const main = join(repo, 'dist/src/cli/main.js');
  // Managed keys for the managed-key rows; reloading this file is the reload-under-load case.
  const config = join(dir, 'cryptod.yaml');
  writeFileSync(
    config,
    ['keys:', '  bench-aes: { type: aes256-gcm, rotationPeriod: 30d }', '  bench-mac: { type: hmac-sha256, rotationPeriod: 30d }', '  bench-ed: { type: ed25519, rotationPeriod: 30d }', ''].join('\n'),
    // The daemon refuses a configuration file others may read (src/files/trusted-files.ts).
    { mode: 0o600 },
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
  const loadAtStart = loadavg()[0];
  const rows: Row[] = [];
  const sections: string[] = [];
  const notMeasured: NotMeasured[] = [];
  const ran: AlternativesRun = { sshAgent: false, pkcs11InProcess: false, pkcs11ViaP11Kit: false, pkcs11Ecdsa: false };
  const add = (workload: string, mode: string, r: Result, kind: RowKind = mode.startsWith('in-process') ? 'in-process' : 'cryptod'): void => {
    rows.push({ workload, mode, kind, r });
    console.log(`${workload.padEnd(28)} ${mode.padEnd(58)} ${fmtOps(r.opsPerSec).padStart(12)} ops/s  p50 ${fmtUs(r.p50)}  p99 ${fmtUs(r.p99)}${r.mbPerSec ? `  ${r.mbPerSec.toFixed(0)} MB/s` : ''}`);
  };
  const skip = (what: string, why: string, workload?: string): void => {
    notMeasured.push(workload === undefined ? { what, why } : { what, workload, why });
    console.log(`skip ${what}${workload ? ` — ${workload}` : ''}: ${why}`);
  };
  /** Measure one alternative row; a failure is reported as not measured, never ends the run. */
  const tryAlternative = async (what: string, workload: string, body: () => Promise<void>): Promise<void> => {
    try {
      await body();
    } catch (err) {
      skip(what, `failed: ${err instanceof Error ? err.message : String(err)}`, workload);
    }
  };
  /** One PKCS#11 row per target; `instead` is added to the reason when a module lacks the mechanism. */
  const pkcs11Rows = async (p11: Pkcs11Bench | undefined, workload: string, w: Pkcs11Workload, instead = ''): Promise<void> => {
    if (p11 === undefined) return;
    let inProcessHasIt = false;
    for (const target of [p11.inProcess, p11.viaP11Kit]) {
      if (isSkip(target)) continue;
      await tryAlternative(target.label, workload, async () => {
        const out = await p11.measure(target, w, SECONDS, WARMUP_MS);
        if (out.result === undefined) {
          // The same token offers it in-process: the mechanism is lost on the way, in p11-kit's RPC.
          const where = target !== p11.inProcess && inProcessHasIt ? ' — the token offers it in-process (row above), p11-kit-client.so does not forward it' : '';
          skip(target.label, `${out.unsupported ?? 'mechanism not supported'}${where}${instead}`, workload);
          return;
        }
        add(workload, `${target.label}, 1 in flight`, out.result, 'alternative');
        if (target === p11.inProcess) ran.pkcs11InProcess = inProcessHasIt = true;
        else ran.pkcs11ViaP11Kit = true;
        if (w === 'ecdsa-p256') ran.pkcs11Ecdsa = true;
      });
    }
  };

  const { child, socket, dir } = await startDaemonProcess();
  let client: Client | undefined;
  let agent: SshAgent | undefined;
  let p11: Pkcs11Bench | undefined;
  try {
    client = await connect({ socket, clientName: 'bench' });
    const subtle = client.subtle;
    // The same calls with one frame each (no coalescing, README "Coalescing"): beside the default client's rows.
    const unbatched = await connect({ socket, clientName: 'bench-one-frame-per-call', coalesce: false });

    // ── the alternatives: started once, measured under their workloads ─
    const a = await startAlternative('ssh-agent', sshAgentUnavailable, startSshAgent);
    if (isSkip(a)) skip('ssh-agent', a.skip);
    else {
      agent = a;
      console.log(`ssh-agent: ${a.version}\n  ${a.commands.join('\n  ')}`);
    }
    const p = await startAlternative('PKCS#11', pkcs11Unavailable, () => startPkcs11(join(repo, 'bench/pkcs11-bench.c')));
    if (isSkip(p)) skip('PKCS#11 (SoftHSM2 in-process and via p11-kit server)', p.skip);
    else {
      p11 = p;
      console.log(`PKCS#11: SoftHSM2 ${p.softhsmVersion}\n  ${p.commands.join('\n  ')}\n  ${p.inProcess.command}`);
      if (isSkip(p.viaP11Kit)) skip('PKCS#11 SoftHSM2 via p11-kit server', p.viaP11Kit.skip);
      else console.log(`  ${p.viaP11Kit.command}`);
    }

    // Every figure compared with in-process runs in interleaved rounds
    // (bench/interleave.ts); CPU/op comes from this process (in-process rows)
    // or from the daemon's process.cpuUsage() through STATUS (cryptod rows).
    const daemonCpu: CpuProbe = async () => {
      const st = (await client!.status()) as { process: { cpuUserUs: number; cpuSystemUs: number } };
      return st.process.cpuUserUs + st.process.cpuSystemUs;
    };
    const compare = async (sides: Side[]): Promise<void> => {
      console.log(`${sides[0]!.workload}: ${ROUNDS} interleaved rounds`);
      for (const ix of await interleave(sides, (line) => console.log(line))) {
        rows.push({ workload: ix.workload, mode: ix.mode, kind: ix.kind, r: ix.r, ix });
        const ratio = ix.ratio === undefined ? '' : `  ${ix.ratio.median.toFixed(2)}× (${ix.ratio.min.toFixed(2)}–${ix.ratio.max.toFixed(2)})`;
        console.log(`${ix.workload.padEnd(28)} ${ix.mode.padEnd(58)} ${fmtOps(ix.opsPerSec.median).padStart(12)} ops/s  p50 ${fmtUs(ix.p50.median)}${ratio}`);
      }
    };
    const inProc = (workload: string, fn: () => unknown, bytes?: number): Side => ({ workload, mode: 'in-process node:crypto', kind: 'in-process', run: () => measureLoop(SECONDS, fn, bytes, selfCpu) });
    const oneInFlight = (workload: string, fn: () => Promise<unknown>, bytes?: number, mode = 'cryptod, 1 in flight'): Side => ({ workload, mode, kind: 'cryptod', run: () => measureLoop(SECONDS, fn, bytes, daemonCpu) });
    const piped = (workload: string, window: number, fn: () => Promise<unknown>, bytes?: number, mode = `cryptod, pipelined (${window})`, perCall = 1): Side => ({
      workload, mode, kind: 'cryptod', run: () => measurePipelined(SECONDS, window, fn, bytes, daemonCpu, perCall),
    });

    // ── the floor: a socket round trip with no protocol, and cryptod's PING ──
    const echo = await startEcho();
    try {
      await compare([
        { workload: 'Unix-socket round trip', mode: 'Node.js echo process (no protocol), 1 in flight', kind: 'baseline', run: () => measureLoop(SECONDS, () => echo.roundTrip()) },
        oneInFlight('Unix-socket round trip', () => client!.ping(), undefined, 'cryptod PING, 1 in flight'),
      ]);
    } finally {
      await echo.close();
    }

    // ── HMAC-SHA256, 64 B ───────────────────────────────────────────────
    const hmacKeyBytes = randomBytes(32);
    const msg64 = randomBytes(64);
    const hmacKey = await subtle.importKey('raw', hmacKeyBytes, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    const hmacKey1 = await unbatched.subtle.importKey('raw', hmacKeyBytes, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    await compare([
      inProc('HMAC-SHA256 64 B', () => createHmac('sha256', hmacKeyBytes).update(msg64).digest()),
      oneInFlight('HMAC-SHA256 64 B', () => subtle.sign('HMAC', hmacKey, msg64)),
      piped('HMAC-SHA256 64 B', 256, () => subtle.sign('HMAC', hmacKey, msg64)),
      piped('HMAC-SHA256 64 B', 256, () => unbatched.subtle.sign('HMAC', hmacKey1, msg64), undefined, 'one frame per call (coalesce: false), pipelined (256)'),
      piped('managed HMAC-SHA256 64 B', 256, () => client!.mac('bench-mac', msg64), undefined, 'cryptod mac, pipelined (256)'),
      hmacBatchedSide(subtle, hmacKey, msg64, SECONDS, daemonCpu),
    ]);
    await pkcs11Rows(p11, 'HMAC-SHA256 64 B', 'hmac-sha256');

    // ── AES-256-GCM, 1 KiB ──────────────────────────────────────────────
    const aesKeyBytes = randomBytes(32);
    const msg1k = randomBytes(1024);
    const aesKey = await subtle.importKey('raw', aesKeyBytes, 'AES-GCM', false, ['encrypt', 'decrypt']);
    const aesKey1 = await unbatched.subtle.importKey('raw', aesKeyBytes, 'AES-GCM', false, ['encrypt']);
    const sealed = await client.encrypt('bench-aes', msg1k);
    await compare([
      inProc('AES-256-GCM encrypt 1 KiB', () => {
        const c = createCipheriv('aes-256-gcm', aesKeyBytes, randomBytes(12));
        return Buffer.concat([c.update(msg1k), c.final(), c.getAuthTag()]);
      }, 1024),
      oneInFlight('AES-256-GCM encrypt 1 KiB', () => subtle.encrypt({ name: 'AES-GCM', iv: randomBytes(12) }, aesKey, msg1k), 1024),
      piped('AES-256-GCM encrypt 1 KiB', 256, () => subtle.encrypt({ name: 'AES-GCM', iv: randomBytes(12) }, aesKey, msg1k), 1024),
      piped('AES-256-GCM encrypt 1 KiB', 256, () => unbatched.subtle.encrypt({ name: 'AES-GCM', iv: randomBytes(12) }, aesKey1, msg1k), 1024, 'one frame per call (coalesce: false), pipelined (256)'),
      piped('managed AES-256-GCM 1 KiB', 256, () => client!.encrypt('bench-aes', msg1k), 1024, 'cryptod encrypt, pipelined (256)'),
      piped('managed AES-256-GCM 1 KiB', 256, () => client!.decrypt('bench-aes', sealed), 1024, 'cryptod decrypt, pipelined (256)'),
    ]);
    await unbatched.close();

    // ── Ed25519 sign ────────────────────────────────────────────────────
    const { privateKey } = generateKeyPairSync('ed25519');
    const pkcs8 = privateKey.export({ format: 'der', type: 'pkcs8' });
    const edKey = await subtle.importKey('pkcs8', pkcs8, 'Ed25519', false, ['sign']);
    await compare([
      inProc('Ed25519 sign 64 B', () => sign(null, msg64, privateKey)),
      oneInFlight('Ed25519 sign 64 B', () => subtle.sign('Ed25519', edKey, msg64)),
      piped('Ed25519 sign 64 B', ED25519_WINDOW, () => subtle.sign('Ed25519', edKey, msg64)),
      piped('managed Ed25519 sign 64 B', 64, () => client!.sign('bench-ed', msg64), undefined, 'cryptod sign, pipelined (64)'),
    ]);
    if (agent !== undefined) {
      const a = agent;
      await tryAlternative('ssh-agent', 'Ed25519 sign 64 B', async () => {
        add('Ed25519 sign 64 B', `ssh-agent (${a.version}), 1 in flight`, await measureLoop(SECONDS, () => a.sign(msg64)), 'alternative');
        add('Ed25519 sign 64 B', `ssh-agent (${a.version}), pipelined (${ED25519_WINDOW})`, await measurePipelined(SECONDS, ED25519_WINDOW, () => a.sign(msg64)), 'alternative');
        ran.sshAgent = true;
      });
    }
    await pkcs11Rows(p11, 'Ed25519 sign 64 B', 'ed25519', '; this path is measured with ECDSA P-256 instead');

    // ── ECDSA P-256 sign (SHA-256): the signature every PKCS#11 path
    // carries (p11-kit 0.24's RPC forwards no EdDSA mechanism) ─────────
    {
      const ecdsa = 'ECDSA P-256 sign 64 B';
      const { privateKey: ecPriv } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const ecKey = await subtle.importKey('pkcs8', ecPriv.export({ format: 'der', type: 'pkcs8' }), { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
      const alg = { name: 'ECDSA', hash: 'SHA-256' };
      await compare([
        inProc(ecdsa, () => sign('sha256', msg64, { key: ecPriv, dsaEncoding: 'ieee-p1363' })),
        oneInFlight(ecdsa, () => subtle.sign(alg, ecKey, msg64)),
        piped(ecdsa, 64, () => subtle.sign(alg, ecKey, msg64)),
      ]);
      await pkcs11Rows(p11, ecdsa, 'ecdsa-p256');
    }

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

    // ── large inputs: SHA-256 and AES-256-GCM streams, `cryptod digest` ──
    {
      const inline = await connect({ socket, clientName: 'bench-inline', windows: false });
      await compare(hashStreamSides(client, STREAM_MIB, daemonCpu, inline));
      await inline.close();
    }
    await compare(await digestFileSides(dir, socket, STREAM_MIB, daemonCpu, join(repo, 'dist/src/cli/main.js')));
    await compare(aeadStreamSides(client, STREAM_MIB, daemonCpu));

    // ── the codec on the hot path's shapes, and cost as work grows ──────
    console.log('CBOR codecs…');
    sections.push(cborSection());
    console.log('flat cost…');
    sections.push(await flatCostSection(join(repo, 'dist/src/cli/main.js')));
  } finally {
    if (agent !== undefined) await agent.close().catch((err: unknown) => console.error('ssh-agent cleanup:', err));
    if (p11 !== undefined) await p11.close().catch((err: unknown) => console.error('PKCS#11 cleanup:', err));
    await client?.close().catch(() => {});
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
  writeFileSync(OUT, render({ rows, notMeasured, alternatives: ran, seconds: SECONDS, rounds: ROUNDS, loadAtStart, sections: [targetsSection(rows), ...sections] }) + keptSection(OUT));
  console.log(`\nwrote ${OUT}`);
}

/** Start an alternative, or say why not: its tools are missing, or starting it failed. */
async function startAlternative<T>(name: string, unavailable: () => Skip | undefined, start: () => Promise<T>): Promise<T | Skip> {
  const why = unavailable();
  if (why !== undefined) return why;
  try {
    return await start();
  } catch (err) {
    return { skip: `${name} failed to start: ${err instanceof Error ? err.message : String(err)}` };
  }
}


main().catch((err) => {
  console.error(err);
  process.exit(1);
});

/** The metrics on/off section bench/metrics.ts writes into the same file, kept as it is. */
function keptSection(file: string): string {
  let doc = '';
  try {
    doc = readFileSync(file, 'utf8');
  } catch {
    return '';
  }
  const at = doc.indexOf('<!-- metrics-overhead');
  const end = doc.indexOf('<!-- /metrics-overhead -->');
  return at === -1 || end === -1 ? '' : `\n${doc.slice(at, end + '<!-- /metrics-overhead -->'.length)}\n`;
}
