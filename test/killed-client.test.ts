/**
 * The fault test of design note 2: a client PROCESS makes keys and contexts,
 * starts operations, and is SIGKILLed while they run. Afterwards the daemon
 * holds nothing of it (`liveNodes() === 0`), every operation it had in flight
 * has ended — finished, or failed with a typed error — nothing crashed or was
 * left unhandled, and the daemon serves the next client as before.
 * Repeated with different work in flight and different kill moments.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import type { Logger } from '../src/observe/logger.js';
import { allOperations } from '../src/ops/index.js';
import { clientId } from '../src/state/ids.js';
import { eventually, startTestDaemon, type TestDaemon } from './helpers/daemon.js';
import { instrument, type OperationStats } from './helpers/test-ops.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const VICTIM = clientId('local/victim');

let t: TestDaemon;
let stats: OperationStats;
const errorLogs: string[] = [];
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown): void => {
  unhandled.push(reason);
};

/** Keeps warn/error events: a clean run logs none (INTERNAL failures are logged as errors). */
const logger: Logger = {
  debug() {},
  info() {},
  warn: (msg, fields) => errorLogs.push(`warn ${msg} ${JSON.stringify(fields)}`),
  error: (msg, fields) => errorLogs.push(`error ${msg} ${JSON.stringify(fields)}`),
};

before(async () => {
  process.on('unhandledRejection', onUnhandled);
  const inst = instrument(allOperations());
  stats = inst.stats;
  t = await startTestDaemon({ operations: inst.operations, logger });
});
after(async () => {
  process.off('unhandledRejection', onUnhandled);
  await t.stop();
});

function spawnVictim(mode: string): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', 'test/helpers/killed-client-child.ts', t.socketPath, mode], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Resolves with the node count the child printed in its `ready <n>` line. */
function whenReady(child: ChildProcess, timeoutMs = 30_000): Promise<number> {
  return new Promise((res, rej) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => rej(new Error(`the client process did not get ready in ${timeoutMs} ms; stderr: ${err}`)), timeoutMs);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /^ready (\d+)$/m.exec(out);
      if (m !== null) {
        clearTimeout(timer);
        res(Number(m[1]));
      }
    });
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      rej(new Error(`the client process exited early (${code ?? signal}); stderr: ${err}`));
    });
  });
}

async function killed(child: ChildProcess): Promise<void> {
  const exited = new Promise<NodeJS.Signals | null>((res) => child.once('exit', (_code, signal) => res(signal)));
  assert.ok(child.kill('SIGKILL'));
  assert.equal(await exited, 'SIGKILL');
}

/** A new client does real work and leaves nothing behind. */
async function assertServesNewClient(): Promise<void> {
  const c = await t.connect('after-kill');
  const key = await c.subtle.importKey('raw', Buffer.alloc(32, 1), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
  const tag = await c.subtle.sign('HMAC', key, Buffer.from('m'));
  assert.equal(await c.subtle.verify('HMAC', key, tag, Buffer.from('m')), true);
  const h = c.createHash('SHA-256');
  await h.update(Buffer.from('abc'));
  assert.equal(Buffer.from(await h.digest()).toString('hex'), createHash('sha256').update('abc').digest('hex'));
  assert.equal(t.daemon.dm.liveNodes(clientId('local/after-kill')), 1);
  await c.close();
  await eventually(() => t.daemon.dm.liveNodes() === 0, 5000, 'the new client’s key released');
}

// [work in flight, ms between `ready` and the kill]
const cases: Array<[string, number]> = [
  ['idle', 0],
  ['hash', 0],
  ['hash', 150],
  ['hmac', 40],
  ['rsa', 0],
  ['rsa', 80],
  ['storm', 0],
  ['storm', 15],
  ['mixed', 0],
  ['mixed', 300],
];

for (const [mode, delay] of cases) {
  test(`a client process killed with '${mode}' work in flight, ${delay} ms after it was ready, leaves nothing behind`, async () => {
    const errorsBefore = errorLogs.length;
    const child = spawnVictim(mode);
    try {
      const made = await whenReady(child);
      const startedAtReady = stats.started;
      assert.equal(made, 6);
      // Everything it made is in the daemon (work in flight may be adding more).
      assert.ok(t.daemon.dm.liveNodes(VICTIM) >= made, `daemon holds ${t.daemon.dm.liveNodes(VICTIM)} nodes of the victim, it made ${made}`);
      const byType = t.daemon.dm.stats().find((s) => s.clientId === VICTIM)?.byType ?? {};
      assert.ok((byType.key ?? 0) >= 3 && (byType.hash ?? 0) >= 1 && (byType.hmac ?? 0) >= 2, JSON.stringify(byType));
      if (mode === 'storm') {
        // Synchronous operations by the thousand: kill while the daemon works through the burst.
        await eventually(() => stats.started > startedAtReady, 10_000, 'the burst to reach the daemon');
      } else if (mode !== 'idle') {
        // Kill while an operation is really running in the daemon, not before it arrived.
        await eventually(() => stats.pending > 0 || t.daemon.dm.stats().some((s) => s.clientId === VICTIM && s.busy > 0), 10_000, 'work in flight');
      }
      await sleep(delay);
    } finally {
      await killed(child);
    }

    // The connection's references are put at once; operations in flight finish, then free what they hold.
    await eventually(() => stats.pending === 0, 30_000, 'every operation in flight to end');
    await eventually(() => t.daemon.dm.liveNodes() === 0, 10_000, 'every node of the killed client released');
    assert.equal(t.daemon.dm.liveNodes(VICTIM), 0);
    assert.deepEqual(t.daemon.dm.stats(), []);
    await eventually(() => t.daemon.status().connections === 0, 5000, 'the connection closed');

    // Ended cleanly: typed errors only (NOT_FOUND for a context released under an update), nothing INTERNAL.
    for (const code of stats.failures.keys()) {
      assert.equal(code, 'CRYPTOD_ERR_NOT_FOUND', `an operation failed with ${code}`);
    }
    assert.deepEqual(errorLogs.slice(errorsBefore), []);
    assert.deepEqual(unhandled, []);

    await assertServesNewClient();
  });
}
