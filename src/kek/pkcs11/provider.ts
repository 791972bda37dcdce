/**
 * The `pkcs11` KEK provider: an AES-256 key generated inside a PKCS#11 token
 * (SoftHSM2, a YubiHSM, a network HSM…), never leaving it, wrapping and
 * unwrapping with AES-GCM computed by the token.
 *
 * The key object, created once and found again by label and CKA_ID:
 *
 *   CKA_CLASS CKO_SECRET_KEY   CKA_KEY_TYPE CKK_AES   CKA_VALUE_LEN 32
 *   CKA_TOKEN true (survives restarts)   CKA_PRIVATE true (needs the login)
 *   CKA_SENSITIVE true   CKA_EXTRACTABLE false (the token never reveals it, not even wrapped)
 *   CKA_ENCRYPT, CKA_DECRYPT true; CKA_WRAP, CKA_UNWRAP, CKA_DERIVE false; CKA_MODIFIABLE false
 *   CKA_LABEL "cryptod-kek:<keystore id>"   CKA_ID 16 random bytes
 *
 * Mechanism: CKM_AES_GCM through C_Encrypt/C_Decrypt. SoftHSM2 2.6 lists
 * CKM_AES_KEY_WRAP_PAD (RFC 5649) but only for C_WrapKey/C_UnwrapKey of key
 * *objects*, and refuses it for C_Encrypt (CKR_MECHANISM_INVALID); it has no
 * CKM_AES_KEY_WRAP_KWP at all. GCM also binds the AAD, which KWP cannot.
 * Blob format (docs/formats.md "Token-wrapped blob"):
 *
 *   offset  size  field
 *   0       1     format = 0x02 (token AES-GCM; 0x01 is the local provider's)
 *   1       12    IV: 96 random bits, fresh for every wrap (crypto.randomFillSync)
 *   13      n     ciphertext
 *   13+n    16    GCM tag
 *   AAD given to the token = 0x02 ‖ caller's AAD
 *
 * The IV comes from Node's CSPRNG rather than the token's C_GenerateRandom:
 * one call fewer per wrap, and the token's generator need not be trusted for
 * uniqueness. Random 96-bit IVs allow 2^32 wraps per KEK (SP 800-38D §8.3).
 *
 * Never blocks the loop: C_Encrypt/C_Decrypt run as pkcs11js's *Async calls
 * on libuv's thread pool; only the C_*Init calls (no cryptography, no I/O in
 * SoftHSM2) run on the loop. Measured in bench/pkcs11.ts.
 *
 * SoftHSM2 reports a GCM tag mismatch as CKR_GENERAL_ERROR, which other
 * tokens use for real faults. So a failed decrypt is a DecryptError only
 * after a probe shows the session and the key object are still there;
 * otherwise the token went away and it is KekUnavailableError.
 */
import { createHash, randomBytes, randomFillSync } from 'node:crypto';
import type * as P from 'pkcs11js';
import { DecryptError, InternalError, KekUnavailableError } from '../../protocol/errors.js';
import { MAX_WRAPPED_BYTES } from '../../store/records.js';
import { assertBytes, type KekProvider } from '../provider.js';
import { ckrName, isLost, Pkcs11Token, TokenLostError, type SessionContext, type TokenOptions } from './token.js';

export const TOKEN_BLOB_FORMAT = 0x02;
export const IV_BYTES = 12;
export const TAG_BYTES = 16;
export const TOKEN_BLOB_OVERHEAD = 1 + IV_BYTES + TAG_BYTES;
export const KEK_ID_BYTES = 16;
const MAX_PLAINTEXT = MAX_WRAPPED_BYTES - TOKEN_BLOB_OVERHEAD;
const MAX_AAD = 64 * 1024;

export interface Pkcs11KekOptions extends TokenOptions {
  /** CKA_LABEL of the key object. */
  keyLabel: string;
  /** CKA_ID of the key object when it is known (recorded in the keystore); a token without it is refused. */
  keyId?: Buffer;
  /** Generate the key when the token has none with this label (and `keyId` is not set). */
  create: boolean;
}

