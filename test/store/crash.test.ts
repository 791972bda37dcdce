/**
 * Crash safety: a child process writes keys with several versions, one
 * transaction per key; we SIGKILL it at random moments, reopen the store each
 * time and check that the file is intact, that every key the child saw
 * committed is there with all its versions, and that no key is half-written.
 * Kills land during start-up and migration (some iterations), inside open
 * transactions, and during commits.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { openSqliteKeystore } from '../../src/store/sqlite/sqlite-store.js';
import { makeTempDir } from './tmpdir.js';

const WRITER = fileURLToPath(new URL('./crash-writer.ts', import.meta.url));
const VERSIONS = 4;
/** Kills every run makes, whatever the machine's speed; more (up to 60) while under EXTRA_MS. Time never fails the test. */
const MIN_ITERATIONS = 30;
const EXTRA_MS = 15_000;

interface Run {
  committed: string[];
  sawReady: boolean;
  stderr: string;
}

/** Start the writer, kill it after a random delay, and return what it reported. */
async function runAndKill(dataDir: string, prefix: string, killEarly: boolean): Promise<Run> {
  const child = spawn(process.execPath, ['--import', 'tsx', WRITER, dataDir, prefix, String(VERSIONS)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let stderr = '';
  let onReady!: () => void;
  const ready = new Promise<void>((resolve) => { onReady = resolve; });
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
    if (out.startsWith('ready\n')) onReady();
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  if (killEarly) {
    // Anywhere from process start to a little after the store is open: covers opening and migrating.
    await Promise.race([sleep(Math.random() * 250), exited]);
  } else {
    await Promise.race([ready, exited, sleep(10_000, undefined, { ref: false })]);
    await sleep(Math.random() * 120);
  }
  child.kill('SIGKILL');
  await exited;
  await new Promise((resolve) => setImmediate(resolve)); // drain buffered stdout events
  // Only complete lines count: a line cut by the kill was never fully reported.
  const lines = out.split('\n').slice(0, -1);
  const sawReady = lines[0] === 'ready';
  return { committed: sawReady ? lines.slice(1) : [], sawReady, stderr };
}

async function verify(dataDir: string, reported: ReadonlySet<string>): Promise<number> {
  const file = path.join(dataDir, 'keystore.sqlite');
  // Killed before the store was created: nothing to check but that it opens.
  if (fs.existsSync(file)) {
    // A read-write connection runs WAL recovery, as the next daemon start would.
    const raw = new Database(file);
    try {
      assert.equal(raw.pragma('integrity_check', { simple: true }), 'ok');
      assert.deepEqual(raw.pragma('foreign_key_check'), []);
    } finally {
      raw.close();
    }
  }
  const store = await openSqliteKeystore({ dataDir });
  try {
    return await store.read(async (r) => {
      const keys = await r.listKeys();
      const names = new Set(keys.map((k) => k.name));
      for (const name of reported) assert.ok(names.has(name), `${name} was reported committed but is missing`);
      for (const key of keys) {
        const versions = (await r.getVersions(key.name)).map((v) => v.version);
        assert.deepEqual(versions, Array.from({ length: VERSIONS }, (_, i) => i + 1), `${key.name} has a partial set of versions`);
      }
      // One committed transaction per key: the generation counted each commit exactly once.
      assert.equal(await r.generation(), keys.length);
      return keys.length;
    });
  } finally {
    await store.close();
  }
}

it('survives SIGKILL at random moments without losing or half-writing keys', { timeout: 300_000 }, async (t) => {
  const tmp = makeTempDir();
  const dataDir = path.join(tmp.path, 'data');
  const reported = new Set<string>();
  const started = Date.now();
  let iterations = 0;
  let killedAfterReady = 0;
  try {
    while (iterations < MIN_ITERATIONS || (iterations < 60 && Date.now() - started < EXTRA_MS)) {
      const run = await runAndKill(dataDir, `r${iterations}`, iterations % 5 === 0);
      assert.equal(run.stderr, '', 'the writer failed on its own');
      if (run.sawReady) killedAfterReady += 1;
      for (const name of run.committed) reported.add(name);
      await verify(dataDir, reported);
      iterations += 1;
    }
    t.diagnostic(`${iterations} kills (${killedAfterReady} while writing), ${reported.size} keys reported committed, ${Date.now() - started} ms`);
    assert.ok(iterations >= MIN_ITERATIONS);
    assert.ok(killedAfterReady >= MIN_ITERATIONS / 2, `expected most kills to hit a running writer, got ${killedAfterReady}`);
    assert.ok(reported.size > 0, 'the writer never committed anything');
  } finally {
    await tmp.cleanup();
  }
});
