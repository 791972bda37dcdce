/**
 * The key manager on a real SQLite keystore and local KEK, with a ManualClock:
 * material at rest, every key type, scheduled and manual rotation, failure
 * and backoff, policy changes, several processes on one keystore.
 */
import assert from 'node:assert/strict';
import { createHash, diffieHellman, generateKeyPairSync, randomBytes, sign, verify } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, test } from 'node:test';
import { ManualClock } from '../../src/keys/clock.js';
import { KEY_TYPES } from '../../src/keys/model.js';
import { KeyVersionError } from '../../src/protocol/errors.js';
import { makeTempDir } from '../store/tmpdir.js';
import { advanceTo, DAY, HOUR, isZero, MIN, openEnv, SEC, T0, type Env } from './env.js';

let envs: Env[] = [];
afterEach(async () => {
  for (const e of envs.reverse()) await e.cleanup();
  envs = [];
});
async function env(options: Parameters<typeof openEnv>[0] = {}): Promise<Env> {
  const e = await openEnv(options);
  envs.push(e);
  return e;
}

function versionsOf(m: { describe(n: string): { versions: Array<{ version: number; state: string; notBefore: string; notAfter: string | null }> } }, name: string) {
  return m.describe(name).versions.map((v) => [v.version, v.state, v.notBefore, v.notAfter]);
}
const at = (t: number) => new Date(t).toISOString();

describe('material', () => {
  test('every type generates usable material, and only wrapped bytes reach the keystore files', async () => {
    const e = await env();
    const m = await e.open();
    const secrets: Buffer[] = [];
    for (const type of KEY_TYPES) {
      await m.create(`k-${type}`, { type });
      using lease = m.acquire();
      const key = lease.key(`k-${type}`);
      const mat = key.versions[0]!.material!;
      if (mat.kind === 'secret') {
        secrets.push(Buffer.from(mat.secret));
      } else if (type === 'x25519') {
        // A transfer key agrees (RFC 7748 §6.1): both sides of an exchange get the same secret.
        const other = generateKeyPairSync('x25519');
        assert.deepEqual(diffieHellman({ privateKey: mat.privateKey, publicKey: other.publicKey }), diffieHellman({ privateKey: other.privateKey, publicKey: mat.publicKey }));
        const der = mat.privateKey.export({ format: 'der', type: 'pkcs8' });
        secrets.push(der.subarray(der.length - 32));
      } else {
        const data = Buffer.from('hello');
        const digest = type === 'ed25519' ? null : 'sha256';
        const sig = sign(digest, data, mat.privateKey);
        assert.ok(verify(digest, data, mat.publicKey, sig), type);
        // The private scalar / key in raw form must not be stored either.
        secrets.push(createHash('sha256').update(mat.privateKey.export({ format: 'der', type: 'pkcs8' })).digest());
        const der = mat.privateKey.export({ format: 'der', type: 'pkcs8' });
        secrets.push(der.subarray(der.length - 32));
      }
    }
    await m.close();
    await e.store.close();
    const files = fs.readdirSync(e.dir.path).filter((f) => f !== 'root.key');
    assert.ok(files.some((f) => f.endsWith('.sqlite')));
    for (const f of files) {
      const bytes = fs.readFileSync(path.join(e.dir.path, f));
      for (const s of secrets) assert.equal(bytes.indexOf(s), -1, `key bytes found in ${f}`);
    }
    envs = envs.filter((x) => x !== e);
    await e.kek.close();
    await e.dir.cleanup();
  });

  test('a wrapped blob is bound to its key and version: moved to another version it does not load', async () => {
    const e = await env();
    const m = await e.open();
    await m.create('a', { type: 'aes256-gcm' });
    await m.rotate('a');
    const v1 = await e.store.read((r) => r.getVersion('a', 1));
    const v2 = (await e.store.read((r) => r.getVersion('a', 2)))!;
    await e.store.transaction((tx) => tx.putVersion({ ...v2, wrapped: v1!.wrapped }));
    // The running manager reuses the material it holds (a version's material never changes)…
    await m.reload(['a']);
    {
      using lease = m.acquire();
      assert.equal(lease.outbound('a', 'encrypt').version.version, 2);
    }
    // …but a process loading the keystore marks the moved blob's version damaged and serves the rest.
    const fresh = await e.open();
    using lease = fresh.acquire();
    assert.throws(() => lease.outbound('a', 'encrypt'), { code: 'CRYPTOD_ERR_KEY_DAMAGED', message: /version 2 of key 'a' is damaged/ });
    assert.equal(lease.inbound('a', 1, 'decrypt').version.version, 1);
    assert.deepEqual(fresh.damaged().map((d) => [d.key, d.version]), [['a', 2]]);
  });

  test('import: exact secret length, PKCS#8 of the right curve', async () => {
    const e = await env();
    const m = await e.open();
    const raw = randomBytes(32);
    await m.create('imp', { type: 'chacha20-poly1305' }, { material: raw });
    {
      using lease = m.acquire();
      assert.deepEqual(lease.outbound('imp', 'encrypt').material.secret, raw);
    }
    await assert.rejects(m.create('short', { type: 'hmac-sha512' }, { material: randomBytes(32) }), {
      code: 'CRYPTOD_ERR_DATA', message: 'expected 64 bytes of key material for a hmac-sha512 key, got 32',
    });
    const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey.export({ format: 'der', type: 'pkcs8' });
    await assert.rejects(m.create('curve', { type: 'ecdsa-p256' }, { material: p384 }), {
      code: 'CRYPTOD_ERR_DATA', message: 'expected the imported key to be a ecdsa-p256 private key, got ec secp384r1',
    });
    await assert.rejects(m.create('junk', { type: 'ed25519' }, { material: randomBytes(40) }), /does not parse/);
    await m.create('p384', { type: 'ecdsa-p384' }, { material: p384 });
    await assert.rejects(m.create('p384', { type: 'ecdsa-p384' }), /already exists/);
  });
});

