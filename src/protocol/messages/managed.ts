/**
 * Managed keys (docs/protocol.md §6.11): the key types, the key definition
 * and policy a client sends, the description the daemon returns, the data
 * operations (single item or batch) and the administration.
 */
import { Op } from '../ops.js';
import {
  array, bool, bytes, cbor, either, handle, literal, map, none, nullable, oneOf, optional, record, text, uint,
  type Fields, type In, type Out, type Schema,
} from '../schema.js';
import { message } from './message.js';

/** The managed key types; the stable algorithm id of each is in managed-format.ts. */
export const KEY_TYPES = [
  'aes256-gcm',
  'chacha20-poly1305',
  'hmac-sha256',
  'hmac-sha512',
  'ed25519',
  'ecdsa-p256',
  'ecdsa-p384',
  'rsa-pss-3072',
  'aes256-kwp',
  'ecdsa-p521',
  'rsa-pkcs1-3072',
  'x25519',
] as const;
export type ManagedKeyType = (typeof KEY_TYPES)[number];

export const VERSION_STATES = ['active', 'decrypt-only', 'disabled', 'destroyed'] as const;
export type VersionState = (typeof VERSION_STATES)[number];

/** A duration: text (`90s`, `10m`, `1h`, `30d`) or milliseconds. */
const duration = oneOf(text(), uint());
const u32 = uint(1, 0xffff_ffff);

/** Policy fields as a definition carries them; their values are checked by the key manager (src/keys/policy.ts). */
const policyFields = {
  rotationPeriod: optional(duration),
  prefetchPeriod: optional(duration),
  gracePeriod: optional(duration),
  clockTolerance: optional(duration),
  minDecryptionVersion: optional(uint()),
  exportable: optional(bool()),
  deletionProtection: optional(bool()),
  allowBackup: optional(bool()),
  /** Rule (ClientId, `uid:N`, or `*`) → operations. */
  clients: optional(record(array(text()))),
};

function resettable<F extends Fields>(fields: F): { [K in keyof F]: Schema<Out<F[K]> | null, In<F[K]> | null, true> } {
  const out: Record<string, Schema<unknown, unknown, true>> = {};
  for (const [k, s] of Object.entries(fields)) out[k] = optional(nullable(s as Schema<unknown, unknown>));
  return out as { [K in keyof F]: Schema<Out<F[K]> | null, In<F[K]> | null, true> };
}

/** Policy fields of a key that exists (KEY_SET_POLICY, KEY_PERSIST); `null` resets one to its default. */
export const policyPatch = map(resettable(policyFields));
export type ManagedKeyPolicy = In<typeof policyPatch>;

/** A key definition, as in the configuration file; a policy field that is null takes its default. */
export const definition = map({
  type: text(),
  ...resettable(policyFields),
  /** A derived epoch key: epoch 0 starts at this instant (ISO-8601 text or epoch milliseconds). */
  derived: optional(nullable(map({ epochStart: oneOf(text(), uint()) }))),
  /** Generate and keep every version in the token of this configured provider (aes256-kwp only). */
  provider: optional(nullable(text())),
});
export type ManagedKeyDefinition = In<typeof definition>;

/** One version of a described key. Times are ISO-8601 UTC text. */
export const versionDescription = map(
  {
    version: u32,
    state: literal(VERSION_STATES),
    createdAt: text(),
    notBefore: text(),
    notAfter: nullable(text()),
    /**
     * Versions with an encryption budget (AES-GCM, ChaCha20-Poly1305):
     * encryptions reserved in the keystore. Daemons reserve them in blocks
     * (2^20 by default) before using them, so this is an upper bound on the
     * encryptions made with the version by every daemon sharing the keystore,
     * not a count: right after the first encryption it is already one block.
     */
    encryptionsReserved: optional(uint()),
    /** Present when the version's stored material did not load: why (it answers CRYPTOD_ERR_KEY_DAMAGED). */
    damaged: optional(text()),
  },
  { open: true },
);

/** What KEY_DESCRIBE, KEY_LIST and the creating operations return. */
export const managedKeyDescription = map(
  {
    name: text(),
    type: literal(KEY_TYPES),
    origin: literal(['api', 'config']),
    disabled: bool(),
    currentVersion: nullable(u32),
    derived: nullable(map({ epochStart: text(), period: text() }, { open: true })),
    policy: map(
      {
        rotationPeriod: nullable(text()),
        prefetchPeriod: text(),
        gracePeriod: nullable(text()),
        clockTolerance: text(),
        minDecryptionVersion: uint(),
        exportable: bool(),
        deletionProtection: bool(),
        clients: record(array(text())),
      },
      { open: true },
    ),
    versions: array(versionDescription),
    /** A derived key whose master secret did not load: why. */
    damaged: optional(text()),
    /** The provider whose token holds every version (keys created with `provider`). */
    provider: optional(text()),
  },
  { open: true },
);
export type ManagedKeyDescription = Out<typeof managedKeyDescription>;
export type ManagedKeyVersion = Out<typeof versionDescription>;

