/**
 * The configuration file's schema and its validation (`cryptod serve --config
 * FILE`). load.ts parses the YAML; this file checks the parsed document and
 * reports every problem with the field it concerns, as a path into the
 * document (`['limits', 'maxFrame']`), so the loader can name the line.
 *
 *   dataDir, socket, socketMode, logLevel      daemon basics
 *   limits: { maxFrame, … }                     src/config/limits.ts
 *   access: { uids, gids }                      src/daemon/access.ts
 *   listen, tls: { cert, key, clientCa, crl }   src/daemon/tls-listener.ts
 *   audit: { log }                              src/observe/audit.ts
 *   metrics: { listen, keyLabels }              src/daemon/metrics-listener.ts
 *   kek: { passphraseFile | passphraseEnv }     src/kek/local.ts
 *   providers: { NAME: { type: pkcs11, … } }   src/kek/pkcs11/ (`local` is implicit)
 *   root: NAME                                  src/kek/ring.ts (default local)
 *   store: postgres://… | env:NAME | file:PATH  src/store/postgres/connection-string.ts
 *   keys: { NAME: { type, rotationPeriod, … } } src/keys/definition.ts
 *   workers: N | auto                           src/config/workers.ts (serve --workers)
 *
 * Unknown fields are errors: a typo (`rotationPeriods`) must not silently
 * leave a key without the rotation its operator asked for.
 */
import { isAbsolute, resolve } from 'node:path';
import type { Level } from '../observe/logger.js';
import { LIMIT_NAMES, limitIssues, type LimitName, type Limits } from './limits.js';
import type { AccessPolicy, TcpListenOptions } from './listeners.js';
import { parseDefinition, type KeyDefinition } from '../keys/definition.js';
import { assertPinSource } from '../kek/pkcs11/pin.js';
import { WORKERS_EXPECTED, workerCount } from './workers.js';

/** A validated configuration file; paths are absolute (relative ones are taken from the file's directory). */
export interface ConfigFile {
  /** Absolute path of the file it came from. */
  readonly path: string;
  readonly dataDir?: string;
  readonly socket?: string;
  readonly socketMode?: number;
  readonly logLevel?: Level;
  readonly limits: Partial<Limits>;
  readonly access?: AccessPolicy;
  readonly tcp?: TcpListenOptions;
  readonly audit?: { log: string };
  readonly http?: { url: string; mount?: string };
  readonly adminClients?: readonly string[];
  readonly metrics?: { listen: string; keyLabels: boolean };
  readonly kek: { passphraseFile?: string; passphraseEnv?: string };
  /** Key definitions, as written (the key manager parses them again when it applies them). */
  readonly keys: Readonly<Record<string, KeyDefinition>>;
  /** KEK providers besides the implicit `local`, by name. */
  readonly providers: Readonly<Record<string, ProviderConfig>>;
  /** The provider that wraps managed-key material at rest; absent: `local`. */
  readonly root?: string;
  /** The PostgreSQL keystore (a secret: its password); absent = SQLite in dataDir. A relative file: path is taken from the file's directory. */
  readonly store?: string;
  /** Worker processes behind the socket (`--workers`; `auto` resolved to the cores here); absent: 1. */
  readonly workers?: number;
}

/** A `type: pkcs11` provider: any PKCS#11 module, the token by label, the PIN from `env:NAME` or `file:PATH`. */
export interface ProviderConfig {
  readonly type: 'pkcs11';
  /** Absolute path of the PKCS#11 module. */
  readonly module: string;
  /** The token's label. */
  readonly token: string;
  /** `env:NAME` or `file:/path` (never the PIN itself). */
  readonly pin: string;
  /** Slot ID, when several tokens carry the label. */
  readonly slot?: number;
  /** Sessions in the pool (default 4). */
  readonly sessions: number;
  /** Least time between reconnect attempts while the token is away, ms (default 1000). */
  readonly retryMs: number;
}

export const PROVIDER_FIELDS = ['type', 'module', 'token', 'pin', 'slot', 'sessions', 'retryMs'] as const;
export const DEFAULT_PROVIDER_SESSIONS = 4;
export const MAX_PROVIDER_SESSIONS = 64;
export const DEFAULT_PROVIDER_RETRY_MS = 1000;
const PROVIDER_NAME = /^[a-z][a-z0-9_-]{0,31}$/;

