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
import type { RequestContext } from './operation.js';
import type { ManagedKeys } from './operation.js';
import { permits, type KeyPolicy } from '../keys/policy.js';
import type { KeyOp } from '../keys/model.js';
import { ForbiddenError, NotFoundError, UnsupportedError } from '../protocol/errors.js';

/** The daemon's managed keys, or UNSUPPORTED when it was started without a data directory. */
export function managedKeys(ctx: RequestContext): ManagedKeys {
  const keys = ctx.daemon.keys;
  if (keys === undefined) throw new UnsupportedError('managed keys need a data directory: this daemon was started without one');
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

/** Whether the client administers every key (managed-keys.ts header). */
export function isAdmin(keys: ManagedKeys, clientId: string): boolean {
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
export function requireAdmin(ctx: RequestContext, keys: ManagedKeys, what: string, key: string | null): void {
  if (isAdmin(keys, ctx.clientId)) return;
  throw new ForbiddenError(`client ${ctx.clientId} may not ${what}: only administrators may (README "Managed keys")`, {
    detail: { key, op: 'admin' },
  });
}
