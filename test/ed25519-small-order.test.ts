/**
 * Ed25519 public keys of small order: OpenSSL (and so Node's crypto.subtle)
 * accepts forged signatures (R in the torsion subgroup, S = 0) under them;
 * cryptod's verify answers false. The list the daemon refuses is derived here
 * independently, with BigInt arithmetic on the curve.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, webcrypto } from 'node:crypto';
import { after, before, test } from 'node:test';
import type { Client } from '../src/client/client.js';
import { SMALL_ORDER_ED25519 } from '../src/ops/ed25519-small-order.js';
import { startTestDaemon, type TestDaemon } from './helpers/daemon.js';

const p = 2n ** 255n - 19n;
const L = 2n ** 252n + 27742317777372353535851937790883648493n; // the prime order ℓ (RFC 8032 §5.1)
const mod = (a: bigint): bigint => ((a % p) + p) % p;
function pow(b: bigint, e: bigint): bigint {
  let r = 1n;
  for (b = mod(b); e > 0n; e >>= 1n, b = (b * b) % p) if (e & 1n) r = (r * b) % p;
  return r;
}
const inv = (a: bigint): bigint => pow(a, p - 2n);
const D = mod(-121665n * inv(121666n));
type Point = readonly [bigint, bigint];
function add([x1, y1]: Point, [x2, y2]: Point): Point {
  const t = (((((D * x1) % p) * x2) % p) * y1 % p) * y2 % p;
  return [mod((x1 * y2 + x2 * y1) * inv(1n + t)), mod((y1 * y2 + x1 * x2) * inv(1n - t))];
}
function mul(P: Point, k: bigint): Point {
  let R: Point = [0n, 1n];
  for (let Q = P; k > 0n; k >>= 1n, Q = add(Q, Q)) if (k & 1n) R = add(R, Q);
  return R;
}
/** RFC 8032 §5.1.3 decoding of x from y and its sign, or null when y is not on the curve. */
function xOf(y: bigint, sign: number): bigint | null {
  const x2 = mod((y * y - 1n) * inv(D * y * y + 1n));
  let x = pow(x2, (p + 3n) / 8n);
  if (mod(x * x - x2) !== 0n) x = mod(x * pow(2n, (p - 1n) / 4n));
  if (mod(x * x - x2) !== 0n) return null;
  return (x & 1n) === BigInt(sign) ? x : mod(-x);
}
function encode(y: bigint, sign: number): string {
  const b = Buffer.alloc(32);
  for (let i = 0, v = y; i < 32; i++, v >>= 8n) b[i] = Number(v & 0xffn);
  if (sign) b[31]! |= 0x80;
  return b.toString('hex');
}

/** The 8-torsion subgroup, every encoding of each point that a decoder might accept. */
function torsionEncodings(): Set<string> {
  for (let y = 2n; ; y++) {
    const x = xOf(y, 0);
    if (x === null) continue;
    const T = mul([x, y], L); // [ℓ]P has order dividing 8
    const points: Point[] = [];
    for (let i = 0, Q = T; i < 8; i++, Q = add(Q, T)) points.push(Q);
    if (new Set(points.map(([, py]) => py)).size < 5) continue; // T was not of order 8
    const out = new Set<string>();
    for (const [px, py] of points) {
      const s = Number(px & 1n);
      out.add(encode(py, s));
      if (px === 0n) out.add(encode(py, 1)); // "negative zero"
      if (py + p < 2n ** 255n) {
        out.add(encode(py + p, s)); // y not reduced mod p
        if (px === 0n) out.add(encode(py + p, 1));
      }
    }
    return out;
  }
}

let t: TestDaemon;
let c: Client;
before(async () => {
  t = await startTestDaemon();
  c = await t.connect();
});
after(async () => {
  await c.close();
  await t.stop();
});

test('the daemon refuses exactly the torsion points, derived from the curve', () => {
  assert.deepEqual([...SMALL_ORDER_ED25519].sort(), [...torsionEncodings()].sort());
  assert.equal(SMALL_ORDER_ED25519.size, 14);
});

test('a forged signature under a small-order key: Node says true, cryptod false', async () => {
  const canonical = [...torsionEncodings()].filter((h) => !h.startsWith('ee') && !h.startsWith('ed'));
  const message = new TextEncoder().encode('never signed');
  let forgeable = 0;
  for (const hex of SMALL_ORDER_ED25519) {
    const raw = Buffer.from(hex, 'hex');
    const theirs = await webcrypto.subtle.importKey('raw', raw, 'Ed25519', true, ['verify']).catch(() => null);
    const ours = await c.subtle.importKey('raw', raw, 'Ed25519', true, ['verify']).catch(() => null);
    assert.equal(ours === null, theirs === null, `import of ${hex}: cryptod and Node agree on what decodes`);
    if (theirs === null || ours === null) continue;
    // S = 0 and R a torsion point: [S]B − [k]A is in the torsion subgroup, so one R matches.
    for (const r of canonical) {
      const sig = Buffer.concat([Buffer.from(r, 'hex'), Buffer.alloc(32)]);
      if (!(await webcrypto.subtle.verify('Ed25519', theirs, sig, message))) continue;
      forgeable += 1;
      assert.equal(await c.subtle.verify('Ed25519', ours, sig, message), false, `forged signature under ${hex}`);
      break;
    }
    await ours.release();
  }
  // The six of WPT's eddsa vectors at least (the count); more where OpenSSL decodes non-canonical forms.
  assert.ok(forgeable >= 6, `Node accepted forgeries under ${forgeable} keys`);
});

test('ordinary Ed25519 keys still verify', async () => {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const message = new TextEncoder().encode('signed');
  const sig = await webcrypto.subtle.sign('Ed25519', await webcrypto.subtle.importKey('pkcs8', privateKey.export({ format: 'der', type: 'pkcs8' }), 'Ed25519', false, ['sign']), message);
  const pub = await c.subtle.importKey('spki', publicKey.export({ format: 'der', type: 'spki' }), 'Ed25519', false, ['verify']);
  assert.equal(await c.subtle.verify('Ed25519', pub, sig, message), true);
  assert.equal(await c.subtle.verify('Ed25519', pub, sig, new TextEncoder().encode('other')), false);
});
