/**
 * The README's Quick start runs as written: its example block (the one after
 * the `quick-start` marker), saved as example.mjs in a fresh project directory
 * where `cryptod` resolves to this checkout, prints the digest and `true`
 * against a daemon started by `cryptod serve` from another directory, with no
 * socket named anywhere. The README cannot rot without this test failing.
 *
 * The package is loaded from src/ through tsx rather than from dist/, so that
 * the test needs no build; the example itself runs as plain JavaScript.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { after, test } from 'node:test';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TSX = import.meta.resolve('tsx');
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');

const dirs: string[] = [];
const children = new Set<ChildProcess>();
after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'rq-'));
  dirs.push(d);
  return d;
}

/** The fenced block of `lang` that follows the quick-start marker. */
function quickStartBlock(lang: string): string {
  const at = README.indexOf('<!-- quick-start');
  assert.ok(at >= 0, 'README.md has no <!-- quick-start --> marker before its example');
  const m = new RegExp('```' + lang + '\\n([\\s\\S]*?)```').exec(README.slice(at));
  assert.ok(m !== null, `no \`\`\`${lang} block after the quick-start marker`);
  return m[1]!;
}

test('the Quick start example prints the digest and true against a daemon started elsewhere', async () => {
  const block = quickStartBlock('js');
  assert.doesNotMatch(block, /await using/, 'Node 20 cannot run `await using`: the example must be plain JavaScript');

  // A user's session: its own runtime directory, no CRYPTOD_SOCKET.
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_RUNTIME_DIR: tempDir() };
  delete env.CRYPTOD_SOCKET;

  // `npm start` in the checkout: serve with no flags, data under ./.cryptod.
  const checkout = tempDir();
  const daemon = spawn(process.execPath, ['--import', TSX, join(ROOT, 'src/cli/main.ts'), 'serve'], { cwd: checkout, env, stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(daemon);
  const exited = once(daemon, 'close');
  let log = '';
  await new Promise<void>((resolve, reject) => {
    daemon.stderr!.on('data', (c: Buffer) => {
      log += c.toString();
      if (log.includes('"msg":"listening"')) resolve();
    });
    void exited.then(() => reject(new Error(`serve exited before listening:\n${log}`)));
  });

  try {
    // `mkdir my-app && npm init -y && npm install /path/to/cryptod`, with the package served from src/.
    const app = tempDir();
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'my-app', version: '1.0.0' }));
    const pkg = join(app, 'node_modules', 'cryptod');
    mkdirSync(pkg, { recursive: true });
    writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: 'cryptod', type: 'module', exports: './index.mjs' }));
    writeFileSync(join(pkg, 'index.mjs'), `export * from ${JSON.stringify(pathToFileURL(join(ROOT, 'src/index.ts')).href)};\n`);
    writeFileSync(join(app, 'example.mjs'), block);

    const run = spawn(process.execPath, ['--import', TSX, 'example.mjs'], { cwd: app, env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(run);
    let stdout = '';
    let stderr = '';
    run.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
    run.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    const [code] = (await once(run, 'close')) as [number | null];
    assert.equal(code, 0, stderr);
    const digest = createHash('sha256').update('hello cryptod').digest('hex');
    assert.equal(stdout, `${digest}\ntrue\n`);
    // The output the README shows is the output the example gives.
    assert.ok(README.includes(`# ${digest}\n# true\n`), 'README.md shows another output than the example prints');
  } finally {
    daemon.kill('SIGTERM');
    const [code] = (await exited) as [number | null];
    assert.equal(code, 0, log);
  }
});