/** The provider id of a token key: `pkcs11:` and a digest of its CKA_ID (the CKA_ID is not secret; the digest keeps ids short and uniform). */
export function tokenKekId(ckaId: Buffer): string {
  return `pkcs11:${createHash('sha256').update('cryptod/kek/pkcs11/id/v1').update(ckaId).digest().subarray(0, 8).toString('hex')}`;
}

/** Token calls made through one provider and the key objects it reaches (shared by them): what `status` and the tests count. */
export interface TokenCallCounts {
  /** C_Encrypt calls (wraps). */
  encrypts: number;
  /** C_Decrypt calls (unwraps). */
  decrypts: number;
}

export class Pkcs11KekProvider implements KekProvider {
  readonly id: string;
  /** The CKA_ID of the key object (not secret). */
  readonly keyId: Buffer;
  /** True when open() generated the key in the token. */
  readonly created: boolean;
  /** Shared with every key object reached through `keyObject()`. */
  readonly counts: TokenCallCounts;
  readonly #token: Pkcs11Token;
  readonly #label: string;
  /** A key object reached through another provider's token: close() leaves the token open. */
  readonly #borrowed: boolean;
  #handle: { generation: number; key: Buffer } | null = null;

  private constructor(token: Pkcs11Token, label: string, keyId: Buffer, created: boolean, counts: TokenCallCounts = { encrypts: 0, decrypts: 0 }, borrowed = false) {
    this.#token = token;
    this.#label = label;
    this.keyId = keyId;
    this.id = tokenKekId(keyId);
    this.created = created;
    this.counts = counts;
    this.#borrowed = borrowed;
  }

