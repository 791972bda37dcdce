/**
 * publicRandom (src/ops/public-random.ts): nonces and salts from a pooled
 * CSPRNG block — never the same bytes twice, and a value handed out stays
 * what it was when the pool is refilled.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { publicRandom } from '../src/ops/public-random.js';

test('values across several refills are distinct and keep their bytes', () => {
  const first = publicRandom(12);
  const kept = Buffer.from(first);
  const seen = new Set<string>([kept.toString('hex')]);
  // 4096-byte blocks: 3,000 draws of 12 and 32 bytes refill the pool a dozen times.
  for (let i = 0; i < 3000; i++) {
    const v = publicRandom(i % 2 === 0 ? 12 : 32);
    assert.equal(v.length, i % 2 === 0 ? 12 : 32);
    const hex = v.toString('hex');
    assert.ok(!seen.has(hex), `value ${i} repeated`);
    seen.add(hex);
  }
  assert.deepEqual(first, kept);
});

test('a request larger than the block gets a buffer of its own', () => {
  const big = publicRandom(5000);
  assert.equal(big.length, 5000);
  assert.notDeepEqual(big.subarray(0, 2500), big.subarray(2500));
});
