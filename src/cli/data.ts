/**
 * Data commands on managed keys: `cryptod encrypt|decrypt|sign|mac|rewrap`
 * and `cryptod verify|verify-mac`. Input is stdin (or --in FILE), output
 * stdout (or --out FILE), both binary: ciphertexts, signatures and MACs are
 * the self-describing formats of docs/formats.md, which name the key version,
 * so `decrypt`, `verify` and `rewrap` need no version flag.
 *
 * verify and verify-mac answer with the exit status — 0 valid, 1 not valid
 * (or any failure) — and print `valid` or `invalid` on stdout.
 *
 * The input is read whole: one request carries it, so it must fit the
 * daemon's maximum frame (4 MiB by default). A plaintext written with --out
 * is created with mode 0600: decrypting must not widen who can read it.
 */
import { open } from 'node:fs/promises';
import type { Client } from '../client/client.js';
import { MAX_MAX_FRAME } from '../protocol/frame.js';
import { readRegularFile } from '../files/trusted-files.js';
import { UsageError, parseCommand, stringOpt, wantsHelp, type OptionSpec, type Parsed } from './args.js';
import { SOCKET_OPTION, connectCli } from './connect.js';
import { EXIT_FAILURE, EXIT_OK, LocalFailure } from './output.js';

type Transform = (client: Client, key: string, input: Uint8Array, aad: Uint8Array | undefined) => Promise<Uint8Array>;
type Check = (client: Client, key: string, input: Uint8Array, signature: Uint8Array) => Promise<boolean>;

const COMMON_HELP = `  -k, --key NAME       the managed key (required)
  --in FILE            read the input from FILE (default: stdin)
  -s, --socket PATH    daemon socket (default: $CRYPTOD_SOCKET, else
                       $XDG_RUNTIME_DIR/cryptod/cryptod.sock, else
                       /tmp/cryptod-$UID/cryptod.sock)
  -h, --help           show this help`;

const TRANSFORMS: Record<string, { run: Transform; aad: boolean; what: string }> = {
  encrypt: { aad: true, what: 'Encrypt the input under the key\'s current version; write the ciphertext', run: (c, k, i, aad) => c.encrypt(k, i, aad === undefined ? {} : { aad }) },
  decrypt: { aad: true, what: 'Decrypt a ciphertext (its version is named inside it); write the plaintext', run: (c, k, i, aad) => c.decrypt(k, i, aad === undefined ? {} : { aad }) },
  rewrap: { aad: true, what: 'Re-encrypt a ciphertext under the current version; the plaintext never leaves the daemon', run: (c, k, i, aad) => c.rewrap(k, i, aad === undefined ? {} : { aad }) },
  sign: { aad: false, what: 'Sign the input with the key\'s current version; write the signature', run: (c, k, i) => c.sign(k, i) },
  mac: { aad: false, what: 'Compute a MAC of the input with the key\'s current version; write it', run: (c, k, i) => c.mac(k, i) },
};

const CHECKS: Record<string, { run: Check; what: string }> = {
  verify: { what: 'signature', run: (c, k, i, s) => c.verify(k, i, s) },
  'verify-mac': { what: 'MAC', run: (c, k, i, s) => c.verifyMac(k, i, s) },
};

function transformHelp(name: string): string {
  const t = TRANSFORMS[name]!;
  const dk = name === 'encrypt' || name === 'decrypt'
    ? `       cryptod ${name} --wrapped-key FILE [--aad TEXT] [--in FILE] [--out FILE]
         (with a data key: FILE holds the wrapped key of \`cryptod datakey generate\`)
`
    : '';
  return `Usage: cryptod ${name} --key NAME [--aad TEXT] [--in FILE] [--out FILE]
${dk}
${t.what}
(binary; stdin to stdout by default).

Options:
${COMMON_HELP.replace('  -h, --help', `${t.aad ? '  --aad TEXT           additional authenticated data (UTF-8); decrypt needs\n                       the same\n' : ''}  -o, --out FILE       write the output to FILE (created mode 600)\n  -h, --help`)}
`;
}

function checkHelp(name: string): string {
  const c = CHECKS[name]!;
  return `Usage: cryptod ${name} --key NAME --signature FILE [--in FILE]

Check a ${c.what} (read from FILE) over the input. Prints "valid" or
"invalid"; exit status 0 when valid, 1 when not (or on any failure).

Options:
  --signature FILE     the ${c.what} to check (required)
${COMMON_HELP}
`;
}

const INPUT_OPTIONS: OptionSpec = { ...SOCKET_OPTION, key: { type: 'string', short: 'k' }, in: { type: 'string' } };

