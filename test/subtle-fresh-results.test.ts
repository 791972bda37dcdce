/**
 * What the hot path of `client.subtle` must keep while it skips layers:
 * every result is an ArrayBuffer of its own, exactly the result's length,
 * that the caller may change without touching any other result, the frame
 * buffers or the daemon; pipelined calls each get theirs; and the decoder's
 * `freshBytes` mode is as strict as the default one.
 */
import assert from 'node:assert/strict';
import { createCipheriv, createHash, createHmac, randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import type { Client } from '../src/client/client.js';
import { decode, encode } from '../src/protocol/cbor.js';
import { BadFrameError } from '../src/protocol/errors.js';
import { startTestDaemon, type TestDaemon } from './helpers/daemon.js';

let t: TestDaemon;
let c: Client;
before(async () => {
  t = await startTestDaemon();
  c = await t.connect('subtle-fresh-results');
});
after(async () => {
  await t.stop();
});

/** Byte strings as arrays of numbers, so that a Buffer view and a Uint8Array compare by content. */
function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return [...v];
  if (Array.isArray(v)) return v.map(plain);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

/** A result the caller owns: a plain ArrayBuffer holding exactly its bytes. */
function assertOwn(r: ArrayBuffer, expected: Uint8Array): void {
  assert.ok(r instanceof ArrayBuffer);
  assert.equal(r.byteLength, expected.length);
  assert.deepEqual(new Uint8Array(r), new Uint8Array(expected));
}

test('pipelined sign, digest and encrypt each give an ArrayBuffer of their own, changeable without effect on the others', async () => {
  const keyBytes = randomBytes(32);
  const key = await c.subtle.importKey('raw', keyBytes, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  const aesBytes = randomBytes(32);
  const aes = await c.subtle.importKey('raw', aesBytes, 'AES-GCM', false, ['encrypt']);
  const msgs = Array.from({ length: 64 }, (_, i) => randomBytes(1 + i * 7));
  const iv = randomBytes(12);
  const [tags, digests, cts] = await Promise.all([
    Promise.all(msgs.map((m) => c.subtle.sign('HMAC', key, m))),
    Promise.all(msgs.map((m) => c.subtle.digest('SHA-256', m))),
    Promise.all(msgs.map((m) => c.subtle.encrypt({ name: 'AES-GCM', iv }, aes, m))),
  ]);
  const buffers = new Set<ArrayBuffer>([...tags, ...digests, ...cts]);
  assert.equal(buffers.size, msgs.length * 3, 'no two results share an ArrayBuffer');
  msgs.forEach((m, i) => {
    assertOwn(tags[i]!, createHmac('sha256', keyBytes).update(m).digest());
    assertOwn(digests[i]!, createHash('sha256').update(m).digest());
    const ci = createCipheriv('aes-256-gcm', aesBytes, iv);
    assertOwn(cts[i]!, Buffer.concat([ci.update(m), ci.final(), ci.getAuthTag()]));
  });
  // Scribbling over every result changes none of the others, nor a later call's.
  for (const b of buffers) new Uint8Array(b).fill(0xa5);
  const again = await c.subtle.sign('HMAC', key, msgs[0]!);
  assertOwn(again, createHmac('sha256', keyBytes).update(msgs[0]!).digest());
});

test('the data is taken at the call: changing it before the reply changes nothing', async () => {
  const keyBytes = randomBytes(32);
  const key = await c.subtle.importKey('raw', keyBytes, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  const data = randomBytes(64);
  const expected = createHmac('sha256', keyBytes).update(data).digest();
  const pending = c.subtle.sign('HMAC', key, data);
  data.fill(0);
  assertOwn(await pending, expected);
});

test('decode with freshBytes: byte strings over ArrayBuffers of their own; the same values and the same refusals as views', () => {
  const payload = encode({ a: Buffer.from('abc'), b: [Buffer.alloc(0), Buffer.from([1, 2, 3, 4])], c: 'text', d: 7 });
  // Embedded in a larger buffer, as a frame is.
  const frame = Buffer.concat([Buffer.from([9, 9, 9]), payload, Buffer.from([8])]);
  const viewed = decode(frame, 3, 3 + payload.length);
  const fresh = decode(frame, 3, 3 + payload.length, 'number', true) as { a: Uint8Array; b: Uint8Array[] };
  assert.deepEqual(plain(fresh), plain(viewed));
  for (const bytes of [fresh.a, ...fresh.b]) {
    assert.notEqual(bytes.buffer, frame.buffer);
    assert.equal(bytes.byteOffset, 0);
    assert.equal(bytes.buffer.byteLength, bytes.length);
  }
  fresh.a.fill(0);
  assert.deepEqual([...frame.subarray(3, 3 + payload.length)], [...payload], 'the frame is untouched');
  // Strictness does not depend on the mode: a byte string longer than the input, trailing bytes.
  for (const bad of [Buffer.from([0x45, 1, 2]), Buffer.concat([encode(Buffer.from('x')), Buffer.from([0])])]) {
    assert.throws(() => decode(bad, 0, bad.length, 'number', true), BadFrameError);
    assert.throws(() => decode(bad, 0, bad.length), BadFrameError);
  }
});
