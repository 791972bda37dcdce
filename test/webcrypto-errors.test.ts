/**
 * The errors `client.subtle` throws: WebCrypto's names and kinds with
 * cryptod's code and detail on them, the mapping table of docs/errors.md
 * against the client's, the daemon's `detail.webcrypto`, checks that cost no
 * request, and the algorithms Node 20 lacks (ChaCha20-Poly1305, AES-KWP),
 * checked against the specification since there is nothing to compare with.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { Client } from '../src/client/client.js';
import type { CryptoKey } from '../src/client/subtle.js';
import { webCryptoName, WEBCRYPTO_NAME_BY_CODE } from '../src/client/webcrypto/errors.js';
import { CryptodError, DataError, InvalidArgumentError, InvalidKeyError, NotFoundError } from '../src/protocol/errors.js';
import { Op } from '../src/protocol/ops.js';
import { startTestDaemon, type TestDaemon } from './helpers/daemon.js';

let t: TestDaemon;
let c: Client;
before(async () => {
  t = await startTestDaemon();
  c = await t.connect();
});
after(async () => {
  await c.close();
  await t.stop();
});

type Expect = { name: string; code?: string; field?: string };

/** Rejects with a DOMException (or TypeError) of this name, carrying cryptod's code. */
async function rejectsAs(p: Promise<unknown>, want: Expect): Promise<unknown> {
  let caught: unknown;
  await assert.rejects(p, (err: unknown) => {
    caught = err;
    const e = err as Error & { code?: unknown; detail?: { field?: unknown } };
    assert.equal(e.name, want.name, `expected ${want.name}, got ${e.name}: ${e.message}`);
    if (want.name === 'TypeError') {
      assert.ok(err instanceof TypeError && !(err instanceof DOMException));
    } else {
      assert.ok(err instanceof DOMException, `${want.name} is a DOMException`);
    }
    assert.equal(typeof e.code, 'string');
    if (want.code !== undefined) assert.equal(e.code, want.code);
    if (want.field !== undefined) assert.equal(e.detail?.field, want.field);
    return true;
  });
  return caught;
}

const iv = new Uint8Array(12);

