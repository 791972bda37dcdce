/**
 * The audit log: one JSON line per security-relevant event, for whoever must
 * later answer "who did what to which key, and who was turned away".
 *
 *   {"time":"2025-…Z","seq":7,"event":"request.denied","connection":3,
 *    "clientId":"uid:1000/billing","client":"billing","op":"EXPORT_KEY",
 *    "code":"CRYPTOD_ERR_NOT_EXTRACTABLE","key":"…handle…"}
 *
 * What goes in is fixed by the {@link AuditEvent} union: identities (uid, gid,
 * pid, client names), operation names, error codes, key names, handles and
 * versions — never key material, plaintext, tokens or request payloads. Every
 * field is a string, number, boolean or null, so nothing structured from a
 * request can slip into a line.
 *
 * Off by default, and then free: the daemon holds {@link NO_AUDIT}, whose
 * `enabled` is false, and the connection checks that flag before it builds an
 * event (STYLE.md: optional features cost nothing until switched on).
 *
 * Which failed requests are audited (the connection decides, from the code):
 *
 *   CRYPTOD_ERR_FORBIDDEN, CRYPTOD_ERR_NOT_EXTRACTABLE ─▶ request.denied, every time:
 *       a policy said no to this client about this key; that is the event.
 *   CRYPTOD_ERR_QUOTA, _MEMORY_LIMIT, _FRAME_TOO_LARGE ──▶ limit.exceeded, the first
 *       time per connection and code: a flood of refusals must not become a
 *       flood of audit lines (the log would be the attack's amplifier).
 *   CRYPTOD_ERR_AUTH_FAILED, _TOO_MANY_CONNECTIONS,
 *   _PROTOCOL_VERSION at HELLO ──────────────────────────▶ connection.refused
 *   everything else (NOT_FOUND on handle lookups, INVALID_ARGUMENT, BUSY,
 *   DECRYPT_FAILED, BAD_FRAME, …) ─────────────────────▶ not audited: handles are
 *       unguessable and per client, so a miss reveals and attempts nothing;
 *       the rest are the caller's own input failing, not a decision about it.
 */
