/**
 * Selection boundaries, to the millisecond, with explicit
 * `now` values: the functions are pure, so the clock is the argument.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { KeyVersionError } from '../../src/protocol/errors.js';
import type { VersionInfo } from '../../src/keys/model.js';
import { effectivePolicy, type PolicySpec } from '../../src/keys/policy.js';
import { selectInbound, selectOutbound, stillUsable } from '../../src/keys/selection.js';

const T = Date.UTC(2030, 0, 1);
const MIN = 60_000;
const HOUR = 60 * MIN;

function policy(spec: PolicySpec = {}) {
  return effectivePolicy('hmac-sha256', spec);
}

/** v1 [T, T+1h), v2 [T+1h, T+2h), v3 [T+2h, T+3h): a scheduled chain. */
function chain(states: VersionInfo['state'][] = ['active', 'active', 'active']): VersionInfo[] {
  return states.map((state, i) => ({ version: i + 1, state, notBefore: T + i * HOUR, notAfter: T + (i + 1) * HOUR }));
}

function refused(fn: () => unknown, reason: string, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof KeyVersionError, `expected KeyVersionError, got ${String(err)}`);
    assert.equal(err.code, 'CRYPTOD_ERR_KEY_VERSION');
    assert.equal(err.detail?.reason, reason);
    assert.match(err.message, pattern);
    return true;
  });
}

describe('outbound: the newest active version whose window contains now', () => {
  const vs = chain();
  const p = policy({ rotationPeriod: HOUR, gracePeriod: 10 * MIN });

  test('exactly at notBefore the version is current', () => {
    assert.equal(selectOutbound('k', vs, p, T).version, 1);
    assert.equal(selectOutbound('k', vs, p, T + HOUR).version, 2);
  });

  test('at notAfter − 1 ms the old version is still current; at notAfter the next one', () => {
    assert.equal(selectOutbound('k', vs, p, T + HOUR - 1).version, 1);
    assert.equal(selectOutbound('k', vs, p, T + HOUR).version, 2);
    assert.equal(selectOutbound('k', vs, p, T + 3 * HOUR - 1).version, 3);
  });

  test('no tolerance outbound: 1 ms before the first notBefore there is no current version', () => {
    refused(() => selectOutbound('k', vs, p, T - 1), 'no-current', /key 'k' has no version valid at 2029-12-31T23:59:59.999Z yet: version 1 starts at 2030-01-01T00:00:00.000Z/);
  });

  test('after the last window ends: rotation overdue, named', () => {
    refused(() => selectOutbound('k', vs, p, T + 3 * HOUR), 'no-current', /version 3 expired at 2030-01-01T03:00:00.000Z .*rotation is overdue/);
  });

  test('decrypt-only, disabled and destroyed versions are skipped', () => {
    const mixed = chain(['active', 'decrypt-only', 'active']);
    assert.throws(() => selectOutbound('k', mixed, p, T + HOUR + 1));
    const open: VersionInfo[] = [
      { version: 1, state: 'active', notBefore: T, notAfter: null },
      { version: 2, state: 'disabled', notBefore: T + 1, notAfter: null },
      { version: 3, state: 'destroyed', notBefore: T + 2, notAfter: null },
    ];
    assert.equal(selectOutbound('k', open, p, T + 10).version, 1);
  });

  test('overlapping windows: the newest wins (manual rotation)', () => {
    const vs2: VersionInfo[] = [
      { version: 1, state: 'active', notBefore: T, notAfter: null },
      { version: 2, state: 'active', notBefore: T + 5, notAfter: null },
    ];
    assert.equal(selectOutbound('k', vs2, p, T + 4).version, 1);
    assert.equal(selectOutbound('k', vs2, p, T + 5).version, 2);
  });

  test('no active version at all', () => {
    refused(() => selectOutbound('k', chain(['decrypt-only', 'disabled', 'destroyed']), p, T), 'no-current', /no active version/);
  });

  test('a current version below minDecryptionVersion is refused, naming both', () => {
    refused(() => selectOutbound('k', vs, policy({ minDecryptionVersion: 2 }), T + 1), 'below-minimum', /version 1 is below the minimum decryption version 2/);
  });
});