// ── data operations ──────────────────────────────────────────────────────

/** Most items one batch may carry; the frame size bounds the bytes. */
export const MAX_BATCH = 4096;

/** An item that failed inside a batch. */
export const itemError = map({ error: map({ code: text(), message: text(), detail: optional(record(cbor())) }, { open: true }) }, { open: true });
export type ManagedItemError = Out<typeof itemError>;

/**
 * A data operation: the item's fields beside `key`, or `{ key, items: [item…] }`.
 * The reply is the item's result, or `{ items: [result | { error }…] }`.
 * The daemon reads the message as a whole; `single` and `batch` are its two
 * forms as messages of their own, for a client that knows which it sends.
 */
function dataOp<F extends Fields, R extends Fields>(op: (typeof Op)[keyof typeof Op], item: F, result: R) {
  const resultSchema = map(result, { open: true });
  const single = message(op, map({ key: text(), ...item }), resultSchema);
  const batch = message(
    op,
    map({ key: text(), items: array(map(item), { max: MAX_BATCH }) }),
    map({ items: array(either((v) => v.error !== undefined, itemError, resultSchema)) }, { open: true }),
  );
  return {
    ...message(op, either((v) => v.items !== undefined, batch.args, single.args), either((v) => v.items !== undefined, batch.result, resultSchema)),
    single,
    batch,
  };
}

export const ManagedEncrypt = dataOp(Op.MANAGED_ENCRYPT, { plaintext: bytes(), aad: optional(bytes()) }, { ciphertext: bytes(), version: u32 });
export const ManagedDecrypt = dataOp(Op.MANAGED_DECRYPT, { ciphertext: bytes(), aad: optional(bytes()) }, { plaintext: bytes(), version: u32 });
export const ManagedRewrap = dataOp(Op.MANAGED_REWRAP, { ciphertext: bytes(), aad: optional(bytes()) }, { ciphertext: bytes(), version: u32, previousVersion: u32 });
export const ManagedSign = dataOp(Op.MANAGED_SIGN, { message: bytes() }, { signature: bytes(), version: u32 });
export const ManagedVerify = dataOp(Op.MANAGED_VERIFY, { message: bytes(), signature: bytes() }, { valid: bool(), version: u32 });
export const ManagedMac = dataOp(Op.MANAGED_MAC, { message: bytes() }, { mac: bytes(), version: u32 });
export const ManagedVerifyMac = dataOp(Op.MANAGED_VERIFY_MAC, { message: bytes(), mac: bytes() }, { valid: bool(), version: u32 });

// ── administration ───────────────────────────────────────────────────────

const name = text();
const destroyed = map({ destroyed: array(u32) }, { open: true });

export const KeyCreate = message(Op.KEY_CREATE, map({ name, definition }), managedKeyDescription);
export const KeyImport = message(Op.KEY_IMPORT, map({ name, definition, material: bytes() }), managedKeyDescription);
export const KeyPersist = message(Op.KEY_PERSIST, map({ handle: handle(), name, definition: optional(policyPatch) }), managedKeyDescription);
export const KeyRotate = message(Op.KEY_ROTATE, map({ name }), map({ version: u32 }, { open: true }));
export const KeyList = message(Op.KEY_LIST, none(), map({ keys: array(managedKeyDescription) }, { open: true }));
export const KeyDescribe = message(Op.KEY_DESCRIBE, map({ name }), managedKeyDescription);
export const KeySetPolicy = message(Op.KEY_SET_POLICY, map({ name, policy: policyPatch }), managedKeyDescription);
export const KeyTrim = message(Op.KEY_TRIM, map({ name, below: u32 }), destroyed);
export const KeyDestroy = message(Op.KEY_DESTROY, map({ name }), destroyed);
export const KeyExport = message(
  Op.KEY_EXPORT,
  map({ name, version: optional(u32) }),
  map({ name: text(), type: literal(KEY_TYPES), version: u32, format: literal(['raw', 'pkcs8']), material: bytes() }, { open: true }),
);
export const KeyPublic = message(
  Op.KEY_PUBLIC,
  map({ name, version: optional(u32) }),
  map({ name: text(), type: literal(KEY_TYPES), version: u32, spki: bytes(), jwk: record(cbor()) }, { open: true }),
);
export const Reload = message(Op.RELOAD, none(), map({}, { open: true }));
