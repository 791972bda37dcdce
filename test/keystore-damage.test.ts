/**
 * One damaged blob no longer stops the daemon: a real `cryptod serve` on a
 * keystore whose SQLite row was altered starts, serves every healthy key,
 * answers CRYPTOD_ERR_KEY_DAMAGED for the damaged version and reports it in
 * its log, the audit log, `status` and `key describe`; `cryptod keystore
 * check` finds it, and finds SQLite page damage.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { runCli, startCliDaemon, type CliDaemon } from './helpers/cli-daemon.js';
import { makeTempDir } from './store/tmpdir.js';


async function cli(args: readonly string[], socket: string | null, input?: Uint8Array): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  const r = await runCli(args, socket === null ? {} : { CRYPTOD_SOCKET: socket }, input);
  return { ...r, stderr: r.stderr.toString() };
}

async function ok(d: CliDaemon, args: readonly string[], input?: Uint8Array): Promise<Buffer> {
  const r = await cli(args, d.socketPath, input);
  assert.equal(r.code, 0, `cryptod ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Flip one bit in the middle of the wrapped blob of (name, version), directly in the SQLite file. */
function flipWrappedByte(file: string, name: string, version: number): void {
  const db = new Database(file);
  try {
    const row = db.prepare('SELECT wrapped FROM key_versions WHERE name = ? AND version = ?').get(name, version) as { wrapped: Buffer };
    const blob = Buffer.from(row.wrapped);
    blob[blob.length >> 1]! ^= 0x01;
    db.prepare('UPDATE key_versions SET wrapped = ? WHERE name = ? AND version = ?').run(blob, name, version);
  } finally {
    db.close();
  }
}

describe('damaged keystore blobs', () => {
  it('the daemon starts, serves healthy keys and names the damaged version everywhere; keystore check finds it', async () => {
    const tmp = makeTempDir();
    const dir = path.join(tmp.path, 'data');
    const auditLog = path.join(tmp.path, 'audit.log');
    const file = path.join(dir, 'keystore.sqlite');
    try {
      let d = await startCliDaemon(['--data-dir', dir]);
      await ok(d, ['key', 'create', 'good', '--type', 'aes256-gcm']);
      await ok(d, ['key', 'create', 'bad', '--type', 'aes256-gcm']);
      const pt = Buffer.from('payload');
      const ctGood = await ok(d, ['encrypt', '--key', 'good'], pt);
      const ctBad = await ok(d, ['encrypt', '--key', 'bad'], pt);
      assert.equal(await d.stop(), 0);

      const clean = await cli(['keystore', 'check', '--data-dir', dir], null);
      assert.equal(clean.code, 0, clean.stderr);
      assert.match(clean.stdout.toString(), /2 key\(s\), 2 wrapped version\(s\) checked, clean/);

      flipWrappedByte(file, 'bad', 1);

      d = await startCliDaemon(['--data-dir', dir, '--audit-log', auditLog]);
      try {
        assert.deepEqual(await ok(d, ['decrypt', '--key', 'good'], ctGood), pt, 'a healthy key is served');
        const dec = await cli(['decrypt', '--key', 'bad'], d.socketPath, ctBad);
        assert.equal(dec.code, 1);
        assert.match(dec.stderr, /CRYPTOD_ERR_KEY_DAMAGED: version 1 of key 'bad' is damaged: .*keystore\.sqlite/);
        const enc = await cli(['encrypt', '--key', 'bad'], d.socketPath, pt);
        assert.match(enc.stderr, /CRYPTOD_ERR_KEY_DAMAGED: version 1 of key 'bad'/);

        const status = JSON.parse((await ok(d, ['status', '--json'])).toString()) as { damaged: Array<{ key: string; version: number; reason: string }> };
        assert.deepEqual(status.damaged.map((x) => [x.key, x.version]), [['bad', 1]]);
        assert.match((await ok(d, ['status'])).toString(), /DAMAGED key 'bad' version 1: .*keystore\.sqlite/);
        const described = JSON.parse((await ok(d, ['key', 'describe', 'bad', '--json'])).toString()) as { versions: Array<{ version: number; damaged?: string }> };
        assert.match(described.versions[0]!.damaged ?? '', /does not unwrap .*keystore\.sqlite/);
        const good = JSON.parse((await ok(d, ['key', 'describe', 'good', '--json'])).toString()) as { versions: Array<{ damaged?: string }> };
        assert.equal(good.versions[0]!.damaged, undefined);

        assert.match(d.stderr().toString(), /"msg":"key version damaged[^\n]*"key":"bad","version":1,"file":"[^"]*keystore\.sqlite"/);
        const events = fs.readFileSync(auditLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { event: string; key?: string; version?: number; file?: string });
        const damaged = events.filter((e) => e.event === 'key.damaged');
        assert.equal(damaged.length, 1);
        assert.equal(damaged[0]!.key, 'bad');
        assert.equal(damaged[0]!.version, 1);
        assert.equal(damaged[0]!.file, file);
      } finally {
        assert.equal(await d.stop(), 0);
      }

      const found = await cli(['keystore', 'check', '--data-dir', dir], null);
      assert.equal(found.code, 1);
      assert.match(found.stdout.toString(), /DAMAGED: key 'bad' version 1 in .*keystore\.sqlite: its wrapped material does not unwrap/);
      assert.match(found.stdout.toString(), /1 problem\(s\)/);
      assert.doesNotMatch(found.stdout.toString(), /key 'good'/);
    } finally {
      await tmp.cleanup();
    }
  });

  it('keystore check reports SQLite integrity_check failures', async () => {
    const tmp = makeTempDir();
    const dir = path.join(tmp.path, 'data');
    const file = path.join(dir, 'keystore.sqlite');
    try {
      const d = await startCliDaemon(['--data-dir', dir]);
      for (let i = 0; i < 5; i++) await ok(d, ['key', 'create', `k${i}`, '--type', 'aes256-gcm']);
      assert.equal(await d.stop(), 0);
      // Scribble over the root page of the change log, a table nothing needs at open.
      const db = new Database(file, { readonly: true });
      const { rootpage } = db.prepare("SELECT rootpage FROM sqlite_master WHERE name = 'changes'").get() as { rootpage: number };
      const pageSize = db.pragma('page_size', { simple: true }) as number;
      db.close();
      const fd = fs.openSync(file, 'r+');
      fs.writeSync(fd, Buffer.alloc(pageSize, 0x5a), 0, pageSize, (rootpage - 1) * pageSize);
      fs.closeSync(fd);

      const r = await cli(['keystore', 'check', '--data-dir', dir], null);
      assert.equal(r.code, 1, r.stdout.toString() + r.stderr);
      assert.match(r.stdout.toString() + r.stderr, /keystore\.sqlite/);
      assert.match(r.stdout.toString(), /DAMAGED FILE: .*keystore\.sqlite: /);
    } finally {
      await tmp.cleanup();
    }
  });
});
