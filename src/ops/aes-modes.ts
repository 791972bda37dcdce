/**
 * AES-CBC and AES-CTR (SubtleCrypto.encrypt/decrypt, and as wrapping
 * algorithms), NIST SP 800-38A.
 *
 *   AES-CBC  AesCbcParams: 16-byte `iv`; PKCS #7 padding (RFC 5652 §6.3), so
 *            the ciphertext is the plaintext rounded up to the next whole
 *            block; a wrong padding on decrypt is CRYPTOD_ERR_DECRYPT_FAILED.
 *   AES-CTR  AesCtrParams: 16-byte `counter` block and `length` in 1..128,
 *            the number of low bits of the block that count (WebCrypto §27).
 *            Only those bits wrap; an input so long that the counter would
 *            come back to its first value is refused (CRYPTOD_ERR_OPERATION).
 *
 * Neither mode authenticates: WebCrypto has them for compatibility (JWE
 * A128CBC-HS256, existing formats). AES-GCM is the one to choose for new data.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { DecryptError, InvalidArgumentError, InvalidKeyError, OperationError } from '../protocol/errors.js';
import { kindOf, type Args } from './args.js';
import type { KeyNode } from './key.js';

const BLOCK = 16;

function block16(params: Args, field: 'iv' | 'counter', name: string): Uint8Array {
  const v = params[field];
  if (!(v instanceof Uint8Array) || v.length !== BLOCK) {
    const got = v instanceof Uint8Array ? `${v.length} bytes` : kindOf(v);
    throw new InvalidArgumentError(`expected 'algorithm.${field}' to be 16 bytes for ${name}, got ${got}`, {
      detail: { field: `algorithm.${field}`, expected: '16 bytes' },
    });
  }
  return v;
}

function aesBits(key: KeyNode): number {
  const n = key.secret.length;
  if (n !== 16 && n !== 24 && n !== 32) {
    throw new InvalidKeyError(`an AES key is 16, 24 or 32 bytes, this one is ${n}`, { detail: { expected: '16, 24 or 32', actual: n } });
  }
  return n * 8;
}

/** Check AES-CBC's parameters now (before the key is touched); the returned function does the work. */
export function aesCbc(params: Args, usage: 'encrypt' | 'decrypt'): (key: KeyNode, data: Buffer) => Buffer {
  const iv = block16(params, 'iv', 'AES-CBC');
  return (key, data) => {
    const cipher = `aes-${aesBits(key)}-cbc`;
    if (usage === 'encrypt') {
      const c = createCipheriv(cipher, key.secret, iv);
      return Buffer.concat([c.update(data), c.final()]);
    }
    if (data.length === 0 || data.length % BLOCK !== 0) {
      throw new DecryptError(`AES-CBC ciphertext is a non-zero multiple of 16 bytes, got ${data.length}`, { detail: { field: 'data', actual: data.length } });
    }
    const d = createDecipheriv(cipher, key.secret, iv);
    const head = d.update(data);
    let tail: Buffer;
    try {
      tail = d.final();
    } catch {
      head.fill(0);
      throw new DecryptError('AES-CBC decryption failed: the padding is wrong (wrong key or iv, or the data was modified)');
    }
    const out = Buffer.concat([head, tail]);
    head.fill(0);
    tail.fill(0);
    return out;
  };
}

/** Check AES-CTR's parameters now; encryption and decryption are the same keystream XOR. */
export function aesCtr(params: Args): (key: KeyNode, data: Buffer) => Buffer {
  const counter = block16(params, 'counter', 'AES-CTR');
  const length = params.length;
  if (typeof length !== 'number' || !Number.isInteger(length) || length < 1 || length > 128) {
    throw new InvalidArgumentError(`expected 'algorithm.length' to be the counter's bit count, 1 to 128, got ${typeof length === 'number' ? length : kindOf(length)}`, {
      detail: { field: 'algorithm.length', expected: '1..128' },
    });
  }
  return (key, data) => {
    const cipher = `aes-${aesBits(key)}-ctr`;
    const blocks = BigInt(Math.ceil(data.length / BLOCK));
    const span = 1n << BigInt(length);
    if (blocks > span) {
      throw new OperationError(`AES-CTR with a ${length}-bit counter covers ${span} blocks; the data is ${blocks} blocks and the keystream would repeat`, {
        detail: { field: 'algorithm.length' },
      });
    }
    const start = BigInt(`0x${Buffer.from(counter).toString('hex')}`);
    const low = start & (span - 1n);
    const before = span - low; // blocks until the counted bits wrap to zero
    if (blocks <= before) return ctr(cipher, key.secret, counter, data);
    // OpenSSL increments all 128 bits; WebCrypto wraps only the low `length`: run the wrapped part from the zeroed counter.
    const split = Number(before) * BLOCK;
    const wrapped = blockOf(start & ~(span - 1n) & ((1n << 128n) - 1n));
    return Buffer.concat([ctr(cipher, key.secret, counter, data.subarray(0, split)), ctr(cipher, key.secret, wrapped, data.subarray(split))]);
  };
}

function blockOf(v: bigint): Buffer {
  return Buffer.from(v.toString(16).padStart(32, '0'), 'hex');
}

function ctr(cipher: string, key: Buffer, counter: Uint8Array, data: Buffer): Buffer {
  const c = createCipheriv(cipher, key, counter);
  return Buffer.concat([c.update(data), c.final()]);
}
