/**
 * Scheduled rotation is fleet-wide work: only the holder of the fleet lease
 * (KeyManagerOptions.fleetWork) does it. A follower leaves it to the holder
 * and looks again later; a holder whose lease was lost stops before writing
 * (the LeaseLostError reaches the work) and does not back off as if it had
 * failed.
 */
import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import type { Logger } from '../../src/observe/logger.js';
import { LeaseLostError } from '../../src/protocol/errors.js';
import { advanceTo, MIN, openEnv, SEC, T0, type Env } from './env.js';

const envs: Env[] = [];
afterEach(async () => {
  for (const e of envs.splice(0)) await e.cleanup();
});

function recordingLogger(lines: string[]): Logger {
  const log = (level: string) => (msg: string) => { lines.push(`${level} ${msg}`); };
  const logger = { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error'), child: () => logger } as unknown as Logger;
  return logger;
}

test('only the lease holder rotates on schedule; a lost lease stops the rotation with a LeaseLostError', async () => {
  const e = await openEnv();
  envs.push(e);
  let holds: AbortController | null = null;
  const lines: string[] = [];
  const m = await e.open({ fleetWork: () => holds?.signal ?? null, logger: recordingLogger(lines) });
  await m.create('s', { type: 'hmac-sha256', rotationPeriod: '1h', prefetchPeriod: '5m', gracePeriod: '10m' });

  // A follower: due at T0+55m, but another process holds the lease.
  await advanceTo(e, m, T0 + 55 * MIN);
  assert.equal(m.describe('s').versions.length, 1, 'a follower does not rotate');

  // The lease held, but lost (taken during a pause) by the time the work runs: nothing is written.
  holds = new AbortController();
  holds.abort(new LeaseLostError('another process took the fleet lease', { detail: { lease: 'fleet', reason: 'taken' } }));
  await advanceTo(e, m, T0 + 55 * MIN + 5 * SEC);
  assert.equal(m.describe('s').versions.length, 1, 'a holder that lost the lease stops its fleet-wide work');
  assert.ok(lines.some((l) => /left to the new holder of the fleet lease/.test(l)), lines.join('\n'));
  assert.ok(!lines.some((l) => /scheduled rotation failed/.test(l)), 'a lost lease is not a failure to back off from');

  // Holding it: the next look rotates.
  holds = new AbortController();
  await advanceTo(e, m, T0 + 55 * MIN + 10 * SEC);
  assert.equal(m.describe('s').versions.length, 2, 'the holder rotates');
});
