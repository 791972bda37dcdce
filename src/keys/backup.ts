/**
 * Sealing and opening key backups (docs/formats.md "Key backups"; framing in
 * src/protocol/backup-format.ts). A backup moves a managed key from one
 * daemon to another without its plaintext ever existing outside the two.
 *
 *   sender                                              receiver
 *   TransferKey ─▶ plaintext ──AES-256-GCM──▶ ct         ct ──AES-256-GCM⁻¹──▶ plaintext ─▶ TransferKey
 *                   key, nonce = HKDF-SHA256(             key, nonce = HKDF-SHA256(
 *                     X25519(ephemeral, R), …)              X25519(r, ephemeral), …)
 *                  AAD = header                          AAD = header
 *   Ed25519 signature over header ‖ ct ──────────────▶  verified with the trusted signer key first
 *
 * Trust model. Encryption alone would not do: the recipient's public key is
 * public, so anyone could encrypt a key of their choosing to it and have it
 * restored (a planted key that they know). So every backup is signed by an
 * Ed25519 managed key of the sending daemon, and restore takes the public key
 * it trusts (`--trust FILE`, obtained out of band from the sender's
 * `cryptod key public`) and refuses anything else. The signature covers the
 * header (which names the signer, the recipient and the key) and the
 * ciphertext; the AEAD binds the header too, so the signer named in a
 * header cannot be swapped either. What is not defended: someone holding
 * the sender's signing key and the recipient's public key can forge; and a
 * valid backup can be restored again later (restore refuses an existing name
 * without --force, and every restore is audited).
 *
 * Key schedule (HPKE-like, RFC 9180 §4.1 in spirit, not its wire format):
 *   Z          = X25519(ephemeral secret, recipient public)          (RFC 7748 §6.1)
 *   key ‖ iv   = HKDF-SHA256(IKM = Z, salt = ephemeral ‖ recipient, info = INFO, L = 44)  (RFC 5869)
 * A fresh ephemeral key per backup makes key and nonce single-use.
 *
 * Plaintext (inside the AEAD):
 *   0      4   metadata length L (u32 big-endian)
 *   4      L   metadata, CBOR: { v: 1, name, type, policy: JSON text of the stored
 *              record policy, createdAt, disabled,
 *              versions: [{ version, state, createdAt, notBefore, notAfter, encryptions, length }] }
 *   4+L    …   the material of each version with length > 0, in order, back to back
 * The plaintext buffer, Z and the HKDF output are zeroed as soon as they are used.
 */
import {
  createCipheriv, createDecipheriv, createHash, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, sign, timingSafeEqual, verify,
  type KeyObject,
} from 'node:crypto';
import { decode, encode, type CborValue } from '../protocol/cbor.js';
import { BackupInvalidError, DataError } from '../protocol/errors.js';
import { BACKUP_TAG_BYTES, encodeBackupHeader, parseBackup, type BackupHeader } from '../protocol/backup-format.js';
import { isKeyType } from './model.js';
import { zeroTransfer, type TransferKey, type TransferVersion } from './transfer.js';
import type { KeyVersionState } from '../store/keystore.js';
import { KEY_VERSION_STATES } from '../store/keystore.js';

const INFO = Buffer.from('cryptod/backup/v1 x25519-hkdf-sha256-aes256gcm', 'ascii');

/** The sender's signing key: an Ed25519 managed key's current version. */
export interface BackupSigner {
  readonly name: string;
  readonly version: number;
  readonly privateKey: KeyObject;
}

/** A transfer key of the receiving daemon that can open a backup. */
export interface BackupRecipient {
  readonly name: string;
  readonly version: number;
  readonly privateKey: KeyObject;
}

/** SHA-256 of a public key's SPKI DER: how a backup names its recipient. */
export function spkiFingerprint(pub: KeyObject): Buffer {
  return createHash('sha256').update(pub.export({ format: 'der', type: 'spki' })).digest();
}

/** A public key given as SPKI DER, checked to be of `type` (`what` names it in the message). */
export function publicKeyFromSpki(spki: Uint8Array, type: 'x25519' | 'ed25519', what: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
  } catch {
    throw new DataError(`expected ${what} as an ${type} public key (SubjectPublicKeyInfo DER); it does not parse`, { detail: { field: what } });
  }
  if (key.asymmetricKeyType !== type) {
    throw new DataError(`expected ${what} to be an ${type} public key, got ${String(key.asymmetricKeyType)}`, { detail: { field: what } });
  }
  return key;
}

