/**
 * The audit log (src/observe/audit.ts): the file is private and append-only,
 * and a real daemon writes exactly the events the list in audit.ts promises —
 * connections accepted, refused and closed, denials every time, limits once
 * per connection, exports of key material — and nothing for ordinary
 * failures such as a handle that is not found.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, describe, test } from 'node:test';
import { connect } from '../src/client/client.js';
import { NO_AUDIT, auditLine, createAudit, streamAudit, type AuditEvent } from '../src/observe/audit.js';
import { peerCred, peerCredAvailable } from '../src/daemon/peer-cred.js';
import { CryptodError, NotExtractableError, NotFoundError, QuotaError, TooManyConnectionsError } from '../src/protocol/errors.js';
import { Op } from '../src/protocol/ops.js';
import { startCliDaemon } from './helpers/cli-daemon.js';
import { eventually, startTestDaemon } from './helpers/daemon.js';
import { RawClient, errorCode } from './helpers/raw-client.js';
import { watchClientChanges } from '../src/auth/revocation.js';
import type { ClientRecord, ClientRegistry } from '../src/auth/client-registry.js';
import { client } from '../src/cli/client.js';
import { openManagedKeys } from '../src/daemon/managed-keys.js';
import { silentLogger } from '../src/observe/logger.js';
import { ManualClock } from '../src/keys/clock.js';
import { openSqliteClientRegistry } from '../src/store/sqlite/client-registry.js';
import { HOUR, T0 } from './keys/env.js';

const dir = mkdtempSync(join(tmpdir(), 'cd-audit-'));
after(() => rmSync(dir, { recursive: true, force: true }));

type Line = Record<string, unknown> & { event: string; seq: number; time: string };

function collector(): { audit: ReturnType<typeof streamAudit>; lines: () => Line[] } {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (b: Buffer) => (text += b.toString()));
  return {
    audit: streamAudit(stream),
    lines: () =>
      text
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Line),
  };
}

const accepted: AuditEvent = { event: 'connection.accepted', connection: 1, clientId: 'uid:1/x', client: 'x', authenticatedBy: 'uid', uid: 1, gid: 1, pid: 2 };

describe('the audit file', () => {
  test('is created 0600 and appended to, one JSON line per event, numbered', () => {
    const path = join(dir, 'a.log');
    const a = createAudit({ target: path });
    assert.equal(a.enabled, true);
    a.emit(accepted);
    a.emit({ event: 'client.revoked', name: 'old', by: 'cli:root' });
    a.close();
    a.emit(accepted); // after close: dropped, no throw
    assert.equal(statSync(path).mode & 0o777, 0o600);
    const b = createAudit({ target: path });
    b.emit({ event: 'key.destroyed', key: 'payments', version: 3 });
    b.close();
    const lines = readFileSync(path, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as Line);
    assert.deepEqual(lines.map((l) => l.event), ['connection.accepted', 'client.revoked', 'key.destroyed']);
    assert.deepEqual(lines.map((l) => l.seq), [1, 2, 1]);
    assert.ok(lines.every((l) => !Number.isNaN(Date.parse(l.time))));
    assert.equal(lines[1]!.by, 'cli:root');
  });

  test('a file others can read, a symlink, or a directory is refused at start', () => {
    const wide = join(dir, 'wide.log');
    writeFileSync(wide, '', { mode: 0o644 });
    assert.throws(() => createAudit({ target: wide }), (e: unknown) => e instanceof CryptodError && e.code === 'CRYPTOD_ERR_CONFIG' && /mode 644.*chmod 600/.test(e.message));
    const link = join(dir, 'link.log');
    symlinkSync(join(dir, 'elsewhere.log'), link);
    assert.throws(() => createAudit({ target: link }), (e: unknown) => e instanceof CryptodError && e.code === 'CRYPTOD_ERR_CONFIG');
    assert.throws(() => createAudit({ target: dir }), (e: unknown) => e instanceof CryptodError && e.code === 'CRYPTOD_ERR_CONFIG');
  });

  test('lines are flat and bounded: long strings are cut, structured values dropped', () => {
    const line = JSON.parse(auditLine({ event: 'policy.changed', key: 'k'.repeat(1000), subject: null, change: 'grant', extra: { nested: 1 } } as unknown as AuditEvent, 1)) as Line;
    assert.equal((line.key as string).length, 257);
    assert.equal('extra' in line, false);
    assert.equal(line.subject, null);
  });

  test('off is NO_AUDIT: disabled and inert', () => {
    assert.equal(NO_AUDIT.enabled, false);
    NO_AUDIT.emit(accepted);
    NO_AUDIT.close();
  });
});

describe('a daemon with the audit log on', () => {
  test('connections, denials, limits and exports are audited; ordinary failures are not', async () => {
    const { audit, lines } = collector();
    const t = await startTestDaemon({
      audit,
      limits: { maxConnectionsPerClient: 1, maxNodesPerClient: 2 },
      ...(peerCredAvailable() ? { peerIdentity: peerCred } : {}),
    });
    try {
      const c = await t.connect('auditee');
      // Refused: a second connection of the same client.
      await assert.rejects(connect({ socket: t.socketPath, clientName: 'auditee' }), TooManyConnectionsError);
      // Refused: another protocol version.
      const raw = await RawClient.connect(t.socketPath);
      raw.send(1, Op.HELLO, { version: 99, client: 'time-traveller' });
      assert.equal(errorCode(await raw.reply(1)), 'CRYPTOD_ERR_PROTOCOL_VERSION');
      await raw.whenClosed;

      const secret = await c.subtle.importKey('raw', Buffer.alloc(32, 7), { name: 'AES-GCM' }, false, ['encrypt']);
      const exportable = await c.subtle.importKey('raw', Buffer.alloc(16, 9), { name: 'HMAC', hash: 'SHA-256' }, true, ['sign']);
      await assert.rejects(c.subtle.exportKey('raw', secret), NotExtractableError);
      await assert.rejects(c.subtle.exportKey('raw', secret), NotExtractableError);
      await c.subtle.exportKey('jwk', exportable);
      // Two QUOTA refusals on one connection: one limit.exceeded line.
      await assert.rejects(c.request(Op.HASH_CREATE, { algorithm: 'SHA-256' }), QuotaError);
      await assert.rejects(c.request(Op.HASH_CREATE, { algorithm: 'SHA-256' }), QuotaError);
      // Not audited: a handle that is not found, a malformed request.
      await assert.rejects(c.request(Op.RELEASE, { handle: 'AAAAAAAAAAAAAAAAAAAAAA' }), (e: unknown) => e instanceof CryptodError);
      await assert.rejects(c.request(Op.CONTEXT_UPDATE, { handle: 'AAAAAAAAAAAAAAAAAAAAAA', data: Buffer.alloc(1) }), (e: unknown) => e instanceof NotFoundError || e instanceof CryptodError);
      await c.close();
      await eventually(() => lines().some((l) => l.event === 'connection.closed'), 2000, 'connection.closed');
    } finally {
      await t.stop();
    }
    const all = lines();
    const events = all.map((l) => l.event);
    assert.deepEqual(events, [
      'connection.accepted',
      'connection.refused',
      'connection.refused',
      'request.denied',
      'request.denied',
      'key.exported',
      'limit.exceeded',
      'connection.closed',
    ]);
    const [acc, tooMany, version, denied, , exported, limit, closed] = all as [Line, Line, Line, Line, Line, Line, Line, Line];
    assert.equal(acc.client, 'auditee');
    assert.match(acc.clientId as string, /auditee$/);
    if (peerCredAvailable()) {
      assert.equal(acc.uid, process.getuid!());
      assert.equal(acc.pid, process.pid);
      assert.equal(acc.authenticatedBy, 'uid');
    }
    assert.equal(tooMany.reason, 'too-many-connections');
    assert.equal(tooMany.client, 'auditee');
    assert.equal(version.reason, 'protocol-version');
    assert.equal(denied.code, 'CRYPTOD_ERR_NOT_EXTRACTABLE');
    assert.equal(denied.op, 'EXPORT_KEY');
    assert.equal(exported.op, 'EXPORT_KEY');
    assert.equal(exported.format, 'jwk');
    assert.equal(limit.code, 'CRYPTOD_ERR_QUOTA');
    assert.equal(limit.limit, 'nodes-per-client');
    assert.equal(closed.connection, acc.connection);
    assert.ok((closed.requests as number) >= 8);
    assert.deepEqual(all.map((l) => l.seq), all.map((_, i) => i + 1));
  });

  test('cryptod serve --audit-log - writes the events to stdout', async () => {
    const d = await startCliDaemon(['--audit-log', '-', '--log-level', 'warn']);
    try {
      const c = await connect({ socket: d.socketPath, clientName: 'stdout-audit' });
      await c.close();
      await eventually(() => d.stdout().toString().includes('"event":"connection.closed"'), 5000, 'the audit lines on stdout');
    } finally {
      assert.equal(await d.stop(), 0);
    }
    const events = d
      .stdout()
      .toString()
      .trimEnd()
      .split('\n')
      .map((l) => (JSON.parse(l) as Line).event);
    assert.deepEqual(events, ['connection.accepted', 'connection.closed']);
    // stdout is the audit log only; the daemon's own log stays on stderr.
    assert.ok(!d.stdout().toString().includes('"level"'));
  });
});


describe('changes made outside a request', () => {
  test('a scheduled rotation is audited once, with reason and no actor; rotate() leaves it to KEY_ROTATE', async () => {
    const c = collector();
    const clock = new ManualClock(T0);
    const keys = await openManagedKeys({ dataDir: join(dir, 'sched'), clock, audit: c.audit });
    try {
      await keys.manager.create('s', { type: 'hmac-sha256', rotationPeriod: '1h', prefetchPeriod: '5m' });
      await keys.manager.rotate('s'); // manual: the operation audits it, not the manager
      assert.deepEqual(c.lines(), []);
      clock.advanceTo(T0 + HOUR);
      await keys.manager.settle();
      const rotated = c.lines().filter((l) => l.event === 'key.rotated');
      assert.equal(rotated.length, 1, JSON.stringify(c.lines()));
      assert.equal(rotated[0]!.key, 's');
      assert.equal(rotated[0]!.reason, 'schedule');
      assert.equal(rotated[0]!.previousVersion, 2);
      assert.equal(rotated[0]!.version, 3);
      assert.equal('by' in rotated[0]!, false);
    } finally {
      await keys.close();
    }
  });

  test('`cryptod client add|revoke --audit-log FILE` record who did it', async () => {
    const dataDir = join(dir, 'cli-clients');
    const log = join(dir, 'cli.log');
    const out = process.stdout.write;
    process.stdout.write = (() => true) as typeof process.stdout.write; // the token
    try {
      assert.equal(await client(['add', 'svc', '--uid', '7', '--data-dir', dataDir, '--audit-log', log]), 0);
      assert.equal(await client(['revoke', 'svc', '--data-dir', dataDir, '--audit-log', log]), 0);
    } finally {
      process.stdout.write = out;
    }
    const lines = readFileSync(log, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as Line);
    assert.deepEqual(lines.map((l) => [l.event, l.name]), [['client.added', 'svc'], ['client.revoked', 'svc']]);
    assert.equal(lines[0]!.uid, 7);
    assert.ok(lines.every((l) => typeof l.by === 'string' && l.by.startsWith('cli:')));
    await assert.rejects(client(['list', '--data-dir', dataDir, '--audit-log', log]), /applies to `cryptod client add` and `revoke` only/);
  });

  test('the daemon records clients added and revoked by another process, once, and not those it found at start', async () => {
    const registry = openSqliteClientRegistry({ dataDir: join(dir, 'watched') });
    const c = collector();
    await registry.add('before');
    const w = watchClientChanges(registry, c.audit, silentLogger, 60_000);
    try {
      await w.check();
      assert.deepEqual(c.lines(), []);
      await registry.add('svc', { uid: 5 });
      await registry.revoke('before');
      await w.check();
      await w.check(); // nothing new: nothing written
      await registry.revoke('svc');
      await registry.add('svc'); // re-added under the same name: a new client
      await w.check();
      assert.deepEqual(
        c.lines().map((l) => [l.event, l.name, l.uid ?? null]),
        // In the registry's order (oldest first), not the order of the changes.
        [['client.revoked', 'before', null], ['client.added', 'svc', 5], ['client.revoked', 'svc', null], ['client.added', 'svc', null]],
      );
      assert.ok(c.lines().every((l) => !('by' in l)));
    } finally {
      w.stop();
      await registry.close();
    }
  });

  test('a name revoked and added again within one millisecond is still one revocation and one add', async () => {
    // The real registry cannot be made to stamp two rows with the same
    // millisecond on demand; its listing is all the watcher reads, so feed it one.
    const at = 1_700_000_000_000;
    let rows: ClientRecord[] = [{ name: 'svc', uid: null, createdAt: at, revokedAt: null }];
    const registry = { list: async () => rows } as unknown as ClientRegistry;
    const c = collector();
    const w = watchClientChanges(registry, c.audit, silentLogger, 60_000);
    try {
      await w.check();
      rows = [
        { name: 'svc', uid: null, createdAt: at, revokedAt: at },
        { name: 'svc', uid: null, createdAt: at, revokedAt: null },
      ];
      await w.check();
      await w.check();
      assert.deepEqual(c.lines().map((l) => l.event), ['client.revoked', 'client.added']);
    } finally {
      w.stop();
    }
  });
});
