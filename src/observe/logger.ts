/**
 * The daemon's log: one JSON line per event on stderr (or a given stream),
 * written by pino, the logger the rest of a Node.js host already reads.
 *
 *   {"level":"warn","time":"2026-…Z","msg":"connection refused","refusal":"max-connections",…}
 *
 * The shape is the one the hand-written logger had (ISO `time`, `level` as a
 * word, `msg`, then the caller's fields; no pid or hostname), so tools and
 * tests that read it did not change. `msg` is handed to pino as a field
 * rather than as its message argument: pino appends its message after the
 * fields, and a line that names its event first is easier to read and grep.
 *
 * Fields are chosen by the caller and must never carry key material or
 * plaintext; that rule is enforced where events are logged, and the test
 * suite greps every log for planted keys. {@link REDACT_PATHS} is the second
 * line of defence: if a field with one of those names ever reaches the
 * logger, pino writes "[redacted]" in its place.
 *
 * `format: 'pretty'` (`cryptod serve --log-format pretty`) is for a person at
 * a terminal; pino-pretty is loaded only then, so JSON logging pays nothing
 * for it.
 */
import { createRequire } from 'node:module';
import type { Writable } from 'node:stream';
import { pino, stdTimeFunctions } from 'pino';

export type Level = 'debug' | 'info' | 'warn' | 'error';
export type LogFormat = 'json' | 'pretty';
export const LOG_FORMATS: readonly LogFormat[] = ['json', 'pretty'];

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/**
 * Field names that would only ever hold a secret. `key` is not among them: it
 * names a managed key everywhere in the logs, and a name is not a secret.
 */
export const REDACT_PATHS: readonly string[] = [
  'secret', 'password', 'passphrase', 'pin', 'token', 'plaintext', 'material', 'keyBytes', 'privateKey', 'rawKey',
  '*.secret', '*.password', '*.passphrase', '*.pin', '*.token', '*.plaintext', '*.material', '*.keyBytes', '*.privateKey', '*.rawKey',
];

export interface LoggerOptions {
  level?: Level;
  stream?: Writable;
  format?: LogFormat;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const stream = options.stream ?? process.stderr;
  const destination = options.format === 'pretty' ? prettyStream(stream) : stream;
  const p = pino(
    {
      level: options.level ?? 'info',
      base: undefined,
      timestamp: stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: [...REDACT_PATHS], censor: '[redacted]' },
    },
    destination,
  );
  // The level check comes first so a disabled level builds no object.
  const emit = (level: Level, msg: string, fields?: Record<string, unknown>): void => {
    if (!p.isLevelEnabled(level)) return;
    p[level](fields === undefined ? { msg } : { msg, ...fields });
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
  };
}

/** pino-pretty writing to `stream`, colourised when that is a terminal. */
function prettyStream(stream: Writable): Writable {
  const require = createRequire(import.meta.url);
  const pretty = require('pino-pretty') as (o: Record<string, unknown>) => Writable;
  const tty = (stream as Writable & { isTTY?: boolean }).isTTY === true;
  return pretty({ destination: stream, sync: true, colorize: tty, translateTime: 'SYS:isoDateTime' });
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
