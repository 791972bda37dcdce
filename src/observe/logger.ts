/**
 * One JSON line per event on stderr (or a given stream). Fields are chosen by
 * the caller and must never carry key material or plaintext: the logger has
 * no way to know, so the rule is enforced where events are logged, and the
 * test suite greps every log for planted keys.
 */
import type { Writable } from 'node:stream';

export type Level = 'debug' | 'info' | 'warn' | 'error';
const order: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export function createLogger(options: { level?: Level; stream?: Writable } = {}): Logger {
  const min = order[options.level ?? 'info'];
  const stream = options.stream ?? process.stderr;
  const emit = (level: Level, msg: string, fields?: Record<string, unknown>): void => {
    if (order[level] < min) return;
    stream.write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields })}\n`);
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
  };
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
