/**
 * The pkcs11 KEK provider against a real SoftHSM2 token (test/helpers/softhsm.ts):
 * the key generated non-extractable in the token, wrap/unwrap with AES-GCM in
 * the token, found again after a restart, refused in a token that lacks it,
 * the PIN sources, a pool under concurrency that leaves the loop free, the
 * token taken away mid-run and given back, and faults a real token cannot be
 * made to produce on demand (a mock of one call only).
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DecryptError, ConfigError, KekUnavailableError } from '../../src/protocol/errors.js';
import { keyVersionAad } from '../../src/kek/provider.js';
import { Pkcs11KekProvider, TOKEN_BLOB_FORMAT, TOKEN_BLOB_OVERHEAD, type Pkcs11KekOptions } from '../../src/kek/pkcs11/provider.js';
import { readPin } from '../../src/kek/pkcs11/pin.js';
import { pkcs11Module } from '../../src/kek/pkcs11/token.js';
import { createSoftToken, softhsmMissing, SOFTHSM_MODULE, type SoftToken } from '../helpers/softhsm.js';

const missing = softhsmMissing();

/**
 * The one mock: a device error on C_Encrypt/C_Decrypt, which a software
 * token never reports. Installed on the native methods before the module's
 * PKCS11 object is made (pkcs11js binds them at construction); passes
 * through while `fault` is unset.
 */
let fault: string | undefined;
if (missing === undefined) {
  const native = Object.getPrototypeOf(pkcs11Module().PKCS11.prototype) as Record<string, (...a: unknown[]) => unknown>;
  for (const name of ['C_EncryptCallback', 'C_DecryptCallback']) {
    const real = native[name]!;
    native[name] = function (this: unknown, ...args: unknown[]) {
      if (fault === undefined) return real.apply(this, args);
      const cb = args[3] as (err: Error | null, n: number | null) => void;
      const err = new Error(fault);
      setImmediate(() => cb(err, null));
      return undefined;
    };
  }
}

function options(t: SoftToken, extra: Partial<Pkcs11KekOptions> = {}): Pkcs11KekOptions {
  return { provider: 'hsm', module: SOFTHSM_MODULE, token: t.label, pin: t.pin, sessions: 4, retryMs: 0, keyLabel: 'cryptod-kek:test', create: true, ...extra };
}

/** A second PKCS11 object of this process: what an operator's tool (or a crash in the module) does to ours. */
function finalizeModuleBehindProvidersBack(): void {
  const lib = new (pkcs11Module().PKCS11)();
  lib.load(SOFTHSM_MODULE);
  try {
    lib.C_Initialize();
  } catch {
    // already initialised by the provider: the finalize below ends its sessions
  }
  lib.C_Finalize();
}

