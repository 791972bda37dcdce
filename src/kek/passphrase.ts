/**
 * The root KEK's passphrase, when the configuration names one (`kek:` in the
 * configuration file) instead of the data directory's root.key.
 *
 * Returned as bytes the caller zeroes once the KEK is derived: a string
 * could not be wiped, and would stay in the heap until collected.
 */
import { ConfigError } from '../protocol/errors.js';
import { readTrustedFileSync } from '../files/trusted-files.js';

/** Largest KEK passphrase file read: a passphrase is a line, not a document. */
export const MAX_PASSPHRASE_FILE_BYTES = 64 * 1024;

export interface PassphraseSource {
  readonly passphraseFile?: string;
  readonly passphraseEnv?: string;
}

/**
 * Read the passphrase `source` names; undefined when it names none. One
 * trailing newline of a passphrase file is not part of it (editors add one).
 * The file is a secret the daemon trusts: owned by its user or root, mode
 * 600, a regular file (src/files/trusted-files.ts).
 *
 * @throws ConfigError when the file cannot be read, is not trusted or is
 *   empty, or the variable is unset or empty.
 */
export function readKekPassphrase(source: PassphraseSource, env: NodeJS.ProcessEnv = process.env): Buffer | undefined {
  if (source.passphraseFile !== undefined) {
    const raw = readTrustedFileSync(source.passphraseFile, { what: 'kek.passphraseFile', maxBytes: MAX_PASSPHRASE_FILE_BYTES, secret: true });
    let end = raw.length;
    if (end > 0 && raw[end - 1] === 0x0a) end--;
    if (end > 0 && raw[end - 1] === 0x0d) end--;
    const out = Buffer.alloc(end);
    raw.copy(out, 0, 0, end);
    raw.fill(0);
    if (out.length === 0) throw new ConfigError(`kek.passphraseFile ${source.passphraseFile} is empty`);
    return out;
  }
  if (source.passphraseEnv !== undefined) {
    const v = env[source.passphraseEnv];
    if (v === undefined || v === '') throw new ConfigError(`kek.passphraseEnv names ${source.passphraseEnv}, which is not set in the environment`);
    return Buffer.from(v, 'utf8');
  }
  return undefined;
}
