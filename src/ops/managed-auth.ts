/**
 * Per-client authorization of managed-key operations.
 *
 * Policy rules (`clients:` in a key's policy) are keyed by what the daemon
 * authenticated, never by the name a uid client picked for itself in HELLO:
 *
 *   ClientId              rules tried, first present wins
 *   token:billing         token:billing                      → *
 *   cert:web              cert:web                           → *
 *   uid:1000/worker       uid:1000/worker → uid:1000         → *
 *   local/worker          local/worker                       → *
 *
 * `uid:1000/worker` is only as strong as uid 1000 (any process of that user
 * can call itself `worker`); `uid:1000` says so plainly.
 *
 * Outcomes: the client has no right at all on the key → NOT_FOUND (the key's
 * existence is not revealed); some right but not this one → FORBIDDEN naming
 * the operation and key. Administrators (managed-keys.ts: the daemon's own
 * uid) hold `admin` and `export` on every key and always see it; data
 * operations follow the policy for them too.
 */
import type { Access, Authorizer, ManagedKeys, RequestContext } from './operation.js';
import { permits, type KeyPolicy } from '../keys/policy.js';
import { keyTypeInfo, typeAllows, type KeyOp } from '../keys/model.js';
import type { KeyEntry } from '../keys/snapshot.js';
import type { CborValue } from '../protocol/cbor.js';
import { ForbiddenError, InvalidArgumentError, InvalidKeyError, NotFoundError, UnsupportedError } from '../protocol/errors.js';
import { parseWrappedKey } from '../protocol/datakey-format.js';
import { asArgs, str } from './args.js';

/** The daemon's managed keys, or UNSUPPORTED when it was started without a data directory. */
export function managedKeys(ctx: RequestContext): ManagedKeys {
  const keys = ctx.daemon.keys;
  if (keys === undefined) throw new UnsupportedError('managed keys need a data directory: this daemon was started without one');
  keys.fence?.();
  return keys;
}

/** Rule names that may apply to `clientId`, most specific first (without `*`). */
export function ruleNames(clientId: string): string[] {
  const m = /^uid:(\d+)\//.exec(clientId);
  return m === null ? [clientId] : [clientId, `uid:${m[1]!}`];
}

/** Whether the policy grants `op` to `clientId` (see the table above). */
export function allows(policy: KeyPolicy, clientId: string, op: KeyOp): boolean {
  for (const r of ruleNames(clientId)) if (policy.clients.has(r)) return permits(policy, r, op);
  return permits(policy, '*', op);
}

/** Whether the policy grants `clientId` anything at all. */
export function seesKey(policy: KeyPolicy, clientId: string): boolean {
  for (const r of ruleNames(clientId)) {
    const ops = policy.clients.get(r);
    if (ops !== undefined) return ops.size > 0;
  }
  return (policy.clients.get('*')?.size ?? 0) > 0;
}

/**
 * Who administers every key: all the administrator checks read of the
 * managed keys, so RELOAD can ask them of a daemon that has none.
 */
export type Administrators = Pick<ManagedKeys, 'adminUids' | 'localIsAdmin' | 'adminClients'>;

/** Whether the client administers every key (managed-keys.ts header). */
export function isAdmin(keys: Administrators, clientId: string): boolean {
  if (keys.adminClients?.has(clientId) === true) return true;
  const m = /^uid:(\d+)\//.exec(clientId);
  if (m !== null) return keys.adminUids.has(Number(m[1]));
  return keys.localIsAdmin && clientId.startsWith('local/');
}

/** Whether `clientId` may see `key` in lists and descriptions. */
export function visible(keys: ManagedKeys, policy: KeyPolicy, clientId: string): boolean {
  return isAdmin(keys, clientId) || seesKey(policy, clientId);
}

/**
 * Check that the caller may perform `op` on `key` under `policy`; throws
 * NOT_FOUND or FORBIDDEN. `export` also needs an exportable key, which the
 * caller checks (NOT_EXTRACTABLE) after this.
 */
export function authorize(ctx: RequestContext, keys: ManagedKeys, key: string, policy: KeyPolicy, op: KeyOp): void {
  const id = ctx.clientId;
  const admin = isAdmin(keys, id);
  if ((op === 'admin' || op === 'export') && admin) return;
  const granted = op === 'export' ? allowsIgnoringExportable(policy, id) : allows(policy, id, op);
  if (granted) return;
  if (!admin && !seesKey(policy, id)) throw new NotFoundError(`no managed key named '${key}'`, { detail: { key } });
  throw new ForbiddenError(`client ${id} may not ${op === 'admin' ? 'administer' : op} with key '${key}' (its policy does not grant '${op}')`, {
    detail: { key, op },
  });
}

/** `export` granted by the rules (exportability is a separate refusal: NOT_EXTRACTABLE). */
function allowsIgnoringExportable(policy: KeyPolicy, clientId: string): boolean {
  for (const r of ruleNames(clientId)) {
    const ops = policy.clients.get(r);
    if (ops !== undefined) return ops.has('export');
  }
  return policy.clients.get('*')?.has('export') ?? false;
}

/** Operations that act on no particular key (create, import, persist, reload) need an administrator. */
export function requireAdmin(ctx: RequestContext, keys: Administrators, what: string, key: string | null): void {
  if (isAdmin(keys, ctx.clientId)) return;
  throw new ForbiddenError(`client ${ctx.clientId} may not ${what}: only administrators may (README "Managed keys")`, {
    detail: { key, op: 'admin' },
  });
}

