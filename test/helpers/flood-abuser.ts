/**
 * The abusive client of test/flood.test.ts, in its own process so that its
 * encoding and parsing do not share an event loop with the well-behaved
 * client being timed. It pipelines `large` DIGEST requests of 1 MiB, 256 KiB
 * and 64 KiB, each followed by `tinyPerLarge` DIGESTs of 64 bytes, writing as
 * fast as the socket accepts (waiting for 'drain' when it does not), checks
 * every reply, and prints one JSON line: { sent, answered, failures, wrong,
 * drains, ms }.
 *
 * Usage: node --import tsx test/helpers/flood-abuser.ts <socket> <large> <tinyPerLarge>
 */
import { createHash } from 'node:crypto';
import { decode } from '../../src/protocol/cbor.js';
import { encodeFrame, FrameKind, FrameReader } from '../../src/protocol/frame.js';
import { Op, PROTOCOL_VERSION } from '../../src/protocol/ops.js';
import { createConnection } from 'node:net';

const [socketPath, largeArg, tinyArg] = process.argv.slice(2);
if (socketPath === undefined || largeArg === undefined || tinyArg === undefined) {
  process.stderr.write('usage: flood-abuser.ts <socket> <large> <tinyPerLarge>\n');
  process.exit(2);
}
const large = Number(largeArg);
const tinyPerLarge = Number(tinyArg);

const payloads = [1024 * 1024, 256 * 1024, 64 * 1024, 64].map((n, i) => Buffer.alloc(n, 0x41 + i));
const digests = payloads.map((p) => createHash('sha256').update(p).digest());
const TINY = 3;

// Which payload each request id carries (1…sent; HELLO takes the id after them, since id 0 is reserved).
const kinds: number[] = [];
for (let i = 0; i < large; i++) {
  kinds.push(i % 3);
  for (let j = 0; j < tinyPerLarge; j++) kinds.push(TINY);
}
const sent = kinds.length;
const HELLO_ID = sent + 1;

const socket = createConnection(socketPath);
await new Promise<void>((res, rej) => socket.once('connect', res).once('error', rej));

let answered = 0;
let failures = 0;
let wrong = 0;
let helloOk = false;
let done!: () => void;
const finished = new Promise<void>((res) => (done = res));
const reader = new FrameReader(64 * 1024 * 1024, {
  frame(kind, id, _op, buf, start, end) {
    if (id === HELLO_ID) {
      helloOk = kind === FrameKind.RESPONSE;
      return;
    }
    answered++;
    if (kind !== FrameKind.RESPONSE) {
      failures++;
      if (failures <= 3) process.stderr.write(`request ${id} failed: ${JSON.stringify(decode(Buffer.from(buf.subarray(start, end))))}\n`);
    } else if (!buf.subarray(start, end).subarray(-32).equals(digests[kinds[id - 1]!]!)) {
      wrong++;
    }
    if (answered === sent) done();
  },
  oversize() {
    throw new Error('oversize reply');
  },
  malformed() {
    throw new Error('malformed reply');
  },
});
socket.on('data', (chunk: Buffer) => reader.push(chunk));
socket.on('close', () => done());

const t0 = performance.now();
socket.write(encodeFrame(FrameKind.REQUEST, HELLO_ID, Op.HELLO, { version: PROTOCOL_VERSION, client: 'abuser' }));
let drains = 0;
for (let i = 0; i < sent; i++) {
  const frame = encodeFrame(FrameKind.REQUEST, i + 1, Op.DIGEST, { algorithm: 'SHA-256', data: payloads[kinds[i]!]! });
  if (!socket.write(frame)) {
    drains++;
    await new Promise((r) => socket.once('drain', r));
  }
}
await finished;
const ms = performance.now() - t0;
socket.destroy();
process.stdout.write(`${JSON.stringify({ helloOk, sent, answered, failures, wrong, drains, ms })}\n`);
