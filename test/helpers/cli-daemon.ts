/**
 * `cryptod serve` in a child process, started exactly as an operator would
 * (through src/cli/main.ts), with its stdout and stderr captured: for tests
 * that grep everything the daemon prints, or measure its memory apart from
 * the test's own clients.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface CliDaemon {
  readonly proc: ChildProcess;
  readonly dir: string;
  readonly socketPath: string;
  /** Everything the daemon wrote so far. */
  stdout(): Buffer;
  stderr(): Buffer;
  /** Resident set size now and at its peak (VmRSS, VmHWM of /proc/PID/status), in bytes; null off Linux. */
  memory(): { rss: number; peak: number } | null;
  /** SIGTERM, wait for exit; resolves with the exit code. Removes the temporary directory unless `keep`. */
  stop(keep?: boolean): Promise<number | null>;
}

/** The daemon's JSON log lines on stderr so far, parsed (`T`: the fields a test reads). */
export function logLines<T>(d: CliDaemon): T[] {
  return d.stderr().toString().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as T);
}

/** Run `node --import tsx src/cli/main.ts <args…>` once, with `input` on stdin (closed either way). */
export function runCli(args: readonly string[], env: NodeJS.ProcessEnv = {}, input?: Uint8Array): Promise<{ code: number | null; stdout: Buffer; stderr: Buffer }> {
  return new Promise((res, rej) => {
    const p = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: ROOT, env: { ...process.env, ...env } });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    p.stdout.on('data', (b: Buffer) => out.push(b));
    p.stderr.on('data', (b: Buffer) => err.push(b));
    p.on('error', rej);
    p.on('close', (code) => res({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(err) }));
    p.stdin.end(input);
  });
}

/**
 * Start the daemon with `serve --data-dir DIR --socket DIR/run/cryptod.sock`
 * plus `extra` (or what `extra(DIR)` returns, for flags naming files in the
 * temporary directory), and wait until it accepts connections.
 */
export async function startCliDaemon(extra: readonly string[] | ((dir: string) => readonly string[]) = [], timeoutMs = 30_000): Promise<CliDaemon> {
  const dir = mkdtempSync(join(tmpdir(), 'cdc-'));
  const socketPath = join(dir, 'run', 'cryptod.sock');
  const more = typeof extra === 'function' ? extra(dir) : extra;
  const args = ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--data-dir', join(dir, 'data'), '--socket', socketPath, ...more];
  const proc = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  proc.stdout!.on('data', (b: Buffer) => out.push(b));
  const exited = new Promise<number | null>((res) => proc.on('exit', (code) => res(code)));
  // The "listening" line is info: at --log-level warn the socket is probed instead.
  const accepting = (): Promise<boolean> =>
    new Promise((res) => {
      const probe = createConnection(socketPath);
      probe.once('connect', () => {
        probe.destroy();
        res(true);
      });
      probe.once('error', () => res(false));
    });
  proc.stderr!.on('data', (b: Buffer) => err.push(b));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (/"msg":"listening"/.test(Buffer.concat(err).toString()) || (existsSync(socketPath) && (await accepting()))) break;
    if (proc.exitCode !== null || proc.signalCode !== null) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`daemon exited with ${proc.exitCode ?? proc.signalCode} before listening: ${Buffer.concat(err).toString()}`);
    }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      await exited;
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`daemon did not start within ${timeoutMs} ms: ${Buffer.concat(err).toString()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    proc,
    dir,
    socketPath,
    stdout: () => Buffer.concat(out),
    stderr: () => Buffer.concat(err),
    memory() {
      try {
        const s = readFileSync(`/proc/${proc.pid}/status`, 'utf8');
        const kb = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN) * 1024;
        return { rss: kb('VmRSS'), peak: kb('VmHWM') };
      } catch {
        return null;
      }
    },
    async stop(keep = false) {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const code = await exited;
      if (!keep) rmSync(dir, { recursive: true, force: true });
      return code;
    },
  };
}
