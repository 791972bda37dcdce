/**
 * `cryptod completion bash`: the script is sourced in a real bash and its
 * function called with COMP_WORDS as bash would, for commands, subcommands,
 * flags and file names.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { bashCompletion, completionTable } from '../src/cli/completion.js';
import { runCli } from './helpers/cli-daemon.js';

const dir = mkdtempSync(join(tmpdir(), 'cd-compl-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const script = join(dir, 'cryptod.bash');
writeFileSync(script, bashCompletion());

/** What `_cryptod` offers for the command line `words`, the last word being completed. */
function complete(...words: string[]): string[] {
  const arr = words.map((w) => `'${w}'`).join(' ');
  const r = spawnSync('bash', ['--norc', '--noprofile', '-c', `source '${script}'; COMP_WORDS=(${arr}); COMP_CWORD=${words.length - 1}; _cryptod; printf '%s\\n' "\${COMPREPLY[@]}"`], {
    cwd: dir, encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.split('\n').filter((l) => l !== '').sort();
}

test('commands complete from their first letters', () => {
  assert.deepEqual(complete('cryptod', 'ke'), ['key', 'keystore']);
  assert.deepEqual(complete('cryptod', 'comp'), ['completion']);
  assert.ok(complete('cryptod', '').includes('verify-mac'));
});

test('subcommands of key, client and completion', () => {
  assert.deepEqual(complete('cryptod', 'key', 'b'), ['backup']);
  assert.deepEqual(complete('cryptod', 'key', 'r'), ['restore', 'rotate']);
  assert.deepEqual(complete('cryptod', 'client', ''), ['add', 'list', 'revoke']);
  assert.deepEqual(complete('cryptod', 'completion', ''), ['bash', 'zsh']);
});

test('flags come from the command\'s help', () => {
  assert.deepEqual(complete('cryptod', 'key', 'backup', 'orders', '--rec'), ['--recipient']);
  assert.deepEqual(complete('cryptod', 'key', 'create', 'k', '--allow'), ['--allow-backup']);
  assert.deepEqual(complete('cryptod', 'status', '--j'), ['--json']);
  assert.ok(complete('cryptod', 'serve', '--max-f').includes('--max-frame'));
  assert.deepEqual(complete('cryptod', 'verify', '--sig'), ['--signature']);
});

test('file names where no subcommand or flag goes', () => {
  writeFileSync(join(dir, 'orders.cmbk'), '');
  assert.deepEqual(complete('cryptod', 'key', 'restore', 'ord'), ['orders.cmbk']);
});

test('every command of the table is one `cryptod --help` lists', async () => {
  const r = await runCli(['--help']);
  const help = r.stdout.toString();
  for (const cmd of completionTable().keys()) assert.match(help, new RegExp(`\\b${cmd}\\b`), `${cmd} is not in cryptod --help`);
  const printed = await runCli(['completion', 'bash']);
  assert.equal(printed.code, 0);
  assert.equal(printed.stdout.toString(), bashCompletion());
  const bad = await runCli(['completion', 'fish']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr.toString(), /bash or zsh, got 'fish'/);
});
