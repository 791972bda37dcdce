/**
 * TokenKeys (src/kek/token-keys.ts) on the configured `pkcs11` providers:
 * each key version is its own AES-256 object in the provider's token, made
 * and used over the provider's session pool, so the token's sessions,
 * reconnects and typed errors are the provider's (provider.ts, token.ts).
 */
import { KekUnavailableError } from '../../protocol/errors.js';
import type { KekProvider } from '../provider.js';
import { newTokenKeyId, tokenKeyLabel, type TokenKeyRef, type TokenKeys } from '../token-keys.js';
import type { Pkcs11KekProvider, TokenCallCounts } from './provider.js';

export class Pkcs11TokenKeys implements TokenKeys {
  readonly #storeId: string;
  readonly #providers: ReadonlyMap<string, Pkcs11KekProvider>;

  /** `providers`: the opened pkcs11 providers by configured name; `storeId`: the keystore's id (in every label). */
  constructor(storeId: string, providers: ReadonlyMap<string, Pkcs11KekProvider>) {
    this.#storeId = storeId;
    this.#providers = providers;
  }

  get providers(): readonly string[] {
    return [...this.#providers.keys()];
  }

  /** C_Encrypt/C_Decrypt calls made through `provider` so far (its own KEK and every key version in its token), or undefined. */
  calls(provider: string): Readonly<TokenCallCounts> | undefined {
    const c = this.#providers.get(provider)?.counts;
    return c === undefined ? undefined : { ...c };
  }

  async generate(provider: string, name: string, version: number): Promise<TokenKeyRef> {
    const p = this.#provider(provider, name);
    const ckaId = newTokenKeyId(this.#storeId, name, version);
    await p.generateKeyObject(tokenKeyLabel(this.#storeId, name, version), ckaId);
    return { provider, ckaId };
  }

  key(ref: TokenKeyRef, name: string, version: number): KekProvider {
    return this.#provider(ref.provider, name).keyObject(tokenKeyLabel(this.#storeId, name, version), ref.ckaId);
  }

  async destroy(ref: TokenKeyRef, name: string, version: number): Promise<boolean> {
    return this.#provider(ref.provider, name).destroyKeyObject(tokenKeyLabel(this.#storeId, name, version), ref.ckaId);
  }

  #provider(provider: string, key: string): Pkcs11KekProvider {
    const p = this.#providers.get(provider);
    if (p === undefined) {
      throw new KekUnavailableError(
        `key '${key}' is held in the token of provider '${provider}', which is not configured: add it under providers: (with the token that holds the key)`,
        { detail: { provider, key, reason: 'not-configured' } },
      );
    }
    return p;
  }
}