describe('scheduled rotation', () => {
  test('version n+1 is created a prefetch period before n ends, with notBefore(n+1) = notAfter(n)', async () => {
    const e = await env();
    const m = await e.open();
    await m.create('s', { type: 'hmac-sha256', rotationPeriod: '1h', prefetchPeriod: '5m', gracePeriod: '10m' });
    await advanceTo(e, m, T0 + 55 * MIN - 1);
    assert.deepEqual(versionsOf(m, 's'), [[1, 'active', at(T0), at(T0 + HOUR)]]);
    await advanceTo(e, m, T0 + 55 * MIN);
    assert.deepEqual(versionsOf(m, 's'), [
      [1, 'active', at(T0), at(T0 + HOUR)],
      [2, 'active', at(T0 + HOUR), at(T0 + 2 * HOUR)],
    ]);
    const current = () => {
      using lease = m.acquire();
      return lease.outbound('s', 'mac').version.version;
    };
    await advanceTo(e, m, T0 + HOUR - 1);
    assert.equal(current(), 1);
    await advanceTo(e, m, T0 + HOUR);
    assert.equal(current(), 2);
    await advanceTo(e, m, T0 + 2 * HOUR - 5 * MIN);
    assert.equal(m.describe('s').versions.length, 3);
    assert.equal(m.describe('s').versions[2]!.notBefore, at(T0 + 2 * HOUR));
  });

  test('two processes on one keystore: one successor, and both switch at the same instant', async () => {
    const clock = new ManualClock(T0);
    const dir = makeTempDir('cryptod-keys-');
    const a = await env({ clock, dir });
    const b = await env({ clock, dir });
    envs.push({ ...a, managers: [], cleanup: async () => dir.cleanup() } as Env); // remove the dir after both closed
    const ma = await a.open();
    await ma.create('shared', { type: 'aes256-gcm', rotationPeriod: '1h', prefetchPeriod: '10m' });
    const mb = await b.open();
    await advanceTo(a, [ma, mb], T0 + 50 * MIN);
    const stored = await a.store.read((r) => r.getVersions('shared'));
    assert.deepEqual(stored.map((v) => v.version), [1, 2], 'exactly one successor');
    for (const t of [T0 + HOUR - 1, T0 + HOUR]) {
      await advanceTo(a, [ma, mb], t);
      using la = ma.acquire();
      using lb = mb.acquire();
      const va = la.outbound('shared', 'encrypt');
      const vb = lb.outbound('shared', 'encrypt');
      assert.equal(va.version.version, vb.version.version);
      assert.deepEqual(va.material.secret, vb.material.secret);
      assert.equal(va.version.version, t < T0 + HOUR ? 1 : 2);
    }
  });

  test('a failed rotation keeps the current version and retries with bounded exponential backoff', async () => {
    const e = await env();
    const m = await e.open({ retry: { initialMs: SEC, maxMs: 4 * SEC } });
    await m.create('r', { type: 'hmac-sha256', rotationPeriod: '1h', prefetchPeriod: '5m' });
    e.kek.wrapAttempts = [];
    e.kek.failWraps = 5;
    const due = T0 + 55 * MIN;
    for (let t = due; t <= due + 20 * SEC; t += 500) await advanceTo(e, m, t);
    assert.deepEqual(e.kek.wrapAttempts.map((x) => (x - due) / SEC), [0, 1, 3, 7, 11, 15], 'delays 1, 2, 4, then capped at 4 s');
    assert.deepEqual(versionsOf(m, 'r').map((v) => v[0]), [1, 2], 'the sixth attempt succeeded');
    e.kek.failWraps = 1_000;
    await advanceTo(e, m, T0 + 2 * HOUR - 5 * MIN);
    await advanceTo(e, m, T0 + 2 * HOUR - 1);
    {
      using lease = m.acquire();
      assert.equal(lease.outbound('r', 'mac').version.version, 2, 'still current while failing');
    }
    await advanceTo(e, m, T0 + 2 * HOUR);
    using lease = m.acquire();
    assert.throws(() => lease.outbound('r', 'mac'), (err: unknown) => err instanceof KeyVersionError && /rotation is overdue/.test(err.message));
    assert.equal(lease.inbound('r', 2, 'verify-mac').version.version, 2, 'no grace: data at rest stays readable');
  });

  test('after downtime the successor lands on the same grid, covering now', async () => {
    const e = await env();
    const m1 = await e.open();
    await m1.create('g', { type: 'aes256-gcm', rotationPeriod: '1h' });
    await m1.close();
    e.clock.set(T0 + 5 * HOUR + 30 * MIN);
    const m2 = await e.open();
    await m2.settle();
    assert.deepEqual(versionsOf(m2, 'g'), [
      [1, 'active', at(T0), at(T0 + HOUR)],
      [2, 'active', at(T0 + 5 * HOUR), at(T0 + 6 * HOUR)],
    ]);
  });
});

