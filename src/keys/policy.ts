/**
 * Rotation and usage policy of a managed key, validated at the edge.
 *
 * Three shapes:
 *   PolicyInput  what a person or client wrote: durations as text (`10m`) or ms
 *   PolicySpec   what was set, normalized to ms; absent = default. Stored.
 *   KeyPolicy    the effective policy: every default filled in, frozen.
 *
 * Storing the spec rather than the effective policy keeps defaults that depend
 * on other fields (the prefetch period follows the rotation period) correct
 * when those fields change later.
 *
 * The one cross-field rule comes from design note 4: a version must outlive
 * the prefetch period (its successor is prepared that long before it ends),
 * the grace period (its data is still accepted that long after) and the
 * clock tolerance (peers' clocks disagree that much):
 *
 *     rotationPeriod ≥ prefetchPeriod + gracePeriod + clockTolerance
 *
 * Otherwise a version could stop being accepted before its successor is even
 * in use everywhere.
 */
import { ConfigError, InvalidArgumentError, type CryptodError } from '../protocol/errors.js';
import { MAX_NAME_BYTES } from '../store/records.js';
import { formatDuration, parseDuration } from './duration.js';
import { isKeyOp, keyTypeInfo, typeAllows, type KeyOp, type ManagedKeyType } from './model.js';

export { DURATION_FORMS, formatDuration, parseDuration } from './duration.js';

export const DEFAULT_CLOCK_TOLERANCE_MS = 1_000;
/** Default prefetch: 5 minutes, or a quarter of a shorter rotation period. */
export const DEFAULT_PREFETCH_MS = 5 * 60_000;

export interface PolicyInput {
  rotationPeriod?: string | number | null;
  prefetchPeriod?: string | number | null;
  gracePeriod?: string | number | null;
  clockTolerance?: string | number | null;
  minDecryptionVersion?: number | null;
  exportable?: boolean | null;
  deletionProtection?: boolean | null;
  /** Whether KEY_BACKUP may copy the key to another daemon (src/keys/backup.ts). */
  allowBackup?: boolean | null;
  /** `{ clientName | '*': ops }`; a client's own entry replaces the `*` entry for it. */
  clients?: Record<string, readonly string[]> | null;
}

export const POLICY_FIELDS = [
  'rotationPeriod', 'prefetchPeriod', 'gracePeriod', 'clockTolerance',
  'minDecryptionVersion', 'exportable', 'deletionProtection', 'clients', 'allowBackup',
] as const;
type PolicyField = (typeof POLICY_FIELDS)[number];
const DURATION_FIELDS = ['rotationPeriod', 'prefetchPeriod', 'gracePeriod', 'clockTolerance'] as const;

/** Normalized and JSON-safe (it is stored inside the key record). */
export interface PolicySpec {
  rotationPeriod?: number;
  prefetchPeriod?: number;
  gracePeriod?: number;
  clockTolerance?: number;
  minDecryptionVersion?: number;
  exportable?: boolean;
  deletionProtection?: boolean;
  clients?: Record<string, KeyOp[]>;
  allowBackup?: boolean;
}

export interface KeyPolicy {
  /** Life of a version; `null`: versions are open-ended and only rotate by hand. */
  readonly rotationPeriod: number | null;
  readonly prefetchPeriod: number;
  /** `null`: no grace model, old versions stay usable inbound (data at rest). */
  readonly gracePeriod: number | null;
  readonly clockTolerance: number;
  /** 0: no minimum. */
  readonly minDecryptionVersion: number;
  readonly exportable: boolean;
  readonly deletionProtection: boolean;
  readonly allowBackup: boolean;
  readonly clients: ReadonlyMap<string, ReadonlySet<KeyOp>>;
  readonly spec: Readonly<PolicySpec>;
}

/** One problem, named by field (and by key when the caller knows it). */
export interface PolicyIssue {
  key?: string;
  field: string;
  message: string;
}

/**
 * Parse `input` into a spec. With `base`, `input` is a patch: absent fields
 * keep their base value and `null` clears one back to its default. Without
 * it, `input` is the whole policy (a declarative config entry).
 */
