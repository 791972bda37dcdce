/**
 * The KEK side of a data key: one KEK version that wraps and unwraps data
 * keys (design note 5). Shaped like KekProvider (provider.ts), one per KEK
 * version, so a KEK version held by cryptod (a managed aes256-kwp key,
 * src/ops/managed-kek.ts) and one held in a token plug in alike: the cache
 * (src/cache) and the data-key operations see only this.
 *
 *   DATAKEY_GENERATE ─▶ keks.current(name) ─▶ wrap(dataKey, header)
 *   DATAKEY_ENCRYPT  ─▶ cache miss ─▶ keks.version(name, v) ─▶ unwrap(body, header)
 *
 * `aad` is the wrapped key's header (src/protocol/datakey-format.ts), so the
 * KEK name, version, key length and context are authenticated by the wrap.
 */
export interface DataKeyKek {
  /** The KEK's name: the cache's partition (trust domain). */
  readonly name: string;
  readonly version: number;
  /** The algorithm id written into the header (a managed key type). */
  readonly type: 'aes256-kwp';
  /** Wrap `plaintext` bound to `aad`. */
  wrap(plaintext: Uint8Array, aad: Uint8Array): Promise<Buffer>;
  /**
   * Reverse of `wrap`. Fails with DecryptError when the blob or aad was
   * altered or another KEK made it. The result is fresh memory the caller
   * owns and zeroes.
   */
  unwrap(blob: Uint8Array, aad: Uint8Array): Promise<Buffer>;
}

/** Finds KEK versions by name; throws the typed error of a KEK or version that cannot serve (NOT_FOUND, KEY_VERSION, KEY_DISABLED…). */
export interface DataKeyKeks {
  /** The version that wraps new data keys now. */
  current(name: string): DataKeyKek;
  /** Version `version`, to unwrap what it wrapped. */
  version(name: string, version: number): DataKeyKek;
  /** Whether data keys wrapped by `version` of `name` may still be unwrapped (the cache drops the others' entries). */
  usable(name: string, version: number): boolean;
}
