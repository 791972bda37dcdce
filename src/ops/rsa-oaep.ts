/**
 * RSA-OAEP (RFC 8017 §7.1) encryption with the public key and decryption with
 * the private key; the hash (and MGF1's hash) is the key's, as in WebCrypto
 * §22. RsaOaepParams: an optional `label`.
 *
 * A message longer than k − 2·hLen − 2 bytes (k the modulus size) cannot be
 * encrypted (CRYPTOD_ERR_OPERATION). Decryption failures of any kind — wrong
 * length, wrong label, bad padding — are one CRYPTOD_ERR_DECRYPT_FAILED with
 * one message, so that no error reveals which check failed (Manger's attack).
 *
 * Decryption is a private-key exponentiation (~1 ms at 2048 bits) and runs
 * synchronously: node:crypto has no asynchronous privateDecrypt.
 */
import { constants, privateDecrypt, publicEncrypt } from 'node:crypto';
import { DecryptError, InvalidArgumentError, OperationError } from '../protocol/errors.js';
import { NODE_HASH, type HashName } from './algorithms.js';
import { kindOf, type Args } from './args.js';
import type { KeyNode } from './key.js';
import { HASH_BYTES } from './secret-keys.js';

export function rsaOaep(params: Args, usage: 'encrypt' | 'decrypt'): (key: KeyNode, data: Buffer) => Buffer {
  const label = params.label;
  if (label !== undefined && !(label instanceof Uint8Array)) {
    throw new InvalidArgumentError(`expected 'algorithm.label' to be a byte string, got ${kindOf(label)}`, { detail: { field: 'algorithm.label' } });
  }
  return (key, data) => {
    const hash = key.algorithm.hash!.name as HashName;
    const options = {
      key: key.object,
      padding: constants.RSA_PKCS1_OAEP_PADDING,
      oaepHash: NODE_HASH[hash],
      ...(label !== undefined && label.length > 0 ? { oaepLabel: label } : {}),
    };
    const k = Math.ceil(key.algorithm.modulusLength! / 8);
    if (usage === 'encrypt') {
      const max = k - 2 * HASH_BYTES[hash] - 2;
      if (data.length > max) {
        throw new OperationError(`RSA-OAEP with a ${k * 8}-bit key and ${hash} encrypts at most ${max} bytes, got ${data.length}`, {
          detail: { field: 'data', max },
        });
      }
      return publicEncrypt(options, data);
    }
    try {
      if (data.length !== k) throw new Error('length');
      return privateDecrypt(options, data);
    } catch {
      throw new DecryptError('RSA-OAEP decryption failed (wrong key or label, or the data was modified)');
    }
  };
}
