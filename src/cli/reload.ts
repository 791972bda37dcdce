/**
 * `cryptod reload`: ask a running daemon to re-read its --config file (the
 * RELOAD op; the same as sending it SIGHUP, but the outcome comes back).
 * A refused file exits 1 with CRYPTOD_ERR_CONFIG and every problem as
 * FILE:LINE:COL: field: message; the daemon keeps its running configuration.
 */
import { parseCommand, stringOpt, wantsHelp, type OptionSpec } from './args.js';
import { SOCKET_OPTION, connectCli } from './connect.js';
import { CryptodError } from '../protocol/errors.js';
import { EXIT_FAILURE, EXIT_OK, writeErr } from './output.js';

export const RELOAD_HELP = `Usage: cryptod reload [options]

Make a running daemon re-read its configuration file (cryptod serve
--config FILE) and apply its keys: new keys are created, changed policies
applied, keys no longer declared disabled (never destroyed). An invalid file
is refused as a whole and the running configuration stays. Settings other
than keys take effect at the next restart (the daemon's log says which).
A daemon with a TLS listener also re-reads its certificate, key, client CA
and CRL (also without --config), and closes live connections whose
certificate the CRL now revokes.

Under serve --workers N every worker reloads; the output names each one's
outcome, and the exit status is 1 when any worker failed or did not answer.

Options:
  --json               print the daemon's summary as JSON
  -s, --socket PATH    daemon socket (default: $CRYPTOD_SOCKET, else
                       $XDG_RUNTIME_DIR/cryptod/cryptod.sock, else
                       /tmp/cryptod-$UID/cryptod.sock)
  -h, --help           show this help
`;

const OPTIONS: OptionSpec = { ...SOCKET_OPTION, json: { type: 'boolean' } };

export async function reload(argv: readonly string[]): Promise<number> {
  if (wantsHelp(argv)) {
    process.stdout.write(RELOAD_HELP);
    return EXIT_OK;
  }
  const p = parseCommand('reload', argv, OPTIONS);
  const client = await connectCli(stringOpt(p, 'socket'));
  let summary: unknown;
  try {
    summary = await client.reload();
  } catch (err) {
    // A refused file: keep one problem per line (FILE:LINE:COL: field: message),
    // which report() would fold into one.
    if (!(err instanceof CryptodError) || err.code !== 'CRYPTOD_ERR_CONFIG') throw err;
    const [first, ...rest] = err.message.split('\n');
    writeErr(`${err.code}: ${first ?? ''}`);
    for (const line of rest) process.stderr.write(`${line}\n`);
    return EXIT_FAILURE;
  } finally {
    await client.close();
  }
  if (p.values.json === true) {
    process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    const rows = (summary as { workers?: Array<{ outcome: string }> } | null)?.workers;
    return Array.isArray(rows) && rows.some((w) => w.outcome !== 'reloaded') ? EXIT_FAILURE : EXIT_OK;
  }
  const s = (summary ?? {}) as Record<string, unknown>;
  // Under --workers: every worker's outcome (docs/protocol.md RELOAD).
  const workers = Array.isArray(s.workers) ? (s.workers as Array<{ pid: number; outcome: string; error?: { code: string; message: string } }>) : [];
  const workersLine = workers.length === 0 ? '' : `  workers:   ${workers.map((w) => `pid ${w.pid} ${w.outcome}${w.error === undefined ? '' : ` (${w.error.code}: ${w.error.message.split('\n')[0] ?? ''})`}`).join(', ')}\n`;
  const allReloaded = workers.every((w) => w.outcome === 'reloaded');
  const tls = s.tls as { revokedSerials: number; closed: number } | undefined;
  const tlsLine = tls === undefined ? '' : `  tls:       files re-read; ${tls.revokedSerials} serial(s) revoked, ${tls.closed} connection(s) closed\n`;
  if (s.file === undefined && tls !== undefined) {
    process.stdout.write(`reloaded the TLS listener\n${tlsLine}${workersLine}`);
    return allReloaded ? EXIT_OK : EXIT_FAILURE;
  }
  const names = (k: string): string => (Array.isArray(s[k]) && (s[k] as unknown[]).length > 0 ? (s[k] as unknown[]).join(', ') : '-');
  process.stdout.write(
    `reloaded ${typeof s.file === 'string' ? s.file : 'the configuration'}\n` +
      `  created:   ${names('created')}\n  updated:   ${names('updated')}\n  enabled:   ${names('enabled')}\n` +
      `  disabled:  ${names('disabled')}\n  unchanged: ${names('unchanged')}\n` +
      (names('restartNeeded') === '-' ? '' : `  changed, effective at restart: ${names('restartNeeded')}\n`) +
      tlsLine + workersLine,
  );
  if (!allReloaded) writeErr('not every worker reloaded: see the workers line above, and their log');
  return allReloaded ? EXIT_OK : EXIT_FAILURE;
}