export function parsePolicyInput(type: ManagedKeyType, input: PolicyInput, base?: PolicySpec): { spec: PolicySpec; issues: PolicyIssue[] } {
  const issues: PolicyIssue[] = [];
  const spec: PolicySpec = base === undefined ? {} : structuredClone(base);
  const has = (f: PolicyField): boolean => Object.hasOwn(input, f) && input[f] !== undefined;
  const fail = (field: string, err: unknown): void => {
    issues.push({ field, message: err instanceof Error ? err.message : String(err) });
  };

  for (const f of DURATION_FIELDS) {
    if (!has(f)) continue;
    const v = input[f];
    if (v === null) delete spec[f];
    else {
      try {
        spec[f] = parseDuration(v, f);
      } catch (err) {
        fail(f, err);
      }
    }
  }
  if (has('minDecryptionVersion')) {
    const v = input.minDecryptionVersion;
    if (v === null) delete spec.minDecryptionVersion;
    else if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffff_ffff) {
      fail('minDecryptionVersion', `expected minDecryptionVersion as an integer in 0..4294967295 (0: no minimum), got ${show(v)}`);
    } else spec.minDecryptionVersion = v;
  }
  for (const f of ['exportable', 'deletionProtection', 'allowBackup'] as const) {
    if (!has(f)) continue;
    const v = input[f];
    if (v === null) delete spec[f];
    else if (typeof v !== 'boolean') fail(f, `expected ${f} to be true or false, got ${show(v)}`);
    else spec[f] = v;
  }
  if (has('clients')) {
    const v = input.clients;
    if (v === null) delete spec.clients;
    else {
      const clients = parseClients(type, v, issues);
      if (clients !== undefined) spec.clients = clients;
    }
  }
  if (issues.length === 0) issues.push(...checkPolicy(spec));
  return { spec, issues };
}

function parseClients(type: ManagedKeyType, v: unknown, issues: PolicyIssue[]): Record<string, KeyOp[]> | undefined {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    issues.push({ field: 'clients', message: `expected clients to map client names (or '*') to lists of operations, got ${show(v)}` });
    return undefined;
  }
  const allowed = [...keyTypeInfo(type).ops, 'export', 'admin'].join(', ');
  const out: Record<string, KeyOp[]> = {};
  for (const [client, ops] of Object.entries(v as Record<string, unknown>)) {
    const field = `clients.${client}`;
    const bytes = Buffer.byteLength(client, 'utf8');
    if (bytes === 0 || bytes > MAX_NAME_BYTES || /[\u0000-\u001f\u007f]/.test(client)) {
      issues.push({ field: 'clients', message: `expected client names of 1..${MAX_NAME_BYTES} bytes without control characters` });
      continue;
    }
    if (!Array.isArray(ops)) {
      issues.push({ field, message: `expected ${field} to be a list of operations (${allowed}), got ${show(ops)}` });
      continue;
    }
    const list: KeyOp[] = [];
    for (const op of ops) {
      if (!isKeyOp(op)) issues.push({ field, message: `unknown operation ${show(op)} in ${field}; expected one of ${allowed}` });
      else if (!typeAllows(type, op)) issues.push({ field, message: `operation '${op}' in ${field} does not apply to a ${type} key; it allows ${allowed}` });
      else if (!list.includes(op)) list.push(op);
    }
    out[client] = list;
  }
  return out;
}

/** Cross-field rules of a spec (see the header). */
export function checkPolicy(spec: PolicySpec): PolicyIssue[] {
  const p = resolve(spec);
  if (p.rotationPeriod === null) return [];
  if (p.rotationPeriod === 0) return [{ field: 'rotationPeriod', message: 'expected rotationPeriod longer than 0s (omit it for keys rotated only by hand)' }];
  const need = p.prefetchPeriod + (p.gracePeriod ?? 0) + p.clockTolerance;
  if (p.rotationPeriod >= need) return [];
  const part = (f: 'prefetchPeriod' | 'gracePeriod' | 'clockTolerance', ms: number | null): string =>
    `${f} ${formatDuration(ms ?? 0)}${spec[f] === undefined ? (f === 'gracePeriod' ? ' (none)' : ' (default)') : ''}`;
  return [
    {
      field: 'rotationPeriod',
      message:
        `rotationPeriod ${formatDuration(p.rotationPeriod)} is shorter than ${part('prefetchPeriod', p.prefetchPeriod)} + ` +
        `${part('gracePeriod', p.gracePeriod)} + ${part('clockTolerance', p.clockTolerance)} = ${formatDuration(need)}: ` +
        'the validity period must be at least PREFETCH + GRACE + TIME_THRESHOLD (design note 4); ' +
        'lengthen rotationPeriod or shorten prefetchPeriod, gracePeriod or clockTolerance',
    },
  ];
}

/**
 * Rules that compare the new policy with the one in force. `exportable` only
 * ever goes one way, false → true (the key may have left the daemon), and not
 * even that on material that entered non-extractable (definition.ts
 * `neverExportable`). Who may make that one step is the caller's question
 * (managed-auth.ts: daemon administrators only).
 */
