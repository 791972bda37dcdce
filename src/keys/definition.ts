/**
 * Key definitions (what the configuration file or `keys.create` declares) and
 * the form a key's settings take inside its keystore record.
 *
 *   KeyDefinition (input)  { type, rotationPeriod: '30d', …, derived?: { epochStart } }
 *        │ parseDefinition: every problem reported with its field
 *        ▼
 *   ParsedDefinition       { type, spec, policy, derived }
 *        │ storedPolicy
 *        ▼
 *   ManagedKeyRecord.policy  { v: 1, spec, origin, derived?, neverExportable? }   (JSON in the keystore)
 *
 * `origin` records who declared the key: a reload disables keys that the
 * configuration declared before and no longer does, and leaves keys created
 * through the API alone.
 *
 * `neverExportable` marks material that was non-extractable when it entered
 * the daemon (a WebCrypto key generated or imported with extractable: false,
 * then persisted). WebCrypto promised its holder that those bytes never leave,
 * so no policy change may make the key exportable. It lives beside the spec,
 * not in it: no client writes it, and it can only ever be set. Records
 * without it (all records written before it existed) read as false.
 */
import { DataError, InvalidArgumentError } from '../protocol/errors.js';
import type { ManagedKeyRecord } from '../store/keystore.js';
import { assertKeyName } from '../store/records.js';
import type { EpochSchedule } from './epoch.js';
import { isKeyType, KEY_TYPES, keyTypeInfo, type ManagedKeyType } from './model.js';
import { effectivePolicy, parsePolicyInput, POLICY_FIELDS, type KeyPolicy, type PolicyInput, type PolicyIssue, type PolicySpec } from './policy.js';

export type KeyOrigin = 'config' | 'api';

export interface KeyDefinition extends PolicyInput {
  type: string;
  /** A derived epoch key (epoch.ts): epoch 0 starts at `epochStart` (ISO-8601 text or epoch ms); epochs last rotationPeriod. */
  derived?: { epochStart: string | number } | null;
  /** Every version generated and kept in the token of this `providers:` entry (aes256-kwp only; src/kek/token-keys.ts). */
  provider?: string | null;
}

export interface ParsedDefinition {
  type: ManagedKeyType;
  spec: PolicySpec;
  policy: KeyPolicy;
  /** Epoch start of a derived key, or null for a stored key. */
  derived: { epochStart: number } | null;
  /** The provider whose token holds every version, or null: material held by cryptod. */
  provider: string | null;
}

const DEFINITION_FIELDS: readonly string[] = ['type', 'derived', 'provider', ...POLICY_FIELDS];

/** A `providers:` name (src/config/config.ts checks the same rule). */
export const PROVIDER_NAME = /^[a-z][a-z0-9_-]{0,31}$/;

/**
 * Key types whose versions may live in a token. Only aes256-kwp: as a KEK
 * its versions wrap and unwrap data keys, which the token does with AES-GCM
 * (C_Encrypt/C_Decrypt). The AEAD types encrypt caller data under cryptod's
 * own formats (per-message keys derived by HKDF, a counted 2^32 budget),
 * HMAC and the signature types compute with the raw key; none of that runs
 * inside a token without mechanisms SoftHSM2 and most HSMs lack.
 */
export const TOKEN_KEY_TYPES: readonly ManagedKeyType[] = ['aes256-kwp'];

/**
 * Names a managed key may not have. Key names are property names in the
 * configuration file's `keys:` mapping, in JSON output and in the maps client
 * code builds from them; there `__proto__` sets an object's prototype instead
 * of creating an entry (a declared key silently vanished), and `constructor`
 * and `prototype` shadow what code expects. One rule everywhere: refused.
 */
export const RESERVED_KEY_NAMES: readonly string[] = ['__proto__', 'constructor', 'prototype'];

/**
 * The rule for the name of a new managed key, for every way of creating one
 * (configuration file, KEY_CREATE / KEY_IMPORT / KEY_PERSIST, hence
 * `cryptod key create`): 1 to 256 UTF-8 bytes, well-formed Unicode, no
 * control characters, none of {@link RESERVED_KEY_NAMES}.
 *
 * @example
 *   assertNewKeyName('orders');     // ok
 *   assertNewKeyName('__proto__');  // InvalidArgumentError
 */
