import assert from 'node:assert/strict';
/** Start a real daemon on a fresh temporary Unix socket for one test file. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type Client, type ConnectOptions } from '../../src/client/client.js';
import { silentLogger } from '../../src/observe/logger.js';
import { startDaemon, type Daemon, type DaemonOptions } from '../../src/daemon/server.js';

export interface TestDaemon {
  daemon: Daemon;
  dir: string;
  socketPath: string;
  connect(name?: string, options?: Omit<ConnectOptions, 'socket' | 'clientName'>): Promise<Client>;
  stop(): Promise<void>;
}

export async function startTestDaemon(options: Partial<DaemonOptions> = {}): Promise<TestDaemon> {
  // Unix socket paths are limited to ~107 bytes: keep the directory short.
  const dir = mkdtempSync(join(tmpdir(), 'cd-'));
  const socketPath = join(dir, 'run', 'cryptod.sock');
  const daemon = await startDaemon({ socketPath, logger: silentLogger, ...options });
  const clients: Client[] = [];
  return {
    daemon,
    dir,
    socketPath,
    async connect(name = 'test', options = {}) {
      const c = await connect({ ...options, socket: socketPath, clientName: name });
      clients.push(c);
      return c;
    },
    async stop() {
      for (const c of clients) c.connection.destroy();
      await daemon.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Poll until `pred` holds (bounded); for effects that land after a socket closes. */
export async function eventually(pred: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * Assert that `p` rejects with the typed error `cls` (and `message`), then
 * prove the connection still serves requests: bad input must not cost the
 * client its connection.
 */
export async function rejectsTyped(
  client: Client,
  p: Promise<unknown>,
  cls: abstract new (...a: never[]) => Error,
  message?: RegExp,
): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${String(err)}`);
    if (message) assert.match((err as Error).message, message);
    return true;
  });
  assert.equal(await client.ping('alive'), 'alive');
}