/** Seal `k` for `recipient` and sign it; `k` stays the caller's (and is not zeroed here). */
export function sealBackup(k: TransferKey, recipient: KeyObject, signer: BackupSigner, now: number): Buffer {
  const eph = generateKeyPairSync('x25519');
  const ephemeral = raw(eph.publicKey);
  const header: BackupHeader = {
    createdAt: now, key: k.name, recipient: spkiFingerprint(recipient), ephemeral,
    signer: raw(createPublicKey(signer.privateKey)), signingKey: signer.name, signingVersion: signer.version,
  };
  const plain = encodePlaintext(k);
  const okm = schedule(eph.privateKey, recipient, ephemeral, raw(recipient));
  let ct: Buffer;
  try {
    const headerBytes = encodeBackupHeader(header, plain.length + BACKUP_TAG_BYTES);
    const c = createCipheriv('aes-256-gcm', okm.subarray(0, 32), okm.subarray(32, 44));
    c.setAAD(headerBytes);
    ct = Buffer.concat([headerBytes, c.update(plain), c.final(), c.getAuthTag()]);
  } finally {
    plain.fill(0);
    okm.fill(0);
  }
  return Buffer.concat([ct, sign(null, ct, signer.privateKey)]);
}

/**
 * Open a backup: the signer must be `trusted` (Ed25519), the signature must
 * verify, and `findRecipient` must hold the transfer key it was sealed to.
 * Every refusal is CRYPTOD_ERR_BACKUP_INVALID. The caller zeroes the result (zeroTransfer).
 */
export function openBackup(
  file: Uint8Array, trusted: KeyObject, findRecipient: (fingerprint: Buffer) => BackupRecipient | undefined,
): { key: TransferKey; header: BackupHeader; recipient: BackupRecipient } {
  const p = parseBackup(file);
  const h = p.header;
  const trustedRaw = raw(trusted);
  if (!timingSafeEqual(trustedRaw, h.signer)) {
    throw new BackupInvalidError(
      `the backup of '${h.key}' is signed by key '${h.signingKey}' version ${h.signingVersion}, which is not the trusted signer given (--trust); get the sender's public key with \`cryptod key public ${h.signingKey}\``,
      { detail: { key: h.key, signingKey: h.signingKey } },
    );
  }
  if (!verify(null, p.signed, trusted, p.signature)) {
    throw new BackupInvalidError(`the signature of the backup of '${h.key}' does not verify: the file was altered`, { detail: { key: h.key } });
  }
  const recipient = findRecipient(h.recipient);
  if (recipient === undefined) {
    throw new BackupInvalidError(`the backup of '${h.key}' is encrypted to a transfer key this daemon does not hold (recipient ${h.recipient.toString('hex').slice(0, 16)}…)`, {
      detail: { key: h.key },
    });
  }
  let eph: KeyObject;
  try {
    eph = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: h.ephemeral.toString('base64url') }, format: 'jwk' });
  } catch {
    throw new BackupInvalidError(`the ephemeral key of the backup of '${h.key}' is not an X25519 public key`, { detail: { key: h.key } });
  }
  let okm: Buffer;
  try {
    okm = schedule(recipient.privateKey, eph, h.ephemeral, raw(createPublicKey(recipient.privateKey)));
  } catch {
    // X25519 with a low-order point yields all zeros, which OpenSSL refuses (RFC 7748 §6.1).
    throw new BackupInvalidError(`the ephemeral key of the backup of '${h.key}' is not usable`, { detail: { key: h.key } });
  }
  const body = p.ciphertext.subarray(0, p.ciphertext.length - BACKUP_TAG_BYTES);
  let plain: Buffer;
  try {
    const d = createDecipheriv('aes-256-gcm', okm.subarray(0, 32), okm.subarray(32, 44));
    d.setAAD(p.headerBytes);
    d.setAuthTag(p.ciphertext.subarray(p.ciphertext.length - BACKUP_TAG_BYTES));
    plain = Buffer.alloc(body.length);
    const a = d.update(body);
    a.copy(plain);
    a.fill(0);
    d.final();
  } catch {
    throw new BackupInvalidError(`the backup of '${h.key}' does not decrypt: altered, or not sealed to this transfer key`, { detail: { key: h.key } });
  } finally {
    okm.fill(0);
  }
  try {
    const key = decodePlaintext(plain);
    if (key.name !== h.key) {
      zeroTransfer(key);
      throw new BackupInvalidError(`the backup names key '${h.key}' outside and '${key.name}' inside`, { detail: { key: h.key } });
    }
    return { key, header: h, recipient };
  } finally {
    plain.fill(0);
  }
}

