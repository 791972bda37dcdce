/**
 * Run the cryptod command once with a deadline: for commands that must end
 * by themselves (a refused `serve`), where the defect under test is that
 * they never do. Past the deadline the child is killed with SIGKILL and the
 * result says `timedOut`, so the test fails with the output so far instead of
 * hanging the suite.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface BoundedRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
}

/** `stdin`: an open file descriptor for the child's standard input (default: none). */
export function runCliWithin(args: readonly string[], deadlineMs: number, stdin: number | 'ignore' = 'ignore'): Promise<BoundedRun> {
  return new Promise((res, rej) => {
    const p = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: ROOT, stdio: [stdin, 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      p.kill('SIGKILL');
    }, deadlineMs);
    p.stdout?.on('data', (b: Buffer) => out.push(b));
    p.stderr?.on('data', (b: Buffer) => err.push(b));
    p.on('error', rej);
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      res({ code, signal, timedOut, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    });
  });
}