export function assertNewKeyName(name: unknown): asserts name is string {
  assertKeyName(name);
  if (RESERVED_KEY_NAMES.includes(name)) {
    throw new InvalidArgumentError(`'${name}' is reserved and cannot name a key (reserved: ${RESERVED_KEY_NAMES.join(', ')}); choose another name`, {
      detail: { field: 'name' },
    });
  }
}

/** Parse and check one definition; `issues` name their fields (and the key). */
export function parseDefinition(name: string, def: unknown): { parsed?: ParsedDefinition; issues: PolicyIssue[] } {
  const issues: PolicyIssue[] = [];
  const issue = (field: string, message: string): { issues: PolicyIssue[] } => {
    issues.push({ key: name, field, message });
    return { issues };
  };
  try {
    assertNewKeyName(name);
  } catch (err) {
    return issue('name', (err as Error).message);
  }
  if (def === null || typeof def !== 'object' || Array.isArray(def) || !isPlainObject(def)) return issue('type', 'expected a key definition with at least a type');
  const d = def as Record<string, unknown>;
  for (const f of Object.keys(d)) {
    if (!DEFINITION_FIELDS.includes(f)) issue(f, `unknown field '${f}'; known fields: ${DEFINITION_FIELDS.join(', ')}`);
  }
  if (!isKeyType(d.type)) {
    return issue('type', `expected type to be one of ${KEY_TYPES.join(', ')}, got ${typeof d.type === 'string' ? `"${d.type.slice(0, 40)}"` : String(d.type)}`);
  }
  const type = d.type;
  const { spec, issues: policyIssues } = parsePolicyInput(type, d as PolicyInput);
  for (const i of policyIssues) issues.push({ ...i, key: name });

  let derived: { epochStart: number } | null = null;
  if (d.derived !== undefined && d.derived !== null) {
    const raw = d.derived as Record<string, unknown>;
    const epochStart = typeof raw === 'object' ? parseInstant(raw.epochStart) : undefined;
    if (epochStart === undefined) issue('derived.epochStart', 'expected derived.epochStart as an ISO-8601 instant (2030-01-01T00:00:00Z) or epoch milliseconds');
    else derived = { epochStart };
    if (!keyTypeInfo(type).derivable) {
      const ok = KEY_TYPES.filter((t) => keyTypeInfo(t).derivable).join(', ');
      issue('derived', `a derived epoch key cannot be ${type}${type === 'aes256-gcm' ? ' (its 2^32 encryption limit needs a stored per-version counter)' : ''}; derivable types: ${ok}`);
    }
    if (spec.rotationPeriod === undefined) issue('rotationPeriod', 'a derived epoch key needs rotationPeriod: it is the length of an epoch');
    if (spec.gracePeriod === undefined) issue('gracePeriod', 'a derived epoch key needs gracePeriod: past epochs are held in memory only that long');
  }
  let provider: string | null = null;
  if (d.provider !== undefined && d.provider !== null) {
    if (typeof d.provider !== 'string' || !PROVIDER_NAME.test(d.provider)) {
      issue('provider', `expected provider to name an entry of providers: (lower-case letters, digits, - and _), got ${typeof d.provider === 'string' ? JSON.stringify(d.provider.slice(0, 40)) : typeof d.provider}`);
    } else if (d.provider === 'local') {
      issue('provider', "provider: local is the default (material held by cryptod, wrapped by root); leave provider out, or name a pkcs11 provider");
    } else if (!TOKEN_KEY_TYPES.includes(type)) {
      issue('provider', `a ${type} key cannot be held in a token; only ${TOKEN_KEY_TYPES.join(', ')} keys can (as KEKs for data keys)`);
    } else if (d.derived !== undefined && d.derived !== null) {
      issue('provider', 'a derived epoch key cannot be held in a token: its versions are computed from a master secret held by cryptod');
    } else if (spec.exportable === true) {
      issue('exportable', 'a key held in a token is never exportable: the token generates it non-extractable');
    } else {
      provider = d.provider;
    }
  }
  if (issues.length > 0) return { issues };
  return { parsed: { type, spec, policy: effectivePolicy(type, spec), derived, provider }, issues };
}

