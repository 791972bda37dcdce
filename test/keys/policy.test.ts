/** Durations, policy validation and its messages, per-client permissions, key definitions. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { InvalidArgumentError } from '../../src/protocol/errors.js';
import { decodeRecord, parseDefinition, sameSpec, storedPolicy } from '../../src/keys/definition.js';
import { formatDuration, MAX_DURATION_MS, parseDuration } from '../../src/keys/duration.js';
import { checkTransition, effectivePolicy, KeyConfigError, parsePolicyInput, permits } from '../../src/keys/policy.js';

describe('durations', () => {
  test('accepted forms', () => {
    assert.equal(parseDuration('90s'), 90_000);
    assert.equal(parseDuration('10m'), 600_000);
    assert.equal(parseDuration('1h'), 3_600_000);
    assert.equal(parseDuration('30d'), 30 * 86_400_000);
    assert.equal(parseDuration('250ms'), 250);
    assert.equal(parseDuration('1h30m'), 5_400_000);
    assert.equal(parseDuration(' 0s '), 0);
    assert.equal(parseDuration(1500), 1500);
  });

  test('refused forms say what is accepted', () => {
    for (const bad of ['10', '10 minutes', '1.5h', '-1s', '', 'h', '1h1h', '1w', '10M']) {
      assert.throws(() => parseDuration(bad, 'gracePeriod'), (err: unknown) => {
        assert.ok(err instanceof InvalidArgumentError);
        assert.match(err.message, /^expected gracePeriod as a duration like 90s, 10m, 1h or 30d \(an integer followed by ms, s, m, h or d/);
        assert.equal(err.detail?.field, 'gracePeriod');
        return true;
      }, bad);
    }
    assert.throws(() => parseDuration(-5), /whole milliseconds/);
    assert.throws(() => parseDuration(1.5), /whole milliseconds/);
    assert.throws(() => parseDuration(null), /got null/);
    assert.throws(() => parseDuration('36501d'), /at most 100 years/);
  });

  test('property: formatDuration round-trips through parseDuration', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: MAX_DURATION_MS }), (ms) => assert.equal(parseDuration(formatDuration(ms)), ms)));
    assert.equal(formatDuration(5_400_000), '1h30m');
    assert.equal(formatDuration(1_500), '1s500ms');
  });
});

describe('policy validation', () => {
  test('rotation shorter than prefetch + grace + tolerance is refused, naming the fields', () => {
    const { issues } = parsePolicyInput('hmac-sha256', { rotationPeriod: '15m', prefetchPeriod: '5m', gracePeriod: '10m' });
    assert.equal(issues.length, 1);
    assert.equal(issues[0]!.field, 'rotationPeriod');
    assert.equal(
      issues[0]!.message,
      'rotationPeriod 15m is shorter than prefetchPeriod 5m + gracePeriod 10m + clockTolerance 1s (default) = 15m1s: ' +
        'the validity period must be at least PREFETCH + GRACE + TIME_THRESHOLD (design note 4); ' +
        'lengthen rotationPeriod or shorten prefetchPeriod, gracePeriod or clockTolerance',
    );
  });

  test('exactly prefetch + grace + tolerance is accepted', () => {
    const { issues, spec } = parsePolicyInput('hmac-sha256', { rotationPeriod: '15m1s', prefetchPeriod: '5m', gracePeriod: '10m' });
    assert.deepEqual(issues, []);
    assert.equal(effectivePolicy('hmac-sha256', spec).clockTolerance, 1_000);
  });

  test('the clock tolerance is configurable and counts', () => {
    assert.equal(parsePolicyInput('hmac-sha256', { rotationPeriod: '15m1s', prefetchPeriod: '5m', gracePeriod: '10m', clockTolerance: '2s' }).issues[0]?.field, 'rotationPeriod');
    assert.deepEqual(parsePolicyInput('hmac-sha256', { rotationPeriod: '15m', prefetchPeriod: '5m', gracePeriod: '10m', clockTolerance: 0 }).issues, []);
  });

  test('the default prefetch follows a short rotation period', () => {
    const p = effectivePolicy('aes256-gcm', parsePolicyInput('aes256-gcm', { rotationPeriod: '8m' }).spec);
    assert.equal(p.prefetchPeriod, 2 * 60_000);
    assert.equal(effectivePolicy('aes256-gcm', {}).prefetchPeriod, 5 * 60_000);
    assert.equal(parsePolicyInput('aes256-gcm', { rotationPeriod: 0 }).issues[0]?.message.includes('longer than 0s'), true);
  });

  test('field errors are collected, each named', () => {
    const { issues } = parsePolicyInput('aes256-gcm', {
      gracePeriod: '10 min', minDecryptionVersion: -1, exportable: 'yes' as unknown as boolean, clients: { web: ['encrypt', 'sign', 'fly'] },
    });
    assert.deepEqual(issues.map((i) => i.field), ['gracePeriod', 'minDecryptionVersion', 'exportable', 'clients.web', 'clients.web']);
    assert.match(issues[3]!.message, /operation 'sign' in clients.web does not apply to a aes256-gcm key; it allows encrypt, decrypt, rewrap, export, admin/);
    assert.match(issues[4]!.message, /unknown operation "fly"/);
  });

  test('exportable cannot go back to false', () => {
    const on = effectivePolicy('aes256-gcm', { exportable: true });
    const off = effectivePolicy('aes256-gcm', {});
    assert.deepEqual(checkTransition(undefined, on), []);
    assert.deepEqual(checkTransition(off, on), []);
    const issues = checkTransition(on, off);
    assert.equal(issues[0]?.field, 'exportable');
    assert.match(issues[0]!.message, /exportable cannot go back to false/);
  });

  test('patch mode: absent keeps, null resets', () => {
    const base = parsePolicyInput('aes256-gcm', { rotationPeriod: '1h', gracePeriod: '10m' }).spec;
    const { spec } = parsePolicyInput('aes256-gcm', { gracePeriod: null, minDecryptionVersion: 2 }, base);
    assert.deepEqual(spec, { rotationPeriod: 3_600_000, minDecryptionVersion: 2 });
  });
});

describe('per-client permissions', () => {
  test('default: any client may use the type data operations, not export or admin', () => {
    const p = effectivePolicy('aes256-gcm', {});
    assert.ok(permits(p, 'anyone', 'encrypt'));
    assert.ok(permits(p, 'anyone', 'rewrap'));
    assert.ok(!permits(p, 'anyone', 'export'));
    assert.ok(!permits(p, 'anyone', 'admin'));
    assert.ok(!permits(p, 'anyone', 'sign'));
  });

  test("a client's own entry replaces '*'; export also needs exportable", () => {
    const spec = parsePolicyInput('hmac-sha256', { clients: { '*': ['verify-mac'], minter: ['mac', 'verify-mac', 'export'], ops: ['admin'] } }).spec;
    const p = effectivePolicy('hmac-sha256', spec);
    assert.ok(permits(p, 'minter', 'mac'));
    assert.ok(!permits(p, 'minter', 'export')); // not exportable
    assert.ok(permits(effectivePolicy('hmac-sha256', { ...spec, exportable: true }), 'minter', 'export'));
    assert.ok(!permits(p, 'checker', 'mac'));
    assert.ok(permits(p, 'checker', 'verify-mac'));
    assert.ok(!permits(p, 'ops', 'verify-mac'));
    assert.ok(permits(p, 'ops', 'admin'));
    assert.ok(!permits(p, '__proto__', 'mac'));
    const none = effectivePolicy('hmac-sha256', parsePolicyInput('hmac-sha256', { clients: { minter: ['mac'] } }).spec);
    assert.ok(!permits(none, 'other', 'verify-mac'));
  });
});

describe('key definitions', () => {
  test('a valid definition parses and survives the record round trip', () => {
    const { parsed, issues } = parseDefinition('sessions', { type: 'hmac-sha256', rotationPeriod: '1h', gracePeriod: '10m', prefetchPeriod: '5m' });
    assert.deepEqual(issues, []);
    const record = { name: 'sessions', type: parsed!.type, policy: storedPolicy(parsed!.spec, 'config', null), createdAt: 0, updatedAt: 0, disabled: false };
    const back = decodeRecord(JSON.parse(JSON.stringify(record)));
    assert.equal(back.origin, 'config');
    assert.ok(sameSpec(back.spec, parsed!.spec));
    assert.equal(back.policy.gracePeriod, 600_000);
  });

  test('issues name key and field', () => {
    assert.deepEqual(parseDefinition('k', { type: 'aes-256-gcm' }).issues.map((i) => [i.key, i.field]), [['k', 'type']]);
    assert.deepEqual(parseDefinition('k', { type: 'aes256-gcm', rotatonPeriod: '1h' }).issues.map((i) => [i.key, i.field]), [['k', 'rotatonPeriod']]);
    assert.deepEqual(parseDefinition('', { type: 'aes256-gcm' }).issues.map((i) => i.field), ['name']);
    const derived = parseDefinition('e', { type: 'aes256-gcm', derived: { epochStart: 'yesterday' } }).issues.map((i) => i.field);
    assert.deepEqual(derived, ['derived.epochStart', 'derived', 'rotationPeriod', 'gracePeriod']);
  });

  test('KeyConfigError lists every issue and keeps them for the config loader', () => {
    const err = new KeyConfigError([
      { key: 'a', field: 'type', message: 'bad type' },
      { key: 'b', field: 'gracePeriod', message: 'bad grace' },
    ]);
    assert.equal(err.code, 'CRYPTOD_ERR_CONFIG');
    assert.equal(err.message, "invalid key configuration (2 problems); nothing was applied:\nkey 'a': type: bad type\nkey 'b': gracePeriod: bad grace");
    assert.equal(err.issues.length, 2);
    assert.deepEqual(err.detail, { key: 'a', field: 'type', problems: 2 });
  });
});
