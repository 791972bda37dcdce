/**
 * `providers:` and `root:` in the configuration file, and `--root-provider`:
 * the issue's example loads, every mistake is reported with its field, and
 * a PIN written into the file is refused without being repeated.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigFileError, parseConfigText } from '../src/config/load.js';
import { daemonConfig } from '../src/config/daemon-config.js';
import { ConfigError } from '../src/protocol/errors.js';

const FILE = '/etc/cryptod/cryptod.yaml';

const ISSUE_YAML = `providers:
  hsm: { type: pkcs11, module: /usr/lib/softhsm/libsofthsm2.so, token: cryptod, pin: env:CRYPTOD_PKCS11_PIN }
root: hsm                                    # wraps managed-key material at rest
keys:
  tenants: { type: aes256-kwp, provider: hsm, rotationPeriod: 90d }   # a KEK that never leaves the token
  orders:  { type: aes256-kwp, rotationPeriod: 30d }                  # a KEK held by cryptod, wrapped by root
`;

function problems(text: string): string {
  try {
    parseConfigText(text, FILE);
  } catch (err) {
    assert.ok(err instanceof ConfigFileError, String(err));
    return err.message;
  }
  assert.fail('expected the file to be refused');
}

test("the issue's providers and root load; defaults applied", () => {
  const loaded = parseConfigText(ISSUE_YAML.replace('provider: hsm, ', ''), FILE);
  assert.deepEqual({ ...loaded.config.providers }, {
    hsm: { type: 'pkcs11', module: '/usr/lib/softhsm/libsofthsm2.so', token: 'cryptod', pin: 'env:CRYPTOD_PKCS11_PIN', sessions: 4, retryMs: 1000 },
  });
  assert.equal(loaded.config.root, 'hsm');
  const d = daemonConfig(loaded);
  assert.equal(d.root, 'hsm');
  assert.equal(d.providers.hsm?.token, 'cryptod');
});

test("the issue's key held in a provider loads with provider: hsm", () => {
  const loaded = parseConfigText(ISSUE_YAML, FILE);
  assert.equal(loaded.config.keys.tenants?.provider, 'hsm');
  assert.equal(loaded.config.keys.orders?.provider, undefined);
});

test('provider: on a key must name a configured provider, on an aes256-kwp stored key; refused with its line', () => {
  const unknown = problems(ISSUE_YAML.replace('provider: hsm,', 'provider: hsn,'));
  assert.match(unknown, /cryptod\.yaml:5:\d+: keys\.tenants\.provider: expected a provider configured under providers: \(hsm\), got "hsn"/);
  const wrongType = problems(ISSUE_YAML.replace('type: aes256-kwp, provider', 'type: aes256-gcm, provider'));
  assert.match(wrongType, /keys\.tenants\.provider: a aes256-gcm key cannot be held in a token; only aes256-kwp/);
  const local = problems(ISSUE_YAML.replace('provider: hsm,', 'provider: local,'));
  assert.match(local, /keys\.tenants\.provider: provider: local is the default/);
  const none = problems('keys:\n  tenants: { type: aes256-kwp, provider: hsm }\n');
  assert.match(none, /keys\.tenants\.provider: expected a provider configured under providers: \(none is\), got "hsm"/);
});

test('slot, sessions and retryMs are taken; out of range is refused with the field', () => {
  const ok = parseConfigText('providers:\n  hsm: { type: pkcs11, module: /m.so, token: t, pin: "file:/etc/cryptod/pin", slot: 7, sessions: 16, retryMs: 0 }\n', FILE);
  assert.deepEqual({ ...ok.config.providers.hsm }, { type: 'pkcs11', module: '/m.so', token: 't', pin: 'file:/etc/cryptod/pin', slot: 7, sessions: 16, retryMs: 0 });
  assert.equal(ok.config.root, undefined);
  assert.equal(daemonConfig(ok).root, 'local');
  const msg = problems('providers:\n  hsm: { type: pkcs11, module: /m.so, token: t, pin: env:P, sessions: 0, retryMs: -1, slots: 2 }\n');
  assert.match(msg, /providers\.hsm\.sessions: expected an integer from 1 to 64, got 0/);
  assert.match(msg, /providers\.hsm\.retryMs: expected an integer from 0 to 600000/);
  assert.match(msg, /providers\.hsm\.slots: unknown field 'slots' \(did you mean 'slot'\?\)/);
});

test('a literal PIN is refused without being repeated', () => {
  const msg = problems('providers:\n  hsm: { type: pkcs11, module: /m.so, token: t, pin: "731942" }\n');
  assert.match(msg, /providers\.hsm\.pin: .*env:NAME .*file:/);
  assert.equal(msg.includes('731942'), false);
});

test('missing fields, another type, the name local and an unknown root are refused', () => {
  const msg = problems('providers:\n  hsm: { type: pkcs11 }\n  kms: { type: aws-kms, module: /m.so, token: t, pin: env:P }\n  local: { type: pkcs11, module: /m.so, token: t, pin: env:P }\nroot: vault\n');
  assert.match(msg, /providers\.hsm: expected module/);
  assert.match(msg, /providers\.hsm: expected token/);
  assert.match(msg, /providers\.hsm: expected pin/);
  assert.match(msg, /providers\.kms\.type: expected type: pkcs11/);
  assert.match(msg, /providers\.local: 'local' is always there/);
  assert.match(msg, /root: expected local or a provider configured under providers: .*got "vault"/);
});

test('--root-provider overrides root:, and must name local or a configured provider', () => {
  const loaded = parseConfigText('providers:\n  hsm: { type: pkcs11, module: /m.so, token: t, pin: env:P }\nroot: hsm\n', FILE);
  assert.equal(daemonConfig(loaded, { root: 'local' }).root, 'local');
  assert.throws(() => daemonConfig(loaded, { root: 'hsn' }), (err: unknown) => err instanceof ConfigError && /--root-provider hsn: expected local or a provider .*\(local, hsm\)/.test(err.message));
  assert.throws(() => daemonConfig(null, { root: 'hsm' }), ConfigError);
});
