/**
 * The daemon's hot-path crypto through the native addon
 * (native/fastcrypto.c) when it is built, else node:crypto — the same
 * functions with the same OpenSSL:
 *
 * - HMACs (SIGN and VERIFY with HMAC keys, managed `mac`): the addon sets the
 *   key up once per call and needs no object per MAC: 0.25 µs per 64-byte
 *   item of a batch and 1.2 µs for one MAC, against 2.1 µs for createHmac on
 *   this machine.
 * - AEAD stream segments sealed into a shared-memory window
 *   (stream-format.ts StreamSealer.updateInto): no buffer allocated, copied
 *   and collected per segment.
 *
 * `CRYPTOD_NO_NATIVE_CRYPTO=1` in the daemon's environment turns both off (to
 * compare).
 */
import { createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { packageRoot } from '../protocol/window-addon.js';

/** node:crypto's name of a hash (algorithms.ts NODE_HASH) → the addon's number for it. */
const HASH_ID: Readonly<Record<string, number>> = { sha1: 1, sha256: 256, sha384: 384, sha512: 512 };
const MAC_BYTES: Readonly<Record<string, number>> = { sha1: 20, sha256: 32, sha384: 48, sha512: 64 };

interface Addon {
  hmacInto(hash: number, key: Uint8Array, input: Uint8Array | readonly Uint8Array[], out: Uint8Array): void;
  sealInto(cipher: number, key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, input: Uint8Array, out: Uint8Array, at: number): void;
}

let addon: Addon | null | undefined;

function load(): Addon | null {
  if (addon !== undefined) return addon;
  addon = null;
  const root = packageRoot();
  if (root === null || process.env.CRYPTOD_NO_NATIVE_CRYPTO === '1') return null;
  try {
    const mod = createRequire(import.meta.url)(join(root, 'build', 'Release', 'fastcrypto.node')) as Partial<Record<keyof Addon, unknown>>;
    if (typeof mod.hmacInto === 'function' && typeof mod.sealInto === 'function') addon = mod as Addon;
  } catch {
    // not built (no toolchain at install): node:crypto does the same work
  }
  return addon;
}

function native(): Addon['hmacInto'] | null {
  return load()?.hmacInto ?? null;
}

/** Whether the native addon is loaded (the tests check that `npm install` built it). */
export function nativeHmac(): boolean {
  return native() !== null;
}

/**
 * Seal one stream segment (`cipher`: the stream format's id) into `out` at
 * `at`: the ciphertext, then the 16-byte tag; `input` must not overlap that
 * place. Null when the addon is not there: seal with node:crypto.
 */
export function nativeSeal(): Addon['sealInto'] | null {
  return load()?.sealInto ?? null;
}

/** HMAC of `data` under `key` with `hash` (node:crypto's name: 'sha256'…). */
export function hmacOf(hash: string, key: Uint8Array, data: Uint8Array): Buffer {
  const into = native();
  const id = HASH_ID[hash];
  if (into === null || id === undefined) return createHmac(hash, key).update(data).digest();
  const out = Buffer.allocUnsafe(MAC_BYTES[hash]!);
  into(id, key, data, out);
  return out;
}

/** The HMAC of each input under one key, in order: views of one buffer (native), or a Buffer each. */
export function hmacsOf(hash: string, key: Uint8Array, inputs: readonly Uint8Array[]): Uint8Array[] {
  const into = native();
  const id = HASH_ID[hash];
  if (into === null || id === undefined) return inputs.map((d) => createHmac(hash, key).update(d).digest());
  const len = MAC_BYTES[hash]!;
  const all = Buffer.allocUnsafe(len * inputs.length);
  into(id, key, inputs, all);
  const out = new Array<Uint8Array>(inputs.length);
  for (let i = 0; i < inputs.length; i++) out[i] = new Uint8Array(all.buffer, all.byteOffset + i * len, len);
  return out;
}