import { closeSync, constants, fstatSync, openSync, writeSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { ConfigError } from '../protocol/errors.js';
import { assertTrustedOwner, checkAncestors } from '../files/trusted-files.js';
import type { Logger } from './logger.js';

/** The kernel-verified identity of a peer, or nulls where the transport has none (TCP, no SO_PEERCRED). */
export interface AuditPeer {
  readonly uid: number | null;
  readonly gid: number | null;
  readonly pid: number | null;
}

/** Why a connection was turned away. */
export type RefusalReason =
  // at accept, before a byte is read:
  | 'access-policy' // uid/gid not admitted (src/daemon/access.ts)
  | 'no-peer-credentials' // the kernel's record of the peer could not be read
  | 'tls' // no, or an unverified, client certificate (src/daemon/tls-listener.ts)
  // at HELLO:
  | 'auth-failed' // the HELLO token did not verify
  | 'too-many-connections'
  | 'protocol-version';

/** Which limit a request ran into. */
export type LimitName = 'nodes-per-client' | 'context-memory' | 'frame-size';

/** Identifies the connection and client an event is about. */
interface ConnectionRef {
  readonly connection: number;
  readonly clientId: string;
  /** The name the client is known by (from HELLO, its token or its certificate). */
  readonly client: string;
}

/** Who made a change through the daemon (a client) or the CLI (`cli:<user>`); absent when the daemon did it on its own (a scheduled rotation). */
interface Actor {
  readonly by?: string;
}

export type AuditEvent =
  | ({ readonly event: 'connection.accepted'; readonly authenticatedBy: 'token' | 'cert' | 'uid' | 'none' } & ConnectionRef & AuditPeer)
  | ({
      readonly event: 'connection.refused';
      /** Null when refused at accept, before the connection was numbered. */
      readonly connection: number | null;
      readonly reason: RefusalReason;
      /** The refusal in words (never secret). */
      readonly detail: string | null;
      /** The client name, when it got that far (HELLO named it). */
      readonly client: string | null;
      readonly transport: 'unix' | 'tls';
      /** A TCP peer's address. */
      readonly remoteAddress: string | null;
    } & AuditPeer)
  | ({ readonly event: 'connection.closed'; readonly durationMs: number; readonly requests: number } & ConnectionRef)
  | ({ readonly event: 'request.denied'; readonly op: string; readonly code: string; readonly key: string | null } & ConnectionRef)
  | ({ readonly event: 'limit.exceeded'; readonly op: string; readonly code: string; readonly limit: LimitName } & ConnectionRef)
  | ({ readonly event: 'key.created'; readonly key: string; readonly version: number | null; readonly algorithm: string } & Actor)
  | ({
      readonly event: 'key.rotated';
      readonly key: string;
      readonly version: number;
      readonly previousVersion: number | null;
      /** Absent or 'manual': KEY_ROTATE (with `by`); otherwise the key manager rotated on its own (no `by`). */
      readonly reason?: 'manual' | 'schedule' | 'usage-limit';
    } & Actor)
  | ({ readonly event: 'key.exported'; readonly key: string; readonly format: string; readonly op: string } & Partial<ConnectionRef> & Actor)
  | ({ readonly event: 'key.exportable'; readonly key: string } & Actor)
  | ({ readonly event: 'key.backup-allowed'; readonly key: string } & Actor)
  | ({ readonly event: 'key.backed-up'; readonly key: string; readonly versions: number; readonly recipient: string; readonly signingKey: string } & Actor)
  | ({ readonly event: 'key.restored'; readonly key: string; readonly versions: number; readonly transferKey: string; readonly signer: string; readonly replaced: boolean } & Actor)
  | { readonly event: 'key.damaged'; readonly key: string; readonly version: number; readonly file: string; readonly reason: string }
  | ({ readonly event: 'key.destroyed'; readonly key: string; readonly version: number | null } & Actor)
  | ({ readonly event: 'policy.changed'; readonly key: string | null; readonly subject: string | null; readonly change: string } & Actor)
  | ({ readonly event: 'client.added'; readonly name: string; readonly uid: number | null } & Actor)
  | ({ readonly event: 'client.revoked'; readonly name: string } & Actor)
  | ({ readonly event: 'datakey.generated'; readonly kek: string; readonly kekVersion: number; readonly plaintext: boolean } & ConnectionRef)
  | ({ readonly event: 'datakey.rewrapped'; readonly kek: string; readonly kekVersion: number; readonly previousVersion: number } & ConnectionRef)
  | ({ readonly event: 'datakey.opened'; readonly kek: string; readonly kekVersion: number; readonly rewrapped: boolean } & ConnectionRef)
  | ({ readonly event: 'datakey.unwrapped'; readonly kek: string; readonly kekVersion: number } & ConnectionRef);

export type AuditEventName = AuditEvent['event'];

/** Where audit events go. Callers may emit unconditionally; hot paths check `enabled` first. */
export interface Audit {
  readonly enabled: boolean;
  emit(event: AuditEvent): void;
  /** Flush and close the destination (a file); later events are dropped. */
  close(): void;
}

/** The audit log switched off. */
export const NO_AUDIT: Audit = { enabled: false, emit() {}, close() {} };

/** Longest string field written; longer ones are cut (names are short; this bounds a line). */
const MAX_FIELD = 256;

/**
 * Serialize an event to its line. Exported for tests. Strings are cut to
 * {@link MAX_FIELD}; anything that is not a scalar is dropped — the types
 * forbid it, and this keeps a line flat even if a caller casts around them.
 */
export function auditLine(event: AuditEvent, seq: number, now: Date = new Date(), worker?: number): string {
  const out: Record<string, string | number | boolean | null> = { time: now.toISOString(), seq };
  if (worker !== undefined) out.worker = worker;
  for (const [k, v] of Object.entries(event)) {
    if (v === undefined) continue;
    if (typeof v === 'string') out[k] = v.length > MAX_FIELD ? `${v.slice(0, MAX_FIELD)}…` : v;
    else if (typeof v === 'number' || typeof v === 'boolean' || v === null) out[k] = v;
  }
  return `${JSON.stringify(out)}\n`;
}

export interface AuditOptions {
  /** A file path (created 0600, opened for appending), or '-' for stdout. */
  target: string;
  /** Told once when writing to the destination fails (events after it are dropped and counted). */
  log?: Logger;
  /**
   * This process is one of several workers appending to the same file
   * (`serve --workers`): every line carries `worker` (this pid), and `seq`
   * counts per worker. Lines stay whole: each is one write(2) on an O_APPEND
   * descriptor, which Linux appends atomically to a regular file.
   */
  worker?: boolean;
  /** Told of every event that could not be written (metrics: cryptod_audit_write_errors_total). */
  onWriteError?: () => void;
}

/**
 * Open the audit log. A file is opened with O_APPEND (every line lands at the
 * end, also beside other writers such as logrotate's copytruncate), O_CREAT
 * with mode 0600, O_NOFOLLOW (a symlink planted at the path is refused,
 * not followed) and O_NONBLOCK (a FIFO planted there cannot hold the start). An existing file readable by group or others, or owned by
 * another user than the daemon's or root, or in a directory others may write
 * (src/files/trusted-files.ts), is refused: the audit trail names clients and
 * keys, and whoever controls the file can rewrite it.
 *
 * Lines are written synchronously: an event is in the file (page cache)
 * before the reply that it describes is sent, and a crash loses none.
 * Events are rare by design (see the list above), so this costs the event
 * loop microseconds per event.
 *
 * @throws ConfigError when the file cannot be opened or its mode is too wide.
 */
export function createAudit(options: AuditOptions): Audit {
  if (options.target === '-') {
    // Several processes on one pipe or socket may split a line; a file does not (see AuditOptions.worker).
    if (options.worker === true) throw new ConfigError('the audit log cannot be stdout (--audit-log -) with several workers: give a file, which every worker appends whole lines to', { detail: { field: 'audit-log' } });
    return streamAudit(process.stdout, options.log, options.onWriteError);
  }
  const worker = options.worker === true ? process.pid : undefined;
  const path = options.target;
  checkAncestors(path);
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK, 0o600);
  } catch (err) {
    throw new ConfigError(`cannot open the audit log ${path}: ${(err as Error).message}`, { cause: err });
  }
  const st = fstatSync(fd);
  try {
    assertTrustedOwner(path, st, 'the audit log');
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  if (!st.isFile() || (st.mode & 0o077) !== 0) {
    closeSync(fd);
    const what = st.isFile() ? `has mode ${(st.mode & 0o777).toString(8)}` : 'is not a regular file';
    throw new ConfigError(`the audit log ${path} ${what}; it must be a regular file only its owner can read (chmod 600 ${path})`, {
      detail: { field: 'audit-log' },
    });
  }
  let seq = 0;
  let open = true;
  let dropped = 0;
  return {
    enabled: true,
    emit(event) {
      if (!open) return;
      try {
        writeSync(fd, auditLine(event, ++seq, new Date(), worker));
      } catch (err) {
        // Keep serving: an audit failure is reported loudly, once, rather than
        // turned into an outage. Operators who need fail-closed watch this line.
        if (dropped++ === 0) options.log?.error('audit log write failed; events are being dropped', { path, error: (err as Error).message });
        options.onWriteError?.();
      }
    },
    close() {
      if (!open) return;
      open = false;
      if (dropped > 0) options.log?.error('audit events dropped', { path, dropped });
      closeSync(fd);
    },
  };
}

