/**
 * A PKCS#11 token as a benchmark alternative: SoftHSM2, measured twice —
 * loaded in-process (no IPC at all: the upper bound of what PKCS#11 gives),
 * and behind `p11-kit server` through p11-kit-client.so (keys in another
 * process behind a local Unix socket, like cryptod).
 *
 *   bench/pkcs11-bench.c ──cc──▶ <tmp>/pkcs11-bench ──dlopen──▶ libsofthsm2.so           (in-process)
 *                                                   └─dlopen──▶ p11-kit-client.so
 *                                                                 │ P11_KIT_SERVER_ADDRESS=unix:path=<tmp>/p11-kit.sock
 *                                                                 ▼
 *                                                     p11-kit server ──▶ libsofthsm2.so   (another process)
 *
 * Node has no PKCS#11 binding and the bench takes no npm dependency for one,
 * so the timing loop is the small C program, compiled here at bench time.
 * Its loop is timed in C: no Node.js client overhead, which favours it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHmac, createPublicKey, timingSafeEqual, verify } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Result } from './measure.js';
import { debianVersion, findLibrary, findOnPath, missing, run, runOk, stopChild, type Skip } from './tools.js';

export type Pkcs11Workload = 'hmac-sha256' | 'ed25519' | 'ecdsa-p256';

const TOKEN_LABEL = 'bench';
const USER_PIN = '1234';
const SO_PIN = '5678';
const PKCS11_HEADER_DIR = '/usr/include/p11-kit-1';
/** pkcs11-bench exit code: the module does not offer the mechanism. */
const EXIT_MECHANISM_UNSUPPORTED = 3;

/** One way to reach the token: a module for pkcs11-bench to dlopen, and its environment. */
export interface Pkcs11Target {
  /** Row mode without the in-flight suffix, e.g. "PKCS#11 SoftHSM2 2.6.1 in-process". */
  label: string;
  module: string;
  env: NodeJS.ProcessEnv;
  /** The command line that runs this target, with the workload as <workload>. */
  command: string;
}

export interface Pkcs11Outcome {
  result?: Result;
  /** Set when the module does not offer the mechanism (pkcs11-bench's own words). */
  unsupported?: string;
}

export interface Pkcs11Bench {
  softhsmVersion: string;
  /** The commands run to set the token and server up, for the report. */
  commands: string[];
  inProcess: Pkcs11Target;
  viaP11Kit: Pkcs11Target | Skip;
  /** Run pkcs11-bench; verifies the signature it reports with node:crypto before returning its figures. */
  measure(target: Pkcs11Target, workload: Pkcs11Workload, seconds: number, warmupMs: number): Promise<Pkcs11Outcome>;
  /** Stops the p11-kit server and removes the temporary directory (token, binary, socket). */
  close(): Promise<void>;
}

/** Why no PKCS#11 row can run on this machine, or undefined if the in-process one can. */
export function pkcs11Unavailable(): Skip | undefined {
  if (findOnPath('softhsm2-util') === undefined || softhsmModule() === undefined) return missing('SoftHSM2 (softhsm2-util, libsofthsm2.so)', 'softhsm2');
  if (findOnPath('cc') === undefined) return missing('a C compiler (cc) to build bench/pkcs11-bench.c', 'gcc');
  if (!existsSync(join(PKCS11_HEADER_DIR, 'p11-kit/pkcs11.h'))) return missing(`${PKCS11_HEADER_DIR}/p11-kit/pkcs11.h`, 'libp11-kit-dev');
  return undefined;
}

/** Why the p11-kit row cannot run (given that the in-process one can), or undefined. */
function p11KitUnavailable(): Skip | undefined {
  if (findOnPath('p11-kit') === undefined) return missing('p11-kit (for `p11-kit server`)', 'p11-kit');
  if (p11KitClientModule() === undefined) return missing('p11-kit-client.so', 'p11-kit-modules');
  return undefined;
}

function softhsmModule(): string | undefined {
  return findLibrary('softhsm/libsofthsm2.so');
}

function p11KitClientModule(): string | undefined {
  return findLibrary('pkcs11/p11-kit-client.so');
}

