/**
 * Managed keys held in a real SoftHSM2 token (`provider:` on an aes256-kwp
 * key, src/kek/token-keys.ts): the issue's YAML loads and serves data keys;
 * a data key survives a daemon restart; rotation makes a new token object
 * and trim destroys the old one; the keystore holds no key bytes; a token
 * that lacks the object, or is away, gives CRYPTOD_ERR_KEK_UNAVAILABLE while
 * cached data keys keep serving; 1,000 concurrent cold requests cost one
 * C_Decrypt in the token.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseConfigText } from '../../src/config/load.js';
import { openManagedKeys, type OpenedManagedKeys } from '../../src/daemon/managed-keys.js';
import { pkcs11Module } from '../../src/kek/pkcs11/token.js';
import { tokenRefOf } from '../../src/keys/material.js';
import { parseWrappedKey } from '../../src/protocol/datakey-format.js';
import { InvalidArgumentError, KekUnavailableError, KeyVersionError, UnsupportedError } from '../../src/protocol/errors.js';
import { runCli } from '../helpers/cli-daemon.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { createSoftToken, softhsmMissing, SOFTHSM_MODULE, type SoftToken } from '../helpers/softhsm.js';

const missing = softhsmMissing();
const te = new TextEncoder();
const td = new TextDecoder();

function issueYaml(token: SoftToken): string {
  return `providers:
  hsm: { type: pkcs11, module: ${SOFTHSM_MODULE}, token: ${token.label}, pin: env:TOKEN_KEYS_PIN, retryMs: 0 }
root: hsm                                    # wraps managed-key material at rest
keys:
  tenants: { type: aes256-kwp, provider: hsm, rotationPeriod: 90d }   # a KEK that never leaves the token
  orders:  { type: aes256-kwp, rotationPeriod: 30d }                  # a KEK held by cryptod, wrapped by root
`;
}

function finalizeModuleBehindProvidersBack(): void {
  const lib = new (pkcs11Module().PKCS11)();
  lib.load(SOFTHSM_MODULE);
  try {
    lib.C_Initialize();
  } catch {
    // initialised by the provider already
  }
  lib.C_Finalize();
}

describe('managed keys held in a PKCS#11 token', { skip: missing }, () => {
  let token: SoftToken;
  let dataDir: string;
  let keys: OpenedManagedKeys;
  let d: TestDaemon;

  async function open(): Promise<void> {
    const cfg = parseConfigText(issueYaml(token), join(dataDir, 'cryptod.yaml')).config;
    keys = await openManagedKeys({ dataDir, refreshIntervalMs: 0, root: cfg.root!, providers: cfg.providers, env: { TOKEN_KEYS_PIN: token.pin } });
    await keys.manager.applyConfig(cfg.keys);
    d = await startTestDaemon({ keys });
  }
  async function restart(): Promise<void> {
    await d.stop();
    await keys.close();
    await open();
  }
  const decrypts = (): number => keys.tokens.calls('hsm')!.decrypts;
  async function refOf(name: string, version: number): Promise<Parameters<typeof keys.tokens.destroy>[0]> {
    const blob = await keys.store.read(async (r) => (await r.getVersions(name)).find((v) => v.version === version)?.wrapped);
    assert.ok(blob instanceof Uint8Array);
    return tokenRefOf(keys.kek, name, version, blob);
  }

  before(async () => {
    token = createSoftToken();
    token.use();
    dataDir = mkdtempSync(join(tmpdir(), 'cryptod-token-keys-'));
    await open();
  });
  after(async () => {
    await d?.stop();
    await keys?.close();
    token?.remove();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test("the issue's YAML loads; data keys under the token KEK, across a restart; the keystore holds only a reference", async () => {
    const c = await d.connect('token-keys-a');
    const desc = await c.keys.describe('tenants');
    assert.equal(desc.provider, 'hsm');
    assert.equal((await c.keys.describe('orders')).provider, undefined);

    const g = await c.dataKeys.generate({ kek: 'tenants', aad: te.encode('tenant 7'), plaintext: true });
    const header = parseWrappedKey(g.wrappedKey).header;
    assert.equal(header.kek, 'tenants');
    assert.equal(header.kekVersion, 1);
    const ct = await c.dataKeys.encrypt(g.wrappedKey, te.encode('row 1'));
    assert.equal(td.decode(await c.dataKeys.decrypt(g.wrappedKey, ct)), 'row 1');

    // MANAGED_ENCRYPT cannot run in the token: refused, typed, the connection intact.
    await assert.rejects(c.encrypt('tenants', te.encode('caller data')), (err: unknown) => err instanceof UnsupportedError && /held in the token of provider 'hsm'/.test(err.message));
    // Never exportable; where a key is held cannot change through the configuration.
    await assert.rejects(c.keys.setPolicy('tenants', { exportable: true }), (err: unknown) => err instanceof InvalidArgumentError && /never leaves it; it cannot be made exportable/.test(err.message));
    const cfg = parseConfigText(issueYaml(token), join(dataDir, 'cryptod.yaml')).config;
    await assert.rejects(keys.manager.applyConfig({ ...cfg.keys, tenants: { type: 'aes256-kwp', rotationPeriod: '90d' } }), /tenants.*provider.*cannot change/s);
    // Imported material cannot be token-held.
    await assert.rejects(c.keys.import('imported', { type: 'aes256-kwp', provider: 'hsm', material: new Uint8Array(32) } as never), InvalidArgumentError);

    // What is stored for a version: a wrapped reference, never the key (the data key's plaintext is nowhere in it).
    const stored = await keys.store.read(async (r) => (await r.getVersions('tenants'))[0]!.wrapped!);
    assert.equal(Buffer.from(stored).includes(Buffer.from(g.plaintext!)), false);
    const ref = await refOf('tenants', 1);
    assert.equal(ref.provider, 'hsm');
    assert.equal(ref.ckaId.length, 16);

    await restart();
    const c2 = await d.connect('token-keys-a2');
    const before = decrypts();
    assert.equal(td.decode(await c2.dataKeys.decrypt(g.wrappedKey, ct)), 'row 1');
    assert.equal(decrypts() - before, 1, 'the data key was unwrapped by the token after the restart');
  });

  test('1,000 concurrent cold requests on one wrapped key: one C_Decrypt in the token, 1,000 correct results', async () => {
    const c = await d.connect('token-keys-b');
    const g = await c.dataKeys.generate({ kek: 'tenants' });
    await restart();
    const clients = await Promise.all([0, 1, 2, 3].map((i) => d.connect(`token-keys-b${i}`)));
    const before = decrypts();
    const cts = await Promise.all(Array.from({ length: 1000 }, (_, i) => clients[i % 4]!.dataKeys.encrypt(g.wrappedKey, te.encode(`m${i}`))));
    assert.equal(decrypts() - before, 1);
    const back = await Promise.all(cts.map((ct, i) => clients[i % 4]!.dataKeys.decrypt(g.wrappedKey, ct)));
    back.forEach((b, i) => assert.equal(td.decode(b), `m${i}`));
  });

  test('rotation makes a new token object; old data keys unwrap until trimmed; trim destroys the object', async () => {
    const c = await d.connect('token-keys-c');
    await c.keys.create('rotating', { type: 'aes256-kwp', provider: 'hsm' } as never);
    const v1 = await c.dataKeys.generate({ kek: 'rotating' });
    const ct1 = await c.dataKeys.encrypt(v1.wrappedKey, te.encode('under v1'));
    assert.equal(await c.keys.rotate('rotating'), 2);
    const v2 = await c.dataKeys.generate({ kek: 'rotating' });
    assert.equal(parseWrappedKey(v2.wrappedKey).header.kekVersion, 2);
    const r1 = await refOf('rotating', 1);
    const r2 = await refOf('rotating', 2);
    assert.notDeepEqual(r1.ckaId, r2.ckaId);
    const opened = await c.dataKeys.open(v1.wrappedKey);
    assert.equal(opened.rewrapped, true);
    assert.equal(td.decode(await c.dataKeys.decrypt(opened.wrappedKey, ct1)), 'under v1');

    assert.deepEqual(await c.keys.trim('rotating', 2), [1]);
    await assert.rejects(c.dataKeys.decrypt(v1.wrappedKey, ct1), KeyVersionError);
    // The object is gone from the token: destroying it again finds nothing.
    assert.equal(await keys.tokens.destroy(r1, 'rotating', 1), false);
    assert.equal(td.decode(await c.dataKeys.decrypt(opened.wrappedKey, ct1)), 'under v1');
    // destroy: every version's object goes.
    await c.keys.destroy('rotating');
    assert.equal(await keys.tokens.destroy(r2, 'rotating', 2), false);
  });

  test('the token lacking the object: KEK_UNAVAILABLE (key-missing); a cached data key keeps serving', async () => {
    const c = await d.connect('token-keys-d');
    await c.keys.create('vanishing', { type: 'aes256-kwp', provider: 'hsm' } as never);
    const cached = await c.dataKeys.generate({ kek: 'vanishing' });
    const cold = await c.dataKeys.generate({ kek: 'vanishing' });
    // generate caches what it made: a restart makes both cold, one use makes `cached` hot again.
    await restart();
    const c2 = await d.connect('token-keys-d2');
    const ct = await c2.dataKeys.encrypt(cached.wrappedKey, te.encode('cached'));
    assert.equal(await keys.tokens.destroy(await refOf('vanishing', 1), 'vanishing', 1), true);

    const missingKey = (err: unknown): boolean => err instanceof KekUnavailableError && err.detail?.reason === 'key-missing' && !err.message.includes(token.pin);
    await assert.rejects(c2.dataKeys.generate({ kek: 'vanishing' }), missingKey);
    await assert.rejects(c2.dataKeys.encrypt(cold.wrappedKey, te.encode('x')), missingKey);
    assert.equal(td.decode(await c2.dataKeys.decrypt(cached.wrappedKey, ct)), 'cached');
    // Other token keys are untouched.
    const t = await c2.dataKeys.generate({ kek: 'tenants' });
    assert.equal(td.decode(await c2.dataKeys.decrypt(t.wrappedKey, await c2.dataKeys.encrypt(t.wrappedKey, te.encode('ok')))), 'ok');
  });

  test('a token that goes away: KEK_UNAVAILABLE for token keys, cached data keys serve, recovery when it returns', async () => {
    const c = await d.connect('token-keys-e');
    const hot = await c.dataKeys.generate({ kek: 'tenants' });
    const ct = await c.dataKeys.encrypt(hot.wrappedKey, te.encode('hot'));
    const cold = await c.dataKeys.generate({ kek: 'tenants' });
    const coldCt = await c.dataKeys.encrypt(cold.wrappedKey, te.encode('cold'));
    await restart();
    const c2 = await d.connect('token-keys-e2');
    assert.equal(td.decode(await c2.dataKeys.decrypt(hot.wrappedKey, ct)), 'hot');

    token.hide();
    finalizeModuleBehindProvidersBack();
    try {
      const away = (err: unknown): boolean => err instanceof KekUnavailableError && ['not-present', 'device'].includes(String(err.detail?.reason));
      await assert.rejects(c2.dataKeys.generate({ kek: 'tenants' }), away);
      await assert.rejects(c2.dataKeys.decrypt(cold.wrappedKey, coldCt), away);
      await assert.rejects(c2.keys.rotate('tenants'), away);
      assert.equal(td.decode(await c2.dataKeys.decrypt(hot.wrappedKey, ct)), 'hot', 'a cached data key needs no token');
      // Keys held by cryptod go on (their material was unwrapped at start).
      const o = await c2.dataKeys.generate({ kek: 'orders' });
      assert.equal(parseWrappedKey(o.wrappedKey).header.kek, 'orders');
    } finally {
      token.restore();
    }
    assert.equal(td.decode(await c2.dataKeys.decrypt(cold.wrappedKey, coldCt)), 'cold');
    assert.equal(await c2.keys.rotate('tenants'), 2);
    const g = await c2.dataKeys.generate({ kek: 'tenants' });
    assert.equal(parseWrappedKey(g.wrappedKey).header.kekVersion, 2);
  });

  test('cryptod key create --provider, describe, datakey generate and encrypt/decrypt --wrapped-key through the CLI', async () => {
    const env = { CRYPTOD_SOCKET: d.socketPath };
    const created = await runCli(['key', 'create', 'cli-held', '--type', 'aes256-kwp', '--provider', 'hsm'], env);
    assert.equal(created.code, 0, created.stderr.toString());
    const described = await runCli(['key', 'describe', 'cli-held'], env);
    assert.match(described.stdout.toString(), /held in: +the token of provider hsm/);
    const wrappedFile = join(dataDir, 'cli-held.key');
    const gen = await runCli(['datakey', 'generate', '--kek', 'cli-held', '--out', wrappedFile], env);
    assert.equal(gen.code, 0, gen.stderr.toString());
    const enc = await runCli(['encrypt', '--wrapped-key', wrappedFile], env, te.encode('through the cli'));
    assert.equal(enc.code, 0, enc.stderr.toString());
    const dec = await runCli(['decrypt', '--wrapped-key', wrappedFile], env, enc.stdout);
    assert.equal(dec.stdout.toString(), 'through the cli');
    const bad = await runCli(['key', 'create', 'cli-hmac', '--type', 'hmac-sha256', '--provider', 'hsm'], env);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr.toString(), /cannot be held in a token; only aes256-kwp/);
  });
});