/** A mapping from YAML or CBOR; not a Uint8Array, Date or Map that a YAML tag produced. */
function isPlainObject(v: object): boolean {
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

function parseInstant(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? v : undefined;
  if (typeof v !== 'string' || !/^\d{4}-\d{2}-\d{2}T/.test(v)) return undefined;
  const t = Date.parse(v);
  return Number.isNaN(t) || t < 0 ? undefined : t;
}

/** What the keystore record's `policy` holds. */
export function storedPolicy(
  spec: PolicySpec, origin: KeyOrigin, derived: { epochStart: number } | null, neverExportable = false, provider: string | null = null,
): Record<string, unknown> {
  const out: Record<string, unknown> = { v: 1, spec: structuredClone(spec), origin };
  if (derived !== null) out.derived = { epochStart: derived.epochStart };
  if (neverExportable) out.neverExportable = true;
  // Beside the spec, like neverExportable: fixed when the key is created.
  if (provider !== null) out.provider = provider;
  return out;
}

export interface DecodedRecord {
  type: ManagedKeyType;
  spec: PolicySpec;
  policy: KeyPolicy;
  origin: KeyOrigin;
  derived: EpochSchedule | null;
  /** The material was non-extractable when it entered the daemon (see the header). */
  neverExportable: boolean;
  /** The provider whose token holds every version (src/kek/token-keys.ts), or null. */
  provider: string | null;
}

/**
 * Read a key record written by `storedPolicy`. A record this version cannot
 * read is a DataError naming the key (written by a newer cryptod, or damaged).
 */
export function decodeRecord(record: ManagedKeyRecord): DecodedRecord {
  const bad = (why: string): never => {
    throw new DataError(`the keystore record of key '${record.name}' cannot be read (${why}); was it written by a newer cryptod?`, {
      detail: { key: record.name },
    });
  };
  if (!isKeyType(record.type)) return bad(`unknown type "${record.type}"`);
  const p = record.policy as { v?: unknown; spec?: unknown; origin?: unknown; derived?: { epochStart?: unknown }; neverExportable?: unknown; provider?: unknown };
  if (p.v !== 1) return bad(`policy format ${String(p.v)}`);
  if (p.origin !== 'config' && p.origin !== 'api') return bad('unknown origin');
  if (p.neverExportable !== undefined && p.neverExportable !== true) return bad('neverExportable is not true');
  if (p.provider !== undefined && (typeof p.provider !== 'string' || !PROVIDER_NAME.test(p.provider) || !TOKEN_KEY_TYPES.includes(record.type) || p.derived !== undefined)) {
    return bad('provider is not a provider name of a token-held key');
  }
  // The spec went through parsePolicyInput when it was written; parse it
  // again so that a hand-edited or damaged record cannot bypass the checks.
  const { spec, issues } = parsePolicyInput(record.type, (p.spec ?? {}) as PolicyInput);
  if (issues.length > 0) return bad(issues.map((i) => `${i.field}: ${i.message}`).join('; '));
  const neverExportable = p.neverExportable === true;
  if (neverExportable && spec.exportable === true) return bad('exportable material that is marked neverExportable');
  const policy = effectivePolicy(record.type, spec);
  let derived: EpochSchedule | null = null;
  if (p.derived !== undefined) {
    const start = p.derived.epochStart;
    if (typeof start !== 'number' || !Number.isSafeInteger(start) || policy.rotationPeriod === null) return bad('derived without epochStart or rotationPeriod');
    derived = { epochStart: start, period: policy.rotationPeriod };
  }
  return { type: record.type, spec, policy, origin: p.origin, derived, neverExportable, provider: typeof p.provider === 'string' ? p.provider : null };
}

/** Order-independent equality of two specs (a reload applies only real changes). */
export function sameSpec(a: PolicySpec, b: PolicySpec): boolean {
  return canonical(a) === canonical(b);
}

function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o).sort().filter((k) => o[k] !== undefined).map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}
