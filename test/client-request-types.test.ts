/**
 * The client builds each request as its declaration's argument type
 * (src/protocol/messages/, DaemonConnection.send/call): a misspelt, missing
 * or mistyped field does not compile. The checks are the `@ts-expect-error`
 * lines below, enforced by `tsc --noEmit -p tsconfig.json` (which includes
 * test/): if one of these requests ever compiles, tsc fails on the unused
 * directive. Nothing is sent at run time.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { DaemonConnection } from '../src/client/connection.js';
import { ManagedData, pickCiphertext, pickPlaintext, plaintextItem } from '../src/client/managed.js';
import { CipherCreate, Encrypt, KeyCreate, KeyTrim, ManagedEncrypt } from '../src/protocol/messages/index.js';

function requests(conn: DaemonConnection, managed: ManagedData): void {
  const bytes = new Uint8Array(1);
  // @ts-expect-error misspelt field
  void conn.send(Encrypt, { algorithm: 'AES-GCM', key: 'k', dat: bytes });
  // @ts-expect-error missing field
  void conn.call(KeyTrim, { name: 'orders' });
  // @ts-expect-error a literal outside the declared set
  void conn.call(CipherCreate, { key: 'k', mode: 'encrpyt', algorithm: 'AES-GCM' });
  // @ts-expect-error misspelt field inside a nested declaration
  void conn.call(KeyCreate, { name: 'orders', definition: { type: 'aes256-gcm', rotationPerod: '30d' } });
  // @ts-expect-error a declared byte-string parameter given a number
  void conn.call(Encrypt, { algorithm: { name: 'AES-GCM', iv: 5 }, key: 'k', data: bytes });
  // @ts-expect-error misspelt item field
  void managed.one(ManagedEncrypt, 'orders', { plaintxt: bytes }, pickCiphertext);
  // @ts-expect-error the reply of ENCRYPT has no plaintext to pick
  void managed.one(ManagedEncrypt, 'orders', plaintextItem(bytes, undefined), pickPlaintext);
  // @ts-expect-error a DECRYPT item sent as an ENCRYPT batch item
  void managed.batch(ManagedEncrypt, 'orders', [{ ciphertext: bytes }], pickCiphertext);
  // The well-formed forms compile.
  void conn.call(KeyTrim, { name: 'orders', below: 2 });
  void managed.one(ManagedEncrypt, 'orders', plaintextItem(bytes, undefined), pickCiphertext);
  void managed.batch(ManagedEncrypt, 'orders', [plaintextItem(bytes, bytes)], pickCiphertext);
}

test('client requests are typed by their declarations (checked by tsc; see the file comment)', () => {
  assert.equal(typeof requests, 'function');
});
