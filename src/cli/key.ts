/**
 * `cryptod key <subcommand>`: manage the daemon's managed keys (create,
 * import, rotate, list, describe, set-policy, trim, destroy). Each subcommand
 * is one request to the daemon (src/client/managed.ts `client.keys.*`); the
 * daemon checks names, types, durations and policies and its typed errors
 * are printed with their code (output.ts).
 *
 * Durations are passed as written (`90s`, `10m`, `1h`, `30d`): the key
 * manager parses them (src/keys/duration.ts), so the CLI and the
 * configuration file accept exactly the same forms.
 */
import type { Client } from '../client/client.js';
import type { ManagedKeyDescription as KeyDescription, ManagedKeyPolicy, ManagedKeyType } from '../client/managed.js';
import { UsageError, integerOpt, parseCommand, stringOpt, wantsHelp, type OptionSpec, type Parsed } from './args.js';
import { readRegularFile } from '../files/trusted-files.js';
import { SOCKET_OPTION, connectCli } from './connect.js';
import { EXIT_OK, EXIT_USAGE, LocalFailure } from './output.js';
import { backupSubcommands } from './key-backup.js';

/** Largest --material-file read: a raw secret or a PKCS#8 RSA-4096 key is a few kilobytes. */
export const MAX_MATERIAL_FILE_BYTES = 64 * 1024;

const SOCKET_HELP = `  -s, --socket PATH          daemon socket (default: $CRYPTOD_SOCKET, else
                             $XDG_RUNTIME_DIR/cryptod/cryptod.sock, else
                             /tmp/cryptod-$UID/cryptod.sock)
  -h, --help                 show this help`;

const POLICY_HELP = `  --rotation-period D        rotate every D (90s, 10m, 1h, 30d; 'none' clears)
  --grace-period D           accept a version inbound until notAfter + D
  --prefetch-period D        create the next version D before the current ends`;

export const KEY_HELP = `Usage: cryptod key <subcommand> [options]

Manage the daemon's managed keys: named, versioned keys that never leave it
(unless created --exportable). Needs the admin right (README "Managed keys").

Subcommands:
  create NAME --type T [policy options] [--exportable] [--provider P]
                             create a key (types: aes256-gcm,
                             chacha20-poly1305, hmac-sha256, hmac-sha512,
                             ed25519, ecdsa-p256, ecdsa-p384, rsa-pss-3072,
                             aes256-kwp, ecdsa-p521, rsa-pkcs1-3072,
                             x25519: a transfer key for restore);
                             --provider P: an aes256-kwp KEK
                             generated and kept in the token of provider P
  import NAME --type T --material-file FILE [policy options]
                             bring your own key: raw secret bytes, or PKCS#8
                             DER for asymmetric types
  rotate NAME                add a version, current from now
  list [--json]              all keys with their current version
  describe NAME [--json]     a key's versions, states, validity and policy
  set-policy NAME [options]  change policy fields (see below)
  public NAME [--version N] [--format pem|der|jwk]
                             the public key of a signing or transfer key's version
                             (default: current, PEM), for outside verifiers
  backup NAME... --recipient FILE --signing-key KEY [--out FILE|DIR]
                             every version of a key (policy --allow-backup),
                             encrypted to another daemon's x25519 transfer key
                             (FILE: \`key public\` there) and signed by ed25519
                             key KEY here; several NAMEs: --out DIR
  restore FILE... --trust FILE [--force]
                             import backups made for a transfer key of this
                             daemon, signed by the trusted key (--trust: the
                             sender's \`key public KEY\`); --force replaces an
                             existing key of the same name
  trim NAME --below N        destroy versions below N (irreversible)
  destroy NAME               destroy every version of a key (irreversible)

Policy options (create, import, set-policy):
${POLICY_HELP}
  --exportable               allow export (irreversible)
  --allow-backup             allow \`key backup\` to another daemon (set by
                             an administrator only)
set-policy only:
  --min-decryption-version N refuse inbound use of versions below N
  --clock-tolerance D        allowed clock skew between daemons
  --deletion-protection on|off
                             refuse destroy while on

Options:
${SOCKET_HELP}
`;

const POLICY_OPTIONS: OptionSpec = {
  'rotation-period': { type: 'string' },
  'grace-period': { type: 'string' },
  'prefetch-period': { type: 'string' },
  exportable: { type: 'boolean' },
  'allow-backup': { type: 'boolean' },
};

interface Sub {
  options: OptionSpec;
  run(client: Client, name: string | undefined, p: Parsed): Promise<number>;
  /** Whether NAME is required. */
  named: boolean;
  /** Takes several NAMEs (or files). */
  many?: boolean;
}

