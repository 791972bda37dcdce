/**
 * Where a PKCS#11 token's user PIN comes from: `env:NAME` (an environment
 * variable) or `file:PATH` (a file the daemon trusts: owned by its user or
 * root, mode 600, a regular file — src/files/trusted-files.ts). A PIN written
 * in the configuration itself is refused: configuration files are copied,
 * diffed and pasted into tickets.
 *
 * The PIN is returned as a string because pkcs11js's C_Login takes one; a
 * string cannot be wiped and stays in the heap until collected (README
 * "What JavaScript cannot promise"). It is read once at start, kept only in
 * the provider's #private field for re-login after the token comes back, and
 * never put in a message, log line, error detail or status.
 */
import { ConfigError } from '../../protocol/errors.js';
import { readTrustedFileSync } from '../../files/trusted-files.js';

/** A PIN is a line, not a document. */
export const MAX_PIN_FILE_BYTES = 4096;

/** Check the form of a PIN source at configuration load (no reading yet). */
export function assertPinSource(what: string, spec: unknown): asserts spec is string {
  if (typeof spec !== 'string' || !/^(env:[A-Za-z_][A-Za-z0-9_]*|file:\/.+)$/.test(spec)) {
    throw new ConfigError(
      `${what}: expected the PIN source as env:NAME (an environment variable) or file:/absolute/path (a file of mode 600), ` +
        `got ${typeof spec === 'string' ? 'a literal value (never write the PIN itself into the configuration)' : typeof spec}`,
    );
  }
}

/**
 * Read the PIN `spec` names. One trailing newline of a PIN file is not part of it.
 * @throws ConfigError naming the variable or file (never the PIN).
 */
export function readPin(what: string, spec: string, env: NodeJS.ProcessEnv = process.env): string {
  assertPinSource(what, spec);
  if (spec.startsWith('env:')) {
    const name = spec.slice(4);
    const v = env[name];
    if (v === undefined || v === '') throw new ConfigError(`${what} names the environment variable ${name}, which is not set or empty`);
    return v;
  }
  const file = spec.slice(5);
  const raw = readTrustedFileSync(file, { what: `${what} (${file})`, maxBytes: MAX_PIN_FILE_BYTES, secret: true });
  try {
    let end = raw.length;
    if (end > 0 && raw[end - 1] === 0x0a) end--;
    if (end > 0 && raw[end - 1] === 0x0d) end--;
    if (end === 0) throw new ConfigError(`${what}: the PIN file ${file} is empty`);
    return raw.toString('utf8', 0, end);
  } finally {
    raw.fill(0);
  }
}
