/**
 * The floor under every "1 in flight" row: a Node.js process that echoes
 * what it reads on a Unix socket, with no protocol at all. A request through
 * cryptod costs this round trip plus its own work; the difference is what
 * cryptod adds. Frames are 64 B, written and answered one at a time.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stopChild } from './tools.js';

const MESSAGE = 64;

export interface EchoPeer {
  /** One round trip: resolves when all 64 bytes came back. */
  roundTrip(): Promise<void>;
  close(): Promise<void>;
}

/** Start the echo process and connect to it. */
export async function startEcho(): Promise<EchoPeer> {
  const dir = mkdtempSync(join(tmpdir(), 'cdb-echo-'));
  const socket = join(dir, 'echo.sock');
  let child: ChildProcess | undefined;
  try {
    child = fork(fileURLToPath(import.meta.url), ['serve', socket], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    await new Promise<void>((resolve, reject) => {
      child!.once('message', () => resolve());
      child!.once('exit', (code) => reject(new Error(`echo process exited with ${String(code)}`)));
    });
    const s = createConnection(socket);
    await new Promise<void>((resolve, reject) => s.once('connect', resolve).once('error', reject));
    s.setNoDelay?.(true);
    const msg = Buffer.alloc(MESSAGE, 0x5a);
    let waiting: (() => void) | null = null;
    let got = 0;
    s.on('data', (b: Buffer) => {
      got += b.length;
      if (got >= MESSAGE && waiting !== null) {
        got -= MESSAGE;
        const w = waiting;
        waiting = null;
        w();
      }
    });
    return {
      roundTrip() {
        return new Promise<void>((resolve) => {
          waiting = resolve;
          s.write(msg);
        });
      },
      async close() {
        s.destroy();
        await stopChild(child);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await stopChild(child);
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

function serve(path: string): void {
  createServer((s: Socket) => s.on('data', (b) => s.write(b))).listen(path, () => process.send?.('listening'));
}

if (process.argv[2] === 'serve' && process.argv[3] !== undefined) serve(process.argv[3]);