const SUBCOMMANDS: Record<string, Sub> = {
  create: {
    named: true,
    options: { ...POLICY_OPTIONS, type: { type: 'string', short: 't' }, provider: { type: 'string' } },
    async run(client, name, p) {
      const provider = stringOpt(p, 'provider');
      const d = await client.keys.create(name!, { type: requireType(p, 'create'), ...policyFlags(p), ...(provider === undefined ? {} : { provider }) });
      process.stdout.write(`created key '${d.name}' (${d.type}), version ${d.currentVersion ?? '-'}\n`);
      return EXIT_OK;
    },
  },
  import: {
    named: true,
    options: { ...POLICY_OPTIONS, type: { type: 'string', short: 't' }, 'material-file': { type: 'string' } },
    async run(client, name, p) {
      const type = requireType(p, 'import');
      const file = stringOpt(p, 'material-file');
      if (file === undefined) throw new UsageError("missing required option '--material-file' (the key bytes: raw secret, or PKCS#8 DER)", 'key');
      let material: Buffer;
      try {
        material = await readRegularFile(file, { what: '--material-file', maxBytes: MAX_MATERIAL_FILE_BYTES });
      } catch (err) {
        throw new LocalFailure((err as Error).message, { cause: err });
      }
      try {
        const d = await client.keys.import(name!, { type, material, ...policyFlags(p) });
        process.stdout.write(`imported key '${d.name}' (${d.type}), version ${d.currentVersion ?? '-'}\n`);
      } finally {
        material.fill(0);
      }
      return EXIT_OK;
    },
  },
  rotate: {
    named: true,
    options: {},
    async run(client, name) {
      const v = await client.keys.rotate(name!);
      process.stdout.write(`rotated key '${name!}': version ${v} is current\n`);
      return EXIT_OK;
    },
  },
  list: {
    named: false,
    options: { json: { type: 'boolean' } },
    async run(client, _name, p) {
      const keys = await client.keys.list();
      process.stdout.write(p.values.json === true ? `${JSON.stringify(keys.map(summary), null, 2)}\n` : formatList(keys));
      return EXIT_OK;
    },
  },
  describe: {
    named: true,
    options: { json: { type: 'boolean' } },
    async run(client, name, p) {
      const d = await client.keys.describe(name!);
      process.stdout.write(p.values.json === true ? `${JSON.stringify(d, null, 2)}\n` : formatDescription(d));
      return EXIT_OK;
    },
  },
  'set-policy': {
    named: true,
    options: {
      ...POLICY_OPTIONS,
      'min-decryption-version': { type: 'string' },
      'clock-tolerance': { type: 'string' },
      'deletion-protection': { type: 'string' },
    },
    async run(client, name, p) {
      const patch: ManagedKeyPolicy = policyFlags(p);
      const min = integerOpt(p, 'min-decryption-version', 'key');
      if (min !== undefined) patch.minDecryptionVersion = min;
      const tol = stringOpt(p, 'clock-tolerance');
      if (tol !== undefined) patch.clockTolerance = tol === 'none' ? null : tol;
      const dp = stringOpt(p, 'deletion-protection');
      if (dp !== undefined) {
        if (dp !== 'on' && dp !== 'off') throw new UsageError(`option '--deletion-protection' expects on or off, got '${dp}'`, 'key');
        patch.deletionProtection = dp === 'on';
      }
      if (Object.keys(patch).length === 0) throw new UsageError('`cryptod key set-policy` needs at least one policy option', 'key');
      const d = await client.keys.setPolicy(name!, patch);
      process.stdout.write(`policy of key '${d.name}' updated\n`);
      return EXIT_OK;
    },
  },
  public: {
    named: true,
    options: { version: { type: 'string' }, format: { type: 'string' } },
    async run(client, name, p) {
      const format = stringOpt(p, 'format') ?? 'pem';
      if (format !== 'pem' && format !== 'der' && format !== 'jwk') throw new UsageError(`option '--format' expects pem, der or jwk, got '${format}'`, 'key');
      const version = integerOpt(p, 'version', 'key');
      const k = await client.keys.publicKey(name!, version === undefined ? {} : { version });
      const out =
        format === 'der' ? Buffer.from(k.spki)
        : format === 'jwk' ? `${JSON.stringify({ ...k.jwk, kid: `${k.name}:${k.version}` })}\n`
        : `-----BEGIN PUBLIC KEY-----\n${(Buffer.from(k.spki).toString('base64').match(/.{1,64}/g) ?? []).join('\n')}\n-----END PUBLIC KEY-----\n`;
      process.stdout.write(out);
      process.stderr.write(`cryptod: public key of '${k.name}' version ${k.version} (${k.type})\n`);
      return EXIT_OK;
    },
  },
  trim: {
    named: true,
    options: { below: { type: 'string' } },
    async run(client, name, p) {
      const below = integerOpt(p, 'below', 'key');
      if (below === undefined) throw new UsageError("missing required option '--below N' (versions below N are destroyed)", 'key');
      const gone = await client.keys.trim(name!, below);
      process.stdout.write(gone.length === 0 ? `key '${name!}' has no versions below ${below} left to destroy\n` : `destroyed version${gone.length === 1 ? '' : 's'} ${gone.join(', ')} of key '${name!}'\n`);
      return EXIT_OK;
    },
  },
  ...backupSubcommands,
  destroy: {
    named: true,
    options: {},
    async run(client, name) {
      const gone = await client.keys.destroy(name!);
      process.stdout.write(`destroyed key '${name!}' (version${gone.length === 1 ? '' : 's'} ${gone.join(', ') || '-'})\n`);
      return EXIT_OK;
    },
  },
};