describe('pkcs11 KEK provider on SoftHSM2', { skip: missing }, () => {
  let token: SoftToken;
  before(() => {
    token = createSoftToken();
    token.use();
  });
  after(() => token?.remove());

  test('the KEK is generated in the token: AES-256, token object, sensitive, not extractable', async () => {
    const kek = await Pkcs11KekProvider.open(options(token, { keyLabel: 'cryptod-kek:attrs' }));
    try {
      assert.equal(kek.created, true);
      assert.match(kek.id, /^pkcs11:[0-9a-f]{16}$/);
      const p = pkcs11Module();
      const lib = new p.PKCS11();
      lib.load(SOFTHSM_MODULE);
      try { lib.C_Initialize(); } catch { /* shared initialisation */ }
      const slot = lib.C_GetSlotList(true).find((s) => lib.C_GetTokenInfo(s).label.trim() === token.label)!;
      const s = lib.C_OpenSession(slot, p.CKF_SERIAL_SESSION);
      try { lib.C_Login(s, p.CKU_USER, token.pin); } catch { /* already logged in through the provider's sessions */ }
      lib.C_FindObjectsInit(s, [{ type: p.CKA_LABEL, value: 'cryptod-kek:attrs' }]);
      const [key] = lib.C_FindObjects(s, 2);
      lib.C_FindObjectsFinal(s);
      assert.ok(key, 'the key object is in the token');
      const attrs = lib.C_GetAttributeValue(s, key, [
        { type: p.CKA_TOKEN }, { type: p.CKA_SENSITIVE }, { type: p.CKA_EXTRACTABLE }, { type: p.CKA_VALUE_LEN }, { type: p.CKA_KEY_TYPE },
      ]);
      const [tok, sensitive, extractable, len, type] = attrs.map((a) => a.value as Buffer);
      assert.equal(tok![0], 1);
      assert.equal(sensitive![0], 1);
      assert.equal(extractable![0], 0);
      assert.equal(len!.readUInt32LE(0), 32);
      assert.equal(type!.readUInt32LE(0), p.CKK_AES);
      assert.throws(() => lib.C_GetAttributeValue(s, key, [{ type: p.CKA_VALUE }]), /CKR_ATTRIBUTE_SENSITIVE/);
      lib.C_CloseSession(s);
    } finally {
      await kek.close();
    }
  });

  test('wrap/unwrap in the token: format 0x02, fresh IV, AAD bound, alterations refused', async () => {
    const kek = await Pkcs11KekProvider.open(options(token, { keyLabel: 'cryptod-kek:wrap' }));
    try {
      const secret = Buffer.alloc(32, 0x5a);
      const aad = keyVersionAad('billing', 3);
      const a = await kek.wrap(secret, aad);
      const b = await kek.wrap(secret, aad);
      assert.equal(a.length, 32 + TOKEN_BLOB_OVERHEAD);
      assert.equal(a[0], TOKEN_BLOB_FORMAT);
      assert.notDeepEqual(a.subarray(1, 13), b.subarray(1, 13), 'a fresh IV per wrap');
      assert.equal(a.includes(secret), false);
      assert.deepEqual(await kek.unwrap(a, aad), secret);
      assert.deepEqual(await kek.unwrap(b, aad), secret);
      await assert.rejects(kek.unwrap(a, keyVersionAad('billing', 4)), DecryptError);
      const altered = Buffer.from(a);
      altered[20]! ^= 1;
      await assert.rejects(kek.unwrap(altered, aad), DecryptError);
      const local = Buffer.from(a);
      local[0] = 0x01;
      await assert.rejects(kek.unwrap(local, aad), DecryptError);
      await assert.rejects(kek.unwrap(a.subarray(0, 10), aad), DecryptError);
      // the provider still works after the refusals
      assert.deepEqual(await kek.unwrap(a, aad), secret);
    } finally {
      await kek.close();
    }
  });

  test('found again after a restart by label and CKA_ID; a token without it is refused', async () => {
    const first = await Pkcs11KekProvider.open(options(token, { keyLabel: 'cryptod-kek:restart' }));
    const aad = keyVersionAad('orders', 1);
    const blob = await first.wrap(Buffer.alloc(32, 7), aad);
    const { id, keyId } = first;
    await first.close();
    const again = await Pkcs11KekProvider.open(options(token, { keyLabel: 'cryptod-kek:restart', keyId, create: false }));
    try {
      assert.equal(again.created, false);
      assert.equal(again.id, id);
      assert.deepEqual(await again.unwrap(blob, aad), Buffer.alloc(32, 7));
    } finally {
      await again.close();
    }
    const other = createSoftToken({ label: token.label });
    try {
      // SoftHSM2 reads its configuration at C_Initialize: finalize so the other token is what the module sees.
      other.use();
      finalizeModuleBehindProvidersBack();
      await assert.rejects(
        Pkcs11KekProvider.open(options(other, { keyLabel: 'cryptod-kek:restart', keyId, create: false })),
        (err: unknown) => err instanceof KekUnavailableError && err.detail?.reason === 'key-missing' && /holds no key/.test(err.message),
      );
    } finally {
      token.use();
      finalizeModuleBehindProvidersBack();
      other.remove();
    }
  });

  test('a wrong PIN is KEK_UNAVAILABLE (login) and the PIN is not in the error', async () => {
    const wrong = 'not-the-pin-4711';
    await assert.rejects(Pkcs11KekProvider.open(options(token, { pin: wrong })), (err: unknown) => {
      assert.ok(err instanceof KekUnavailableError);
      assert.equal(err.detail?.reason, 'login');
      assert.equal(JSON.stringify(err.toJSON()).includes(wrong), false);
      assert.equal(err.message.includes(token.pin), false);
      return true;
    });
  });

  test('an unknown token label and a missing module are typed errors', async () => {
    await assert.rejects(Pkcs11KekProvider.open(options(token, { token: 'no-such-token' })), (err: unknown) => err instanceof KekUnavailableError && err.detail?.reason === 'not-present');
    await assert.rejects(Pkcs11KekProvider.open(options(token, { module: '/nonexistent/libpkcs11.so' })), KekUnavailableError);
  });

  test('200 concurrent wraps and unwraps through a pool of 4 sessions, with the loop free meanwhile', async () => {
    const kek = await Pkcs11KekProvider.open(options(token, { keyLabel: 'cryptod-kek:pool' }));
    try {
      const n = 200;
      let done = 0;
      const jobs = Array.from({ length: n }, async (_, i) => {
        const secret = Buffer.alloc(32, i);
        const aad = keyVersionAad(`k${i}`, 1);
        const blob = await kek.wrap(secret, aad);
        const back = await kek.unwrap(blob, aad);
        done++;
        return back.equals(secret);
      });
      // Token calls run on the thread pool: a macrotask gets its turn before they all finish.
      const doneAtImmediate = await new Promise<number>((resolve) => setImmediate(() => resolve(done)));
      assert.ok(doneAtImmediate < n, `the loop ran only after all ${n} token calls: they blocked it`);
      assert.deepEqual(await Promise.all(jobs), Array(n).fill(true));
    } finally {
      await kek.close();
    }
  });

  test('the token taken away mid-run: typed errors during the gap, recovery when it is back', async () => {
    const kek = await Pkcs11KekProvider.open(options(token, { keyLabel: 'cryptod-kek:gone' }));
    try {
      const aad = keyVersionAad('tenants', 2);
      const blob = await kek.wrap(Buffer.alloc(32, 9), aad);
      // The module is finalized under the provider and the token directory is gone:
      // the provider's reconnect (C_Initialize re-reads the token directory) finds no token.
      token.hide();
      finalizeModuleBehindProvidersBack();
      for (let i = 0; i < 3; i++) {
        await assert.rejects(kek.unwrap(blob, aad), (err: unknown) => err instanceof KekUnavailableError && ['not-present', 'device'].includes(String(err.detail?.reason)));
        await assert.rejects(kek.wrap(Buffer.alloc(32), aad), KekUnavailableError);
      }
      token.restore();
      assert.deepEqual(await kek.unwrap(blob, aad), Buffer.alloc(32, 9));
      const fresh = await kek.wrap(Buffer.alloc(32, 1), aad);
      assert.deepEqual(await kek.unwrap(fresh, aad), Buffer.alloc(32, 1));
      // Finalized alone (the token stays): the provider reconnects within the same request.
      finalizeModuleBehindProvidersBack();
      assert.deepEqual(await kek.unwrap(blob, aad), Buffer.alloc(32, 9));
    } finally {
      await kek.close();
    }
  });

  test('a token that fails with a device error (mocked: SoftHSM2 cannot be made to) is typed and recovers', async () => {
    const kek = await Pkcs11KekProvider.open(options(token, { keyLabel: 'cryptod-kek:fault' }));
    try {
      const aad = keyVersionAad('faulty', 1);
      const blob = await kek.wrap(Buffer.alloc(32, 3), aad);
      fault = 'CKR_DEVICE_ERROR:48';
      await assert.rejects(kek.unwrap(blob, aad), (err: unknown) => err instanceof KekUnavailableError && err.detail?.ckr === 'CKR_DEVICE_ERROR');
      fault = 'CKR_MECHANISM_PARAM_INVALID:113';
      await assert.rejects(kek.wrap(Buffer.alloc(32), aad), (err: unknown) => err instanceof KekUnavailableError && err.detail?.reason === 'device');
      fault = undefined;
      assert.deepEqual(await kek.unwrap(blob, aad), Buffer.alloc(32, 3));
    } finally {
      fault = undefined;
      await kek.close();
    }
    await assert.rejects(kek.wrap(Buffer.alloc(1), Buffer.alloc(0)), (err: unknown) => err instanceof KekUnavailableError && err.detail?.reason === 'closed');
  });
});

