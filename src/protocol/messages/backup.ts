/**
 * Moving a managed key between daemons (docs/protocol.md §6.14): KEY_BACKUP
 * seals every version of a key to another daemon's X25519 transfer key and
 * signs it; KEY_RESTORE opens such a file on the receiver. The file format is
 * src/protocol/backup-format.ts (docs/formats.md "Key backups").
 */
import { Op } from '../ops.js';
import { bool, bytes, map, optional, text, uint } from '../schema.js';
import { message } from './message.js';
import { managedKeyDescription } from './managed.js';

/** A public key as SubjectPublicKeyInfo DER (an X25519 or Ed25519 SPKI is 44 bytes). */
const spki = bytes({ min: 1, max: 1024 });

export const KeyBackup = message(
  Op.KEY_BACKUP,
  map({ name: text(), recipient: spki, signingKey: text() }),
  map({ name: text(), versions: uint(), backup: bytes(), signingVersion: uint(1, 0xffff_ffff) }, { open: true }),
);

export const KeyRestore = message(
  Op.KEY_RESTORE,
  map({ backup: bytes({ min: 1 }), trust: spki, force: optional(bool()) }),
  map({ key: managedKeyDescription, replaced: bool(), transferKey: text(), signingKey: text() }, { open: true }),
);