  /**
   * Generate another AES-256 key object in this provider's token, with the
   * same attributes as the provider's own (non-extractable, sensitive,
   * CKA_TOKEN), on the same sessions. Used for managed keys declared with
   * `provider:` (src/kek/pkcs11/token-keys.ts).
   * @throws KekUnavailableError when the token is away.
   */
  async generateKeyObject(label: string, keyId: Buffer): Promise<void> {
    await this.#token.withSession(async (ctx) => {
      generateKey(ctx, label, keyId);
    });
  }

  /** The key object `label`/`keyId` of this token as a provider of its own (its close() leaves the token open). Nothing is looked up until its first use. */
  keyObject(label: string, keyId: Buffer): Pkcs11KekProvider {
    return new Pkcs11KekProvider(this.#token, label, Buffer.from(keyId), false, this.counts, true);
  }

  /**
   * C_DestroyObject on the key object `label`/`keyId`. Resolves to false when
   * the token holds no such object (already destroyed).
   * @throws KekUnavailableError when the token is away.
   */
  async destroyKeyObject(label: string, keyId: Buffer): Promise<boolean> {
    return this.#token.withSession(async (ctx) => {
      const key = findKey(ctx, label, keyId);
      if (key === undefined) return false;
      ctx.lib.C_DestroyObject(ctx.session, key);
      return true;
    });
  }

  /**
   * Connect to the token, then find the key (or generate it when allowed).
   * @throws KekUnavailableError (reason `not-present`, `login`, `key-missing`, `device`).
   * @example
   *   const kek = await Pkcs11KekProvider.open({ provider: 'hsm', module: '/usr/lib/softhsm/libsofthsm2.so',
   *     token: 'cryptod', pin, sessions: 4, retryMs: 1000, keyLabel: 'cryptod-kek:9f…', create: true });
   */
  static async open(options: Pkcs11KekOptions): Promise<Pkcs11KekProvider> {
    const token = new Pkcs11Token(options);
    try {
      const found = await token.withSession(async (ctx) => {
        const key = findKey(ctx, options.keyLabel, options.keyId);
        if (key !== undefined) return { keyId: readId(ctx, key), created: false };
        if (options.keyId !== undefined || !options.create) return undefined;
        const keyId = randomBytes(KEK_ID_BYTES);
        generateKey(ctx, options.keyLabel, keyId);
        return { keyId, created: true };
      });
      if (found === undefined) {
        throw new KekUnavailableError(
          `the token "${options.token}" holds no key "${options.keyLabel}"${options.keyId === undefined ? '' : ` with id ${tokenKekId(options.keyId)}`}: ` +
            'the keystore was wrapped by a key in another token. Start with the token that holds it (or restore the token from its backup); ' +
            'without it nothing in this keystore can be unwrapped',
          { detail: { provider: options.provider, reason: 'key-missing' } },
        );
      }
      return new Pkcs11KekProvider(token, options.keyLabel, found.keyId, found.created);
    } catch (err) {
      await token.close();
      throw err;
    }
  }

  async wrap(plaintext: Uint8Array, aad: Uint8Array): Promise<Buffer> {
    assertBytes('plaintext', plaintext, MAX_PLAINTEXT);
    assertBytes('aad', aad, MAX_AAD);
    return this.#token.withSession(async (ctx) => {
      const blob = Buffer.alloc(TOKEN_BLOB_OVERHEAD + plaintext.length);
      blob[0] = TOKEN_BLOB_FORMAT;
      const iv = blob.subarray(1, 1 + IV_BYTES);
      randomFillSync(iv);
      ctx.lib.C_EncryptInit(ctx.session, gcm(ctx.pkcs11, iv, aad), this.#key(ctx));
      const input = Buffer.alloc(plaintext.length);
      input.set(plaintext);
      try {
        this.counts.encrypts++;
        const out = await ctx.lib.C_EncryptAsync(ctx.session, input, blob.subarray(1 + IV_BYTES));
        if (out.length !== plaintext.length + TAG_BYTES) throw new InternalError(`the token returned ${out.length} bytes for a ${plaintext.length}-byte wrap`);
        return blob;
      } finally {
        input.fill(0);
      }
    });
  }

  async unwrap(blob: Uint8Array, aad: Uint8Array): Promise<Buffer> {
    assertBytes('a wrapped blob', blob, MAX_WRAPPED_BYTES);
    assertBytes('aad', aad, MAX_AAD);
    if (blob.length < TOKEN_BLOB_OVERHEAD) {
      throw new DecryptError(`cannot unwrap: expected a token blob of at least ${TOKEN_BLOB_OVERHEAD} bytes, got ${blob.length}`, { detail: { kekId: this.id, reason: 'length' } });
    }
    if (blob[0] !== TOKEN_BLOB_FORMAT) {
      throw new DecryptError(`cannot unwrap: blob format ${blob[0]} is not a token blob (${TOKEN_BLOB_FORMAT})`, { detail: { kekId: this.id, reason: 'format' } });
    }
    return this.#token.withSession(async (ctx) => {
      const iv = Buffer.from(blob.subarray(1, 1 + IV_BYTES));
      const body = Buffer.from(blob.subarray(1 + IV_BYTES));
      const out = Buffer.alloc(body.length);
      const key = this.#key(ctx);
      ctx.lib.C_DecryptInit(ctx.session, gcm(ctx.pkcs11, iv, aad), key);
      let got: Buffer;
      try {
        this.counts.decrypts++;
        got = await ctx.lib.C_DecryptAsync(ctx.session, body, out);
      } catch (err) {
        out.fill(0);
        if (isLost(err)) throw err;
        if (!stillThere(ctx, key)) throw new TokenLostError(`${ckrName(err) ?? 'decrypt failed'}, and the token no longer answers`, { cause: err });
        throw new DecryptError('cannot unwrap: the blob is not authentic for this KEK and AAD (altered, wrong key, or wrong key name/version)', {
          detail: { kekId: this.id, reason: 'authentication' },
        });
      }
      const plain = Buffer.alloc(got.length);
      got.copy(plain);
      out.fill(0);
      return plain;
    });
  }

  async close(): Promise<void> {
    this.#handle = null;
    if (this.#borrowed) return;
    await this.#token.close();
  }

  /** The key object's handle in the current generation (handles are void after a reconnect). */
  #key(ctx: SessionContext): Buffer {
    if (this.#handle?.generation === ctx.generation) return this.#handle.key;
    const key = findKey(ctx, this.#label, this.keyId);
    if (key === undefined) {
      throw new KekUnavailableError(`the token "${this.#token.provider}" no longer holds the KEK ${this.id} ("${this.#label}")`, {
        detail: { provider: this.#token.provider, reason: 'key-missing' },
      });
    }
    this.#handle = { generation: ctx.generation, key };
    return key;
  }
}

function gcm(p: typeof P, iv: Buffer, aad: Uint8Array): P.Mechanism {
  const a = Buffer.alloc(1 + aad.length);
  a[0] = TOKEN_BLOB_FORMAT;
  a.set(aad, 1);
  const params: P.AesGCM = { type: p.CK_PARAMS_AES_GCM, iv, aad: a, ivBits: IV_BYTES * 8, tagBits: TAG_BYTES * 8 };
  return { mechanism: p.CKM_AES_GCM, parameter: params };
}

function findKey(ctx: SessionContext, label: string, id: Buffer | undefined): Buffer | undefined {
  const p = ctx.pkcs11;
  const template: P.Template = [
    { type: p.CKA_CLASS, value: p.CKO_SECRET_KEY },
    { type: p.CKA_KEY_TYPE, value: p.CKK_AES },
    { type: p.CKA_LABEL, value: label },
    ...(id === undefined ? [] : [{ type: p.CKA_ID, value: id }]),
  ];
  ctx.lib.C_FindObjectsInit(ctx.session, template);
  try {
    const found = ctx.lib.C_FindObjects(ctx.session, 2);
    if (found.length > 1 && id === undefined) {
      throw new KekUnavailableError(`the token holds several keys labelled "${label}"; remove the extra ones (keep the one whose CKA_ID the keystore records)`, {
        detail: { reason: 'key-missing' },
      });
    }
    return found[0];
  } finally {
    ctx.lib.C_FindObjectsFinal(ctx.session);
  }
}

function readId(ctx: SessionContext, key: Buffer): Buffer {
  const [attr] = ctx.lib.C_GetAttributeValue(ctx.session, key, [{ type: ctx.pkcs11.CKA_ID }]);
  const v = attr?.value;
  if (!Buffer.isBuffer(v) || v.length === 0) throw new InternalError('the token key has no CKA_ID');
  return Buffer.from(v);
}

function generateKey(ctx: SessionContext, label: string, id: Buffer): void {
  const p = ctx.pkcs11;
  ctx.lib.C_GenerateKey(ctx.session, { mechanism: p.CKM_AES_KEY_GEN }, [
    { type: p.CKA_CLASS, value: p.CKO_SECRET_KEY },
    { type: p.CKA_KEY_TYPE, value: p.CKK_AES },
    { type: p.CKA_VALUE_LEN, value: 32 },
    { type: p.CKA_TOKEN, value: true },
    { type: p.CKA_PRIVATE, value: true },
    { type: p.CKA_SENSITIVE, value: true },
    { type: p.CKA_EXTRACTABLE, value: false },
    { type: p.CKA_ENCRYPT, value: true },
    { type: p.CKA_DECRYPT, value: true },
    { type: p.CKA_WRAP, value: false },
    { type: p.CKA_UNWRAP, value: false },
    { type: p.CKA_DERIVE, value: false },
    { type: p.CKA_MODIFIABLE, value: false },
    { type: p.CKA_LABEL, value: label },
    { type: p.CKA_ID, value: id },
  ]);
}

/** After a failed decrypt: is the session alive and the key object still in the token? */
function stillThere(ctx: SessionContext, key: Buffer): boolean {
  try {
    ctx.lib.C_GetSessionInfo(ctx.session);
    ctx.lib.C_GetAttributeValue(ctx.session, key, [{ type: ctx.pkcs11.CKA_CLASS }]);
    return true;
  } catch (err) {
    if (isLost(err) || ckrName(err) !== undefined) return false;
    throw err;
  }
}
