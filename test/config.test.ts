/**
 * The configuration file: every problem named by FILE:LINE:COL and field,
 * unknown fields refused, relative paths taken from the file's directory, an
 * invalid file at start → exit 1, flags over file values.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfigFileError, loadConfigFile, parseConfigText } from '../src/config/load.js';
import { runCli, startCliDaemon } from './helpers/cli-daemon.js';

function problemsOf(text: string): string[] {
  try {
    parseConfigText(text, 'c.yaml');
  } catch (err) {
    assert.ok(err instanceof ConfigFileError, String(err));
    assert.equal(err.code, 'CRYPTOD_ERR_CONFIG');
    return err.problems.map((p) => `${p.line}:${p.col}: ${p.field}: ${p.message}`);
  }
  assert.fail('expected the configuration to be refused');
}

test('a valid file: the issue example, paths relative to the file, octal socket mode', () => {
  const { config } = parseConfigText(
    [
      'dataDir: data',
      'socket: /run/cryptod.sock',
      'socketMode: 660',
      'logLevel: warn',
      'limits: { maxFrame: 1048576, shutdownGraceMs: 100 }',
      'access: { uids: [1000, 1001], gids: [50] }',
      'audit: { log: audit.log }',
      'kek: { passphraseEnv: CRYPTOD_PASS }',
      'listen: tcp://127.0.0.1:7300',
      'tls: { cert: tls/server.crt, key: tls/server.key, clientCa: tls/ca.crt, crl: tls/ca.crl }',
      'keys:',
      '  orders:   { type: aes256-gcm, rotationPeriod: 30d }',
      '  sessions: { type: hmac-sha256, rotationPeriod: 1h, gracePeriod: 10m, prefetchPeriod: 5m }',
      '',
    ].join('\n'),
    '/etc/cryptod/cryptod.yaml',
  );
  assert.equal(config.dataDir, '/etc/cryptod/data');
  assert.equal(config.socket, '/run/cryptod.sock');
  assert.equal(config.socketMode, 0o660);
  assert.equal(config.logLevel, 'warn');
  assert.deepEqual(config.limits, { maxFrame: 1048576, shutdownGraceMs: 100 });
  assert.deepEqual(config.access, { uids: [1000, 1001], gids: [50] });
  assert.deepEqual(config.audit, { log: '/etc/cryptod/audit.log' });
  assert.deepEqual(config.kek, { passphraseEnv: 'CRYPTOD_PASS' });
  assert.deepEqual(config.tcp, {
    url: 'tcp://127.0.0.1:7300',
    certFile: '/etc/cryptod/tls/server.crt',
    keyFile: '/etc/cryptod/tls/server.key',
    clientCaFile: '/etc/cryptod/tls/ca.crt',
    crlFile: '/etc/cryptod/tls/ca.crl',
  });
  assert.deepEqual(Object.keys(config.keys), ['orders', 'sessions']);
  assert.deepEqual(config.keys.sessions, { type: 'hmac-sha256', rotationPeriod: '1h', gracePeriod: '10m', prefetchPeriod: '5m' });
});

test('an empty file is a valid configuration with no keys', () => {
  const { config } = parseConfigText('', 'c.yaml');
  assert.deepEqual(config.keys, {});
  assert.deepEqual(config.limits, {});
});

test('limits whose range depends on another are checked together: per-uid connections below the overall cap', () => {
  const { config } = parseConfigText('limits: { maxConnections: 4096, maxConnectionsPerUid: 1000, helloTimeoutMs: 2000 }\n', 'c.yaml');
  assert.deepEqual(config.limits, { maxConnections: 4096, maxConnectionsPerUid: 1000, helloTimeoutMs: 2000 });
  const problems = problemsOf('limits:\n  maxConnections: 100\n  maxConnectionsPerUid: 100\n');
  assert.equal(problems.length, 1, problems.join('\n'));
  assert.match(problems[0]!, /^3:25: limits\.maxConnectionsPerUid: limit maxConnectionsPerUid must be an integer from 1 to 99, got 100/);
});

test('every problem is reported at once, with its line, column and field', () => {
  const problems = problemsOf(
    [
      'socketMode: 644x', // 1
      'limits:', // 2
      '  maxFrame: 10', // 3
      '  maxFrme: 4096', // 4
      'keys:', // 5
      '  orders: { type: aes256-gcm, rotationPeriod: 30d }', // 6
      '  sessions:', // 7
      '    type: hmac-sha256', // 8
      '    rotationPeriod: 1h', // 9
      '    gracePeriod: 10 minutes', // 10
      '  bad: { type: aes999 }', // 11
      '  typo: { type: hmac-sha256, rotationPerod: 1h }', // 12
      'listn: tcp://127.0.0.1:0', // 13
      '',
    ].join('\n'),
  );
  assert.equal(problems.length, 7, problems.join('\n'));
  assert.match(problems[0]!, /^1:13: socketMode: expected an octal mode/);
  assert.match(problems[1]!, /^3:13: limits\.maxFrame: limit maxFrame must be an integer from 1024/);
  assert.match(problems[2]!, /^4:3: limits\.maxFrme: unknown field 'maxFrme' \(did you mean 'maxFrame'\?\)/);
  assert.match(problems[3]!, /^10:18: keys\.sessions\.gracePeriod: expected gracePeriod as a duration/);
  assert.match(problems[4]!, /^11:16: keys\.bad\.type: expected type to be one of aes256-gcm/);
  assert.match(problems[5]!, /^12:30: keys\.typo\.rotationPerod: unknown field 'rotationPerod'/);
  assert.match(problems[6]!, /^13:1: listn: unknown field 'listn' \(did you mean 'listen'\?\)/);
});

test('unknown top-level fields, YAML syntax errors and duplicate keys are refused', () => {
  assert.deepEqual(problemsOf('listn: tcp://127.0.0.1:0\n').map((p) => p.replace(/; known.*/, '')), ["1:1: listn: unknown field 'listn' (did you mean 'listen'?)"]);
  assert.match(problemsOf('keys:\n  a: { type: aes256-gcm }\n  a: { type: aes256-gcm }\n')[0]!, /^3:3: yaml: Map keys must be unique/);
  assert.match(problemsOf('keys: [1\n')[0]!, /^\d+:\d+: yaml: /);
  assert.match(problemsOf('- just\n- a list\n')[0]!, /^1:1: config: expected a mapping of settings/);
  assert.match(problemsOf('tls: { cert: a.pem }\n')[0]!, /^1:1: tls: tls configures the TCP listener/);
  assert.match(problemsOf('kek: { passphraseFile: p, passphraseEnv: P }\n')[0]!, /^1:27: kek\.passphraseEnv: give passphraseFile or passphraseEnv, not both/);
  assert.match(problemsOf('access: { uids: [1000, -1] }\n')[0]!, /^1:24: access\.uids\[1\]: expected a numeric id/);
  // A policy problem across fields names the key manager's field (src/keys/policy.ts).
  assert.match(problemsOf('keys:\n  s: { type: hmac-sha256, rotationPeriod: 1m, gracePeriod: 10m }\n')[0]!, /^2:\d+: keys\.s\.\w+: /);
});

