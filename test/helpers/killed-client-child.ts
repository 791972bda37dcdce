/**
 * The client process of test/killed-client.test.ts. It makes state of every
 * kind in the daemon, starts work that is still in flight, prints
 * `ready <nodes>` (how many data nodes it made), and waits to be SIGKILLed.
 *
 * Usage: node --import tsx test/helpers/killed-client-child.ts <socket> <mode>
 *   mode: idle | hash | hmac | rsa | storm | mixed
 */
import { randomBytes } from 'node:crypto';
import { connect } from '../../src/client/client.js';
import type { CryptoKey } from '../../src/client/subtle.js';
import { Op } from '../../src/protocol/ops.js';

const [socketPath, mode = 'idle'] = process.argv.slice(2);
if (socketPath === undefined) {
  process.stderr.write('usage: killed-client-child.ts <socket> <mode>\n');
  process.exit(2);
}

const client = await connect({ socket: socketPath, clientName: 'victim' });
const subtle = client.subtle;
let nodes = 0;

// Keys, secret and imported.
const hmacKey = (await subtle.generateKey({ name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify'])) as CryptoKey;
const aesKey = (await subtle.generateKey({ name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt'])) as CryptoKey;
const imported = await subtle.importKey('raw', randomBytes(64), { name: 'HMAC', hash: 'SHA-512' }, false, ['sign']);
nodes += 3;
// Contexts: a hash context, and HMAC contexts that are children of their keys.
// The first two by raw requests: the work in flight below sends them updates
// larger than the client library's (which are never sliced, so never in flight).
const hash = ((await client.request(Op.HASH_CREATE, { algorithm: 'SHA-256' })) as { handle: string }).handle;
await client.request(Op.CONTEXT_UPDATE, { handle: hash, data: Buffer.from('warm up') });
const hmac = ((await client.request(Op.HMAC_CREATE, { key: hmacKey.handle })) as { handle: string }).handle;
await client.request(Op.CONTEXT_UPDATE, { handle: hmac, data: Buffer.from('warm up') });
const hmac512 = client.createHmac(imported);
await hmac512.update(Buffer.from('warm up'));
nodes += 3;

// Work that is in flight when the kill comes; never awaited. Each promise
// gets a handler: the process must die of SIGKILL, not of its own rejections.
const inflight: Array<Promise<unknown>> = [];
const start = (p: Promise<unknown>): void => {
  inflight.push(p.catch(() => undefined));
};
const big = Buffer.alloc(48 * 1024 * 1024, 0x61); // sent as 2 MiB updates (under the 4 MiB frame), each hashed in 256 KiB slices
const PIECE = 2 * 1024 * 1024;
const updates = async (handle: string): Promise<void> => {
  for (let off = 0; off < big.length; off += PIECE) await client.request(Op.CONTEXT_UPDATE, { handle, data: big.subarray(off, off + PIECE) });
};

if (mode === 'hash' || mode === 'mixed') start(updates(hash));
if (mode === 'hmac' || mode === 'mixed') start(updates(hmac));
if (mode === 'rsa' || mode === 'mixed') {
  // RSA key generation runs on the thread pool: its nodes are added after the connection may be gone.
  for (let i = 0; i < 2; i++) {
    start(subtle.generateKey({ name: 'RSA-PSS', modulusLength: 3072, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }, false, ['sign', 'verify']));
  }
}
if (mode === 'storm' || mode === 'mixed') {
  for (let i = 0; i < 1000; i++) {
    start(subtle.generateKey({ name: 'HMAC', hash: 'SHA-256' }, false, ['sign']));
    start(subtle.sign('HMAC', hmacKey, Buffer.from(`m${i}`)));
    start(subtle.encrypt({ name: 'AES-GCM', iv: randomBytes(12) }, aesKey, randomBytes(1024)));
    const h = client.createHash('SHA-512');
    start(h.update(randomBytes(512)));
  }
}

process.stdout.write(`ready ${nodes}\n`);
// Stay alive until killed.
setInterval(() => undefined, 60_000);
