/**
 * Document and daemon agree (docs/protocol.md): test/conformance/doc_client.py
 * is a client written from the document alone — its own CBOR and framing,
 * Python standard library only — run against a real daemon with managed keys.
 * Each of its checks prints one line; any FAIL line fails this test.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { startManagedDaemon, type ManagedEnv } from './managed-env.js';

const run = promisify(execFile);
let env: ManagedEnv;

before(async () => {
  env = await startManagedDaemon();
});
after(async () => {
  await env.stop();
});

test('a client written from docs/protocol.md alone agrees with the daemon', async () => {
  const script = join(import.meta.dirname, 'conformance', 'doc_client.py');
  const { stdout, stderr, code } = await run('python3', [script, env.td.socketPath], { timeout: 60_000 }).then(
    (r) => ({ ...r, code: 0 }),
    (err: { stdout?: string; stderr?: string; code?: number }) => ({ stdout: err.stdout ?? '', stderr: err.stderr ?? '', code: err.code ?? -1 }),
  );
  const failed = stdout.split('\n').filter((l) => l.startsWith('FAIL'));
  assert.deepEqual(failed, [], `${stdout}\n${stderr}`);
  assert.equal(code, 0, `${stdout}\n${stderr}`);
  // Every check ran (a crash midway would otherwise pass with fewer lines).
  assert.ok(stdout.split('\n').filter((l) => l.startsWith('ok')).length >= 38, stdout);
});
