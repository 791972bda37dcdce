/**
 * A real SoftHSM2 token in a temporary directory: its own softhsm2.conf
 * (`directories.tokendir` under the directory) and one token initialised with
 * softhsm2-util. SoftHSM2 reads SOFTHSM2_CONF at every C_Initialize, so
 * `use()` points this process at the token before a provider connects (and
 * `env()` gives a child process the same). `hide()`/`restore()` move the token
 * directory away and back: SoftHSM2 re-reads it at the next C_Initialize, so
 * a reconnect during the gap finds no token.
 *
 * Without softhsm2 installed the suites that need it are skipped loudly,
 * except in CI (CI set), where .ci/run installs it and a skip would hide a
 * failure.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';

/** Why the token suites cannot run here, or undefined when they can. Throws in CI. */
export function softhsmMissing(): string | undefined {
  const ok = spawnSync('softhsm2-util', ['--version'], { stdio: 'pipe' }).status === 0;
  if (ok) return undefined;
  if (process.env.CI) throw new Error('softhsm2 is not installed, and CI must run the PKCS#11 suites (.ci/run installs it)');
  const why = 'SKIPPED: softhsm2 is not installed (apt-get install softhsm2); the PKCS#11 token suites did not run';
  process.stderr.write(`\n*** ${why} ***\n\n`);
  return why;
}

export interface SoftToken {
  readonly dir: string;
  readonly conf: string;
  readonly label: string;
  readonly pin: string;
  /** Environment for a child process that loads the module. */
  env(extra?: NodeJS.ProcessEnv): NodeJS.ProcessEnv;
  /** Point this process's SOFTHSM2_CONF at the token (before a provider connects). */
  use(): void;
  /** Move the token directory away: the next C_Initialize finds no token. */
  hide(): void;
  restore(): void;
  remove(): void;
}

export function createSoftToken(options: { label?: string; pin?: string } = {}): SoftToken {
  const dir = mkdtempSync(join(tmpdir(), `cryptod-softhsm-${randomBytes(3).toString('hex')}-`));
  const tokens = join(dir, 'tokens');
  const away = join(dir, 'tokens.away');
  mkdirSync(tokens, { mode: 0o700 });
  const conf = join(dir, 'softhsm2.conf');
  writeFileSync(conf, `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`, { mode: 0o600 });
  const label = options.label ?? 'cryptod';
  const pin = options.pin ?? randomBytes(6).toString('hex');
  execFileSync('softhsm2-util', ['--init-token', '--free', '--label', label, '--pin', pin, '--so-pin', randomBytes(6).toString('hex')], {
    env: { ...process.env, SOFTHSM2_CONF: conf }, stdio: 'pipe',
  });
  return {
    dir, conf, label, pin,
    env: (extra = {}) => ({ ...process.env, SOFTHSM2_CONF: conf, ...extra }),
    use() {
      process.env.SOFTHSM2_CONF = conf;
    },
    hide() {
      renameSync(tokens, away);
      mkdirSync(tokens, { mode: 0o700 });
    },
    restore() {
      rmSync(tokens, { recursive: true, force: true });
      renameSync(away, tokens);
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