/** One problem, at a path in the document; `at: 'key'` points at the field's name rather than its value. */
export interface ConfigIssue {
  path: readonly (string | number)[];
  at: 'key' | 'value';
  message: string;
}

export const TOP_LEVEL_FIELDS = ['dataDir', 'socket', 'socketMode', 'logLevel', 'limits', 'access', 'listen', 'tls', 'audit', 'kek', 'keys', 'providers', 'root', 'http', 'adminClients', 'store', 'metrics', 'workers'] as const;
const LEVELS: readonly Level[] = ['debug', 'info', 'warn', 'error'];

/**
 * Settings a running daemon takes over at reload, and settings that need a
 * restart: the listeners, the data directory and the KEK are opened once at
 * start, and the limits are read by every connection and by the Data
 * Manager when they are created, so changing them under live connections
 * would apply to some and not others.
 */
export const RELOADABLE_FIELDS: readonly string[] = ['keys'];
export const RESTART_FIELDS: readonly string[] = ['dataDir', 'socket', 'socketMode', 'logLevel', 'limits', 'access', 'listen', 'tls', 'audit', 'kek', 'providers', 'root', 'http', 'adminClients', 'store', 'metrics', 'workers'];

/**
 * Check `raw` (the document as plain data). `sourceOf(path)` returns the text
 * of a scalar as written (for octal modes, which YAML 1.2 reads as decimal).
 */
