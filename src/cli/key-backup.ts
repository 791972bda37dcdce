/**
 * `cryptod key backup` and `cryptod key restore`: move managed keys to
 * another daemon without their plaintext (docs/formats.md "Key backups").
 * The CLI only reads and writes files; sealing, signing and opening happen
 * inside the two daemons (src/keys/backup.ts).
 *
 *   receiver$ cryptod key create transfer --type x25519
 *   receiver$ cryptod key public transfer > transfer.pem
 *   sender$   cryptod key public backup-signer > signer.pem
 *   sender$   cryptod key backup orders --recipient transfer.pem --signing-key backup-signer --out orders.cmbk
 *   receiver$ cryptod key restore orders.cmbk --trust signer.pem
 */
import { createPublicKey } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Client } from '../client/client.js';
import { readRegularFile } from '../files/trusted-files.js';
import { UsageError, stringOpt, type OptionSpec, type Parsed } from './args.js';
import { EXIT_OK, LocalFailure } from './output.js';
import { progress } from './progress.js';

/** Largest backup file read: a frame (4 MiB by default) bounds what a daemon sends anyway. */
export const MAX_BACKUP_FILE_BYTES = 64 * 1024 * 1024;
/** File name suffix of `--out DIR` backups. */
export const BACKUP_SUFFIX = '.cmbk';

export interface BackupSub {
  options: OptionSpec;
  named: boolean;
  /** Takes several positionals (names or files). */
  many: true;
  run(client: Client, name: string | undefined, p: Parsed): Promise<number>;
}

export const backupSubcommands: Record<'backup' | 'restore', BackupSub> = {
  backup: {
    named: true,
    many: true,
    options: { recipient: { type: 'string' }, 'signing-key': { type: 'string' }, out: { type: 'string', short: 'o' } },
    async run(client, _name, p) {
      const names = p.positionals;
      const recipient = await publicKeyFile(required(p, 'recipient', "the receiving daemon's transfer key: `cryptod key public TRANSFER_KEY` there"));
      const signingKey = required(p, 'signing-key', 'an ed25519 managed key of this daemon that signs the backup');
      const out = stringOpt(p, 'out');
      if (names.length > 1 && out === undefined) throw new UsageError('backing up several keys needs --out DIR (one NAME.cmbk file each)', 'key');
      if (out === undefined && process.stdout.isTTY === true) throw new UsageError('a backup is binary: give --out FILE, or redirect standard output', 'key');
      const bar = progress('backing up', names.length);
      try {
        for (const name of names) {
          bar.step(name);
          const r = await client.keys.backup(name, { recipient, signingKey });
          bar.clear();
          if (out === undefined) process.stdout.write(r.backup);
          else writeFileSync(names.length > 1 ? join(out, `${name}${BACKUP_SUFFIX}`) : out, r.backup, { mode: 0o600 });
          if (out !== undefined) process.stdout.write(`backed up key '${name}' (${r.versions} version${r.versions === 1 ? '' : 's'}), signed by '${signingKey}' version ${r.signingVersion}\n`);
        }
      } finally {
        bar.done();
      }
      return EXIT_OK;
    },
  },
  restore: {
    named: true,
    many: true,
    options: { trust: { type: 'string' }, force: { type: 'boolean' } },
    async run(client, _name, p) {
      const files = p.positionals;
      const trust = await publicKeyFile(required(p, 'trust', "the sending daemon's signing key: `cryptod key public SIGNING_KEY` there"));
      const bar = progress('restoring', files.length);
      try {
        for (const file of files) {
          bar.step(file);
          const backup = await readFile(file, 'a backup file', MAX_BACKUP_FILE_BYTES);
          const r = await client.keys.restore(backup, { trust, force: p.values.force === true });
          bar.clear();
          process.stdout.write(`${r.replaced ? 'replaced' : 'restored'} key '${r.key.name}' (${r.key.type}, ${r.key.versions.length} version${r.key.versions.length === 1 ? '' : 's'}), signed by '${r.signingKey}'\n`);
        }
      } finally {
        bar.done();
      }
      return EXIT_OK;
    },
  },
};

function required(p: Parsed, flag: string, what: string): string {
  const v = stringOpt(p, flag);
  if (v === undefined) throw new UsageError(`missing required option '--${flag}' (${what})`, 'key');
  return v;
}

/** A public key file as `cryptod key public` writes it (PEM, DER or JWK), as SPKI DER. */
async function publicKeyFile(file: string): Promise<Buffer> {
  const bytes = await readFile(file, 'a public key file', 64 * 1024);
  const text = bytes.toString('utf8').trim();
  try {
    const key = text.startsWith('-----BEGIN') ? createPublicKey(text)
      : text.startsWith('{') ? createPublicKey({ key: JSON.parse(text) as import('node:crypto').JsonWebKey, format: 'jwk' })
      : createPublicKey({ key: bytes, format: 'der', type: 'spki' });
    return key.export({ format: 'der', type: 'spki' });
  } catch (err) {
    throw new LocalFailure(`${file} is not a public key (expected PEM, DER or JWK as \`cryptod key public\` writes it)`, { cause: err });
  }
}

async function readFile(file: string, what: string, maxBytes: number): Promise<Buffer> {
  try {
    return await readRegularFile(file, { what, maxBytes });
  } catch (err) {
    throw new LocalFailure((err as Error).message, { cause: err });
  }
}
