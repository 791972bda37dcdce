/**
 * Every Wycheproof file vendored in test/vectors/data has a suite here that
 * loads it: a file added there without a suite fails this test instead of
 * going silently unrun (and weighing on the repository for nothing).
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { VECTORS_DIR } from './wycheproof.js';

test('each vector file is loaded by a suite in test/vectors', () => {
  const here = dirname(fileURLToPath(import.meta.url));
  const files = readdirSync(VECTORS_DIR).filter((f) => f.endsWith('_test.json')).map((f) => f.slice(0, -'_test.json'.length));
  assert.ok(files.length > 0, `no *_test.json files in ${VECTORS_DIR}`);
  const suites = readdirSync(here).filter((f) => f.endsWith('.test.ts') && f !== 'coverage.test.ts');
  const loaded = new Set<string>();
  for (const s of suites) {
    for (const m of readFileSync(`${here}/${s}`, 'utf8').matchAll(/loadVectors<[^>]*>\('([a-z0-9_]+)'\)|loadVectors\('([a-z0-9_]+)'\)|runEcdsaP1363\(c, \{ name: '([a-z0-9_]+)'/g)) loaded.add(m[1] ?? m[2] ?? m[3]!);
  }
  assert.deepEqual(files.filter((f) => !loaded.has(f)), [], 'vector files without a suite');
});
