/**
 * The request chain enforces what each operation declares (src/ops/operation.ts
 * `access`): every served operation declares it, a managed-key operation
 * cannot be served without authorization, and the authorize phase runs
 * before the handler.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { allOperations } from '../src/ops/index.js';
import type { Operation } from '../src/ops/operation.js';
import { ConfigError, ForbiddenError, NotFoundError } from '../src/protocol/errors.js';
import { Op, isManagedOp, opName, type OpCode } from '../src/protocol/ops.js';
import { startTestDaemon } from './helpers/daemon.js';
import { startManagedDaemon } from './managed-env.js';

test('every served operation declares its access: managed-key operations a key, admin or listing; the others none', () => {
  const served = allOperations();
  const codes = new Set(served.map((o) => o.op as number));
  for (const code of Object.values(Op)) if (code !== Op.HELLO) assert.ok(codes.has(code), `${opName(code)} is not served`);
  for (const o of served) {
    const kind = o.access.kind;
    if (isManagedOp(o.op)) assert.notEqual(kind, 'none', `${opName(o.op)} uses managed keys and declares no authorization`);
    else assert.equal(kind, 'none', `${opName(o.op)} uses no managed key, yet declares '${kind}'`);
  }
});

test('an operation without an access declaration does not compile', () => {
  // @ts-expect-error `access` is required: an operation cannot forget it.
  const forgotten: Operation = { op: Op.PING, handle: () => null };
  assert.equal(forgotten.op, Op.PING);
});

test('a managed-key operation declared without authorization is refused at daemon start', async () => {
  const open: Operation = { op: Op.MANAGED_ENCRYPT, access: { kind: 'none' }, handle: () => 'unguarded' };
  const ops = [...allOperations().filter((o) => o.op !== Op.MANAGED_ENCRYPT), open];
  await assert.rejects(startTestDaemon({ operations: ops }), (e: unknown) => e instanceof ConfigError && /MANAGED_ENCRYPT/.test((e as Error).message));
  // The same op declared with a key and a permission is accepted.
  const guarded: Operation = { ...open, access: { kind: 'key', arg: 'key', permission: 'encrypt' } };
  const t = await startTestDaemon({ operations: [...allOperations().filter((o) => o.op !== Op.MANAGED_ENCRYPT), guarded] });
  await t.stop();
});

test('the authorize phase runs before the handler: NOT_FOUND without any right, FORBIDDEN without this one', async () => {
  const PROBE = Op.KEY_DESCRIBE as OpCode;
  let ran = 0;
  const probe: Operation = {
    op: PROBE,
    access: { kind: 'key', arg: 'name', permission: 'admin' },
    handle: () => {
      ran++;
      return 'ran';
    },
  };
  const env = await startManagedDaemon({ daemon: { operations: [...allOperations().filter((o) => o.op !== PROBE), probe] } });
  try {
    const admin = await env.admin();
    await admin.keys.create('guarded', { type: 'aes256-gcm', clients: { 'token:reader': ['decrypt'] } });
    const reader = await env.token('reader');
    const stranger = await env.token('stranger');
    await assert.rejects(reader.request(PROBE, { name: 'guarded' }), (e: unknown) => e instanceof ForbiddenError && e.detail?.op === 'admin');
    await assert.rejects(stranger.request(PROBE, { name: 'guarded' }), NotFoundError);
    await assert.rejects(stranger.request(PROBE, { name: 'no-such-key' }), NotFoundError);
    assert.equal(ran, 0, 'the handler ran for a refused request');
    assert.equal(await admin.request(PROBE, { name: 'guarded' }), 'ran');
    assert.equal(ran, 1);
  } finally {
    await env.stop();
  }
});