test('a YAML-tagged value where a mapping belongs is one problem about that field, not one per byte', () => {
  const problems = problemsOf('keys: !!binary aGVsbG8=\n');
  assert.equal(problems.length, 1, problems.join('\n'));
  assert.match(problems[0]!, /^1:\d+: keys: expected keys to map key names to definitions, got binary data \(5 bytes\)$/);
  const limits = problemsOf('limits: !!binary aGVsbG8=\n');
  assert.equal(limits.length, 1, limits.join('\n'));
  assert.match(limits[0]!, /^1:\d+: limits: expected a mapping with fields .*, got binary data \(5 bytes\)$/);
  const def = problemsOf('keys:\n  orders: !!binary aGVsbG8=\n');
  assert.equal(def.length, 1, def.join('\n'));
  assert.match(def[0]!, /^2:\d+: keys\.orders: type: expected a key definition with at least a type$/);
});

test('reserved key names (__proto__, constructor, prototype) are refused with the rule, never silently dropped', () => {
  for (const name of ['__proto__', 'constructor', 'prototype']) {
    const problems = problemsOf(`keys:\n  ${name}: { type: aes256-gcm }\n  orders: { type: aes256-gcm }\n`);
    assert.equal(problems.length, 1, problems.join('\n'));
    assert.match(problems[0]!, new RegExp(`^2:3: keys\\.${name}: name: '${name}' is reserved and cannot name a key \\(reserved: __proto__, constructor, prototype\\); choose another name$`));
  }
  // Names that merely look like Object.prototype members are ordinary names.
  const { config } = parseConfigText('keys:\n  toString: { type: aes256-gcm }\n  hasOwnProperty: { type: aes256-gcm }\n', 'c.yaml');
  assert.deepEqual(Object.keys(config.keys).sort(), ['hasOwnProperty', 'toString']);
});

