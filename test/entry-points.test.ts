/**
 * Two entry points: `cryptod` is the client alone, `cryptod/daemon` embeds
 * the daemon. An application that only talks to a daemon must not load
 * better-sqlite3's native addon or any daemon module by importing the client.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Module URLs a fresh process resolves while importing `entry` (a path below the repository). */
function loadsOf(entry: string): string[] {
  const out = execFileSync(
    process.execPath,
    ['--import', 'tsx', '--import', './test/helpers/record-loads.mjs', '--input-type=module', '-e', `await import(${JSON.stringify(`./${entry}`)});`],
    { cwd: root, encoding: 'utf8' },
  );
  const last = out.trim().split('\n').pop()!;
  return (JSON.parse(last) as string[]).filter((u) => u.startsWith('file:')).map((u) => fileURLToPath(u).slice(root.length));
}

test("import 'cryptod' loads the client and the protocol only: no better-sqlite3, no daemon module", () => {
  const loaded = loadsOf('src/index.ts');
  assert.ok(loaded.includes('src/client/client.ts'), `the recorder saw the client load (sanity): ${loaded.join(', ')}`);
  const foreign = loaded.filter((p) => !(p.startsWith('src/client/') || p.startsWith('src/protocol/') || p === 'src/index.ts'));
  assert.deepEqual(foreign, [], 'modules outside src/client and src/protocol');
  assert.ok(!loaded.some((p) => p.includes('better-sqlite3')));
});

test("import 'cryptod/daemon' loads the daemon (and with it SQLite)", () => {
  const loaded = loadsOf('src/daemon/index.ts');
  assert.ok(loaded.includes('src/daemon/server.ts'));
  assert.ok(loaded.some((p) => p.includes('better-sqlite3')), 'better-sqlite3 is loaded by the daemon entry');
});

test('package.json maps both entry points to the built files', async () => {
  const { default: pkg } = await import('../package.json', { with: { type: 'json' } });
  const exp = (pkg as { exports: Record<string, { default: string; types: string }> }).exports;
  assert.equal(exp['.']?.default, './dist/src/index.js');
  assert.equal(exp['./daemon']?.default, './dist/src/daemon/index.js');
});