function schedule(secret: KeyObject, pub: KeyObject, ephemeral: Buffer, recipientRaw: Buffer): Buffer {
  const z = diffieHellman({ privateKey: secret, publicKey: pub });
  try {
    return Buffer.from(hkdfSync('sha256', z, Buffer.concat([ephemeral, recipientRaw]), INFO, 44));
  } finally {
    z.fill(0);
  }
}

/** The 32-byte raw public key of an X25519 or Ed25519 KeyObject (the JWK's `x`). */
function raw(pub: KeyObject): Buffer {
  const x = pub.export({ format: 'jwk' }).x;
  if (typeof x !== 'string') throw new DataError('expected an X25519 or Ed25519 public key');
  return Buffer.from(x, 'base64url');
}

function encodePlaintext(k: TransferKey): Buffer {
  const meta = encode({
    v: 1, name: k.name, type: k.type, policy: JSON.stringify(k.policy), createdAt: k.createdAt, disabled: k.disabled,
    versions: k.versions.map((v) => ({
      version: v.version, state: v.state, createdAt: v.createdAt, notBefore: v.notBefore, notAfter: v.notAfter,
      encryptions: v.encryptions, length: v.material?.length ?? 0,
    })),
  });
  const total = 4 + meta.length + k.versions.reduce((n, v) => n + (v.material?.length ?? 0), 0);
  const out = Buffer.alloc(total);
  let at = out.writeUInt32BE(meta.length, 0);
  at += meta.copy(out, at);
  for (const v of k.versions) if (v.material !== null) at += v.material.copy(out, at);
  return out;
}

function decodePlaintext(plain: Buffer): TransferKey {
  const bad = (why: string): never => {
    throw new BackupInvalidError(`the backup's content is malformed: ${why}`);
  };
  if (plain.length < 4) bad('too short');
  const l = plain.readUInt32BE(0);
  if (4 + l > plain.length) bad('the metadata length does not fit');
  let meta: CborValue;
  try {
    meta = decode(plain, 4, 4 + l);
  } catch {
    return bad('the metadata is not CBOR');
  }
  const m = obj(meta, bad);
  if (m.v !== 1) bad(`content version ${String(m.v)}`);
  if (typeof m.name !== 'string' || !isKeyType(m.type) || typeof m.policy !== 'string' || typeof m.disabled !== 'boolean' || !int(m.createdAt) || !Array.isArray(m.versions)) {
    bad('a field is missing or of the wrong type');
  }
  let policy: unknown;
  try {
    policy = JSON.parse(m.policy as string);
  } catch {
    bad('the policy is not JSON');
  }
  if (policy === null || typeof policy !== 'object' || Array.isArray(policy)) bad('the policy is not an object');
  const key: TransferKey = {
    name: m.name as string, type: m.type as TransferKey['type'], policy: policy as Record<string, unknown>,
    createdAt: m.createdAt as number, disabled: m.disabled as boolean, versions: [],
  };
  let at = 4 + l;
  try {
    for (const raw of m.versions as CborValue[]) {
      const v = obj(raw, bad);
      if (!int(v.version) || !KEY_VERSION_STATES.includes(v.state as KeyVersionState) || !int(v.createdAt) || !int(v.notBefore) ||
        !(v.notAfter === null || int(v.notAfter)) || !int(v.encryptions) || !int(v.length)) {
        bad('a version field is missing or of the wrong type');
      }
      const length = v.length as number;
      if (at + length > plain.length) bad('the material lengths exceed the content');
      let material: Buffer | null = null;
      if (length > 0) {
        material = Buffer.alloc(length);
        plain.copy(material, 0, at, at + length);
        at += length;
      }
      const tv: TransferVersion = {
        version: v.version as number, state: v.state as KeyVersionState, createdAt: v.createdAt as number, notBefore: v.notBefore as number,
        notAfter: v.notAfter as number | null, encryptions: v.encryptions as number, material,
      };
      key.versions.push(tv);
    }
    if (at !== plain.length) bad(`${plain.length - at} bytes follow the last version`);
  } catch (err) {
    zeroTransfer(key);
    throw err;
  }
  return key;
}

function obj(v: CborValue, bad: (why: string) => never): Record<string, CborValue> {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) return bad('expected a map');
  return v as Record<string, CborValue>;
}

function int(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}
