/**
 * Operation codes. The number is the wire value (u16 in the frame header);
 * the name is what docs/protocol.md and `cryptod status` use. A code is never
 * reused for a different operation.
 */
export const PROTOCOL_VERSION = 1;

export const Op = {
  // session
  HELLO: 0x0001,
  PING: 0x0002,
  STATUS: 0x0003,
  HEALTH: 0x0004,
  // one-shot, keyless
  DIGEST: 0x0010,
  RANDOM: 0x0011,
  // client-owned keys (WebCrypto-shaped)
  GENERATE_KEY: 0x0020,
  IMPORT_KEY: 0x0021,
  EXPORT_KEY: 0x0022,
  RELEASE: 0x0023,
  ENCRYPT: 0x0024,
  DECRYPT: 0x0025,
  SIGN: 0x0026,
  VERIFY: 0x0027,
  DERIVE_BITS: 0x0028,
  DERIVE_KEY: 0x0029,
  WRAP_KEY: 0x002a,
  UNWRAP_KEY: 0x002b,
  // multi-part contexts (exclusive data nodes)
  HASH_CREATE: 0x0040,
  HMAC_CREATE: 0x0041,
  CONTEXT_UPDATE: 0x0042,
  CONTEXT_FINAL: 0x0043,
  CIPHER_CREATE: 0x0044,
  CIPHER_UPDATE: 0x0045,
  CIPHER_FINAL: 0x0046,
  // shared-memory windows for large inputs (docs/protocol.md §6.16)
  WINDOW_OFFER: 0x0047,
  WINDOW_ATTACH: 0x0048,
  // managed keys, used by name (docs/protocol.md §6.11); each data op also takes a batch (`items`)
  MANAGED_ENCRYPT: 0x0100,
  MANAGED_DECRYPT: 0x0101,
  MANAGED_SIGN: 0x0102,
  MANAGED_VERIFY: 0x0103,
  MANAGED_MAC: 0x0104,
  MANAGED_VERIFY_MAC: 0x0105,
  MANAGED_REWRAP: 0x0106,
  // managed key administration
  KEY_CREATE: 0x0110,
  KEY_IMPORT: 0x0111,
  KEY_ROTATE: 0x0112,
  KEY_LIST: 0x0113,
  KEY_DESCRIBE: 0x0114,
  KEY_SET_POLICY: 0x0115,
  KEY_TRIM: 0x0116,
  KEY_EXPORT: 0x0117,
  KEY_DESTROY: 0x0118,
  KEY_PERSIST: 0x0119,
  KEY_PUBLIC: 0x011a,
  RELOAD: 0x0120,
  // data keys under a managed KEK (docs/protocol.md §6.12); encrypt and decrypt also take a batch (`items`)
  DATAKEY_GENERATE: 0x0140,
  DATAKEY_ENCRYPT: 0x0141,
  DATAKEY_DECRYPT: 0x0142,
  DATAKEY_REWRAP: 0x0143,
  DATAKEY_OPEN: 0x0144,
  DATAKEY_KEY: 0x0145,
  DATAKEY_UNWRAP: 0x0146,
  // KEK administration
  KEK_REWRAP_ALL: 0x0150,
  // moving a managed key between daemons (docs/protocol.md §6.13)
  KEY_BACKUP: 0x01c0,
  KEY_RESTORE: 0x01c1,
} as const;
export type OpName = keyof typeof Op;
export type OpCode = (typeof Op)[OpName];

const names = new Map<number, OpName>(Object.entries(Op).map(([k, v]) => [v, k as OpName]));

export function opName(code: number): string {
  return names.get(code) ?? `0x${code.toString(16).padStart(4, '0')}`;
}

export function isKnownOp(code: number): code is OpCode {
  return names.has(code);
}

/** Managed-key operations (0x0100–0x01ff, docs/protocol.md §6.11): each must declare who may run it. */
export function isManagedOp(code: number): boolean {
  return code >= 0x0100 && code <= 0x01ff;
}
