/**
 * Imports point one way (README "Layout"):
 *
 *   protocol ← files ← observe, auth ← state, store ← kek ← cache, keys ← ops, config ← daemon, http ← cli
 *   client   ← protocol only (config and daemon take the default socket rule from it)
 *
 * A module may import from its own folder and from the folders listed for it
 * below; anything else is an upward (or sideways) import, and this test names
 * the file and the line. A lower layer that needs something from a higher one
 * takes an interface as a parameter instead.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix, relative } from 'node:path';

const SRC = new URL('../src/', import.meta.url).pathname;

const ALLOWED: Readonly<Record<string, readonly string[]>> = {
  protocol: [],
  files: ['protocol'],
  observe: ['protocol', 'files'],
  auth: ['protocol', 'observe'],
  state: ['protocol', 'observe'],
  store: ['protocol', 'files', 'observe', 'auth'],
  kek: ['protocol', 'files', 'observe', 'store'],
  cache: ['protocol', 'files', 'observe', 'store', 'kek'],
  keys: ['protocol', 'files', 'observe', 'store', 'kek', 'cache'],
  // Limits are configuration; handlers read them from the request context.
  ops: ['protocol', 'files', 'observe', 'state', 'store', 'kek', 'cache', 'keys', 'auth', 'config'],
  // The default socket is the client's rule (src/client/socket-path.ts): the daemon listens where clients look.
  config: ['protocol', 'files', 'observe', 'store', 'kek', 'keys', 'auth', 'client'],
  daemon: ['protocol', 'files', 'observe', 'state', 'store', 'kek', 'cache', 'keys', 'auth', 'ops', 'config', 'client'],
  http: ['protocol', 'files', 'observe', 'state', 'store', 'kek', 'cache', 'keys', 'auth', 'ops', 'config'],
  client: ['protocol'],
  cli: ['protocol', 'files', 'observe', 'state', 'store', 'kek', 'cache', 'keys', 'auth', 'ops', 'config', 'daemon', 'http', 'client'],
};

/** Top-level files of src/: the two entry points. */
const ENTRY_ALLOWED: Readonly<Record<string, readonly string[]>> = {
  'index.ts': ['client', 'protocol'],
};

function walk(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

function importsOf(text: string): { spec: string; line: number }[] {
  const out: { spec: string; line: number }[] = [];
  const re = /(?:\bfrom\s+|\bimport\s*\(\s*|^\s*import\s+)(['"])([^'"]+)\1/gm;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    out.push({ spec: m[2]!, line: text.slice(0, m.index).split('\n').length });
  }
  return out;
}

/** Every import of `src` that the table does not allow, as "file:line imports …" lines. */
function upwardImports(src: string): string[] {
  const problems: string[] = [];
  for (const file of walk(src)) {
    const rel = relative(src, file).split('\\').join('/');
    const parts = rel.split('/');
    const folder = parts.length > 1 ? parts[0]! : null;
    const allowed = folder === null ? ENTRY_ALLOWED[rel] : ALLOWED[folder];
    if (allowed === undefined) {
      problems.push(`${rel}: src/${folder ?? rel} has no place in the layer table of test/layers.test.ts; add it there`);
      continue;
    }
    for (const { spec, line } of importsOf(readFileSync(file, 'utf8'))) {
      if (!spec.startsWith('.')) continue;
      const target = posix.normalize(posix.join(posix.dirname(rel), spec));
      const tFolder = target.includes('/') ? target.split('/')[0]! : null;
      if (tFolder === folder) continue;
      if (tFolder === null || tFolder.startsWith('..') || !allowed.includes(tFolder)) {
        problems.push(`src/${rel}:${line} imports '${spec}' (src/${target}): ${folder ?? rel} may import only ${allowed.join(', ') || 'nothing outside its folder'}`);
      }
    }
  }
  return problems;
}

test('imports point one way: no module imports a layer above its own', () => {
  const problems = upwardImports(SRC);
  assert.equal(problems.length, 0, `upward imports:\n${problems.join('\n')}`);
});

test('the check sees an upward import, a dynamic one, and a folder missing from the table', () => {
  const dir = mkdtempSync(join(tmpdir(), 'layers-'));
  try {
    mkdirSync(join(dir, 'protocol'));
    mkdirSync(join(dir, 'keys'));
    mkdirSync(join(dir, 'widgets'));
    writeFileSync(join(dir, 'keys', 'model.ts'), 'export const x = 1;\n');
    writeFileSync(join(dir, 'protocol', 'a.ts'), "import { x } from '../keys/model.js';\nexport const y = x;\n");
    writeFileSync(join(dir, 'protocol', 'b.ts'), "export const z = () => import('../keys/model.js');\n");
    writeFileSync(join(dir, 'keys', 'ok.ts'), "import { y } from '../protocol/a.js';\nexport const w = y;\n");
    writeFileSync(join(dir, 'widgets', 'w.ts'), 'export {};\n');
    const problems = upwardImports(dir);
    assert.equal(problems.length, 3, problems.join('\n'));
    assert.match(problems.join('\n'), /protocol\/a\.ts:1 imports '\.\.\/keys\/model\.js'/);
    assert.match(problems.join('\n'), /protocol\/b\.ts:1 imports/);
    assert.match(problems.join('\n'), /widgets\/w\.ts: src\/widgets has no place/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