describe('the errors', () => {
  test('client-side refusals: name, kind, code, detail; cryptod classes still match by code', async () => {
    const e = await rejectsAs(c.subtle.generateKey({ name: 'AES-GCM', length: 128 }, true, ['sign']), {
      name: 'SyntaxError',
      code: 'CRYPTOD_ERR_INVALID_ARGUMENT',
      field: 'usages',
    });
    assert.ok(e instanceof InvalidArgumentError && e instanceof CryptodError);
    assert.ok(!(e instanceof InvalidKeyError));
    assert.equal((e as { detail: { usage: string; webcrypto: string } }).detail.usage, 'sign');
    assert.equal((e as { detail: { webcrypto: string } }).detail.webcrypto, 'SyntaxError');
    await rejectsAs(c.subtle.generateKey('AES', true, ['encrypt']), { name: 'NotSupportedError', code: 'CRYPTOD_ERR_UNSUPPORTED' });
    await rejectsAs(c.subtle.digest('AES-GCM', new Uint8Array(1)), { name: 'NotSupportedError' });
    await rejectsAs(c.subtle.generateKey({ name: 'HMAC', hash: 'MD5' }, false, ['decrypt']), { name: 'NotSupportedError', field: 'algorithm.hash.name' });
    await rejectsAs(c.subtle.generateKey({ name: 'AES-GCM', length: 64 }, true, ['encrypt']), { name: 'OperationError', code: 'CRYPTOD_ERR_INVALID_ARGUMENT' });
    await rejectsAs(c.subtle.digest('SHA-256', 'text' as never), { name: 'TypeError', code: 'CRYPTOD_ERR_INVALID_ARGUMENT' });
    await rejectsAs((c.subtle.digest as (...a: unknown[]) => Promise<unknown>)('SHA-256'), { name: 'TypeError' });
    const key = (await c.subtle.generateKey({ name: 'AES-GCM', length: 128 }, 'RED' as never, ['decrypt'])) as CryptoKey;
    assert.equal(key.extractable, true); // ToBoolean("RED")
    const ia = await rejectsAs(c.subtle.encrypt({ name: 'AES-GCM', iv }, key, new Uint8Array(1)), { name: 'InvalidAccessError', code: 'CRYPTOD_ERR_INVALID_KEY' });
    assert.ok(ia instanceof InvalidKeyError);
    await key.release();
    const gone = await rejectsAs(c.subtle.decrypt({ name: 'AES-GCM', iv }, key, new Uint8Array(16)), { name: 'InvalidAccessError', code: 'CRYPTOD_ERR_NOT_FOUND' });
    assert.ok(gone instanceof NotFoundError);
  });

  test("the daemon's errors: renamed, with the daemon's error as cause", async () => {
    const e = await rejectsAs(c.subtle.importKey('raw', new Uint8Array(15), 'AES-GCM', true, ['encrypt']), { name: 'DataError', code: 'CRYPTOD_ERR_DATA' });
    assert.ok((e as Error).cause instanceof DataError && Object.getPrototypeOf((e as Error).cause) === DataError.prototype);
    assert.ok(e instanceof DataError);
    const locked = (await c.subtle.generateKey({ name: 'AES-GCM', length: 128 }, false, ['encrypt'])) as CryptoKey;
    await rejectsAs(c.subtle.exportKey('raw', locked), { name: 'InvalidAccessError', code: 'CRYPTOD_ERR_NOT_EXTRACTABLE' });
    const k = (await c.subtle.generateKey({ name: 'AES-GCM', length: 128 }, false, ['encrypt', 'decrypt'])) as CryptoKey;
    await rejectsAs(c.subtle.decrypt({ name: 'AES-GCM', iv }, k, new Uint8Array(40)), { name: 'OperationError', code: 'CRYPTOD_ERR_DECRYPT_FAILED' });
  });

  test('on the wire the daemon names the WebCrypto error where one code stands for several', async () => {
    const usage = await c.request(Op.GENERATE_KEY, { algorithm: { name: 'AES-GCM', length: 128 }, extractable: true, usages: ['sign'] }).catch((e: CryptodError) => e);
    assert.ok(usage instanceof CryptodError);
    assert.equal(usage.code, 'CRYPTOD_ERR_INVALID_ARGUMENT');
    assert.equal(usage.detail?.webcrypto, 'SyntaxError');
    const length = await c.request(Op.GENERATE_KEY, { algorithm: { name: 'AES-GCM', length: 64 }, extractable: true, usages: ['encrypt'] }).catch((e: CryptodError) => e);
    assert.equal((length as CryptodError).detail?.webcrypto, 'OperationError');
    const typed = await c.request(Op.GENERATE_KEY, { algorithm: { name: 'AES-GCM', length: 'x' }, extractable: true, usages: ['encrypt'] }).catch((e: CryptodError) => e);
    assert.equal((typed as CryptodError).detail?.webcrypto, undefined); // a member of the wrong type: TypeError by the table
    assert.equal(webCryptoName('CRYPTOD_ERR_INVALID_ARGUMENT', (typed as CryptodError).detail), 'TypeError');
  });

  test('docs/errors.md "WebCrypto names" is the mapping the client uses', () => {
    const text = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
    const section = text.slice(text.indexOf('## WebCrypto names'));
    const rows = section.split('\n').filter((l) => /^\| `[A-Za-z]+Error` \|/.test(l));
    assert.ok(rows.length >= 10, `found ${rows.length} rows`);
    const documented = new Set<string>();
    for (const row of rows) {
      const [name, kind, codes] = row.split('|').slice(1, 4).map((x) => x.trim()) as [string, string, string];
      const webName = name.replace(/`/g, '');
      assert.equal(kind, webName === 'TypeError' ? 'TypeError' : 'DOMException', row);
      const named = /detail\.webcrypto: "(\w+)"/.exec(codes)?.[1];
      for (const code of codes.match(/CRYPTOD_ERR_[A-Z_]+/g) ?? []) {
        documented.add(code);
        assert.equal(webCryptoName(code, named === undefined ? undefined : { webcrypto: named }), webName, row);
      }
    }
    for (const code of Object.keys(WEBCRYPTO_NAME_BY_CODE)) assert.ok(documented.has(code), `${code} is missing from the table`);
  });

  test('a call refused in the client costs no request: it fails the same way with the connection gone', async () => {
    const other = await t.connect('no-request');
    const key = (await other.subtle.generateKey({ name: 'AES-GCM', length: 128 }, true, ['encrypt'])) as CryptoKey;
    await other.close();
    await rejectsAs(other.subtle.generateKey({ name: 'AES-GCM', length: 128 }, true, ['sign']), { name: 'SyntaxError' });
    await rejectsAs(other.subtle.digest('MD5', new Uint8Array(1)), { name: 'NotSupportedError' });
    await rejectsAs(other.subtle.sign('HMAC', key, new Uint8Array(1)), { name: 'InvalidAccessError', code: 'CRYPTOD_ERR_INVALID_KEY' });
    await rejectsAs(other.subtle.encrypt({ name: 'AES-GCM', iv, tagLength: 100 }, key, new Uint8Array(1)), { name: 'OperationError', code: 'CRYPTOD_ERR_INVALID_ARGUMENT' });
    // A good call does go out, and meets the closed connection.
    await rejectsAs(other.subtle.encrypt({ name: 'AES-GCM', iv }, key, new Uint8Array(1)), { name: 'OperationError', code: 'CRYPTOD_ERR_CONNECTION_CLOSED' });
  });
});

describe('ChaCha20-Poly1305 and AES-KWP (not in Node 20: checked against the specifications)', () => {
  test('generateKey and importKey', async () => {
    await rejectsAs(c.subtle.generateKey('ChaCha20-Poly1305', true, ['sign']), { name: 'SyntaxError', field: 'usages' });
    await rejectsAs(c.subtle.generateKey('ChaCha20-Poly1305', true, []), { name: 'SyntaxError' });
    await rejectsAs(c.subtle.generateKey({ name: 'AES-KWP', length: 64 }, true, ['wrapKey']), { name: 'OperationError' });
    await rejectsAs(c.subtle.generateKey({ name: 'AES-KWP' }, true, ['wrapKey']), { name: 'TypeError', field: 'algorithm.length' });
    await rejectsAs(c.subtle.generateKey({ name: 'AES-KWP', length: 128 }, true, ['encrypt']), { name: 'SyntaxError' });
    await rejectsAs(c.subtle.importKey('raw', new Uint8Array(16), 'ChaCha20-Poly1305', true, ['encrypt']), { name: 'DataError' });
    await rejectsAs(c.subtle.importKey('spki', new Uint8Array(16), 'AES-KWP', true, ['wrapKey']), { name: 'NotSupportedError', field: 'format' });
    await rejectsAs(c.subtle.importKey('raw', new Uint8Array(16), 'AES-KWP', true, ['wrapKey', 'sign']), { name: 'SyntaxError' });
  });

  test('encrypt, decrypt, wrapKey', async () => {
    const cc = (await c.subtle.generateKey('ChaCha20-Poly1305', true, ['encrypt', 'decrypt'])) as CryptoKey;
    await rejectsAs(c.subtle.encrypt({ name: 'ChaCha20-Poly1305', iv: new Uint8Array(8) }, cc, new Uint8Array(1)), { name: 'OperationError', field: 'algorithm.iv' });
    await rejectsAs(c.subtle.encrypt({ name: 'ChaCha20-Poly1305', iv, tagLength: 96 }, cc, new Uint8Array(1)), { name: 'OperationError', field: 'algorithm.tagLength' });
    await rejectsAs(c.subtle.encrypt({ name: 'ChaCha20-Poly1305' }, cc, new Uint8Array(1)), { name: 'TypeError', field: 'algorithm.iv' });
    await rejectsAs(c.subtle.encrypt({ name: 'AES-GCM', iv }, cc, new Uint8Array(1)), { name: 'InvalidAccessError' });
    await rejectsAs(c.subtle.decrypt({ name: 'ChaCha20-Poly1305', iv }, cc, new Uint8Array(15)), { name: 'OperationError', field: 'data' });
    await rejectsAs(c.subtle.decrypt({ name: 'ChaCha20-Poly1305', iv }, cc, new Uint8Array(16)), { name: 'OperationError', code: 'CRYPTOD_ERR_DECRYPT_FAILED' });
    const kwp = (await c.subtle.generateKey({ name: 'AES-KWP', length: 256 }, false, ['wrapKey'])) as CryptoKey;
    await rejectsAs(c.subtle.wrapKey('raw', cc, kwp, 'AES-KW'), { name: 'InvalidAccessError' });
    await rejectsAs(c.subtle.unwrapKey('raw', new Uint8Array(24), kwp, 'AES-KWP', 'AES-GCM', true, ['encrypt']), { name: 'InvalidAccessError' });
    assert.equal((await c.subtle.wrapKey('raw', cc, kwp, 'AES-KWP')).byteLength, 40);
  });
});
