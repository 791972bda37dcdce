/**
 * Which token key a keystore's blobs are wrapped with: the meta entry
 * `kek.provider.<name>` of the keystore, written when the provider first
 * creates its key for this store, and required on every later start.
 *
 *   { "v": 1, "type": "pkcs11", "kekId": "pkcs11:…", "label": "cryptod-kek:<store id>", "id": hex(CKA_ID) }
 *
 * Why the record: a token that lacks the key must be a refusal at start,
 * never "no key yet: generate one" — that would begin wrapping under a new
 * key while every existing blob needs the old one. The label carries the
 * keystore id so several keystores (or test runs) can share one token.
 * Creation happens inside a keystore transaction, so two daemons starting
 * on one fresh data directory make one key.
 */
import { ConfigError } from '../../protocol/errors.js';
import type { Keystore } from '../../store/keystore.js';
import { Pkcs11KekProvider, tokenKekId } from './provider.js';
import type { TokenOptions } from './token.js';

export const PROVIDER_META_PREFIX = 'kek.provider.';

interface ProviderRecord {
  kekId: string;
  label: string;
  id: Buffer;
}

/**
 * Open the provider `options.provider` for the keystore `storeId`: with the
 * recorded key, or (no record) a key found by its label or generated, then recorded.
 * @throws KekUnavailableError when the token is away or lacks the recorded key.
 */
export async function openStoreTokenKek(store: Keystore, storeId: string, options: TokenOptions): Promise<Pkcs11KekProvider> {
  const metaKey = PROVIDER_META_PREFIX + options.provider;
  const recorded = parse(metaKey, await store.read((r) => r.getMeta(metaKey)));
  if (recorded !== undefined) {
    return Pkcs11KekProvider.open({ ...options, keyLabel: recorded.label, keyId: recorded.id, create: false });
  }
  const label = `cryptod-kek:${storeId}`;
  const kek = await Pkcs11KekProvider.open({ ...options, keyLabel: label, create: true });
  try {
    const winner = await store.transaction(async (tx) => {
      const theirs = parse(metaKey, await tx.getMeta(metaKey));
      if (theirs !== undefined) return theirs;
      await tx.setMeta(metaKey, JSON.stringify({ v: 1, type: 'pkcs11', kekId: kek.id, label, id: kek.keyId.toString('hex') }));
      return undefined;
    });
    if (winner === undefined || winner.kekId === kek.id) return kek;
    await kek.close();
    return Pkcs11KekProvider.open({ ...options, keyLabel: winner.label, keyId: winner.id, create: false });
  } catch (err) {
    await kek.close();
    throw err;
  }
}

function parse(metaKey: string, json: string | undefined): ProviderRecord | undefined {
  if (json === undefined) return undefined;
  const bad = (why: string): never => {
    throw new ConfigError(`the keystore's ${metaKey} record is damaged (${why}); restore the keystore from a backup`);
  };
  let raw: { v?: unknown; type?: unknown; kekId?: unknown; label?: unknown; id?: unknown };
  try {
    raw = JSON.parse(json) as typeof raw;
  } catch {
    return bad('not JSON');
  }
  if (raw === null || typeof raw !== 'object' || raw.v !== 1 || raw.type !== 'pkcs11') return bad('unknown version or type');
  if (typeof raw.label !== 'string' || typeof raw.id !== 'string' || !/^[0-9a-f]{2,128}$/.test(raw.id)) return bad('missing label or id');
  const id = Buffer.from(raw.id, 'hex');
  if (raw.kekId !== tokenKekId(id)) return bad('kekId does not match the key id');
  return { kekId: raw.kekId, label: raw.label, id };
}