export function checkTransition(previous: KeyPolicy | undefined, next: KeyPolicy, neverExportable = false): PolicyIssue[] {
  if (previous?.exportable === true && !next.exportable) {
    return [{ field: 'exportable', message: 'exportable cannot go back to false: the key may already have left the daemon (set exportable: true)' }];
  }
  if (neverExportable && next.exportable) {
    return [{ field: 'exportable', message: 'the key material was non-extractable when it entered the daemon and can never be made exportable (set exportable: false)' }];
  }
  return [];
}

interface Resolved {
  rotationPeriod: number | null;
  prefetchPeriod: number;
  gracePeriod: number | null;
  clockTolerance: number;
}

function resolve(spec: PolicySpec): Resolved {
  const rotationPeriod = spec.rotationPeriod ?? null;
  const prefetchPeriod = spec.prefetchPeriod ?? (rotationPeriod === null ? DEFAULT_PREFETCH_MS : Math.min(DEFAULT_PREFETCH_MS, Math.floor(rotationPeriod / 4)));
  return { rotationPeriod, prefetchPeriod, gracePeriod: spec.gracePeriod ?? null, clockTolerance: spec.clockTolerance ?? DEFAULT_CLOCK_TOLERANCE_MS };
}

/**
 * The effective policy of a (valid) spec. Without a `clients` entry every
 * client may use the key for its type's data operations, but not export or
 * administer it.
 */
export function effectivePolicy(type: ManagedKeyType, spec: PolicySpec): KeyPolicy {
  const clients = new Map<string, ReadonlySet<KeyOp>>();
  if (spec.clients === undefined) clients.set('*', new Set(keyTypeInfo(type).ops));
  else for (const [name, ops] of Object.entries(spec.clients)) clients.set(name, new Set(ops));
  return Object.freeze({
    ...resolve(spec),
    minDecryptionVersion: spec.minDecryptionVersion ?? 0,
    exportable: spec.exportable ?? false,
    deletionProtection: spec.deletionProtection ?? false,
    allowBackup: spec.allowBackup ?? false,
    clients,
    spec: Object.freeze(structuredClone(spec)),
  });
}

/**
 * Whether `client` may perform `op` with a key under `policy`. A client's own
 * entry replaces the `*` entry (so it can also narrow it); `export` also
 * needs the key to be exportable.
 *
 * @example
 *   permits(policy, 'billing-svc', 'decrypt')
 */
export function permits(policy: KeyPolicy, client: string, op: KeyOp): boolean {
  const ops = policy.clients.get(client) ?? policy.clients.get('*');
  if (ops === undefined || !ops.has(op)) return false;
  return op !== 'export' || policy.exportable;
}

/** The policy as people read it (describe, `--json`): durations in compact form. */
export function describePolicy(p: KeyPolicy): Record<string, unknown> {
  return {
    rotationPeriod: p.rotationPeriod === null ? null : formatDuration(p.rotationPeriod),
    prefetchPeriod: formatDuration(p.prefetchPeriod),
    gracePeriod: p.gracePeriod === null ? null : formatDuration(p.gracePeriod),
    clockTolerance: formatDuration(p.clockTolerance),
    minDecryptionVersion: p.minDecryptionVersion,
    exportable: p.exportable,
    deletionProtection: p.deletionProtection,
    allowBackup: p.allowBackup,
    clients: Object.fromEntries([...p.clients].map(([c, ops]) => [c, [...ops]])),
  };
}

/** One line per issue: `key 'orders': rotationPeriod: …`. */
export function formatIssues(issues: readonly PolicyIssue[]): string {
  return issues.map((i) => `${i.key === undefined ? '' : `key '${i.key}': `}${i.field}: ${i.message}`).join('\n');
}

/** A configuration refused as a whole; `issues` lets the config loader map each to a file line. */
export class KeyConfigError extends ConfigError {
  readonly issues: readonly PolicyIssue[];
  constructor(issues: readonly PolicyIssue[]) {
    const first = issues[0];
    super(`invalid key configuration (${issues.length} problem${issues.length === 1 ? '' : 's'}); nothing was applied:\n${formatIssues(issues)}`, {
      detail: { key: first?.key, field: first?.field, problems: issues.length },
    });
    this.issues = issues;
  }
}

/** An API call's policy refused: InvalidArgumentError naming the (first) field. */
export function policyArgumentError(issues: readonly PolicyIssue[]): CryptodError {
  const first = issues[0];
  return new InvalidArgumentError(formatIssues(issues), { detail: { key: first?.key, field: first?.field } });
}

function show(v: unknown): string {
  if (typeof v === 'string') return `"${v.length > 40 ? `${v.slice(0, 40)}…` : v}"`;
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'an object';
  return String(v);
}
