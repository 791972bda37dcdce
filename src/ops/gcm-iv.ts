/**
 * AES-GCM with IVs longer than OpenSSL accepts.
 *
 * WebCrypto (W3C Web Cryptography API, AesGcmParams) allows any non-empty IV
 * and NIST SP 800-38D §7.1 defines GCM for IVs of up to 2^64 − 1 bits, but
 * OpenSSL 3 refuses GCM IVs longer than 128 bytes (GCM_IV_MAX_SIZE in
 * providers/implementations/include/prov/ciphercommon_gcm.h), so node:crypto
 * throws on them. GCM uses the IV only to compute the pre-counter block J0:
 *
 *   96-bit IV:  J0 = IV ‖ 0^31 ‖ 1
 *   other IV:   J0 = GHASH_H(IV ‖ 0^(s+64) ‖ [len(IV)]_64)        (§7.1 step 2)
 *
 * and everything after step 2 depends on J0 alone. So a long IV can be
 * replaced by a 16-byte IV' with the same J0 under the same key. For a
 * 128-bit IV', GHASH runs over two blocks, IV' and L = 0^64 ‖ [128]_64:
 *
 *   J0 = ((IV'·H) ⊕ L)·H    ⇒    IV' = ((J0·H⁻¹) ⊕ L)·H⁻¹
 *
 * with H = AES_K(0^128) and H⁻¹ = H^(2^128 − 2) in GF(2^128). The result is
 * bit-for-bit the GCM ciphertext and tag of the long IV (Wycheproof's
 * 2056-bit IV cases check it).
 *
 * The field arithmetic below runs on 32-bit words with masks instead of
 * branches on secret bits, and the exponent is public and fixed, so the
 * sequence of operations does not depend on H. It is slow (~250 field
 * multiplications per call) and only used for IVs over 128 bytes, which no
 * sensible caller sends (SP 800-38D §8.2 recommends 96-bit IVs).
 */
import { createCipheriv } from 'node:crypto';
import { OperationError } from '../protocol/errors.js';

/** Largest GCM IV (bytes) that OpenSSL 3 — and so node:crypto — accepts. */
export const OPENSSL_MAX_GCM_IV = 128;

/**
 * A 16-byte IV that gives the same GCM pre-counter block as `iv` under `key`.
 * `key` is 16, 24 or 32 bytes; `iv` is any non-empty length.
 */
export function equivalentGcmIv(key: Buffer, iv: Uint8Array): Buffer {
  const zero = Buffer.alloc(16);
  const ecb = createCipheriv(`aes-${key.length * 8}-ecb`, key, null).setAutoPadding(false);
  const hBytes = ecb.update(zero);
  ecb.final();
  const h = toWords(hBytes);
  hBytes.fill(0);
  if ((h[0]! | h[1]! | h[2]! | h[3]!) === 0) {
    // AES_K(0) = 0 happens with probability 2^-128; GHASH would then be constant.
    throw new OperationError('AES-GCM hash subkey is zero: this key cannot be used with an IV longer than 128 bytes');
  }

  // J0 = GHASH_H(IV ‖ 0^(s+64) ‖ [len(IV)]_64): hash the IV block by block,
  // zero-padding the last one, then the length block.
  const y = new Uint32Array(4);
  const block = Buffer.alloc(16);
  for (let off = 0; off < iv.length; off += 16) {
    block.fill(0);
    block.set(iv.subarray(off, Math.min(off + 16, iv.length)));
    xorWords(y, toWords(block));
    gfMul(y, h, y);
  }
  block.fill(0);
  // len(IV) in bits as a 64-bit big-endian integer; IVs here are far below 2^53 bits.
  const bits = iv.length * 8;
  block.writeUInt32BE(Math.floor(bits / 0x100000000), 8);
  block.writeUInt32BE(bits >>> 0, 12);
  xorWords(y, toWords(block));
  gfMul(y, h, y); // y = J0

  const hInv = gfInverse(h);
  const lengthBlock = new Uint32Array([0, 0, 0, 128]);
  gfMul(y, hInv, y);
  xorWords(y, lengthBlock);
  gfMul(y, hInv, y); // y = IV'

  const out = Buffer.alloc(16);
  for (let i = 0; i < 4; i++) out.writeUInt32BE(y[i]!, i * 4);
  h.fill(0);
  hInv.fill(0);
  y.fill(0);
  return out;
}

function toWords(b: Buffer): Uint32Array {
  return new Uint32Array([b.readUInt32BE(0), b.readUInt32BE(4), b.readUInt32BE(8), b.readUInt32BE(12)]);
}

function xorWords(a: Uint32Array, b: Uint32Array): void {
  for (let i = 0; i < 4; i++) a[i]! ^= b[i]!;
}

/**
 * out = x·y in GCM's GF(2^128) (SP 800-38D §6.3, Algorithm 1): bit 0 is the
 * leftmost bit of the block, R = 11100001 ‖ 0^120. `out` may alias x or y.
 */
function gfMul(x: Uint32Array, y: Uint32Array, out: Uint32Array): void {
  let z0 = 0, z1 = 0, z2 = 0, z3 = 0;
  let v0 = y[0]!, v1 = y[1]!, v2 = y[2]!, v3 = y[3]!;
  for (let i = 0; i < 128; i++) {
    const m = -((x[i >>> 5]! >>> (31 - (i & 31))) & 1) | 0; // all ones iff bit i of x is set
    z0 ^= v0 & m;
    z1 ^= v1 & m;
    z2 ^= v2 & m;
    z3 ^= v3 & m;
    const r = -(v3 & 1) | 0; // all ones iff the bit shifted out is set
    v3 = (v3 >>> 1) | (v2 << 31);
    v2 = (v2 >>> 1) | (v1 << 31);
    v1 = (v1 >>> 1) | (v0 << 31);
    v0 = (v0 >>> 1) ^ (0xe1000000 & r);
  }
  out[0] = z0;
  out[1] = z1;
  out[2] = z2;
  out[3] = z3;
}

/** h^(2^128 − 2) = h⁻¹ (the multiplicative group has order 2^128 − 1). */
function gfInverse(h: Uint32Array): Uint32Array {
  // The exponent is 127 one bits then a zero bit: square-and-multiply from
  // the top, a fixed sequence independent of h.
  const r = Uint32Array.from(h);
  for (let i = 0; i < 126; i++) {
    gfMul(r, r, r);
    gfMul(r, h, r);
  }
  gfMul(r, r, r);
  return r;
}
