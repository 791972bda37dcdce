/**
 * One client process of bench/fleet.ts: managed HMAC-SHA256 over 64 B on
 * `key`, `window` requests in flight on each of `connections` connections,
 * for `seconds` after a warm-up; prints `{"ops":N,"seconds":S}`.
 *
 *   node --import tsx bench/fleet-client.ts SOCKET KEY SECONDS WINDOW CONNECTIONS
 */
import { randomBytes } from 'node:crypto';
import { connect } from '../src/client/client.js';
import { WARMUP_MS } from './measure.js';

const [socket, key, secondsArg, windowArg, connectionsArg] = process.argv.slice(2);
if (socket === undefined || key === undefined) throw new Error('usage: fleet-client.ts SOCKET KEY SECONDS WINDOW CONNECTIONS');
const seconds = Number(secondsArg ?? 2);
const window = Number(windowArg ?? 32);
const connections = Number(connectionsArg ?? 2);
const msg = randomBytes(64);
const clients = await Promise.all(Array.from({ length: connections }, (_, i) => connect({ socket, clientName: `bench-${process.pid}-${i}` })));

const run = async (ms: number): Promise<{ ops: number; seconds: number }> => {
  let ops = 0;
  let stop = false;
  const start = process.hrtime.bigint();
  const end = start + BigInt(ms) * 1_000_000n;
  const loop = async (c: (typeof clients)[number]): Promise<void> => {
    while (!stop) {
      await c.mac(key, msg);
      ops++;
      if (process.hrtime.bigint() >= end) stop = true;
    }
  };
  await Promise.all(clients.flatMap((c) => Array.from({ length: window }, () => loop(c))));
  return { ops, seconds: Number(process.hrtime.bigint() - start) / 1e9 };
};

await run(WARMUP_MS);
const r = await run(seconds * 1000);
process.stdout.write(`${JSON.stringify(r)}\n`);
for (const c of clients) await c.close();
