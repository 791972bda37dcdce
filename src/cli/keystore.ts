/**
 * `cryptod keystore check`: verify a data directory's keystore offline —
 * SQLite's own `PRAGMA integrity_check`, then every stored wrapped blob
 * unwrapped (and zeroed at once) under the directory's KEK with its key's
 * name and version as AAD. It reads; it changes nothing except what opening
 * the KEK does on a store from before binding (kek/local.ts: the store id is
 * added). Safe beside running daemons (WAL readers never block writers).
 *
 * Exit status: 0 clean, 1 problems found (or the check could not run),
 * 2 usage error.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { LoadedConfig } from '../config/load.js';
import { configOption } from './config-option.js';
import { DEFAULT_DATA_DIR } from '../config/paths.js';
import { LOCAL_KEK_META_KEY, LocalKekProvider } from '../kek/local.js';
import { keyVersionAad } from '../kek/provider.js';
import { DecryptError } from '../protocol/errors.js';
import { openSqliteKeystore } from '../store/sqlite/sqlite-store.js';
import { parseCommand, stringOpt, UsageError, wantsHelp, type OptionSpec } from './args.js';
import { EXIT_FAILURE, EXIT_OK, LocalFailure } from './output.js';
import { readKekPassphrase } from '../kek/passphrase.js';
import { BLOB_FORMAT_V1 } from '../kek/gcm-blob.js';
import { KekRing } from '../kek/ring.js';
import { openTokenProviders } from '../kek/pkcs11/open-providers.js';

export const KEYSTORE_HELP = `Usage: cryptod keystore check [options]

Verify the keystore of a data directory: SQLite's integrity check, then every
wrapped key version unwrapped under the directory's KEK (root.key, or the
passphrase the --config file names). Prints one line per problem (key,
version and file) and a summary. Runs beside live daemons.

Exit status: 0 the keystore is clean, 1 problems were found (or the check
could not run), 2 usage error.

Options:
  --data-dir DIR       data directory (default: the --config file's, else
                       ./.cryptod)
  -c, --config FILE    configuration file (its dataDir and kek passphrase)
  --json               print { file, keys, versions, problems: [...] }
  -h, --help           show this help
`;

const OPTIONS: OptionSpec = { 'data-dir': { type: 'string' }, config: { type: 'string', short: 'c' }, json: { type: 'boolean' } };

export interface KeystoreProblem {
  /** `integrity`: SQLite found the file damaged; `blob`: a wrapped version does not unwrap; `read`: rows could not be read. */
  kind: 'integrity' | 'blob' | 'read';
  key: string | null;
  version: number | null;
  message: string;
}

export async function keystore(argv: readonly string[]): Promise<number> {
  if (wantsHelp(argv)) {
    process.stdout.write(KEYSTORE_HELP);
    return EXIT_OK;
  }
  const [sub, ...rest] = argv;
  if (sub !== 'check') throw new UsageError(`expected a subcommand: cryptod keystore check, got '${sub ?? ''}'`, 'keystore');
  const p = parseCommand('keystore', rest, OPTIONS);
  const loaded = configOption(p);
  const dir = path.resolve(stringOpt(p, 'data-dir') ?? loaded?.config.dataDir ?? DEFAULT_DATA_DIR);
  const file = path.join(dir, 'keystore.sqlite');
  if (!fs.existsSync(file)) throw new LocalFailure(`no keystore at ${file}; give --data-dir`);
  const result = await check(dir, file, loaded);
  if (p.values.json === true) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } else {
    for (const q of result.problems) process.stdout.write(`${q.kind === 'integrity' ? 'DAMAGED FILE' : 'DAMAGED'}: ${q.message}\n`);
    process.stdout.write(
      `keystore ${file}: ${result.keys} key(s), ${result.versions} wrapped version(s) checked, ` +
        `${result.problems.length === 0 ? 'clean' : `${result.problems.length} problem(s)`}\n`,
    );
  }
  return result.problems.length === 0 ? EXIT_OK : EXIT_FAILURE;
}

async function check(dir: string, file: string, loaded: LoadedConfig | null): Promise<{ file: string; keys: number; versions: number; problems: KeystoreProblem[] }> {
  const problems: KeystoreProblem[] = [];
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    const rows = db.pragma('integrity_check') as Array<{ integrity_check: string }>;
    for (const r of rows) {
      if (r.integrity_check !== 'ok') problems.push({ kind: 'integrity', key: null, version: null, message: `${file}: ${r.integrity_check}` });
    }
  } catch (err) {
    problems.push({ kind: 'integrity', key: null, version: null, message: `${file}: integrity check failed: ${(err as Error).message}` });
  } finally {
    db.close();
  }

  let keys = 0;
  let versions = 0;
  let store;
  try {
    store = await openSqliteKeystore({ dataDir: dir });
  } catch (err) {
    // Damage SQLite found above may also keep the file from opening: report both.
    if (problems.length === 0) throw err;
    problems.push({ kind: 'read', key: null, version: null, message: `${file}: cannot be opened to check the keys (${(err as Error).message})` });
    return { file, keys, versions, problems };
  }
  try {
    if ((await store.read((r) => r.getMeta(LOCAL_KEK_META_KEY))) === undefined) {
      throw new LocalFailure(`${file} has no KEK record: it is empty or new, there is nothing to check`);
    }
    const passphrase = readKekPassphrase(loaded?.config.kek ?? {});
    let local: LocalKekProvider;
    try {
      local = await LocalKekProvider.open({ dir, store, storeFile: file, ...(passphrase === undefined ? {} : { passphrase }) });
    } finally {
      passphrase?.fill(0);
    }
    // Every configured provider, as the daemon opens them: a token-wrapped blob is not damage.
    let kek: KekRing;
    try {
      const tokens = await openTokenProviders(store, local.storeId, loaded?.config.providers ?? {});
      kek = new KekRing('local', [{ name: 'local', format: BLOB_FORMAT_V1, provider: local }, ...tokens]);
    } catch (err) {
      await local.close();
      throw err;
    }
    try {
      const names = await store.read(async (r) => (await r.listKeys()).map((k) => k.name));
      keys = names.length;
      for (const name of names) {
        let rows;
        try {
          rows = await store.read((r) => r.getVersions(name));
        } catch (err) {
          problems.push({ kind: 'read', key: name, version: null, message: `key '${name}' in ${file}: its versions cannot be read (${(err as Error).message})` });
          continue;
        }
        for (const v of rows) {
          if (v.wrapped === null) continue;
          versions++;
          try {
            (await kek.unwrap(v.wrapped, keyVersionAad(name, v.version))).fill(0);
          } catch (err) {
            if (!(err instanceof DecryptError)) throw err;
            problems.push({
              kind: 'blob', key: name, version: v.version,
              message: `key '${name}' version ${v.version} in ${file}: its wrapped material does not unwrap (altered bytes, or wrapped by another KEK)`,
            });
          }
        }
      }
    } finally {
      await kek.close();
    }
  } finally {
    await store.close();
  }
  return { file, keys, versions, problems };
}
