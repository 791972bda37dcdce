/**
 * RANDOM and what is built on it: client.getRandomValues (WebCrypto's rules,
 * checked against Node's own crypto.getRandomValues), the wire maximum, and
 * `cryptod random`.
 */
import assert from 'node:assert/strict';
import { getRandomValues as nodeGetRandomValues } from 'node:crypto';
import { after, before, test } from 'node:test';
import { InvalidArgumentError } from '../src/protocol/errors.js';
import { MAX_RANDOM_BYTES } from '../src/protocol/messages/random.js';
import { Op } from '../src/protocol/ops.js';
import type { Client } from '../src/client/client.js';
import { rejectsTyped, startTestDaemon, type TestDaemon } from './helpers/daemon.js';
import { runCli } from './helpers/cli-daemon.js';

let t: TestDaemon;
let client: Client;
before(async () => {
  t = await startTestDaemon();
  client = await t.connect('random');
});
after(() => t.stop());

/** What Node's own getRandomValues throws for `a` (name), or null when it accepts it. */
function nodeVerdict(a: unknown): string | null {
  try {
    nodeGetRandomValues(a as Uint8Array);
    return null;
  } catch (err) {
    return (err as DOMException).name;
  }
}

test('getRandomValues fills every integer-type TypedArray in place and returns it', async () => {
  for (const a of [new Int8Array(16), new Uint8Array(16), new Uint8ClampedArray(16), new Int16Array(8), new Uint16Array(8), new Int32Array(4), new Uint32Array(4), new BigInt64Array(2), new BigUint64Array(2)]) {
    assert.equal(nodeVerdict(new (a.constructor as new (n: number) => typeof a)(1)), null);
    const out = await client.getRandomValues(a);
    assert.equal(out, a, `${a.constructor.name}: the same array comes back`);
  }
  // A view into a larger buffer: only its own bytes change.
  const backing = new Uint8Array(64);
  const view = new Uint8Array(backing.buffer, 16, 32);
  await client.getRandomValues(view);
  assert.ok(backing.subarray(0, 16).every((b) => b === 0) && backing.subarray(48).every((b) => b === 0));
  assert.ok(view.some((b) => b !== 0), '32 random bytes are not all zero (probability 2^-256)');
  // Two calls differ.
  const a = await client.getRandomValues(new Uint8Array(32));
  const b = await client.getRandomValues(new Uint8Array(32));
  assert.notDeepEqual(a, b);
  // Zero bytes: nothing to do, like WebCrypto.
  assert.equal((await client.getRandomValues(new Uint8Array(0))).length, 0);
});

test('the same refusals as WebCrypto: TypeMismatchError for other arrays, QuotaExceededError above 65,536 bytes', async () => {
  const cases: unknown[] = [new Float32Array(4), new Float64Array(4), new DataView(new ArrayBuffer(4)), new ArrayBuffer(4), [1, 2, 3], {}, null, 'abc'];
  for (const bad of cases) {
    assert.equal(nodeVerdict(bad), 'TypeMismatchError');
    await assert.rejects(client.getRandomValues(bad as Uint8Array), (e: unknown) => e instanceof DOMException && e.name === 'TypeMismatchError');
  }
  assert.equal(nodeVerdict(new Uint8Array(MAX_RANDOM_BYTES + 1)), 'QuotaExceededError');
  await assert.rejects(client.getRandomValues(new Uint8Array(MAX_RANDOM_BYTES + 1)), (e: unknown) => e instanceof DOMException && e.name === 'QuotaExceededError');
  await assert.rejects(client.getRandomValues(new Uint32Array(MAX_RANDOM_BYTES / 4 + 1)), (e: unknown) => e instanceof DOMException && e.name === 'QuotaExceededError');
  // Exactly the maximum is one request.
  const max = await client.getRandomValues(new Uint32Array(MAX_RANDOM_BYTES / 4));
  assert.equal(max.byteLength, MAX_RANDOM_BYTES);
  assert.equal(await client.ping('alive'), 'alive');
});

test('on the wire: length 0..65536; anything else is INVALID_ARGUMENT and the connection stays', async () => {
  const ok = (await client.request(Op.RANDOM, { length: 5 })) as Uint8Array;
  assert.equal(ok.length, 5);
  await rejectsTyped(client, client.request(Op.RANDOM, { length: MAX_RANDOM_BYTES + 1 }), InvalidArgumentError, /length/);
  await rejectsTyped(client, client.request(Op.RANDOM, { length: -1 }), InvalidArgumentError, /length/);
  await rejectsTyped(client, client.request(Op.RANDOM, { length: 'ten' }), InvalidArgumentError, /length/);
  await rejectsTyped(client, client.request(Op.RANDOM, {}), InvalidArgumentError, /length/);
});

test('cryptod random --bytes N in hex, base64 and raw, across several requests; bad flags are usage errors', async () => {
  const env = { CRYPTOD_SOCKET: t.socketPath };
  const hex = await runCli(['random', '--bytes', '32'], env);
  assert.equal(hex.code, 0, hex.stderr.toString());
  assert.match(hex.stdout.toString(), /^[0-9a-f]{64}\n$/);
  const b64 = await runCli(['random', '--bytes', '33', '--format', 'base64'], env);
  assert.equal(b64.code, 0);
  assert.equal(Buffer.from(b64.stdout.toString().trim(), 'base64').length, 33);
  const n = MAX_RANDOM_BYTES * 2 + 7;
  const raw = await runCli(['random', '--bytes', String(n), '--format', 'raw', '--socket', t.socketPath]);
  assert.equal(raw.code, 0);
  assert.equal(raw.stdout.length, n);
  // The three requests' bytes differ (equal 64 KiB halves would mean a repeated request).
  assert.notDeepEqual(raw.stdout.subarray(0, MAX_RANDOM_BYTES), raw.stdout.subarray(MAX_RANDOM_BYTES, 2 * MAX_RANDOM_BYTES));
  for (const args of [['random'], ['random', '--bytes', '0'], ['random', '--bytes', 'x'], ['random', '--bytes', '4', '--format', 'octal']]) {
    const r = await runCli(args, env);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr.toString()}`);
    assert.match(r.stderr.toString(), /bytes|format/);
  }
});
