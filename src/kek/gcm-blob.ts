/**
 * The wrapped-key blob of software KEK providers: AES-256-GCM under the KEK.
 *
 * Blob format, version 1 (copy into docs/formats.md):
 *
 *   offset   size  field
 *   0        1     format version = 0x01
 *   1        12    nonce: 96 random bits, fresh for every wrap
 *   13       n     ciphertext: AES-256-GCM of the n plaintext bytes
 *   13+n     16    GCM authentication tag
 *                  total: n + 29 bytes
 *
 *   GCM AAD = format version byte ‖ caller's AAD
 *
 * The version byte is authenticated (it is part of the GCM AAD) so that a
 * future format cannot be confused with this one. The caller's AAD is not
 * stored: the key manager passes `keyVersionAad(name, version)` both ways, so
 * a blob moved to another key or version fails to unwrap.
 *
 * Nonces are random: with 96-bit random nonces one KEK may wrap up to 2^32
 * blobs (NIST SP 800-38D §8.3) — orders of magnitude more keys than a
 * keystore holds; rewrap to a new KEK long before that.
 */
import { createCipheriv, createDecipheriv, randomFillSync } from 'node:crypto';
import { DecryptError } from '../protocol/errors.js';

export const BLOB_FORMAT_V1 = 0x01;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
export const BLOB_OVERHEAD = 1 + NONCE_BYTES + TAG_BYTES;
export const KEK_BYTES = 32;

/** Encrypt `plaintext` under `kek` (32 bytes). Arguments are validated by the caller. */
export function gcmWrap(kek: Buffer, plaintext: Uint8Array, aad: Uint8Array): Buffer {
  const n = plaintext.length;
  const blob = Buffer.alloc(BLOB_OVERHEAD + n);
  blob[0] = BLOB_FORMAT_V1;
  const nonce = blob.subarray(1, 1 + NONCE_BYTES);
  randomFillSync(nonce);
  const cipher = createCipheriv('aes-256-gcm', kek, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(gcmAad(aad));
  const body = cipher.update(plaintext);
  const tail = cipher.final();
  body.copy(blob, 1 + NONCE_BYTES);
  tail.copy(blob, 1 + NONCE_BYTES + body.length);
  cipher.getAuthTag().copy(blob, 1 + NONCE_BYTES + n);
  return blob;
}

/**
 * Decrypt and authenticate. Returns a fresh `Buffer.alloc` buffer the caller
 * owns; every intermediate holding plaintext is zeroed. Failures are
 * DecryptError whose message says which check failed and nothing about keys.
 */
export function gcmUnwrap(kek: Buffer, blob: Uint8Array, aad: Uint8Array, kekId: string): Buffer {
  if (blob.length < BLOB_OVERHEAD) {
    throw new DecryptError(`cannot unwrap: expected a blob of at least ${BLOB_OVERHEAD} bytes, got ${blob.length}`, {
      detail: { kekId, reason: 'length' },
    });
  }
  if (blob[0] !== BLOB_FORMAT_V1) {
    throw new DecryptError(`cannot unwrap: unknown blob format version ${blob[0]}`, { detail: { kekId, reason: 'format' } });
  }
  const n = blob.length - BLOB_OVERHEAD;
  const nonce = blob.subarray(1, 1 + NONCE_BYTES);
  const ciphertext = blob.subarray(1 + NONCE_BYTES, 1 + NONCE_BYTES + n);
  const tag = blob.subarray(1 + NONCE_BYTES + n);
  const decipher = createDecipheriv('aes-256-gcm', kek, nonce, { authTagLength: TAG_BYTES });
  decipher.setAAD(gcmAad(aad));
  decipher.setAuthTag(tag);
  // Node returns decrypted bytes in buffers it allocates; copy them into one
  // we own and zero theirs, so the only plaintext copy is the caller's.
  const body = decipher.update(ciphertext);
  let tail: Buffer | undefined;
  try {
    tail = decipher.final();
  } catch (cause) {
    body.fill(0);
    throw new DecryptError('cannot unwrap: the blob is not authentic for this KEK and AAD (altered, wrong key, or wrong key name/version)', {
      cause,
      detail: { kekId, reason: 'authentication' },
    });
  }
  const out = Buffer.alloc(n);
  body.copy(out, 0);
  tail.copy(out, body.length);
  body.fill(0);
  tail.fill(0);
  return out;
}

function gcmAad(aad: Uint8Array): Buffer {
  const out = Buffer.alloc(1 + aad.length);
  out[0] = BLOB_FORMAT_V1;
  out.set(aad, 1);
  return out;
}
