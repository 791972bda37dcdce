/**
 * Random bytes for values that are written out in the clear — AEAD nonces
 * and per-message salts — taken from a block filled by the CSPRNG a few
 * kilobytes at a time.
 *
 * Each crypto.randomBytes call crosses into OpenSSL for a dozen bytes
 * (about 1.5–2 µs on the bench machine, two of them per managed encrypt);
 * one fill of POOL bytes serves hundreds of calls. The bytes are the same
 * CSPRNG output either way and none is handed out twice. Never for key
 * material: keys are generated into buffers of their own, which are zeroed
 * when released (STYLE "Secrets"); a pool of public values needs no such
 * care, and a fresh block is allocated at each refill so slices already
 * handed out are never overwritten.
 */
import { randomFillSync } from 'node:crypto';

const POOL = 4096;

let block = Buffer.alloc(0);
let at = 0;

/** `n` fresh random bytes (n ≤ 4096) for a value that will be public. */
export function publicRandom(n: number): Buffer {
  if (n > POOL) return randomFillSync(Buffer.alloc(n));
  if (at + n > block.length) {
    block = randomFillSync(Buffer.allocUnsafeSlow(POOL));
    at = 0;
  }
  const out = block.subarray(at, at + n);
  at += n;
  return out;
}
