/**
 * Administration of managed keys (docs/protocol.md §6.11): KEY_CREATE,
 * KEY_IMPORT, KEY_ROTATE, KEY_LIST, KEY_DESCRIBE, KEY_SET_POLICY, KEY_TRIM,
 * KEY_EXPORT, KEY_DESTROY, KEY_PERSIST, KEY_PUBLIC and RELOAD.
 *
 * Rights, declared as each operation's `access` and enforced by the request
 * chain before the handler runs (managed-auth.ts): creating a key (create,
 * import, persist) and RELOAD need an administrator; rotate, set-policy, trim
 * and destroy need `admin` on the key (administrators hold it on every key);
 * export needs `export` on an exportable key; list, describe and the public
 * key of a signing key are for any client with a right on the key. Making a
 * key exportable (false → true) needs a daemon administrator, never only
 * `admin` on the key (the handler decides it: it depends on the patch), and
 * is refused for ever on material persisted from a non-extractable handle.
 * Every change is audited (src/observe/audit.ts) with the caller's ClientId as
 * `by`: a new key by its declaration, the others by the handler, which alone
 * knows what changed.
 */
import type { AuditEvent } from '../observe/audit.js';
import type { AuditedRequest, ManagedKeys, Operation, RequestContext } from './operation.js';
import type { KeyDescription } from '../keys/describe.js';
import { interoperablePublicKey, type KeyMaterial } from '../keys/material.js';
import { damagedError, type KeyEntry, type VersionEntry } from '../keys/snapshot.js';
import { keyTypeInfo, type ManagedKeyType } from '../keys/model.js';
import type { CborValue } from '../protocol/cbor.js';
import { InternalError, InvalidKeyError, NotExtractableError, NotFoundError, UnsupportedError } from '../protocol/errors.js';
import {
  KeyCreate, KeyDescribe, KeyDestroy, KeyExport, KeyImport, KeyList, KeyPersist, KeyPublic, KeyRotate, KeySetPolicy, KeyTrim, Reload,
} from '../protocol/messages/managed.js';
import { asCbor, type Schema } from '../protocol/schema.js';
import { Op } from '../protocol/ops.js';
import { takeSecret } from './args.js';
import { acquireKey, type KeyNode } from './key.js';
import { sensitiveReply } from './keys.js';
import { isAdmin, managedKeys, visible } from './managed-auth.js';

function audit(ctx: RequestContext, event: AuditEvent): void {
  const a = ctx.daemon.audit;
  if (a?.enabled === true) a.emit(event);
}

/** KEY_CREATE, KEY_IMPORT, KEY_PERSIST succeeded: the key they made. */
function keyCreated(r: AuditedRequest): AuditEvent {
  // The reply was checked against the declaration before it was sent; reading it back typed costs only when auditing.
  const d = KeyCreate.result.parse(r.result);
  return { event: 'key.created', key: d.name, version: d.currentVersion, algorithm: d.type, by: r.clientId };
}

/**
 * The version `args.version` names (default: the current one) with the
 * material this daemon holds for it; NOT_FOUND when it holds none.
 */
function heldVersion(keys: ManagedKeys, e: KeyEntry, name: string, args: { version?: number | undefined }): VersionEntry & { material: KeyMaterial } {
  const version = args.version ?? keys.manager.describe(name).currentVersion;
  const v = version === null ? undefined : e.versions.find((x) => x.version === version);
  if (v?.damaged != null) throw damagedError(name, v.version, v.damaged);
  if (v === undefined || v.material === null) {
    throw new NotFoundError(`key '${name}' holds no material for version ${String(version)} (destroyed, disabled, retired or absent)`, {
      detail: { key: name, version: version ?? null },
    });
  }
  return v as VersionEntry & { material: KeyMaterial };
}

/**
 * The daemon's own result, checked against the reply the protocol declares
 * for it (docs/protocol.md §6.11): a mismatch is a daemon bug, not the
 * caller's, and must not reach the client half-formed.
 */