/** A data command by name (main.ts registers each). */
export function dataCommand(name: string): (argv: readonly string[]) => Promise<number> {
  const t = TRANSFORMS[name];
  if (t !== undefined) {
    return async (argv) => {
      if (wantsHelp(argv)) {
        process.stdout.write(transformHelp(name));
        return EXIT_OK;
      }
      const dataKey = name === 'encrypt' || name === 'decrypt';
      const p = parseCommand(name, argv, {
        ...INPUT_OPTIONS, out: { type: 'string', short: 'o' }, ...(t.aad ? { aad: { type: 'string' } } : {}), ...(dataKey ? { 'wrapped-key': { type: 'string' } } : {}),
      });
      const wrappedFile = dataKey ? stringOpt(p, 'wrapped-key') : undefined;
      const aadText = stringOpt(p, 'aad');
      const aad = aadText === undefined ? undefined : Buffer.from(aadText, 'utf8');
      if (wrappedFile !== undefined) {
        // A data key (docs/protocol.md §6.12): the wrapped key names its KEK, so no --key.
        if (stringOpt(p, 'key') !== undefined) throw new UsageError('give either --key NAME (a managed key) or --wrapped-key FILE (a data key), not both', name);
        const wrapped = await readInput(wrappedFile);
        const input = await readInput(stringOpt(p, 'in'));
        const opts = aad === undefined ? {} : { aad };
        const output = await withClient(p, (c) => (name === 'encrypt' ? c.dataKeys.encrypt(wrapped, input, opts) : c.dataKeys.decrypt(wrapped, input, opts)));
        await writeOutput(stringOpt(p, 'out'), output);
        return EXIT_OK;
      }
      const key = requireKey(p, name);
      const input = await readInput(stringOpt(p, 'in'));
      const output = await withClient(p, (c) => t.run(c, key, input, aad));
      await writeOutput(stringOpt(p, 'out'), output);
      return EXIT_OK;
    };
  }
  const c = CHECKS[name];
  if (c === undefined) throw new Error(`no data command ${name}`);
  return async (argv) => {
    if (wantsHelp(argv)) {
      process.stdout.write(checkHelp(name));
      return EXIT_OK;
    }
    const p = parseCommand(name, argv, { ...INPUT_OPTIONS, signature: { type: 'string' } });
    const key = requireKey(p, name);
    const sigFile = stringOpt(p, 'signature');
    if (sigFile === undefined) throw new UsageError(`missing required option '--signature FILE' (the ${c.what} to check)`, name);
    const signature = await readInput(sigFile);
    const input = await readInput(stringOpt(p, 'in'));
    const valid = await withClient(p, (client) => c.run(client, key, input, signature));
    process.stdout.write(valid ? 'valid\n' : 'invalid\n');
    return valid ? EXIT_OK : EXIT_FAILURE;
  };
}

export const DATA_COMMANDS = [...Object.keys(TRANSFORMS), ...Object.keys(CHECKS)];

/** The --help text of data command `name` (shell completion reads its flags). */
export function dataCommandHelp(name: string): string {
  return Object.hasOwn(TRANSFORMS, name) ? transformHelp(name) : checkHelp(name);
}

function requireKey(p: Parsed, command: string): string {
  const k = stringOpt(p, 'key');
  if (k === undefined) {
    const alt = command === 'encrypt' || command === 'decrypt' ? ', or --wrapped-key FILE for a data key' : '';
    throw new UsageError(`missing required option '--key NAME' (the managed key to use${alt})`, command);
  }
  return k;
}

export async function withClient<T>(p: Parsed, fn: (c: Client) => Promise<T>): Promise<T> {
  const client = await connectCli(stringOpt(p, 'socket'));
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

/**
 * FILE, or stdin when absent or "-"; read whole (one request carries it),
 * and never more than the largest frame a daemon may accept: a FILE must be a
 * regular file within it, checked before reading (/dev/zero would fill
 * memory, a FIFO wait); stdin is cut off as soon as it passes it (so
 * `cryptod encrypt < /dev/zero` fails at once instead of filling memory).
 */
export async function readInput(file: string | undefined): Promise<Buffer> {
  if (file === undefined || file === '-') {
    const chunks: Buffer[] = [];
    let total = 0;
    for await (const c of process.stdin) {
      total += (c as Buffer).length;
      if (total > MAX_MAX_FRAME) {
        process.stdin.destroy();
        throw new LocalFailure(`standard input is larger than ${MAX_MAX_FRAME} bytes, the largest request a daemon accepts; give less data (or use cryptod digest, which streams)`);
      }
      chunks.push(c as Buffer);
    }
    return Buffer.concat(chunks);
  }
  try {
    return await readRegularFile(file, { what: 'the input file', maxBytes: MAX_MAX_FRAME });
  } catch (err) {
    throw new LocalFailure((err as Error).message, { cause: err });
  }
}

export async function writeOutput(file: string | undefined, data: Uint8Array): Promise<void> {
  if (file === undefined || file === '-') {
    await new Promise<void>((res, rej) => process.stdout.write(data, (err) => (err ? rej(err) : res())));
    return;
  }
  try {
    const h = await open(file, 'w', 0o600);
    try {
      await h.writeFile(data);
    } finally {
      await h.close();
    }
  } catch (err) {
    throw new LocalFailure(`cannot write ${file}: ${(err as Error).message}`, { cause: err });
  }
}
