/**
 * The KEKs a daemon holds, and which one is the root: the provider that
 * wraps managed-key material written from now on. The others stay open so
 * that blobs they wrapped before the root moved still unwrap — until
 * `cryptod kek rewrap-all` has moved every blob to the root.
 *
 *   ring.wrap   ─▶ root only                     (new versions, rewrap)
 *   ring.unwrap ─▶ by the blob's format byte:    0x01 ─▶ local provider(s)
 *                                                0x02 ─▶ pkcs11 provider(s)
 *                  several of one format: each in turn while it answers
 *                  "not authentic" (DecryptError); any other error stops
 *                  the search (a token that is away is not a wrong key)
 *
 * The ring is itself a KekProvider whose id is the root's, so the key
 * manager writes `kekId` = root id beside every new blob without knowing
 * there is a ring. Why dispatch on the format byte rather than `kekId`: the
 * loader hands the provider only the blob, and the byte is authenticated by
 * both formats (part of the GCM AAD), so it cannot be switched to send a
 * blob to the wrong kind of provider.
 */
import { DecryptError, KekUnavailableError } from '../protocol/errors.js';
import type { KekProvider } from './provider.js';

export interface RingMember {
  /** The provider's name in the configuration (`local` for the local one). */
  readonly name: string;
  /** The first byte of every blob the provider makes. */
  readonly format: number;
  readonly provider: KekProvider;
}

export class KekRing implements KekProvider {
  readonly #root: RingMember;
  readonly #members: readonly RingMember[];

  constructor(root: string, members: readonly RingMember[]) {
    const r = members.find((m) => m.name === root);
    if (r === undefined) throw new KekUnavailableError(`the root provider '${root}' is not among the configured providers (${members.map((m) => m.name).join(', ')})`, { detail: { provider: root, reason: 'not-configured' } });
    this.#root = r;
    this.#members = members;
  }

  get id(): string {
    return this.#root.provider.id;
  }

  /** The root provider's name in the configuration. */
  get rootName(): string {
    return this.#root.name;
  }

  /** Every provider, as `{ name, id }`, root first. */
  list(): { name: string; id: string; root: boolean }[] {
    return [this.#root, ...this.#members.filter((m) => m !== this.#root)].map((m) => ({ name: m.name, id: m.provider.id, root: m === this.#root }));
  }

  /** The configured name of the provider whose id is `kekId`, or undefined (a KEK this daemon does not hold). */
  nameOf(kekId: string): string | undefined {
    return this.#members.find((m) => m.provider.id === kekId)?.name;
  }

  wrap(plaintext: Uint8Array, aad: Uint8Array): Promise<Buffer> {
    return this.#root.provider.wrap(plaintext, aad);
  }

  async unwrap(blob: Uint8Array, aad: Uint8Array): Promise<Buffer> {
    const format = blob[0];
    // The root first: after a rewrap-all it holds nearly everything.
    const candidates = [this.#root, ...this.#members.filter((m) => m !== this.#root)].filter((m) => m.format === format);
    if (candidates.length === 0) {
      const kind = format === 0x02 ? 'a PKCS#11 token (type: pkcs11)' : `an unknown provider (format ${String(format)})`;
      throw new KekUnavailableError(
        `a blob in the keystore was wrapped by ${kind}, and no such provider is configured: configure it under providers: ` +
          '(with the token that holds the key); keys wrapped by it cannot be opened without it',
        { detail: { provider: format === 0x02 ? 'pkcs11' : 'unknown', reason: 'not-configured' } },
      );
    }
    let last: unknown;
    for (const m of candidates) {
      try {
        return await m.provider.unwrap(blob, aad);
      } catch (err) {
        if (!(err instanceof DecryptError)) throw err;
        last = err;
      }
    }
    throw last;
  }

  /** Close every provider; the first failure is rethrown after all were tried. */
  async close(): Promise<void> {
    const results = await Promise.allSettled(this.#members.map((m) => m.provider.close()));
    const failed = results.find((r) => r.status === 'rejected');
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
  }
}