export function validateConfig(raw: unknown, file: string, sourceOf: (path: readonly (string | number)[]) => string | undefined): { config?: ConfigFile; issues: ConfigIssue[] } {
  const issues: ConfigIssue[] = [];
  const bad = (path: readonly (string | number)[], message: string, at: 'key' | 'value' = 'value'): undefined => {
    issues.push({ path, at, message });
    return undefined;
  };
  const path = resolve(file);
  const base = resolve(path, '..');
  if (raw === null || raw === undefined) raw = {};
  if (!isMapping(raw)) {
    bad([], `expected a mapping of settings (${TOP_LEVEL_FIELDS.join(', ')}), got ${kind(raw)}`);
    return { issues };
  }
  const doc = raw as Record<string, unknown>;
  unknownFields(doc, [], TOP_LEVEL_FIELDS, issues);

  const str = (p: readonly (string | number)[], v: unknown): string | undefined =>
    typeof v === 'string' && v !== '' ? v : bad(p, `expected a non-empty string, got ${kind(v)}`);
  const file_ = (p: readonly (string | number)[], v: unknown): string | undefined => {
    const s = str(p, v);
    return s === undefined ? undefined : isAbsolute(s) ? s : resolve(base, s);
  };
  const map = (p: readonly (string | number)[], v: unknown, fields: readonly string[]): Record<string, unknown> | undefined => {
    if (!isMapping(v)) return bad(p, `expected a mapping with fields ${fields.join(', ')}, got ${kind(v)}`);
    unknownFields(v as Record<string, unknown>, p, fields, issues);
    return v as Record<string, unknown>;
  };

  const out: { -readonly [K in keyof ConfigFile]: ConfigFile[K] } = { path, limits: {}, kek: {}, keys: {}, providers: {} };
  if (doc.dataDir !== undefined) out.dataDir = file_(['dataDir'], doc.dataDir);
  if (doc.socket !== undefined) out.socket = file_(['socket'], doc.socket);
  if (doc.socketMode !== undefined) out.socketMode = socketMode(sourceOf(['socketMode']) ?? String(doc.socketMode), (m) => bad(['socketMode'], m));
  if (doc.logLevel !== undefined) {
    if ((LEVELS as readonly unknown[]).includes(doc.logLevel)) out.logLevel = doc.logLevel as Level;
    else bad(['logLevel'], `expected one of ${LEVELS.join(', ')}, got ${kind(doc.logLevel)}`);
  }

  if (doc.store !== undefined) {
    // Never quote the value in a message: it may hold a password.
    const v = doc.store;
    if (typeof v === 'string' && /^(postgres|postgresql):\/\//i.test(v)) out.store = v;
    else if (typeof v === 'string' && /^env:[A-Za-z_][A-Za-z0-9_]*$/.test(v)) out.store = v;
    else if (typeof v === 'string' && /^file:./.test(v)) out.store = `file:${isAbsolute(v.slice(5)) ? v.slice(5) : resolve(base, v.slice(5))}`;
    else bad(['store'], `expected postgres://user:password@host:port/database, env:NAME or file:PATH (the PostgreSQL keystore; leave store out for SQLite in dataDir), got ${typeof v === 'string' ? 'another string' : kind(v)}`);
  }

  if (doc.workers !== undefined) {
    // The same rule as --workers (src/config/workers.ts).
    const n = workerCount(doc.workers);
    if (n === null) bad(['workers'], `expected ${WORKERS_EXPECTED} (worker processes behind the socket, as --workers), got ${typeof doc.workers === 'string' ? `'${doc.workers}'` : kind(doc.workers)}`);
    else out.workers = n;
  }

  if (doc.limits !== undefined) {
    // The schema is the declaration table: its names, its ranges (limits.ts).
    const l = map(['limits'], doc.limits, LIMIT_NAMES);
    const limits: { -readonly [K in LimitName]?: number } = {};
    for (const [k, v] of Object.entries(l ?? {})) {
      if (!(LIMIT_NAMES as readonly string[]).includes(k)) continue;
      if (typeof v !== 'number' || !Number.isSafeInteger(v)) bad(['limits', k], `expected an integer, got ${kind(v)}`);
      else limits[k as LimitName] = v;
    }
    // Checked together: some ranges depend on another limit of the file.
    for (const issue of limitIssues(limits).issues) {
      bad(['limits', issue.field], issue.message);
      delete limits[issue.field];
    }
    out.limits = limits;
  }

  if (doc.access !== undefined) {
    const a = map(['access'], doc.access, ['uids', 'gids']);
    if (a !== undefined) {
      const ids = (f: 'uids' | 'gids'): number[] | undefined => {
        const v = a[f];
        if (v === undefined) return undefined;
        if (!Array.isArray(v)) return bad(['access', f], `expected a list of numeric ids, got ${kind(v)}`);
        const okIds: number[] = [];
        v.forEach((id: unknown, i) => {
          if (typeof id === 'number' && Number.isSafeInteger(id) && id >= 0 && id <= 0xfffffffe) okIds.push(id);
          else bad(['access', f, i], `expected a numeric id from 0 to 4294967294, got ${kind(id)}`);
        });
        return okIds;
      };
      const uids = ids('uids');
      const gids = ids('gids');
      out.access = { ...(uids === undefined ? {} : { uids }), ...(gids === undefined ? {} : { gids }) };
    }
  }

  if (doc.listen !== undefined) {
    const url = str(['listen'], doc.listen);
    const tls = doc.tls === undefined ? undefined : map(['tls'], doc.tls, ['cert', 'key', 'clientCa', 'crl']);
    if (url !== undefined) {
      const t: TcpListenOptions = { url };
      if (tls?.cert !== undefined) t.certFile = file_(['tls', 'cert'], tls.cert);
      if (tls?.key !== undefined) t.keyFile = file_(['tls', 'key'], tls.key);
      if (tls?.clientCa !== undefined) t.clientCaFile = file_(['tls', 'clientCa'], tls.clientCa);
      if (tls?.crl !== undefined) t.crlFile = file_(['tls', 'crl'], tls.crl);
      out.tcp = t;
    }
  } else if (doc.tls !== undefined) {
    bad(['tls'], 'tls configures the TCP listener: give listen: tcp://HOST:PORT too', 'key');
  }

  if (doc.audit !== undefined) {
    const a = map(['audit'], doc.audit, ['log']);
    if (a !== undefined) {
      // '-' (stdout) is not a path.
      const log = a.log === '-' ? '-' : a.log === undefined ? bad(['audit'], 'expected audit.log: a file path or - for stdout') : file_(['audit', 'log'], a.log);
      if (log !== undefined) out.audit = { log };
    }
  }

  if (doc.http !== undefined) {
    const h = map(['http'], doc.http, ['listen', 'mount']);
    if (h !== undefined) {
      const url = str(['http', 'listen'], h.listen);
      const mount = h.mount === undefined ? undefined : str(['http', 'mount'], h.mount);
      if (url !== undefined) out.http = { url, ...(mount === undefined ? {} : { mount }) };
    }
  }

  if (doc.adminClients !== undefined) {
    if (!Array.isArray(doc.adminClients)) bad(['adminClients'], `expected a list of token client names, got ${kind(doc.adminClients)}`);
    else {
      const names: string[] = [];
      doc.adminClients.forEach((n: unknown, i) => {
        if (typeof n === 'string' && /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(n)) names.push(n);
        else bad(['adminClients', i], `expected a client name (as in \`cryptod client add NAME\`), got ${kind(n)}`);
      });
      out.adminClients = names;
    }
  }

  if (doc.metrics !== undefined) {
    const m = map(['metrics'], doc.metrics, ['listen', 'keyLabels']);
    if (m !== undefined) {
      // The address itself is checked where it is bound (src/daemon/metrics-listener.ts), like `listen`.
      const listen = m.listen === undefined ? bad(['metrics'], 'expected metrics.listen: tcp://HOST:PORT or unix:PATH') : str(['metrics', 'listen'], m.listen);
      if (m.keyLabels !== undefined && typeof m.keyLabels !== 'boolean') bad(['metrics', 'keyLabels'], `expected true or false, got ${kind(m.keyLabels)}`);
      if (listen !== undefined) out.metrics = { listen: listen.startsWith('unix:') && !isAbsolute(listen.slice(5)) ? `unix:${resolve(base, listen.slice(5))}` : listen, keyLabels: m.keyLabels === true };
    }
  }

  if (doc.kek !== undefined) {
    const k = map(['kek'], doc.kek, ['passphraseFile', 'passphraseEnv']);
    if (k !== undefined) {
      if (k.passphraseFile !== undefined && k.passphraseEnv !== undefined) bad(['kek', 'passphraseEnv'], 'give passphraseFile or passphraseEnv, not both', 'key');
      else if (k.passphraseFile !== undefined) {
        const f = file_(['kek', 'passphraseFile'], k.passphraseFile);
        if (f !== undefined) out.kek = { passphraseFile: f };
      } else if (k.passphraseEnv !== undefined) {
        const e = str(['kek', 'passphraseEnv'], k.passphraseEnv);
        if (e !== undefined) out.kek = { passphraseEnv: e };
      }
    }
  }

  if (doc.providers !== undefined && doc.providers !== null) {
    if (!isMapping(doc.providers)) bad(['providers'], `expected providers to map provider names to settings, got ${kind(doc.providers)}`);
    else {
      const providers: Record<string, ProviderConfig> = Object.create(null) as Record<string, ProviderConfig>;
      for (const [name, v] of Object.entries(doc.providers as Record<string, unknown>)) {
        const at = ['providers', name];
        if (name === 'local') {
          bad(at, "'local' is always there (the data directory's root.key or the kek: passphrase); configure only other providers here", 'key');
          continue;
        }
        if (!PROVIDER_NAME.test(name)) {
          bad(at, 'expected a provider name of lower-case letters, digits, - and _ (at most 32, starting with a letter)', 'key');
          continue;
        }
        const p = map(at, v, PROVIDER_FIELDS);
        if (p === undefined) continue;
        if (p.type !== 'pkcs11') {
          bad([...at, 'type'], `expected type: pkcs11 (the only provider type besides the implicit local), got ${kind(p.type)}`);
          continue;
        }
        const module = p.module === undefined ? bad(at, 'expected module: the path of the PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so)', 'key') : file_([...at, 'module'], p.module);
        const token = p.token === undefined ? bad(at, "expected token: the token's label", 'key') : str([...at, 'token'], p.token);
        let pin: string | undefined;
        if (p.pin === undefined) bad(at, 'expected pin: env:NAME or file:/path', 'key');
        else {
          try {
            assertPinSource(`providers.${name}.pin`, p.pin);
            pin = p.pin;
          } catch (err) {
            bad([...at, 'pin'], (err as Error).message);
          }
        }
        const int = (f: string, min: number, max: number, dflt?: number): number | undefined => {
          const x = p[f];
          if (x === undefined) return dflt;
          if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < min || x > max) return bad([...at, f], `expected an integer from ${min} to ${max}, got ${kind(x)}`);
          return x;
        };
        const slot = int('slot', 0, 0xffffffff);
        const sessions = int('sessions', 1, MAX_PROVIDER_SESSIONS, DEFAULT_PROVIDER_SESSIONS);
        const retryMs = int('retryMs', 0, 600_000, DEFAULT_PROVIDER_RETRY_MS);
        if (module === undefined || token === undefined || pin === undefined || sessions === undefined || retryMs === undefined) continue;
        providers[name] = { type: 'pkcs11', module, token, pin, sessions, retryMs, ...(slot === undefined ? {} : { slot }) };
      }
      out.providers = providers;
    }
  }

  if (doc.root !== undefined) {
    const root = str(['root'], doc.root);
    if (root !== undefined) {
      if (root !== 'local' && !Object.hasOwn(out.providers, root)) {
        bad(['root'], `expected local or a provider configured under providers: (${['local', ...Object.keys(out.providers)].join(', ')}), got ${JSON.stringify(root)}`);
      } else out.root = root;
    }
  }

  if (doc.keys !== undefined && doc.keys !== null) {
    if (!isMapping(doc.keys)) bad(['keys'], `expected keys to map key names to definitions, got ${kind(doc.keys)}`);
    else {
      // No prototype: a key named like an Object.prototype member must not
      // collide with it (names such as __proto__ are refused by parseDefinition anyway).
      const keys: Record<string, KeyDefinition> = Object.create(null) as Record<string, KeyDefinition>;
      for (const [name, def] of Object.entries(doc.keys as Record<string, unknown>)) {
        const { parsed, issues: keyIssues } = parseDefinition(name, def);
        const provider = parsed?.provider ?? null;
        if (provider !== null && !Object.hasOwn(out.providers, provider)) {
          keyIssues.push({ key: name, field: 'provider', message: `expected a provider configured under providers: (${Object.keys(out.providers).join(', ') || 'none is'}), got ${JSON.stringify(provider)}` });
        }
        for (const i of keyIssues) issues.push(keyIssue(name, def, i.field, i.message));
        if (keyIssues.length === 0) keys[name] = def as KeyDefinition;
      }
      out.keys = keys;
    }
  }

  return issues.length > 0 ? { issues } : { config: out, issues };
}

