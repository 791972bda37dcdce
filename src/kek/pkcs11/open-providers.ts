/**
 * Open every configured `pkcs11` provider of a keystore as ring members
 * (src/kek/ring.ts): the daemon (src/daemon/managed-keys.ts) and `cryptod
 * keystore check` open the same KEKs, so the check never calls a blob
 * damaged only because its provider was left out.
 */
import type { Keystore } from '../../store/keystore.js';
import type { RingMember } from '../ring.js';
import { readPin } from './pin.js';
import { TOKEN_BLOB_FORMAT } from './provider.js';
import { openStoreTokenKek } from './store-record.js';

/** A provider's settings as the configuration gives them (src/config/config.ts ProviderConfig). */
export interface TokenProviderSettings {
  readonly module: string;
  readonly token: string;
  /** `env:NAME` or `file:/path`. */
  readonly pin: string;
  readonly slot?: number;
  readonly sessions: number;
  readonly retryMs: number;
}

/**
 * Open `providers` in order; on a failure the ones already open are closed.
 * `opened` is told about each (for the log line).
 */
export async function openTokenProviders(
  store: Keystore, storeId: string, providers: Readonly<Record<string, TokenProviderSettings>>,
  env: NodeJS.ProcessEnv = process.env, opened?: (name: string, created: boolean, kekId: string) => void,
): Promise<RingMember[]> {
  const members: RingMember[] = [];
  try {
    for (const [name, p] of Object.entries(providers)) {
      const provider = await openStoreTokenKek(store, storeId, {
        provider: name, module: p.module, token: p.token, pin: readPin(`providers.${name}.pin`, p.pin, env),
        sessions: p.sessions, retryMs: p.retryMs, ...(p.slot === undefined ? {} : { slot: p.slot }),
      });
      members.push({ name, format: TOKEN_BLOB_FORMAT, provider });
      opened?.(name, provider.created, provider.id);
    }
    return members;
  } catch (err) {
    await Promise.allSettled(members.map((m) => m.provider.close()));
    throw err;
  }
}
