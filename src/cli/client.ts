/**
 * `cryptod client add|revoke|list`: manage token clients.
 *
 * These are administrator commands and they open the data directory's
 * registry directly (src/store/sqlite/client-registry.ts), not through a
 * running daemon:
 *   - who may run them is decided by the file system: the data directory is
 *     0700, so only the daemon's user (and root) can open the registry —
 *     the same people who can read the keystore, and no new "admin" right
 *     has to be granted over the socket;
 *   - tokens can be issued before the daemon first starts, and revoked while
 *     it is down;
 *   - a running daemon still sees every change at once: it reads the registry
 *     at each HELLO, and re-checks live token connections every second, so a
 *     revocation also cuts connections already open.
 */
import { userInfo } from 'node:os';
import type { ClientRecord } from '../auth/client-registry.js';
import { NO_AUDIT, createAudit, streamAudit, type Audit } from '../observe/audit.js';
import { DEFAULT_DATA_DIR } from '../config/paths.js';
import { openSqliteClientRegistry } from '../store/sqlite/client-registry.js';
import { openPostgresClientRegistry } from '../store/postgres/client-registry.js';
import { resolveStoreUrl } from '../store/postgres/connection-string.js';
import { UsageError, integerOpt, parseCommand, stringOpt, wantsHelp, type OptionSpec } from './args.js';
import { EXIT_OK } from './output.js';

export const CLIENT_HELP = `Usage: cryptod client <add|revoke|list> [options]

Manage token clients: services that identify themselves with a token in
HELLO (connect({ token }) or CRYPTOD_TOKEN) and get the ClientId
token:NAME. Run as the daemon's user; opens DIR's registry directly, so it
works whether or not the daemon runs, and a running daemon sees changes
at once (a revoked token's open connections are closed within a second).

Commands:
  add NAME [--uid N]   issue a token for NAME and print it on stdout, once.
                       Only its SHA-256 is kept: store it now. With --uid
                       the token works only from processes of that uid on
                       the Unix socket (never over TCP).
  revoke NAME          revoke NAME's token; new connections with it fail
                       with CRYPTOD_ERR_AUTH_FAILED, open ones are closed
  list [--json]        every client: name, uid restriction, created,
                       revoked (never a token)

Options:
  --data-dir DIR       data directory of the daemon (default: ./.cryptod)
  --store SPEC         the daemons' PostgreSQL keystore instead (as
                       \`serve --store\`: postgres://…, env:NAME, file:PATH)
  --audit-log FILE|-   append client.added / client.revoked (by cli:USER)
                       to FILE, or stderr with '-' (stdout keeps only
                       the token). The daemon's audit log may be shared.
                       Without it, a running daemon with an audit log
                       records the change itself when it next polls
  -h, --help           show this help
`;

const OPTIONS: OptionSpec = {
  'data-dir': { type: 'string' },
  store: { type: 'string' },
  uid: { type: 'string' },
  json: { type: 'boolean' },
  'audit-log': { type: 'string' },
};

export const CLIENT_SUBCOMMANDS = ['add', 'revoke', 'list'] as const;
const SUBCOMMANDS = CLIENT_SUBCOMMANDS;
const MAX_UID = 0xfffffffe;

export async function client(argv: readonly string[]): Promise<number> {
  if (wantsHelp(argv)) {
    process.stdout.write(CLIENT_HELP);
    return EXIT_OK;
  }
  const [sub, ...rest] = argv;
  if (sub === undefined || !(SUBCOMMANDS as readonly string[]).includes(sub)) {
    throw new UsageError(sub === undefined ? 'expected a subcommand: add, revoke or list' : `unknown subcommand '${sub}'; expected add, revoke or list`, 'client');
  }
  const p = parseCommand(`client ${sub}`, rest, OPTIONS, sub === 'list' ? 0 : 1);
  const name = p.positionals[0];
  if (sub !== 'list' && name === undefined) throw new UsageError(`\`cryptod client ${sub}\` needs a client NAME`, 'client');
  const uid = integerOpt(p, 'uid', 'client');
  if (uid !== undefined && sub !== 'add') throw new UsageError(`--uid applies to \`cryptod client add\` only`, 'client');
  if (p.values.json === true && sub !== 'list') throw new UsageError(`--json applies to \`cryptod client list\` only`, 'client');
  if (uid !== undefined && uid > MAX_UID) throw new UsageError(`option '--uid' expects a uid from 0 to ${MAX_UID}, got ${uid}`, 'client');

  const auditLog = stringOpt(p, 'audit-log');
  if (auditLog !== undefined && sub === 'list') throw new UsageError(`--audit-log applies to \`cryptod client add\` and \`revoke\` only`, 'client');
  // Opened before the registry change, so a log that cannot be opened changes nothing.
  // '-' is stderr here: stdout carries only the token (`TOKEN=$(cryptod client add NAME)`).
  const audit: Audit = auditLog === undefined ? NO_AUDIT : auditLog === '-' ? streamAudit(process.stderr) : createAudit({ target: auditLog });
  const by = `cli:${cliUser()}`;
  const store = stringOpt(p, 'store');
  const registry = store === undefined
    ? openSqliteClientRegistry({ dataDir: stringOpt(p, 'data-dir') ?? DEFAULT_DATA_DIR })
    : await openPostgresClientRegistry({ url: resolveStoreUrl(store).url });
  try {
    switch (sub) {
      case 'add': {
        const { token, client: c } = await registry.add(name!, uid === undefined ? {} : { uid });
        // The token alone on stdout, so `TOKEN=$(cryptod client add NAME)` works; the note on stderr.
        process.stdout.write(`${token}\n`);
        audit.emit({ event: 'client.added', name: c.name, uid: c.uid, by });
        process.stderr.write(`cryptod: token for client "${c.name}"${c.uid === null ? '' : ` (uid ${c.uid} only)`}; it is shown once and stored only as a hash\n`);
        break;
      }
      case 'revoke': {
        const c = await registry.revoke(name!);
        audit.emit({ event: 'client.revoked', name: c.name, by });
        process.stderr.write(`cryptod: revoked the token of client "${c.name}"\n`);
        break;
      }
      default: {
        const clients = await registry.list();
        process.stdout.write(p.values.json === true ? `${JSON.stringify(clients.map(toJson), null, 2)}\n` : formatClients(clients));
      }
    }
  } finally {
    await registry.close();
    audit.close();
  }
  return EXIT_OK;
}

/** The OS user running the CLI (the `by` of its audit events); the uid where no name resolves. */
function cliUser(): string {
  try {
    return userInfo().username;
  } catch {
    return typeof process.getuid === 'function' ? `uid${process.getuid()}` : 'unknown';
  }
}

function toJson(c: ClientRecord): Record<string, unknown> {
  return {
    name: c.name,
    uid: c.uid,
    created: new Date(c.createdAt).toISOString(),
    revoked: c.revokedAt === null ? null : new Date(c.revokedAt).toISOString(),
  };
}

/** One aligned row per client, oldest first. */
export function formatClients(clients: readonly ClientRecord[]): string {
  if (clients.length === 0) return 'no clients\n';
  const header = ['NAME', 'UID', 'CREATED', 'REVOKED'];
  const rows = clients.map((c) => [
    c.name,
    c.uid === null ? 'any' : String(c.uid),
    new Date(c.createdAt).toISOString(),
    c.revokedAt === null ? '-' : new Date(c.revokedAt).toISOString(),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (cells: string[]): string => cells.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd();
  return `${[fmt(header), ...rows.map(fmt)].join('\n')}\n`;
}
