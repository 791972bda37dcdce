/**
 * A write whose COMMIT returned is done, even when the store goes away
 * before anything else can be read from it (test/postgres-outage.test.ts
 * met this under load: a key created, then reported as failed with
 * STORE_UNAVAILABLE, and found in the store afterwards). The keystore here
 * is real SQLite; only the outage is injected, at the one moment the real
 * server cannot be stopped at on purpose: right after a commit.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { KeyManager } from '../../src/keys/manager.js';
import { CryptodError, StoreUnavailableError } from '../../src/protocol/errors.js';
import type { Keystore } from '../../src/store/keystore.js';
import { openEnv, type Env } from './env.js';

/** The real keystore, except that from the end of the next commit on every call fails as an unreachable server's would. */
class OutageAfterCommit {
  down = false;
  armed = false;
  readonly store: Keystore;

  constructor(inner: Keystore) {
    const unavailable = (): never => {
      throw new StoreUnavailableError('the keystore is unavailable (injected)', { detail: { op: 'read' } });
    };
    this.store = new Proxy(inner, {
      get: (target, prop, receiver) => {
        const value: unknown = Reflect.get(target, prop, receiver);
        if (typeof value !== 'function') return value;
        if (prop === 'transaction') {
          return async (fn: Parameters<Keystore['transaction']>[0]) => {
            if (this.down) unavailable();
            const out = await target.transaction(fn);
            if (this.armed) {
              this.armed = false;
              this.down = true;
            }
            return out;
          };
        }
        if (prop === 'read' || prop === 'generation' || prop === 'changesSince') {
          return async (...args: unknown[]) => {
            if (this.down) unavailable();
            return (value as (...a: unknown[]) => unknown).apply(target, args);
          };
        }
        return (value as (...a: unknown[]) => unknown).bind(target);
      },
    });
  }
}

describe('a committed write when the store goes away right after its COMMIT', () => {
  let env: Env;
  let outage: OutageAfterCommit;
  let m: KeyManager;

  beforeEach(async () => {
    env = await openEnv();
    outage = new OutageAfterCommit(env.store);
    m = await env.open({ store: outage.store });
  });
  afterEach(async () => {
    outage.down = false;
    await env.cleanup();
  });

  const inStore = async (name: string) => env.store.read(async (r) => ({ key: await r.getKey(name), versions: await r.getVersions(name) }));

  it('create answers with the key, which is in the store and serves at once', async () => {
    outage.armed = true;
    const d = await m.create('k', { type: 'hmac-sha256' });
    assert.equal(outage.down, true, 'the outage began right after the commit');
    assert.equal(d.name, 'k');
    assert.equal(d.currentVersion, 1);
    assert.notEqual((await inStore('k')).key, undefined);
    using lease = m.acquire();
    assert.equal(lease.outbound('k', 'mac').version.version, 1);
  });

  it('rotate answers with the new version and serves it; the store has it', async () => {
    await m.create('k', { type: 'aes256-gcm' });
    outage.armed = true;
    assert.equal(await m.rotate('k'), 2);
    assert.equal(outage.down, true);
    assert.deepEqual((await inStore('k')).versions.map((v) => v.version), [1, 2]);
    using lease = m.acquire();
    assert.equal(lease.outbound('k', 'encrypt').version.version, 2);
  });

  it('destroy and trim answer with what they destroyed, and nothing destroyed is served afterwards', async () => {
    await m.create('gone', { type: 'hmac-sha256' });
    await m.create('trimmed', { type: 'hmac-sha256' });
    await m.rotate('trimmed');
    outage.armed = true;
    assert.deepEqual(await m.destroy('gone'), [1]);
    assert.equal((await inStore('gone')).versions[0]?.state, 'destroyed');
    {
      using lease = m.acquire();
      assert.throws(() => lease.outbound('gone', 'mac'));
    }
    outage.down = false;
    outage.armed = true;
    assert.deepEqual(await m.trim('trimmed', 2), [1]);
    using lease = m.acquire();
    assert.throws(() => lease.inbound('trimmed', 1, 'verify-mac'), 'the trimmed version is not served');
    assert.equal(lease.outbound('trimmed', 'mac').version.version, 2);
  });

  it('a policy change that disables versions is answered, and the old policy is not served', async () => {
    await m.create('p', { type: 'hmac-sha256' });
    await m.rotate('p');
    outage.armed = true;
    await m.setPolicy('p', { minDecryptionVersion: 2 });
    using lease = m.acquire();
    assert.throws(() => lease.inbound('p', 1, 'verify-mac'), 'version 1 is below the new minimum');
  });

  it('once the store is back, the next refresh catches up with every write made during the outage', async () => {
    await m.create('k', { type: 'hmac-sha256' });
    outage.armed = true;
    await m.rotate('k');
    outage.down = false;
    const before = m.seenGeneration();
    await m.refresh();
    assert.ok(m.seenGeneration() > before, 'the generation moved past the writes');
    using lease = m.acquire();
    assert.equal(lease.outbound('k', 'mac').version.version, 2);
  });

  it('a restore whose key cannot be loaded (the KEK fails) says it was committed, and the next refresh loads it', async () => {
    await m.create('src', { type: 'hmac-sha256', allowBackup: true });
    const backup = await m.readForBackup('src');
    env.kek.failUnwraps = 1;
    const err = await m.restore({ ...backup, name: 'copy' }).then(() => null, (e: unknown) => e as CryptodError);
    assert.ok(err instanceof CryptodError, 'the restore reports the failed load');
    assert.equal(err.detail?.committed, true);
    assert.match(err.message, /restored \(committed\).*do not repeat/);
    assert.notEqual((await inStore('copy')).key, undefined, 'the key is in the store');
    await m.refresh();
    using lease = m.acquire();
    assert.equal(lease.outbound('copy', 'mac').version.version, 1);
  });
});