/**
 * Place a key manager issue (field names like `rotationPeriod`, `clients`,
 * `derived.epochStart`, or `name`) in the document: on the field's value
 * when the definition has it, else on the key's name.
 */
export function keyIssue(name: string, def: unknown, field: string, message: string): ConfigIssue {
  const parts = field.split('.');
  const d = def !== null && typeof def === 'object' ? (def as Record<string, unknown>) : {};
  const head = parts[0] ?? field;
  if (field === 'name' || !Object.hasOwn(d, head)) return { path: ['keys', name], at: 'key', message: `${field}: ${message}` };
  // Unknown fields point at the offending name, known ones at the bad value.
  const unknown = message.startsWith('unknown field');
  return { path: ['keys', name, ...parts], at: unknown ? 'key' : 'value', message };
}

function unknownFields(obj: Record<string, unknown>, path: readonly (string | number)[], known: readonly string[], issues: ConfigIssue[]): void {
  for (const k of Object.keys(obj)) {
    if (!known.includes(k)) issues.push({ path: [...path, k], at: 'key', message: `unknown field '${k}'${suggest(k, known)}; known fields: ${known.join(', ')}` });
  }
}

/** "did you mean" for a near-miss (one edit away, or the same ignoring case). */
function suggest(k: string, known: readonly string[]): string {
  const near = known.find((c) => c.toLowerCase() === k.toLowerCase() || editDistance(c, k) <= 2);
  return near === undefined ? '' : ` (did you mean '${near}'?)`;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

/** An octal mode as written (`600`, `0660`, `0o660`, `"600"`); the owner needs read and write. */
function socketMode(text: string, bad: (m: string) => undefined): number | undefined {
  const t = text.replace(/^["']|["']$/g, '');
  const m = /^(?:0o?)?([0-7]{3})$/.exec(t);
  if (m === null) return bad(`expected an octal mode such as 600 or 660, got ${JSON.stringify(t.slice(0, 20))}`);
  const mode = parseInt(m[1]!, 8);
  if ((mode & 0o600) !== 0o600) return bad(`the daemon's own user must be able to read and write the socket (6xx), got ${m[1]}`);
  return mode;
}

/**
 * A YAML mapping, as the parser gives it: a plain object. YAML tags can make
 * other objects (`!!binary` a Uint8Array, `!!set` a Set, `!!timestamp` a
 * Date), and walking those as mappings reports one bogus field per byte.
 */
function isMapping(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

function kind(v: unknown): string {
  if (v === null || v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  if (v instanceof Uint8Array) return `binary data (${v.length} bytes)`;
  if (v instanceof Date) return 'a timestamp';
  if (v instanceof Map || v instanceof Set) return `a YAML ${v instanceof Map ? '!!omap or !!pairs' : '!!set'}`;
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  return String(v);
}