function reply<T>(schema: Schema<T, unknown>, v: unknown): T {
  try {
    return schema.parse(v, 'the reply');
  } catch (err) {
    throw new InternalError('a managed-key reply does not match its declaration', { cause: err });
  }
}

function describe(keys: ManagedKeys, name: string): CborValue {
  return reply(KeyDescribe.result, keys.manager.describe(name));
}

/** The managed type a client-owned key becomes, or UNSUPPORTED naming what fits. */
function managedTypeOf(k: KeyNode): ManagedKeyType {
  const a = k.algorithm;
  const hash = a.hash?.name;
  const t: ManagedKeyType | null =
    a.name === 'AES-GCM' && a.length === 256 ? 'aes256-gcm'
    : a.name === 'ChaCha20-Poly1305' ? 'chacha20-poly1305'
    : a.name === 'AES-KWP' && a.length === 256 ? 'aes256-kwp'
    : a.name === 'HMAC' && hash === 'SHA-256' ? 'hmac-sha256'
    : a.name === 'HMAC' && hash === 'SHA-512' ? 'hmac-sha512'
    : k.type !== 'private' ? null
    : a.name === 'Ed25519' ? 'ed25519'
    : a.name === 'ECDSA' && a.namedCurve === 'P-256' ? 'ecdsa-p256'
    : a.name === 'ECDSA' && a.namedCurve === 'P-384' ? 'ecdsa-p384'
    : a.name === 'ECDSA' && a.namedCurve === 'P-521' ? 'ecdsa-p521'
    : a.name === 'RSASSA-PKCS1-v1_5' && a.modulusLength === 3072 && hash === 'SHA-256' ? 'rsa-pkcs1-3072'
    : a.name === 'RSA-PSS' && a.modulusLength === 3072 && hash === 'SHA-256' ? 'rsa-pss-3072'
    : null;
  if (t === null) {
    throw new UnsupportedError(
      `a ${k.type} ${a.name} key cannot become a managed key; persist an AES-GCM-256, AES-KWP-256, ChaCha20-Poly1305 or HMAC SHA-256/SHA-512 secret key, ` +
        'or an Ed25519, ECDSA P-256/P-384/P-521, RSA-PSS-3072 or RSASSA-PKCS1-v1_5-3072 (SHA-256) private key',
      { detail: { algorithm: a.name } },
    );
  }
  return t;
}

/** The key's material in the managed encoding (raw secret or PKCS#8 DER), in owned memory. */
function materialOf(k: KeyNode): Buffer {
  if (k.type === 'secret') {
    const out = Buffer.alloc(k.secret.length);
    k.secret.copy(out);
    return out;
  }
  const der = k.object.export({ format: 'der', type: 'pkcs8' });
  const out = Buffer.alloc(der.length);
  der.copy(out);
  der.fill(0);
  return out;
}