describe('manual rotation and policy changes', () => {
  test('rotate: new version current now, the old window cut at now, a prefetched one demoted', async () => {
    const e = await env();
    const m = await e.open();
    await m.create('o', { type: 'aes256-gcm', rotationPeriod: '1h', prefetchPeriod: '10m' });
    await advanceTo(e, m, T0 + 55 * MIN); // v2 prefetched for T0+1h
    assert.equal(await m.rotate('o'), 3);
    assert.deepEqual(versionsOf(m, 'o'), [
      [1, 'active', at(T0), at(T0 + 55 * MIN)],
      [2, 'decrypt-only', at(T0 + HOUR), at(T0 + 2 * HOUR)],
      [3, 'active', at(T0 + 55 * MIN), at(T0 + 55 * MIN + HOUR)],
    ]);
    using lease = m.acquire();
    assert.equal(lease.outbound('o', 'encrypt').version.version, 3);
    assert.equal(lease.inbound('o', 1, 'decrypt').version.version, 1);
  });

  test('setPolicy: a rotation period closes an open window; minDecryptionVersion retires and zeroes old material after readers', async () => {
    const e = await env();
    const m = await e.open();
    await m.create('p', { type: 'aes256-gcm' });
    await m.rotate('p');
    await m.rotate('p');
    assert.equal(m.describe('p').versions[2]!.notAfter, null);
    await m.setPolicy('p', { rotationPeriod: '1d' });
    assert.equal(m.describe('p').versions[2]!.notAfter, at(T0 + DAY));

    const reader = m.acquire();
    const old = reader.inbound('p', 1, 'decrypt').material.secret;
    await assert.rejects(m.setPolicy('p', { minDecryptionVersion: 4 }), {
      code: 'CRYPTOD_ERR_INVALID_ARGUMENT',
      message: "key 'p': minDecryptionVersion: minDecryptionVersion 4 is above the current version 3 of key 'p': data encrypted now could not be decrypted",
    });
    await m.setPolicy('p', { minDecryptionVersion: 2 });
    assert.ok(!isZero(old), 'a reader still holds the old snapshot');
    assert.equal(reader.inbound('p', 1, 'decrypt').version.version, 1);
    {
      using now = m.acquire();
      assert.throws(() => now.inbound('p', 1, 'decrypt'), /below the minimum decryption version 2/);
    }
    reader[Symbol.dispose]();
    assert.ok(isZero(old), 'zeroed once the reader is done');

    await assert.rejects(m.setPolicy('p', { exportable: true }), { code: 'CRYPTOD_ERR_FORBIDDEN' }, 'only when the caller says a daemon administrator asked');
    await m.setPolicy('p', { exportable: true }, { mayMakeExportable: true });
    await assert.rejects(m.setPolicy('p', { exportable: false }), /exportable cannot go back to false/);
    await assert.rejects(m.setPolicy('p', { rotationPeriod: '5m', gracePeriod: '5m' }), /PREFETCH \+ GRACE \+ TIME_THRESHOLD/);
    await assert.rejects(m.setPolicy('p', { rotation: '5m' } as never), /unknown policy field 'rotation'/);
    await assert.rejects(m.setPolicy('nope', {}), { code: 'CRYPTOD_ERR_NOT_FOUND' });
  });

  test('grace: material of an old version is dropped at notAfter + grace and zeroed after its readers', async () => {
    const e = await env();
    const m = await e.open();
    await m.create('mac', { type: 'hmac-sha256', rotationPeriod: '1h', prefetchPeriod: '5m', gracePeriod: '10m' });
    await advanceTo(e, m, T0 + HOUR + 10 * MIN - 1);
    const reader = m.acquire();
    const v1 = reader.inbound('mac', 1, 'verify-mac').material.secret;
    await advanceTo(e, m, T0 + HOUR + 10 * MIN);
    assert.equal(m.entry('mac')!.versions[0]!.material, null, 'dropped from the new snapshot');
    assert.ok(!isZero(v1));
    reader[Symbol.dispose]();
    assert.ok(isZero(v1));
  });

  test('another process rotated: refresh() picks exactly that key up', async () => {
    const clock = new ManualClock(T0);
    const dir = makeTempDir('cryptod-keys-');
    const a = await env({ clock, dir });
    const b = await env({ clock, dir });
    envs.push({ ...a, managers: [], cleanup: async () => dir.cleanup() } as Env);
    const ma = await a.open();
    await ma.create('x', { type: 'hmac-sha512' });
    await ma.create('y', { type: 'hmac-sha512' });
    const mb = await b.open();
    await ma.rotate('x');
    assert.deepEqual(await mb.refresh(), ['x']);
    using lease = mb.acquire();
    assert.equal(lease.outbound('x', 'mac').version.version, 2);
  });
});