/** Without managed keys, RELOAD still has administrators: the daemon's own uid and `local/…` clients (managed-keys.ts header). */
const DEFAULT_ADMINS: Administrators = {
  adminUids: new Set(typeof process.getuid === 'function' ? [process.getuid()] : []),
  localIsAdmin: true,
};

/** The rights that use a key's material; the others ('admin', 'export') manage the key. */
function usesMaterial(right: KeyOp): boolean {
  return right !== 'admin' && right !== 'export';
}

/**
 * The key `name` exists (`e`) and the caller may use it for `right`
 * (NOT_FOUND / INVALID_KEY / FORBIDDEN), or — `right` 'any' — has some right
 * on it. What the key's type cannot do is a wrong key, not a policy decision,
 * when the caller may see the key.
 */
export function checkKey(ctx: RequestContext, keys: ManagedKeys, e: KeyEntry | undefined, name: string, right: KeyOp | 'any'): void {
  if (e === undefined || (right === 'any' && !visible(keys, e.policy, ctx.clientId))) {
    throw new NotFoundError(`no managed key named '${name}'`, { detail: { key: name } });
  }
  if (right === 'any') return;
  if (!typeAllows(e.type, right) && visible(keys, e.policy, ctx.clientId)) {
    throw new InvalidKeyError(`key '${name}' (${e.type}) cannot be used to ${right}; it allows ${keyTypeInfo(e.type).ops.join(', ')}`, {
      detail: { key: name, op: right },
    });
  }
  authorize(ctx, keys, name, e.policy, right);
}

/**
 * The authorize phase of the request chain: enforces an operation's `access`
 * against the current snapshot, before the handler runs (synchronously after
 * it, so the handler sees the same snapshot).
 *
 * First, freshness: when another daemon committed to the keystore since
 * this one last looked, the request waits for the shared catch-up of exactly
 * the changed keys (KeyManager.freshen), so it runs on that change.
 *
 * A key this daemon does not hold, or that the caller may not see, may be the
 * work of another daemon on the same keystore a moment ago: a request that
 * uses a key's material then waits for one refresh (KeyManager.refreshSoon)
 * and is checked once more. Hidden and missing keys take the same path, so
 * the time taken does not tell them apart. Managing a key (admin, export)
 * and describing it answer at once.
 */
export const managedAccess: Authorizer = {
  authorize(ctx: RequestContext, access: Access, raw: CborValue): void | Promise<void> {
    // Freshness (keys/freshness.ts): a change another daemon committed before
    // this request was read is caught up with first. Synchronous unless there was one.
    // Only a catch-up that reloads the key named waits; one naming no key waits for the newest.
    const wait = access.kind === 'none' ? null : (ctx.daemon.keys?.manager.freshen(keyNamed(access, raw)) ?? null);
    if (wait !== null) return wait.then(() => authorizeNow.authorize(ctx, access, raw));
    return authorizeNow.authorize(ctx, access, raw);
  },
};

/** The key a request acts on, for the freshness check; undefined when it names none, or its arguments are malformed (the checks below refuse those). */
function keyNamed(access: Access, raw: CborValue): string | undefined {
  try {
    if (access.kind === 'key') return str(asArgs(raw), access.arg);
    if (access.kind === 'data-key') return kekName(asArgs(raw));
    if (access.kind === 'admin' && access.arg !== null) return str(asArgs(raw), access.arg);
  } catch {
    // Refused by the checks, after the catch-up every request naming no key waits for.
  }
  return undefined;
}

/** The checks themselves, on the snapshot current now. */
const authorizeNow: Authorizer = {
  authorize(ctx: RequestContext, access: Access, raw: CborValue): void | Promise<void> {
    switch (access.kind) {
      case 'none':
        return;
      case 'visible-keys':
        managedKeys(ctx);
        return;
      case 'admin': {
        const keys: Administrators = access.arg === null ? (ctx.daemon.keys ?? DEFAULT_ADMINS) : managedKeys(ctx);
        const name = access.arg === null ? null : str(asArgs(raw), access.arg);
        requireAdmin(ctx, keys, name === null ? access.action : `${access.action} '${name}'`, name);
        return;
      }
      case 'key':
      case 'data-key': {
        const keys = managedKeys(ctx);
        const name = access.kind === 'key' ? str(asArgs(raw), access.arg) : kekName(asArgs(raw));
        const right = access.permission;
        try {
          checkKey(ctx, keys, keys.manager.entry(name), name, right);
        } catch (err) {
          if (right === 'any' || !usesMaterial(right) || !(err instanceof NotFoundError)) throw err;
          return keys.manager.refreshSoon().then(() => checkKey(ctx, keys, keys.manager.entry(name), name, right));
        }
      }
    }
  },
};

/** The KEK a data-key request names: its `kek` argument, or the header of its `wrappedKey` (src/protocol/datakey-format.ts). */
function kekName(args: ReturnType<typeof asArgs>): string {
  if (args.kek !== undefined) return str(args, 'kek');
  const w = args.wrappedKey;
  if (!(w instanceof Uint8Array)) throw new InvalidArgumentError('expected wrappedKey as bytes (a wrapped data key)', { detail: { field: 'wrappedKey' } });
  return parseWrappedKey(w).header.kek;
}