describe('inbound with a grace period (MAC/token keys)', () => {
  const vs = chain();
  const p = policy({ rotationPeriod: HOUR, gracePeriod: 10 * MIN }); // tolerance 1 s by default

  test('accepted through notAfter + grace − 1 ms, refused at notAfter + grace', () => {
    assert.equal(selectInbound('k', vs, p, 1, T + HOUR - 1).version, 1);
    assert.equal(selectInbound('k', vs, p, 1, T + HOUR).version, 1);
    assert.equal(selectInbound('k', vs, p, 1, T + HOUR + 10 * MIN - 1).version, 1);
    refused(
      () => selectInbound('k', vs, p, 1, T + HOUR + 10 * MIN),
      'expired',
      /^version 1 of key 'k' expired at 2030-01-01T01:00:00.000Z \(grace 10m ended at 2030-01-01T01:10:00.000Z\)$/,
    );
  });

  test('grace 0: refused exactly at notAfter', () => {
    const p0 = policy({ rotationPeriod: HOUR, gracePeriod: 0 });
    assert.equal(selectInbound('k', vs, p0, 1, T + HOUR - 1).version, 1);
    refused(() => selectInbound('k', vs, p0, 1, T + HOUR), 'expired', /grace 0s ended/);
  });

  test('future notBefore: accepted within the clock tolerance, refused beyond it', () => {
    assert.equal(selectInbound('k', vs, p, 2, T + HOUR).version, 2);
    assert.equal(selectInbound('k', vs, p, 2, T + HOUR - 1_000).version, 2); // exactly at the tolerance
    refused(
      () => selectInbound('k', vs, p, 2, T + HOUR - 1_001),
      'not-yet-valid',
      /^version 2 of key 'k' is not valid before 2030-01-01T01:00:00.000Z \(clock tolerance 1s; now 2030-01-01T00:59:58.999Z\)$/,
    );
    const wide = policy({ rotationPeriod: HOUR, gracePeriod: 10 * MIN, clockTolerance: 5_000 });
    assert.equal(selectInbound('k', vs, wide, 2, T + HOUR - 5_000).version, 2);
    refused(() => selectInbound('k', vs, wide, 2, T + HOUR - 5_001), 'not-yet-valid', /clock tolerance 5s/);
  });

  test('tolerance does not extend the grace end (the grace period is that margin)', () => {
    refused(() => selectInbound('k', vs, p, 1, T + HOUR + 10 * MIN + 500), 'expired', /expired/);
  });

  test('decrypt-only versions are accepted inbound', () => {
    const vs2 = chain(['decrypt-only', 'active', 'active']);
    assert.equal(selectInbound('k', vs2, p, 1, T + 30 * MIN).version, 1);
  });
});

describe('inbound without a grace period (data at rest)', () => {
  const vs = chain();
  const p = policy({ rotationPeriod: HOUR });

  test('old versions stay usable long after notAfter', () => {
    assert.equal(selectInbound('k', vs, p, 1, T + 1000 * HOUR).version, 1);
  });

  test('minDecryptionVersion edges: version = min accepted, min − 1 refused', () => {
    const pm = policy({ rotationPeriod: HOUR, minDecryptionVersion: 2 });
    assert.equal(selectInbound('k', vs, pm, 2, T + 2 * HOUR).version, 2);
    refused(() => selectInbound('k', vs, pm, 1, T + 2 * HOUR), 'below-minimum', /^version 1 of key 'k' is below the minimum decryption version 2$/);
    const pm3 = policy({ rotationPeriod: HOUR, minDecryptionVersion: 3 });
    refused(() => selectInbound('k', vs, pm3, 2, T + 2 * HOUR), 'below-minimum', /version 2 of key 'k' is below the minimum decryption version 3/);
  });

  test('disabled and destroyed versions are refused, named', () => {
    const vs2 = chain(['destroyed', 'disabled', 'active']);
    refused(() => selectInbound('k', vs2, p, 1, T + 2 * HOUR), 'destroyed', /^version 1 of key 'k' is destroyed$/);
    refused(() => selectInbound('k', vs2, p, 2, T + 2 * HOUR), 'disabled', /^version 2 of key 'k' is disabled$/);
  });

  test('unknown versions', () => {
    refused(() => selectInbound('k', vs, p, 4, T), 'unknown', /^version 4 of key 'k' does not exist \(latest is 3\)$/);
    refused(() => selectInbound('k', vs, p, 0, T), 'unknown', /version 0/);
    refused(() => selectInbound('k', vs, p, 1.5, T), 'unknown', /version 1.5/);
    refused(() => selectInbound('k', [], p, 1, T), 'unknown', /it has no versions/);
  });

  test('future notBefore is refused beyond tolerance here too', () => {
    refused(() => selectInbound('k', vs, p, 3, T), 'not-yet-valid', /not valid before/);
  });
});

test('property: inbound acceptance matches the rule, and stillUsable never drops a version inbound accepts', () => {
  const arbVersion = fc.record({
    version: fc.integer({ min: 1, max: 6 }),
    state: fc.constantFrom('active', 'decrypt-only', 'disabled', 'destroyed') as fc.Arbitrary<VersionInfo['state']>,
    notBefore: fc.integer({ min: 0, max: 10_000 }),
    length: fc.option(fc.integer({ min: 0, max: 10_000 }), { nil: null }),
  });
  fc.assert(
    fc.property(
      arbVersion,
      fc.option(fc.integer({ min: 0, max: 3_000 }), { nil: undefined }),
      fc.integer({ min: 0, max: 2_000 }),
      fc.integer({ min: 0, max: 6 }),
      fc.integer({ min: 0, max: 25_000 }),
      fc.integer({ min: 0, max: 5_000 }),
      (a, grace, tolerance, min, now, later) => {
        const v: VersionInfo = { version: a.version, state: a.state, notBefore: a.notBefore, notAfter: a.length === null ? null : a.notBefore + a.length };
        const spec: PolicySpec = { clockTolerance: tolerance, minDecryptionVersion: min };
        if (grace !== undefined) spec.gracePeriod = grace;
        const p = policy(spec);
        const expected =
          (v.state === 'active' || v.state === 'decrypt-only') &&
          v.version >= min &&
          now >= v.notBefore - tolerance &&
          (grace === undefined || v.notAfter === null || now < v.notAfter + grace);
        let accepted = true;
        try {
          selectInbound('k', [v], p, v.version, now);
        } catch (err) {
          assert.ok(err instanceof KeyVersionError);
          accepted = false;
        }
        assert.equal(accepted, expected);
        // Material is kept while anything could still accept the version.
        if (accepted) assert.ok(stillUsable(v, p, now - later));
      },
    ),
    { numRuns: 2000 },
  );
});