/**
 * Make a fresh SoftHSM2 token in a temporary directory, compile
 * pkcs11-bench, and start `p11-kit server` in front of the token. Everything
 * it made is removed again if any step fails.
 */
export async function startPkcs11(source: string): Promise<Pkcs11Bench> {
  const dir = mkdtempSync(join(tmpdir(), 'cdb-p11-'));
  let server: ChildProcess | undefined;
  const close = async (): Promise<void> => {
    await stopChild(server);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const module = softhsmModule()!;
    // SoftHSM2 reads its token directory from this file only (SOFTHSM2_CONF), never from /var/lib here.
    const conf = join(dir, 'softhsm2.conf');
    mkdirSync(join(dir, 'tokens'));
    writeFileSync(conf, [`directories.tokendir = ${join(dir, 'tokens')}`, 'objectstore.backend = file', 'log.level = ERROR', 'slots.removable = false', ''].join('\n'));
    const env = { ...process.env, SOFTHSM2_CONF: conf };
    const binary = join(dir, 'pkcs11-bench');
    const initArgs = ['--init-token', '--free', '--label', TOKEN_LABEL, '--pin', USER_PIN, '--so-pin', SO_PIN];
    const ccArgs = ['-O2', `-I${PKCS11_HEADER_DIR}`, '-o', binary, source, '-ldl'];
    const commands = [`SOFTHSM2_CONF=${conf} softhsm2-util ${initArgs.join(' ')}`, `cc ${ccArgs.join(' ')}`];
    await runOk('softhsm2-util', initArgs, env);
    await runOk('cc', ccArgs);
    const softhsmVersion = (await runOk('softhsm2-util', ['--version'])).stdout.trim();

    const args = `${TOKEN_LABEL} ${USER_PIN} <workload> <seconds> <warmup-ms>`;
    const inProcess: Pkcs11Target = {
      label: `PKCS#11 SoftHSM2 ${softhsmVersion} in-process`,
      module,
      env,
      command: `SOFTHSM2_CONF=${conf} ${binary} ${module} ${args}`,
    };

    let viaP11Kit: Pkcs11Target | Skip;
    const p11KitMissing = p11KitUnavailable();
    if (p11KitMissing !== undefined) viaP11Kit = p11KitMissing;
    else {
      const serverArgs = ['server', '-f', '--provider', module, '-n', join(dir, 'p11-kit.sock'), `pkcs11:token=${TOKEN_LABEL}`];
      commands.push(`SOFTHSM2_CONF=${conf} p11-kit ${serverArgs.join(' ')}`);
      try {
        server = spawn('p11-kit', serverArgs, { env, stdio: ['ignore', 'pipe', 'pipe'] });
        const address = await serverAddress(server);
        const client = p11KitClientModule()!;
        const version = (await debianVersion('p11-kit')) ?? (await pkgConfigVersion('p11-kit-1'));
        viaP11Kit = {
          label: `PKCS#11 SoftHSM2 ${softhsmVersion} via p11-kit server${version ? ` ${version}` : ''}`,
          module: client,
          env: { ...process.env, P11_KIT_SERVER_ADDRESS: address },
          command: `P11_KIT_SERVER_ADDRESS=${address} ${binary} ${client} ${args}`,
        };
      } catch (err) {
        // The in-process rows need no server: lose only the p11-kit row.
        await stopChild(server);
        viaP11Kit = { skip: `p11-kit server failed to start: ${err instanceof Error ? err.message : String(err)}` };
      }
    }

    const measure = async (target: Pkcs11Target, workload: Pkcs11Workload, seconds: number, warmupMs: number): Promise<Pkcs11Outcome> => {
      const r = await run(binary, [target.module, TOKEN_LABEL, USER_PIN, workload, String(seconds), String(warmupMs)], target.env);
      if (r.code === EXIT_MECHANISM_UNSUPPORTED) return { unsupported: r.stderr.trim().replace(/^pkcs11-bench: /, '') };
      if (r.code !== 0) throw new Error(`pkcs11-bench ${workload} via ${target.module} failed (exit ${r.code ?? r.signal}): ${r.stderr.trim()}`);
      const out = JSON.parse(r.stdout) as Pkcs11Report;
      checkSignature(workload, out.check);
      return { result: { ops: out.ops, seconds: out.seconds, opsPerSec: out.opsPerSec, p50: out.p50, p99: out.p99 } };
    };

    return { softhsmVersion, commands, inProcess, viaP11Kit, measure, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** The first line `p11-kit server` prints: "P11_KIT_SERVER_ADDRESS=unix:path=…; export P11_KIT_SERVER_ADDRESS;". */
function serverAddress(server: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => done(new Error(`p11-kit server printed no address in 5 s: ${err.trim()}`)), 5000);
    const done = (e: Error | undefined, address?: string): void => {
      clearTimeout(timer);
      server.off('exit', onExit);
      server.off('error', onError);
      if (e) reject(e);
      else resolve(address!);
    };
    const onExit = (): void => done(new Error(`p11-kit server exited: ${err.trim()}`));
    const onError = (e: Error): void => done(new Error(`p11-kit server: ${e.message}`));
    server.once('exit', onExit);
    server.once('error', onError);
    server.stderr!.setEncoding('utf8').on('data', (s: string) => (err += s));
    server.stdout!.setEncoding('utf8').on('data', (s: string) => {
      out += s;
      const m = /P11_KIT_SERVER_ADDRESS=([^;\s]+)/.exec(out);
      if (m) done(undefined, m[1]!);
    });
  });
}

