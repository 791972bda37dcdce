/**
 * The repository's code and tests run from its own files: nothing under
 * src/, test/, bench/ or scripts/ may reach for the shared folder that sits
 * next to the checkout on the development machines (a fresh clone has no
 * such folder, and `npm test` failed there).
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

const ROOT = resolve(fileURLToPath(import.meta.url), '..', '..');
// Written in two parts so that this file does not match itself.
const OUTSIDE = ['..', 'shared'].join('/');

function sources(dir: string, out: string[]): string[] {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) {
      if (name !== 'data') sources(path, out);
    } else if (/\.(ts|mts|js|mjs|cjs|sh)$/.test(name)) {
      out.push(path);
    }
  }
  return out;
}

test('no source, test, bench or script file reads the shared folder beside the repository', () => {
  const files = ['src', 'test', 'bench', 'scripts'].flatMap((d) => sources(join(ROOT, d), []));
  assert.ok(files.length > 50, `expected the repository's sources, found ${files.length} files`);
  const offenders = files.filter((f) => readFileSync(f, 'utf8').includes(OUTSIDE)).map((f) => relative(ROOT, f));
  assert.deepEqual(offenders, [], `these files read ${OUTSIDE}; vendor what they need into the repository`);
});

test('the vendored Wycheproof vectors carry their licence and provenance', () => {
  const dir = join(ROOT, 'test', 'vectors', 'data');
  assert.match(readFileSync(join(dir, 'LICENSE'), 'utf8'), /Apache License\s+Version 2\.0, January 2004/);
  const readme = readFileSync(join(dir, 'README.md'), 'utf8');
  for (const f of readdirSync(dir).filter((n) => n.endsWith('_test.json'))) {
    assert.ok(readme.includes(`testvectors_v1/${f}`), `test/vectors/data/README.md does not give the upstream path of ${f}`);
  }
});