test('a missing file is a ConfigFileError naming the file', () => {
  assert.throws(() => loadConfigFile('/nonexistent/cryptod.yaml'), (err: unknown) => err instanceof ConfigFileError && /\/nonexistent\/cryptod\.yaml:1:1: config: cannot read the file/.test(err.message));
});

test('cryptod serve with an invalid file exits 1 and prints every problem as FILE:LINE:COL: field: message', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
  try {
    const file = join(dir, 'c.yaml');
    writeFileSync(file, 'keys:\n  orders: { type: aes256-gcm, rotationPeriod: soon }\nlimits: { maxFrame: 1 }\n');
    const r = await runCli(['serve', '--config', file, '--data-dir', join(dir, 'data'), '--socket', join(dir, 's.sock')]);
    const err = r.stderr.toString();
    assert.equal(r.code, 1, err);
    assert.ok(err.includes(`${file}:2:47: keys.orders.rotationPeriod: expected rotationPeriod as a duration`), err);
    assert.ok(err.includes(`${file}:3:21: limits.maxFrame: limit maxFrame must be an integer`), err);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('command-line flags override the file: --socket and --log-level win over socket and logLevel', async () => {
  // The file asks for another socket and for warn; startCliDaemon waits for
  // its own --socket, and the "listening" info line shows --log-level won.
  const d = await startCliDaemon((dir) => {
    const file = join(dir, 'c.yaml');
    writeFileSync(file, `socket: ${join(dir, 'file.sock')}\nlogLevel: warn\nkeys:\n  orders: { type: aes256-gcm }\n`);
    return ['--config', file, '--log-level', 'info'];
  });
  try {
    const log = d.stderr().toString();
    assert.ok(log.includes(`"msg":"listening"`), log);
    assert.ok(log.includes(d.socketPath), log);
    assert.match(log, /"msg":"configuration applied".*"created":\["orders"\]/);
  } finally {
    assert.equal(await d.stop(), 0);
  }
});

test('workers: a number from 1 to 256 or auto, as --workers', () => {
  assert.equal(parseConfigText('workers: 3\n', 'c.yaml').config.workers, 3);
  assert.equal(parseConfigText('workers: "2"\n', 'c.yaml').config.workers, 2);
  assert.ok((parseConfigText('workers: auto\n', 'c.yaml').config.workers ?? 0) >= 1);
  assert.equal(parseConfigText('', 'c.yaml').config.workers, undefined);
  for (const bad of ['0', '257', '1.5', 'many', '[2]']) {
    const [problem] = problemsOf(`workers: ${bad}\n`);
    assert.match(problem ?? '', /^1:10: workers: expected a number from 1 to 256 or 'auto'/, bad);
  }
});
