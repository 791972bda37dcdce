/**
 * The daemon's log on pino keeps the shape the hand-written logger had (one
 * JSON object per line: level as a word, ISO time, msg first, then the
 * caller's fields), drops levels below the minimum, writes "[redacted]" for
 * fields that can only hold a secret, and `pretty` gives readable lines.
 */
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { REDACT_PATHS, createLogger, type LoggerOptions } from '../src/observe/logger.js';

function capture(options: LoggerOptions = {}): { text: () => string; lines: () => Record<string, unknown>[]; log: ReturnType<typeof createLogger> } {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (b: Buffer) => (text += b.toString()));
  const log = createLogger({ ...options, stream });
  return { log, text: () => text, lines: () => text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>) };
}

test('one JSON line per event: level, ISO time, msg, then the fields; no pid or hostname', () => {
  const c = capture();
  c.log.info('listening', { socket: '/run/cryptod.sock', uid: 0 });
  c.log.warn('connection refused', { refusal: 'max-connections' });
  const lines = c.lines();
  assert.equal(lines.length, 2);
  assert.deepEqual(Object.keys(lines[0]!), ['level', 'time', 'msg', 'socket', 'uid']);
  assert.deepEqual(lines[0], { level: 'info', time: lines[0]!.time, msg: 'listening', socket: '/run/cryptod.sock', uid: 0 });
  assert.match(String(lines[0]!.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.equal(lines[1]!.level, 'warn');
  assert.match(c.text(), /"msg":"connection refused","refusal":"max-connections"/);
});

test('levels below the minimum are dropped', () => {
  const c = capture({ level: 'warn' });
  c.log.debug('d');
  c.log.info('i');
  c.log.warn('w');
  c.log.error('e', { error: 'boom' });
  assert.deepEqual(c.lines().map((l) => l.level), ['warn', 'error']);
  const all = capture({ level: 'debug' });
  all.log.debug('d');
  assert.deepEqual(all.lines().map((l) => l.msg), ['d']);
});

test('fields that can only hold a secret are redacted, at the top level and one level down; key names are not', () => {
  const c = capture();
  const planted = 'c2VjcmV0LWJ5dGVzLXBsYW50ZWQ';
  c.log.info('oops', { key: 'billing', password: planted, token: planted, nested: { pin: planted, passphrase: planted, keep: 1 } });
  assert.ok(!c.text().includes(planted), c.text());
  const [line] = c.lines();
  assert.equal(line!.key, 'billing');
  assert.equal(line!.password, '[redacted]');
  assert.deepEqual(line!.nested, { pin: '[redacted]', passphrase: '[redacted]', keep: 1 });
  assert.ok(REDACT_PATHS.includes('secret') && !REDACT_PATHS.includes('key'));
});

test('pretty: a readable line with the level word and message, not JSON', () => {
  const c = capture({ format: 'pretty' });
  c.log.warn('connection refused', { refusal: 'hello-timeout', password: 'x-planted-x' });
  const text = c.text();
  assert.match(text, /WARN/);
  assert.match(text, /connection refused/);
  assert.match(text, /refusal: "hello-timeout"/);
  assert.ok(!text.includes('x-planted-x'));
  assert.throws(() => JSON.parse(text.split('\n')[0]!));
});