/** Audit to a stream (stdout, or a test's collector). */
export function streamAudit(stream: Writable, log?: Logger, onWriteError?: () => void): Audit {
  let seq = 0;
  let open = true;
  let failed = false;
  const onError = (err: Error): void => {
    if (failed) return;
    failed = true;
    log?.error('audit stream failed; events are being dropped', { error: err.message });
  };
  stream.on('error', onError);
  return {
    enabled: true,
    emit(event) {
      if (!open) return;
      if (failed) onWriteError?.();
      else stream.write(auditLine(event, ++seq));
    },
    close() {
      open = false;
      stream.off('error', onError);
    },
  };
}

/** The audit event kind, if any, of a request that failed with `code` (see the list at the top). */
export function auditKindOf(code: string): 'denied' | LimitName | null {
  switch (code) {
    case 'CRYPTOD_ERR_FORBIDDEN':
    case 'CRYPTOD_ERR_NOT_EXTRACTABLE':
      return 'denied';
    case 'CRYPTOD_ERR_QUOTA':
      return 'nodes-per-client';
    case 'CRYPTOD_ERR_MEMORY_LIMIT':
      return 'context-memory';
    case 'CRYPTOD_ERR_FRAME_TOO_LARGE':
      return 'frame-size';
    default:
      return null;
  }
}
