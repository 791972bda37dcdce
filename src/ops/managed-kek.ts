/**
 * KEKs held by cryptod: managed aes256-kwp keys whose versions wrap data
 * keys (src/kek/data-key-kek.ts). The version material stays in the key
 * manager (wrapped at rest by the root KEK); each wrap or unwrap takes a
 * snapshot lease only for its synchronous crypto, so a rotation or a destroy
 * never waits for it and never zeroes material under it.
 *
 * The wrap is RFC 5649 (AES key wrap with padding) under a key derived from
 * the version key and the wrapped key's header, which binds the header that
 * RFC 5649 cannot take as additional data (as managed-crypto.ts does for
 * aes256-kwp ciphertexts, with its own label):
 *
 *   k = HKDF-SHA-256(IKM = KEK version key, salt = none, info = "cryptod data key wrap v1" ‖ header, 32)
 *   wrapped = AES-256-KWP(k, data key)
 *
 * A key declared with `provider:` (src/kek/token-keys.ts) holds no bytes
 * here: each version is an object in the token, and wrap/unwrap are the
 * token provider's AES-GCM over C_Encrypt/C_Decrypt with the header as AAD
 * (docs/formats.md "Token-wrapped blob"). The lease is held only to find
 * the version's token key; the token call runs after it, on the libuv pool.
 *
 * Which versions unwrap follows the key's inbound rules (selection.ts):
 * older versions unwrap until they are disabled, destroyed, trimmed, below
 * the minimum decryption version, or past a grace period.
 */
import { createCipheriv, createDecipheriv, hkdfSync } from 'node:crypto';
import type { DataKeyKek, DataKeyKeks } from '../kek/data-key-kek.js';
import type { KekProvider } from '../kek/provider.js';
import type { KeyManager } from '../keys/manager.js';
import { DecryptError, InvalidKeyError } from '../protocol/errors.js';

const KWP_IV = Buffer.from('a65959a6', 'hex');
const WRAP_INFO = Buffer.from('cryptod data key wrap v1', 'ascii');

function headerKey(secret: Buffer, aad: Uint8Array): Buffer {
  const derived = new Uint8Array(hkdfSync('sha256', secret, Buffer.alloc(0), Buffer.concat([WRAP_INFO, aad]), 32));
  const out = Buffer.alloc(32);
  out.set(derived);
  derived.fill(0);
  return out;
}

class ManagedKekVersion implements DataKeyKek {
  readonly type = 'aes256-kwp' as const;
  constructor(readonly manager: KeyManager, readonly name: string, readonly version: number) {}

  /** The version's token key, or null for a version held by cryptod. */
  #tokenKek(): KekProvider | null {
    using lease = this.manager.acquire();
    const m = lease.inbound(this.name, this.version, 'decrypt').material;
    return m.kind === 'token' ? m.token.kek : null;
  }

  /** Run `fn` with the version's key under a lease held only for the call. */
  #with<T>(fn: (secret: Buffer) => T): T {
    using lease = this.manager.acquire();
    return fn(lease.inbound(this.name, this.version, 'decrypt').material.secret);
  }

  wrap(plaintext: Uint8Array, aad: Uint8Array): Promise<Buffer> {
    try {
      const token = this.#tokenKek();
      if (token !== null) return token.wrap(plaintext, aad);
      return Promise.resolve(this.#with((secret) => {
        const k = headerKey(secret, aad);
        try {
          const c = createCipheriv('id-aes256-wrap-pad', k, KWP_IV);
          return Buffer.concat([c.update(plaintext), c.final()]);
        } finally {
          k.fill(0);
        }
      }));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  unwrap(blob: Uint8Array, aad: Uint8Array): Promise<Buffer> {
    try {
      const token = this.#tokenKek();
      if (token !== null) return token.unwrap(blob, aad);
      return Promise.resolve(this.#with((secret) => {
        const k = headerKey(secret, aad);
        try {
          const d = createDecipheriv('id-aes256-wrap-pad', k, KWP_IV);
          let a: Buffer | undefined;
          let b: Buffer;
          try {
            // OpenSSL checks the RFC 5649 integrity value in update() or final(), depending on the version.
            a = d.update(blob);
            b = d.final();
          } catch {
            a?.fill(0);
            throw new DecryptError('cannot unwrap the data key: it, or its header, is not authentic for this KEK version (RFC 5649 integrity check)', {
              detail: { kek: this.name, kekVersion: this.version },
            });
          }
          const out = Buffer.alloc(a.length + b.length);
          a.copy(out, 0);
          b.copy(out, a.length);
          a.fill(0);
          b.fill(0);
          return out;
        } finally {
          k.fill(0);
        }
      }));
    } catch (err) {
      return Promise.reject(err);
    }
  }
}

/** The managed KEKs of a key manager. */
export function managedKeks(manager: KeyManager): DataKeyKeks {
  const kwp = (name: string): void => {
    using lease = manager.acquire();
    const k = lease.key(name);
    if (k.type !== 'aes256-kwp') {
      throw new InvalidKeyError(`key '${name}' (${k.type}) is not a KEK: data keys are wrapped by aes256-kwp keys`, { detail: { key: name, field: 'kek' } });
    }
  };
  return {
    current(name) {
      kwp(name);
      using lease = manager.acquire();
      return new ManagedKekVersion(manager, name, lease.outbound(name, 'encrypt').version.version);
    },
    version(name, version) {
      kwp(name);
      using lease = manager.acquire();
      lease.inbound(name, version, 'decrypt');
      return new ManagedKekVersion(manager, name, version);
    },
    usable(name, version) {
      const e = manager.entry(name);
      if (e === undefined || e.disabled || e.type !== 'aes256-kwp') return false;
      const v = e.versions.find((x) => x.version === version);
      return v !== undefined && v.material !== null && !v.material.destroyed;
    },
  };
}