export const managedAdminOperations: Operation[] = [
  {
    op: Op.KEY_CREATE,
    access: { kind: 'admin', arg: 'name', action: 'create key' },
    audit: keyCreated,
    async handle(ctx, raw) {
      const args = KeyCreate.args.parse(raw);
      const keys = managedKeys(ctx);
      const name = args.name;
      const d = await keys.manager.create(name, args.definition);
      return reply(KeyCreate.result, d);
    },
  },
  {
    op: Op.KEY_IMPORT,
    access: { kind: 'admin', arg: 'name', action: 'import key' },
    audit: keyCreated,
    sensitiveRequest: true,
    async handle(ctx, raw) {
      const args = KeyImport.args.parse(raw);
      const keys = managedKeys(ctx);
      const name = args.name;
      const material = takeSecret(args.material);
      try {
        const d = await keys.manager.create(name, args.definition, { material });
          return reply(KeyImport.result, d);
      } finally {
        material.fill(0);
      }
    },
  },
  {
    op: Op.KEY_PERSIST,
    access: { kind: 'admin', arg: 'name', action: 'persist a key as' },
    audit: keyCreated,
    async handle(ctx, raw) {
      const args = KeyPersist.args.parse(raw);
      const keys = managedKeys(ctx);
      const name = args.name;
      const extra = args.definition ?? {};
      let type: ManagedKeyType;
      let material: Buffer;
      let neverExportable: boolean;
      {
        using key = acquireKey(ctx, args.handle);
        type = managedTypeOf(key.value);
        if (extra.exportable === true && !key.value.extractable) {
          throw new NotExtractableError('a non-extractable key cannot become an exportable managed key', { detail: { key: name } });
        }
        material = materialOf(key.value);
        neverExportable = !key.value.extractable;
      }
      try {
        // WebCrypto promised the handle's holder that a non-extractable key
        // never leaves: the managed key keeps that promise for ever.
        const d = await keys.manager.create(name, { ...extra, type }, { material, neverExportable });
          return reply(KeyPersist.result, d);
      } finally {
        material.fill(0);
      }
    },
  },
  {
    op: Op.KEY_ROTATE,
    access: { kind: 'key', arg: 'name', permission: 'admin' },
    async handle(ctx, raw) {
      const keys = managedKeys(ctx);
      const name = KeyRotate.args.parse(raw).name;
      const previous = keys.manager.describe(name).currentVersion;
      const version = await keys.manager.rotate(name);
      audit(ctx, { event: 'key.rotated', key: name, version, previousVersion: previous, reason: 'manual', by: ctx.clientId });
      ctx.daemon.metrics?.rotated('manual', name);
      return { version };
    },
  },
  {
    op: Op.KEY_LIST,
    access: { kind: 'visible-keys' },
    handle(ctx, raw) {
      KeyList.args.parse(raw);
      const keys = managedKeys(ctx);
      const out: CborValue[] = [];
      for (const d of keys.manager.list()) {
        const e = keys.manager.entry(d.name);
        if (e !== undefined && visible(keys, e.policy, ctx.clientId)) out.push(reply(KeyDescribe.result, d));
      }
      return { keys: out };
    },
  },
  {
    op: Op.KEY_DESCRIBE,
    access: { kind: 'key', arg: 'name', permission: 'any' },
    handle(ctx, raw) {
      return describe(managedKeys(ctx), KeyDescribe.args.parse(raw).name);
    },
  },
  {
    op: Op.KEY_SET_POLICY,
    access: { kind: 'key', arg: 'name', permission: 'admin' },
    async handle(ctx, raw) {
      const args = KeySetPolicy.args.parse(raw);
      const keys = managedKeys(ctx);
      const name = args.name;
      const patch = args.policy;
      // Making a key exportable lets its bytes leave the daemon for good: a
      // decision for the daemon's own administrators, never for a client the
      // key's policy made its admin (or it could grant itself export).
      const { description, madeExportable, allowedBackup } = await keys.manager.setPolicy(name, patch, { mayMakeExportable: isAdmin(keys, ctx.clientId) });
      audit(ctx, { event: 'policy.changed', key: name, subject: null, change: Object.keys(patch).sort().join(','), by: ctx.clientId });
      if (madeExportable) audit(ctx, { event: 'key.exportable', key: name, by: ctx.clientId });
      if (allowedBackup) audit(ctx, { event: 'key.backup-allowed', key: name, by: ctx.clientId });
      return reply(KeySetPolicy.result, description);
    },
  },
  {
    op: Op.KEY_TRIM,
    access: { kind: 'key', arg: 'name', permission: 'admin' },
    async handle(ctx, raw) {
      const args = KeyTrim.args.parse(raw);
      const keys = managedKeys(ctx);
      const name = args.name;
      const below = args.below;
      const destroyed = await keys.manager.trim(name, below);
      for (const v of destroyed) audit(ctx, { event: 'key.destroyed', key: name, version: v, by: ctx.clientId });
      // Returns once no live daemon can still use what was destroyed (src/store/members.ts).
      if (destroyed.length > 0) await keys.acknowledge?.();
      return { destroyed };
    },
  },
  {
    op: Op.KEY_DESTROY,
    access: { kind: 'key', arg: 'name', permission: 'admin' },
    async handle(ctx, raw) {
      const keys = managedKeys(ctx);
      const name = KeyDestroy.args.parse(raw).name;
      const destroyed = await keys.manager.destroy(name);
      audit(ctx, { event: 'key.destroyed', key: name, version: null, by: ctx.clientId });
      await keys.acknowledge?.();
      return { destroyed };
    },
  },
  {
    op: Op.KEY_EXPORT,
    access: { kind: 'key', arg: 'name', permission: 'export' },
    handle(ctx, raw) {
      const args = KeyExport.args.parse(raw);
      const keys = managedKeys(ctx);
      const name = args.name;
      using lease = keys.manager.acquire();
      const e = lease.snapshot.keys.get(name);
      if (e === undefined) throw new NotFoundError(`no managed key named '${name}'`, { detail: { key: name } });
      if (!e.policy.exportable) throw new NotExtractableError(`key '${name}' is not exportable (its policy has exportable: false)`, { detail: { key: name } });
      if (e.derived !== null) throw new UnsupportedError(`key '${name}' is a derived epoch key; its versions cannot be exported one by one`, { detail: { key: name } });
      const v = heldVersion(keys, e, name, args);
      const secret = v.material.kind === 'secret';
      const material = secret ? copySecret(v.material.secret) : materialOfPrivate(v.material.privateKey);
      if (secret) setImmediate(() => material.fill(0));
      audit(ctx, { event: 'key.exported', key: name, format: secret ? 'raw' : 'pkcs8', op: 'KEY_EXPORT', by: ctx.clientId });
      return sensitiveReply({ name, type: e.type, version: v.version, format: secret ? 'raw' : 'pkcs8', material });
    },
  },
  {
    // The public half of a signing key's version, for verifiers outside the
    // daemon (a managed signature minus its header is a standard signature).
    // Public data: any right on the key suffices, nothing is audited.
    op: Op.KEY_PUBLIC,
    access: { kind: 'key', arg: 'name', permission: 'any' },
    handle(ctx, raw) {
      const args = KeyPublic.args.parse(raw);
      const keys = managedKeys(ctx);
      const name = args.name;
      using lease = keys.manager.acquire();
      const e = lease.snapshot.keys.get(name);
      if (e === undefined) throw new NotFoundError(`no managed key named '${name}'`, { detail: { key: name } });
      if (keyTypeInfo(e.type).kind === 'secret') {
        throw new InvalidKeyError(`key '${name}' (${e.type}) has no public key; expected a signing key (ed25519, ecdsa-p256, ecdsa-p384, ecdsa-p521, rsa-pss-3072, rsa-pkcs1-3072) or a transfer key (x25519)`, {
          detail: { key: name, type: e.type },
        });
      }
      const v = heldVersion(keys, e, name, args);
      const pub = interoperablePublicKey(v.material.publicKey);
      return {
        name,
        type: e.type,
        version: v.version,
        spki: pub.export({ format: 'der', type: 'spki' }),
        jwk: asCbor(pub.export({ format: 'jwk' })),
      };
    },
  },
  {
    op: Op.RELOAD,
    access: { kind: 'admin', arg: null, action: 'reload the configuration' },
    async handle(ctx, raw) {
      Reload.args.parse(raw);
      const reload = ctx.daemon.reload;
      if (reload === undefined) throw new UnsupportedError('this daemon has no configuration file to reload (start it with --config FILE)');
      return reload();
    },
  },
];

/** A copy in memory the daemon owns (not the shared pool). */
function copySecret(b: Buffer): Buffer {
  const out = Buffer.alloc(b.length);
  b.copy(out);
  return out;
}

function materialOfPrivate(k: import('node:crypto').KeyObject): Buffer {
  const der = k.export({ format: 'der', type: 'pkcs8' });
  const out = Buffer.alloc(der.length);
  der.copy(out);
  der.fill(0);
  setImmediate(() => out.fill(0));
  return out;
}
