/**
 * Ed25519 public keys of small order (RFC 8032 §5.1.7 does not exclude them):
 * a point A in the 8-torsion subgroup makes [k]A vanish for many k, so a
 * signature (R, S = 0) "verifies" for messages nobody signed — OpenSSL, and
 * with it Node's crypto.subtle, answers true for them. cryptod answers false,
 * deliberately stricter (README "client.subtle as a drop-in").
 *
 * The list: the eight points of the torsion subgroup (the multiples of an
 * order-8 point, itself [ℓ]P for a curve point P), each in its canonical
 * encoding, plus the non-canonical ones OpenSSL still decodes — x = 0 with the
 * sign bit set, and y + p for the y-values below 19. test/ed25519-small-order.test.ts
 * derives the same list with BigInt arithmetic.
 */
import type { KeyObject } from 'node:crypto';

export const SMALL_ORDER_ED25519: ReadonlySet<string> = new Set([
  // identity (0, 1), order 1
  '0100000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000080',
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff',
  // (0, -1), order 2
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff',
  // (±√-1, 0), order 4
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0000000000000000000000000000000000000000000000000000000000000080',
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff',
  // order 8
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa',
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85',
]);

const seen = new WeakMap<KeyObject, boolean>();

/** Whether an Ed25519 public KeyObject is one of the small-order points (cached per key). */
export function isSmallOrderEd25519(key: KeyObject): boolean {
  let small = seen.get(key);
  if (small === undefined) {
    const x = key.export({ format: 'jwk' }).x ?? '';
    small = SMALL_ORDER_ED25519.has(Buffer.from(x, 'base64url').toString('hex'));
    seen.set(key, small);
  }
  return small;
}
