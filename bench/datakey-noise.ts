/**
 * The noisy neighbour of bench/datakeys.ts, in its own process so that its
 * replies do not compete with the measured client's: 16 requests in flight,
 * each a data-key encrypt on a wrapped key the daemon has not seen (a cold
 * miss), read from KEYS_FILE (u16 length ‖ wrapped key, repeated) from
 * KEYS_FROM on. Prints "ready" once connected, starts on SIGUSR2, and on
 * SIGTERM prints how many keys it used and exits.
 */
import { readFileSync } from 'node:fs';
import { connect } from '../src/client/client.js';

const raw = readFileSync(process.env.KEYS_FILE!);
const keys: Buffer[] = [];
for (let at = 0; at < raw.length; ) {
  const n = raw.readUInt16BE(at);
  keys.push(raw.subarray(at + 2, at + 2 + n));
  at += 2 + n;
}
let next = Number(process.env.KEYS_FROM ?? 0);
const first = next;
const client = await connect({ socket: process.env.SOCKET!, clientName: 'noisy' });
const kb = Buffer.alloc(1024, 7);
let stop = false;
process.on('SIGTERM', () => {
  stop = true;
});
process.on('SIGUSR2', () => {
  const workers = Array.from({ length: 16 }, async () => {
    while (!stop && next < keys.length) await client.dataKeys.encrypt(keys[next++]!, kb);
  });
  void Promise.all(workers).then(async () => {
    while (!stop) await new Promise((r) => setTimeout(r, 10));
    process.stdout.write(`used ${next - first}\n`);
    await client.close();
    process.exit(0);
  });
});
process.stdout.write('ready\n');
