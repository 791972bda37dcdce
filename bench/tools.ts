/**
 * Finding and running the external tools the alternative rows of the bench
 * need (ssh-agent, SoftHSM2, p11-kit, a C compiler). A missing tool is not an
 * error: the caller turns it into a `Skip` that names the Debian package.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync, readdirSync } from 'node:fs';
import { delimiter, join } from 'node:path';

/** Why an alternative was not measured; printed on the console and listed in docs/benchmarks.md. */
export interface Skip {
  skip: string;
}

export function isSkip(x: unknown): x is Skip {
  return typeof x === 'object' && x !== null && typeof (x as Skip).skip === 'string';
}

/** `Skip` for a missing tool, naming the package that brings it. */
export function missing(what: string, debianPackage: string): Skip {
  return { skip: `${what} not found — install the Debian package ${debianPackage} (bench/install-alternatives.sh)` };
}

/** Absolute path of an executable on PATH, or undefined. */
export function findOnPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * First existing file among `/usr/lib/<relative>` and `/usr/lib/<multiarch>/<relative>`
 * (Debian installs PKCS#11 modules under the multiarch triplet, e.g. x86_64-linux-gnu).
 */
export function findLibrary(relative: string): string | undefined {
  const candidates = [join('/usr/lib', relative), join('/usr/lib64', relative)];
  try {
    for (const d of readdirSync('/usr/lib')) if (/-linux-gnu/.test(d)) candidates.push(join('/usr/lib', d, relative));
  } catch {
    // no /usr/lib: nothing to find
  }
  return candidates.find((p) => existsSync(p));
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Run a command to completion; never rejects on a non-zero exit (the caller decides). */
export function run(file: string, args: readonly string[], env?: NodeJS.ProcessEnv): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(file, args, { env: env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.once('error', reject);
    child.once('close', (code, signal) => resolvePromise({ code, signal, stdout, stderr }));
  });
}

/** Run a command and fail with its stderr unless it exits 0. */
export async function runOk(file: string, args: readonly string[], env?: NodeJS.ProcessEnv): Promise<RunResult> {
  const r = await run(file, args, env);
  if (r.code !== 0) {
    const why = r.signal !== null ? `signal ${r.signal}` : `exit code ${r.code}`;
    throw new Error(`${[file, ...args].join(' ')} failed (${why}): ${(r.stderr || r.stdout).trim()}`);
  }
  return r;
}

/** Version of an installed Debian package, or undefined (not Debian, or not installed). */
export async function debianVersion(pkg: string): Promise<string | undefined> {
  const dpkg = findOnPath('dpkg-query');
  if (dpkg === undefined) return undefined;
  const r = await run(dpkg, ['-W', '-f=${Version}', pkg]).catch(() => undefined);
  if (r === undefined || r.code !== 0 || r.stdout === '') return undefined;
  // "0.24.1-2" → "0.24.1", "1:9.2p1-2+deb12u6" → "9.2p1": the upstream version.
  return r.stdout.replace(/^\d+:/, '').replace(/-[^-]*$/, '');
}

/** SIGTERM a child this bench started and wait for it to exit (SIGKILL after 3 s). */
export async function stopChild(child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}