/** The subcommands, for shell completion. */
export const KEY_SUBCOMMANDS: readonly string[] = Object.keys(SUBCOMMANDS);

export async function key(argv: readonly string[]): Promise<number> {
  const [subName, ...rest] = argv;
  if (subName === undefined) {
    process.stderr.write(KEY_HELP);
    return EXIT_USAGE;
  }
  if (subName === '--help' || subName === '-h' || subName === 'help') {
    process.stdout.write(KEY_HELP);
    return EXIT_OK;
  }
  const sub = Object.hasOwn(SUBCOMMANDS, subName) ? SUBCOMMANDS[subName] : undefined;
  if (sub === undefined) throw new UsageError(`unknown subcommand '${subName}'; subcommands: ${Object.keys(SUBCOMMANDS).join(', ')}`, 'key');
  if (wantsHelp(rest)) {
    process.stdout.write(KEY_HELP);
    return EXIT_OK;
  }
  const p = parseCommand(`key ${subName}`, rest, { ...SOCKET_OPTION, ...sub.options }, sub.many === true ? Infinity : sub.named ? 1 : 0);
  const name = p.positionals[0];
  if (sub.named && name === undefined) throw new UsageError(`\`cryptod key ${subName}\` needs the key's NAME`, 'key');
  const client = await connectCli(stringOpt(p, 'socket'));
  try {
    return await sub.run(client, name, p);
  } finally {
    await client.close();
  }
}

/** The daemon checks the type and names the valid ones; the cast only satisfies the client's signature. */
function requireType(p: Parsed, sub: string): ManagedKeyType {
  const t = stringOpt(p, 'type');
  if (t === undefined) throw new UsageError(`missing required option '--type' for \`cryptod key ${sub}\` (for example --type aes256-gcm)`, 'key');
  return t as ManagedKeyType;
}

/** Policy flags as the key manager's fields; 'none' clears a duration (null: back to the default). */
function policyFlags(p: Parsed): { rotationPeriod?: string | null; gracePeriod?: string | null; prefetchPeriod?: string | null; exportable?: boolean; allowBackup?: boolean } {
  const out: { rotationPeriod?: string | null; gracePeriod?: string | null; prefetchPeriod?: string | null; exportable?: boolean; allowBackup?: boolean } = {};
  const d = (flag: string): string | null | undefined => {
    const v = stringOpt(p, flag);
    return v === 'none' ? null : v;
  };
  const r = d('rotation-period');
  if (r !== undefined) out.rotationPeriod = r;
  const g = d('grace-period');
  if (g !== undefined) out.gracePeriod = g;
  const f = d('prefetch-period');
  if (f !== undefined) out.prefetchPeriod = f;
  if (p.values.exportable === true) out.exportable = true;
  if (p.values['allow-backup'] === true) out.allowBackup = true;
  return out;
}

/** `list --json`: per key its name, type, current version and versions with state and validity. */
function summary(d: KeyDescription): Record<string, unknown> {
  return {
    name: d.name,
    type: d.type,
    currentVersion: d.currentVersion,
    disabled: d.disabled,
    origin: d.origin,
    versions: d.versions.map((v) => ({ version: v.version, state: v.state, notBefore: v.notBefore, notAfter: v.notAfter })),
  };
}

function formatList(keys: readonly KeyDescription[]): string {
  if (keys.length === 0) return 'no managed keys\n';
  const rows = [['NAME', 'TYPE', 'CURRENT', 'VERSIONS', 'STATE', 'ORIGIN']];
  for (const d of keys) {
    rows.push([d.name, d.type, d.currentVersion === null ? '-' : String(d.currentVersion), String(d.versions.length), d.disabled ? 'disabled' : 'enabled', d.origin]);
  }
  return table(rows);
}

function formatDescription(d: KeyDescription): string {
  const lines = [
    `name:     ${d.name}`,
    `type:     ${d.type}`,
    `state:    ${d.disabled ? 'disabled' : 'enabled'}`,
    `origin:   ${d.origin}`,
    `current:  ${d.currentVersion ?? '- (no version valid now)'}`,
  ];
  if (d.derived !== null) lines.push(`derived:  epochs of ${d.derived.period} from ${d.derived.epochStart}`);
  if (d.provider !== undefined) lines.push(`held in:  the token of provider ${d.provider} (never leaves it)`);
  const policy = Object.entries(d.policy)
    .filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`);
  lines.push(`policy:   ${policy.join(' ')}`, '');
  const rows = [['VERSION', 'STATE', 'NOT BEFORE', 'NOT AFTER', 'CREATED']];
  for (const v of d.versions) rows.push([String(v.version), v.state, v.notBefore, v.notAfter ?? '-', v.createdAt]);
  return `${lines.join('\n')}\n${table(rows)}`;
}

function table(rows: readonly string[][]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return `${rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n')}\n`;
}
