/**
 * Where the PostgreSQL keystore is, and how to name it without its password.
 *
 *   --store / store:   postgres://user:pw@host:port/db?sslmode=…   the URL itself
 *                      env:NAME                                    read from $NAME at start
 *                      file:PATH                                   read from a file (first line)
 *
 * The URL carries the password, so it is a secret like a KEK passphrase: the
 * daemon keeps it only to hand to the driver, and everything it shows —
 * logs, `cryptod status`, error messages — uses `redactUrl()`, which keeps
 * the user, host, port and database and replaces the password with `***`.
 * A `password=` query parameter is redacted the same way.
 */
import fs from 'node:fs';
import { ConfigError } from '../../protocol/errors.js';

/** The connection URL (a secret) and its redacted form (for display). */
export interface StoreUrl {
  readonly url: string;
  readonly redacted: string;
}

/**
 * Resolve `postgres://…`, `env:NAME` or `file:PATH` to a URL.
 *
 * @throws ConfigError naming the variable or file (never quoting its content)
 *   when it is missing, empty or not a postgres:// URL.
 */
export function resolveStoreUrl(spec: string, env: NodeJS.ProcessEnv = process.env): StoreUrl {
  if (typeof spec !== 'string' || spec === '') throw new ConfigError('expected a keystore location: postgres://…, env:NAME or file:PATH');
  let url: string;
  let from: string;
  if (spec.startsWith('env:')) {
    const name = spec.slice(4);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new ConfigError(`expected env:NAME with an environment variable name, got "env:${name}"`);
    const value = env[name];
    if (value === undefined || value.trim() === '') throw new ConfigError(`the keystore location names $${name}, which is not set (or empty); export the postgres:// URL in it`);
    url = value.trim();
    from = `$${name}`;
  } else if (spec.startsWith('file:')) {
    const file = spec.slice(5);
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(`cannot read the keystore location from ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { detail: { path: file } });
    }
    url = (text.split('\n')[0] ?? '').trim();
    from = file;
  } else {
    url = spec;
    from = 'the keystore location';
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // Never echo the text: it may be a password with a typo.
    throw new ConfigError(`${from} is not a URL; expected postgres://user:password@host:port/database`);
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new ConfigError(`${from} is a ${parsed.protocol.replace(/:$/, '')} URL; expected postgres://user:password@host:port/database`);
  }
  return { url, redacted: redactUrl(url) };
}

/** `url` with its password (in the authority or as a `password` parameter) replaced by `***`. */
export function redactUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'postgres://(unparseable URL)';
  }
  if (parsed.password !== '') parsed.password = '***';
  if (parsed.searchParams.has('password')) parsed.searchParams.set('password', '***');
  return parsed.toString();
}
