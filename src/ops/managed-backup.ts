/**
 * KEY_BACKUP and KEY_RESTORE (docs/protocol.md §6.14): a managed key moves
 * to another daemon without its plaintext leaving either (src/keys/backup.ts
 * for the cryptography and the trust model).
 *
 * Both are for daemon administrators only: a backup carries every version of
 * a key, and a restore plants one. KEY_BACKUP also needs the key's own
 * consent, `allowBackup: true` in its policy (NOT_EXTRACTABLE otherwise).
 * Both are audited here, on their side: `key.backed-up` on the sender,
 * `key.restored` on the receiver.
 */
import { timingSafeEqual } from 'node:crypto';
import type { Operation, RequestContext } from './operation.js';
import type { AuditEvent } from '../observe/audit.js';
import { openBackup, publicKeyFromSpki, sealBackup, spkiFingerprint, type BackupRecipient } from '../keys/backup.js';
import { zeroTransfer, type TransferKey } from '../keys/transfer.js';
import type { KeySnapshot } from '../keys/snapshot.js';
import { InvalidKeyError, NotFoundError } from '../protocol/errors.js';
import { KeyBackup, KeyRestore } from '../protocol/messages/backup.js';
import { asCbor } from '../protocol/schema.js';
import { Op } from '../protocol/ops.js';
import { managedKeys } from './managed-auth.js';

function audit(ctx: RequestContext, event: AuditEvent): void {
  const a = ctx.daemon.audit;
  if (a?.enabled === true) a.emit(event);
}

export const managedBackupOperations: Operation[] = [
  {
    op: Op.KEY_BACKUP,
    access: { kind: 'admin', arg: 'name', action: 'back up key' },
    async handle(ctx, raw) {
      const args = KeyBackup.args.parse(raw);
      const keys = managedKeys(ctx);
      const recipient = publicKeyFromSpki(args.recipient, 'x25519', 'recipient');
      const signing = keys.manager.entry(args.signingKey);
      if (signing === undefined) throw new NotFoundError(`no managed key named '${args.signingKey}' to sign the backup with`, { detail: { key: args.signingKey } });
      if (signing.type !== 'ed25519') {
        throw new InvalidKeyError(`key '${args.signingKey}' (${signing.type}) cannot sign a backup; expected an ed25519 managed key`, { detail: { key: args.signingKey } });
      }
      let k: TransferKey | undefined;
      try {
        k = await keys.manager.readForBackup(args.name);
        using lease = keys.manager.acquire();
        const s = lease.outbound(args.signingKey, 'sign');
        const backup = sealBackup(k, recipient, { name: args.signingKey, version: s.version.version, privateKey: s.material.privateKey }, Date.now());
        audit(ctx, {
          event: 'key.backed-up', key: args.name, versions: k.versions.length,
          recipient: spkiFingerprint(recipient).toString('hex'), signingKey: `${args.signingKey}:${s.version.version}`, by: ctx.clientId,
        });
        return { name: args.name, versions: k.versions.length, backup, signingVersion: s.version.version };
      } finally {
        if (k !== undefined) zeroTransfer(k);
      }
    },
  },
  {
    op: Op.KEY_RESTORE,
    access: { kind: 'admin', arg: null, action: 'restore a key from a backup' },
    async handle(ctx, raw) {
      const args = KeyRestore.args.parse(raw);
      const keys = managedKeys(ctx);
      const trusted = publicKeyFromSpki(args.trust, 'ed25519', 'trust');
      let opened: ReturnType<typeof openBackup>;
      {
        using lease = keys.manager.acquire();
        opened = openBackup(args.backup, trusted, (fp) => transferKey(lease.snapshot, fp));
      }
      const k = opened.key;
      try {
        const { description, replaced } = await keys.manager.restore(k, { force: args.force === true });
        const transfer = `${opened.recipient.name}:${opened.recipient.version}`;
        const signer = `${opened.header.signingKey}:${opened.header.signingVersion}`;
        audit(ctx, { event: 'key.restored', key: k.name, versions: k.versions.length, transferKey: transfer, signer, replaced, by: ctx.clientId });
        return { key: asCbor(description), replaced, transferKey: transfer, signingKey: signer };
      } finally {
        zeroTransfer(k);
      }
    },
  },
];

/** The x25519 version this daemon holds whose public key has fingerprint `fp`. */
function transferKey(snapshot: KeySnapshot, fp: Buffer): BackupRecipient | undefined {
  for (const e of snapshot.keys.values()) {
    if (e.type !== 'x25519' || e.disabled) continue;
    for (const v of e.versions) {
      if (v.material === null) continue;
      if (timingSafeEqual(spkiFingerprint(v.material.publicKey), fp)) return { name: e.name, version: v.version, privateKey: v.material.privateKey };
    }
  }
  return undefined;
}