describe('PIN sources', () => {
  test('env:NAME reads the variable; unset or empty is a ConfigError naming it, not the value', () => {
    assert.equal(readPin('providers.hsm.pin', 'env:CRYPTOD_TEST_PIN', { CRYPTOD_TEST_PIN: '123456' }), '123456');
    assert.throws(() => readPin('providers.hsm.pin', 'env:CRYPTOD_TEST_PIN', {}), (err: unknown) => err instanceof ConfigError && /CRYPTOD_TEST_PIN/.test(err.message));
  });
  test('a literal PIN in the configuration is refused without quoting it', () => {
    assert.throws(() => readPin('providers.hsm.pin', '987654'), (err: unknown) => err instanceof ConfigError && !err.message.includes('987654'));
  });
  test('file:PATH reads a mode-600 file (one trailing newline dropped); a readable-by-others file is refused', (t) => {
    const dir = createSoftTokenless();
    t.after(dir.remove);
    const f = join(dir.path, 'pin');
    writeFileSync(f, 'secret-pin\n', { mode: 0o600 });
    assert.equal(readPin('providers.hsm.pin', `file:${f}`), 'secret-pin');
    chmodSync(f, 0o644);
    assert.throws(() => readPin('providers.hsm.pin', `file:${f}`), (err: unknown) => err instanceof ConfigError && !err.message.includes('secret-pin'));
  });
});

function createSoftTokenless(): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), 'cryptod-pin-'));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}
