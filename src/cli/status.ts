/**
 * `cryptod status [--json]`: what a running daemon holds, per client —
 * connections, live data nodes by type, nodes busy in a request right now.
 * The JSON form is the daemon's STATUS reply as is (see `DaemonStatus` in
 * src/daemon/server.ts); its top-level `nodes` is the total of live nodes.
 */
import type { DaemonStatus } from '../daemon/server.js';
import type { FleetStatus } from '../daemon/fleet.js';
import { BadFrameError } from '../protocol/errors.js';
import { parseCommand, stringOpt, wantsHelp, type OptionSpec } from './args.js';
import { CLI_CLIENT_NAME, SOCKET_OPTION, connectCli } from './connect.js';
import { EXIT_OK } from './output.js';
import { section } from './tables.js';

export const STATUS_HELP = `Usage: cryptod status [options]

Show what a running daemon holds: per client, its connections, live keys and
contexts by type, and how many are busy in a request right now; and how many
connections it refused since it started, by reason (access policy, connection
caps, HELLO deadline). The status
command's own connection is listed too (client name "${CLI_CLIENT_NAME}").

Options:
  --json               print the daemon's status as JSON (top-level "nodes"
                       is the total of live data nodes)
  -s, --socket PATH    daemon socket (default: $CRYPTOD_SOCKET, else
                       $XDG_RUNTIME_DIR/cryptod/cryptod.sock, else
                       /tmp/cryptod-$UID/cryptod.sock)
  -h, --help           show this help
`;

const OPTIONS: OptionSpec = {
  ...SOCKET_OPTION,
  json: { type: 'boolean' },
};

/** Node types in the order the table shows them; types a newer daemon adds follow. */
const TYPE_ORDER = ['key', 'hash', 'hmac', 'cipher', 'window'];

export async function status(argv: readonly string[]): Promise<number> {
  if (wantsHelp(argv)) {
    process.stdout.write(STATUS_HELP);
    return EXIT_OK;
  }
  const p = parseCommand('status', argv, OPTIONS);
  const client = await connectCli(stringOpt(p, 'socket'));
  let reply: Record<string, unknown>;
  try {
    reply = await client.status();
  } finally {
    await client.close();
  }
  const s = checkStatus(reply);
  process.stdout.write(p.values.json === true ? `${JSON.stringify(s, null, 2)}\n` : formatStatus(s));
  return EXIT_OK;
}

/** The fields the table reads; a reply without them came from something that is not a cryptod of this protocol. */
function checkStatus(v: Record<string, unknown>): DaemonStatus {
  const d = v.daemon as Record<string, unknown> | undefined;
  if (typeof v.nodes !== 'number' || typeof v.connections !== 'number' || !Array.isArray(v.clients) || typeof d !== 'object' || d === null) {
    throw new BadFrameError('the STATUS reply lacks daemon, nodes, connections or clients');
  }
  return v as unknown as DaemonStatus;
}

/** The human form: a header, then one aligned row per client. */
export function formatStatus(s: DaemonStatus): string {
  const d = s.daemon;
  const lines = [
    `cryptod ${d.version}  pid ${d.pid}  up ${formatDuration(d.uptimeMs)}${d.shuttingDown ? '  SHUTTING DOWN' : ''}`,
    `socket ${d.socket}`,
    `${s.connections} connection(s), ${s.nodes} live node(s)`,
    // Only under `serve --workers N` (src/daemon/fleet.ts): pid above is the worker that answered.
    ...workerLines((s as Partial<FleetStatus>).workers),
    // Older daemons send no `damaged`.
    ...(s.damaged ?? []).map((d) => `DAMAGED key '${d.key}' version ${d.version}: ${d.reason}`),
    '',
  ];
  // A daemon of an earlier version sends no `refused`.
  const refused = Object.entries(s.refused ?? {}).sort(([a], [b]) => a.localeCompare(b));
  if (refused.length > 0) lines.push(`refused: ${refused.map(([kind, n]) => `${n} ${kind}`).join(', ')}`);
  lines.push('');
  return `${lines.join('\n')}${clientTable(s)}${extraSections(s)}`;
}

/** Top-level fields the header and the client table already show. */
const SHOWN = new Set(['daemon', 'nodes', 'connections', 'refused', 'clients', 'damaged']);
/** Titles of the sections known today; any other field a daemon sends prints under its own name. */
const TITLES: Record<string, string> = { cache: 'DATA-KEY CACHE', lease: 'LEASE', keys: 'KEYS', workers: 'WORKERS', connectionList: 'CONNECTIONS' };

/** The status sections beyond clients (data-key cache, lease, keys, workers…), each a table, when present. */
function extraSections(s: DaemonStatus): string {
  const out: string[] = [];
  for (const [k, v] of Object.entries(s)) {
    if (SHOWN.has(k) || v === undefined) continue;
    out.push(section(TITLES[k] ?? k.toUpperCase(), v));
  }
  return out.length === 0 ? '' : `\n${out.join('\n')}`;
}

function clientTable(s: DaemonStatus): string {
  if (s.clients.length === 0) return 'no clients\n';

  const seen = new Set<string>();
  for (const c of s.clients) for (const t of Object.keys(c.byType)) seen.add(t);
  const types = [...TYPE_ORDER, ...[...seen].filter((t) => !TYPE_ORDER.includes(t)).sort()];
  const header = ['CLIENT', 'CONNS', 'NODES', 'BUSY', ...types.map((t) => t.toUpperCase())];
  const rows = [...s.clients]
    .sort((a, b) => a.clientId.localeCompare(b.clientId))
    .map((c) => [c.clientId, String(c.connections), String(c.nodes), String(c.busy), ...types.map((t) => String(c.byType[t] ?? 0))]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  // The client name is text, left-aligned; every count is right-aligned.
  const fmt = (cells: string[]): string => cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ');
  return `${[fmt(header), ...rows.map(fmt)].join('\n')}\n`;
}

function workerLines(workers: FleetStatus['workers'] | undefined): string[] {
  if (!Array.isArray(workers)) return [];
  // A worker that did not answer in time is named, not left out: the totals above lack its share.
  const row = (w: FleetStatus['workers'][number]): string => (w.answered === false ? `pid ${w.pid} did not answer in time (not in the totals)` : `pid ${w.pid} ${w.connections} conn ${w.nodes} nodes`);
  return [`${workers.length} worker(s), totals above: ${workers.map(row).join(', ')}`];
}

function formatDuration(ms: number): string {
  let s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  return h > 0 ? `${h}h${m}m${s}s` : m > 0 ? `${m}m${s}s` : `${s}s`;
}