async function pkgConfigVersion(pkg: string): Promise<string | undefined> {
  const pc = findOnPath('pkg-config');
  if (pc === undefined) return undefined;
  const r = await run(pc, ['--modversion', pkg]).catch(() => undefined);
  return r?.code === 0 ? r.stdout.trim() : undefined;
}

interface Pkcs11Report {
  workload: string;
  ops: number;
  seconds: number;
  opsPerSec: number;
  p50: number;
  p99: number;
  check: { message: string; signature: string; hmacKey?: string; ecPoint?: string };
}

/**
 * Check the last signature pkcs11-bench made with node:crypto, so the bench
 * times real signatures: HMAC against the imported key, Ed25519 and ECDSA
 * against the public key read from the token (CKA_EC_POINT).
 */
function checkSignature(workload: Pkcs11Workload, check: Pkcs11Report['check']): void {
  const message = Buffer.from(check.message, 'hex');
  const signature = Buffer.from(check.signature, 'hex');
  let ok: boolean;
  if (workload === 'hmac-sha256') {
    const tag = createHmac('sha256', Buffer.from(check.hmacKey ?? '', 'hex')).update(message).digest();
    ok = tag.length === signature.length && timingSafeEqual(tag, signature);
  } else {
    const point = unwrapOctetString(Buffer.from(check.ecPoint ?? '', 'hex'));
    if (workload === 'ed25519') {
      const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: point.toString('base64url') }, format: 'jwk' });
      ok = verify(null, message, key, signature);
    } else {
      // Uncompressed SEC1 point 04 ‖ X ‖ Y; the token signed SHA-256(message) (CKM_ECDSA), as r ‖ s.
      if (point.length !== 65 || point[0] !== 4) throw new Error('pkcs11-bench: unexpected P-256 CKA_EC_POINT');
      const key = createPublicKey({
        key: { kty: 'EC', crv: 'P-256', x: point.subarray(1, 33).toString('base64url'), y: point.subarray(33).toString('base64url') },
        format: 'jwk',
      });
      ok = verify('sha256', message, { key, dsaEncoding: 'ieee-p1363' }, signature);
    }
  }
  if (!ok) throw new Error(`pkcs11-bench: the ${workload} result it reported does not verify`);
}

/** CKA_EC_POINT is a DER OCTET STRING (PKCS#11 v2.40 §2.3.3); some modules give the raw point. */
function unwrapOctetString(der: Buffer): Buffer {
  if (der[0] === 0x04 && der.length >= 2) {
    const len = der[1]!;
    if (len < 0x80 && der.length === 2 + len) return der.subarray(2);
  }
  return der;
}
