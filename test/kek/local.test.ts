import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, DecryptError, InternalError, InvalidArgumentError } from '../../src/protocol/errors.js';
import { LOCAL_KEK_META_KEY, LocalKekProvider, type LocalKekOptions } from '../../src/kek/local.js';
import { keyVersionAad } from '../../src/kek/provider.js';
import { deriveRootKey, newScryptParams } from '../../src/kek/root-key.js';
import { openSqliteKeystore, type SqliteKeystore } from '../../src/store/sqlite/sqlite-store.js';
import { keyRecord, versionRecord } from '../store/keystore-suite.js';
import { makeTempDir } from '../store/tmpdir.js';

/** Small scrypt cost: these tests check behaviour, not strength. */
const FAST = { N: 2 ** 10, r: 8, p: 1 };

async function withKek(f: (ctx: { dir: string; store: SqliteKeystore; open: (o?: Partial<LocalKekOptions>) => Promise<LocalKekProvider> }) => Promise<void>): Promise<void> {
  const tmp = makeTempDir();
  const dir = path.join(tmp.path, 'data');
  const store = await openSqliteKeystore({ dataDir: dir });
  const opened: LocalKekProvider[] = [];
  try {
    await f({
      dir,
      store,
      open: async (o = {}) => {
        const kek = await LocalKekProvider.open({ dir, store, scrypt: FAST, ...o });
        opened.push(kek);
        return kek;
      },
    });
  } finally {
    for (const k of opened) await k.close();
    await store.close();
    await tmp.cleanup();
  }
}

function mode(p: string): number {
  return fs.statSync(p).mode & 0o777;
}

describe('local KEK: root.key file', () => {
  it('creates root.key 0600 in a 0700 directory on first start and reuses it', () => withKek(async ({ dir, open }) => {
    const first = await open();
    const file = path.join(dir, 'root.key');
    assert.equal(mode(dir), 0o700);
    assert.equal(mode(file), 0o600);
    assert.equal(fs.statSync(file).size, 32);
    assert.match(first.id, /^local:[0-9a-f]{16}$/);
    assert.equal(first.source, 'file');
    const before = fs.readFileSync(file);
    const blob = await first.wrap(Buffer.from('data key'), keyVersionAad('k', 1));
    const second = await open();
    assert.ok(fs.readFileSync(file).equals(before), 'root.key is not rewritten');
    assert.equal(second.id, first.id);
    assert.equal((await second.unwrap(blob, keyVersionAad('k', 1))).toString(), 'data key');
    assert.deepEqual(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp')), [], 'no temporary files left');
  }));

  it('refuses a root.key of the wrong size or with loose permissions', () => withKek(async ({ dir, open }) => {
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, 'root.key');
    fs.writeFileSync(file, randomBytes(16), { mode: 0o600 });
    // A root.key without its keystore is only read with init (see the binding tests).
    await assert.rejects(open({ init: true }), (err: unknown) => err instanceof ConfigError && err.message === `expected a 32-byte root key in ${file}, got 16`);
    fs.writeFileSync(file, randomBytes(32));
    fs.chmodSync(file, 0o644);
    await assert.rejects(open({ init: true }), (err: unknown) => err instanceof ConfigError && /mode 644/.test(err.message));
  }));

  it('never silently replaces a root.key the store depends on', () => withKek(async ({ dir, open }) => {
    await open();
    const file = path.join(dir, 'root.key');
    fs.rmSync(file);
    await assert.rejects(open(), (err: unknown) => err instanceof ConfigError && /root\.key is missing; .*keystore\.sqlite holds keys wrapped by it/.test(err.message));
    assert.equal(fs.existsSync(file), false, 'no new root.key was created');
    fs.writeFileSync(file, randomBytes(32), { mode: 0o600 });
    await assert.rejects(open(), (err: unknown) => err instanceof ConfigError && /root\.key does not match .*keystore\.sqlite: its keys are wrapped by KEK local:/.test(err.message));
    await assert.rejects(open({ passphrase: 'switch' }), (err: unknown) => err instanceof ConfigError && /remove the passphrase/.test(err.message));
  }));
});

describe('local KEK: passphrase', () => {
  it('derives deterministically from passphrase and salt (NFC-normalized)', async () => {
    const params = newScryptParams(FAST);
    const a = await deriveRootKey('correct horse é', params);
    const b = await deriveRootKey('correct horse e\u0301', params);
    const c = await deriveRootKey('correct horse é', newScryptParams(FAST));
    const d = await deriveRootKey('correct horse f', params);
    const e = await deriveRootKey(Buffer.from('correct horse é'), params);
    assert.equal(a.length, 32);
    assert.ok(a.equals(b), 'same passphrase and salt, same key');
    assert.ok(a.equals(e), 'string and its UTF-8 bytes derive the same key');
    assert.ok(!a.equals(c), 'another salt, another key');
    assert.ok(!a.equals(d), 'another passphrase, another key');
    await assert.rejects(deriveRootKey('', params), ConfigError);
    assert.throws(() => newScryptParams({ N: 1000 }), /power of two/);
  });

  it('records parameters and a verifier in the store, and refuses a wrong passphrase at start', () => withKek(async ({ dir, store, open }) => {
    const first = await open({ passphrase: 'pass phrase one' });
    assert.equal(first.source, 'passphrase');
    assert.equal(fs.existsSync(path.join(dir, 'root.key')), false, 'no root.key in passphrase mode');
    const record = JSON.parse((await store.read((r) => r.getMeta(LOCAL_KEK_META_KEY)))!) as { scrypt: { N: number; r: number; p: number; salt: string }; kekId: string };
    assert.deepEqual({ N: record.scrypt.N, r: record.scrypt.r, p: record.scrypt.p }, FAST);
    assert.equal(record.kekId, first.id);
    // The record holds nothing that reveals the root key.
    const root = await deriveRootKey('pass phrase one', { ...FAST, salt: Buffer.from(record.scrypt.salt, 'base64') });
    const json = (await store.read((r) => r.getMeta(LOCAL_KEK_META_KEY)))!;
    for (const enc of ['hex', 'base64', 'base64url'] as const) assert.ok(!json.includes(root.toString(enc)));
    root.fill(0);

    const blob = await first.wrap(Buffer.from('secret'), keyVersionAad('k', 7));
    // Later starts use the recorded parameters, whatever cost is configured now.
    const again = await open({ passphrase: 'pass phrase one', scrypt: { N: 2 ** 11 } });
    assert.equal(again.id, first.id);
    assert.equal((await again.unwrap(blob, keyVersionAad('k', 7))).toString(), 'secret');
    await assert.rejects(open({ passphrase: 'pass phrase two' }), (err: unknown) => err instanceof ConfigError && /the passphrase does not match this keystore/.test(err.message));
    await assert.rejects(open({ passphrase: undefined }), (err: unknown) => err instanceof ConfigError && /configure the KEK passphrase/.test(err.message));
  }));

  it('refuses a damaged record', () => withKek(async ({ store, open }) => {
    await store.transaction((tx) => tx.setMeta(LOCAL_KEK_META_KEY, JSON.stringify({ v: 1, source: 'passphrase', kekId: 'x', verifier: Buffer.alloc(32).toString('base64'), scrypt: { N: 2 ** 40, r: 8, p: 1, salt: 'AAAAAAAAAAAAAAAAAAAAAA==' } })));
    await assert.rejects(open({ passphrase: 'p' }), /power of two in 2\^10\.\.2\^22/);
    await store.transaction((tx) => tx.setMeta(LOCAL_KEK_META_KEY, '{'));
    await assert.rejects(open({ passphrase: 'p' }), /record is damaged/);
  }));
});

describe('local KEK: wrapping', () => {
  it('round-trips, with a fresh nonce each time and the documented layout', () => withKek(async ({ open }) => {
    const kek = await open();
    const key = randomBytes(32);
    const aad = keyVersionAad('billing', 3);
    const a = await kek.wrap(key, aad);
    const b = await kek.wrap(key, aad);
    assert.equal(a.length, 1 + 12 + 32 + 16);
    assert.equal(a[0], 1);
    assert.ok(!a.subarray(1, 13).equals(b.subarray(1, 13)), 'fresh nonce');
    assert.ok(!a.equals(b));
    const out = await kek.unwrap(a, aad);
    assert.ok(out.equals(key));
    assert.ok(out.buffer.byteLength === out.length, 'the result does not share a pooled ArrayBuffer');
    assert.equal((await kek.unwrap(await kek.wrap(new Uint8Array(0), aad), aad)).length, 0);
  }));

  it('fails with DecryptError on another AAD, a tampered or truncated blob, or another KEK', () => withKek(async ({ dir, open }) => {
    const kek = await open();
    const key = randomBytes(32);
    const blob = await kek.wrap(key, keyVersionAad('a', 1));
    const cases: Array<[string, Uint8Array, Uint8Array]> = [
      ['other key name', blob, keyVersionAad('b', 1)],
      ['other version', blob, keyVersionAad('a', 2)],
      ['flipped ciphertext bit', Buffer.from(blob).fill(blob[20]! ^ 1, 20, 21), keyVersionAad('a', 1)],
      ['flipped tag bit', Buffer.from(blob).fill(blob[blob.length - 1]! ^ 0x80, blob.length - 1), keyVersionAad('a', 1)],
      ['unknown format', Buffer.from(blob).fill(2, 0, 1), keyVersionAad('a', 1)],
      ['truncated', blob.subarray(0, 28), keyVersionAad('a', 1)],
    ];
    for (const [what, b, aad] of cases) {
      await assert.rejects(kek.unwrap(b, aad), (err: unknown) => {
        assert.ok(err instanceof DecryptError, what);
        for (const enc of ['hex', 'base64'] as const) assert.ok(!JSON.stringify(err.toJSON()).includes(key.toString(enc)));
        return true;
      });
    }
    const tmp2 = makeTempDir();
    const store2 = await openSqliteKeystore({ dataDir: tmp2.path });
    const other = await LocalKekProvider.open({ dir: tmp2.path, store: store2 });
    try {
      assert.notEqual(other.id, kek.id);
      await assert.rejects(other.unwrap(blob, keyVersionAad('a', 1)), DecryptError);
    } finally {
      await other.close();
      await store2.close();
      await tmp2.cleanup();
    }
    assert.ok(fs.existsSync(dir));
  }));

  it('validates inputs and refuses work after close', () => withKek(async ({ open }) => {
    const kek = await open();
    await assert.rejects(kek.wrap('text' as never, Buffer.alloc(0)), InvalidArgumentError);
    await assert.rejects(kek.wrap(Buffer.alloc(70_000), Buffer.alloc(0)), /expected plaintext of 0\.\.\d+ bytes, got 70000/);
    await kek.close();
    await assert.rejects(kek.wrap(Buffer.alloc(1), Buffer.alloc(0)), InternalError);
    await assert.rejects(kek.unwrap(Buffer.alloc(40), Buffer.alloc(0)), InternalError);
  }));

  it('encodes keyVersionAad unambiguously', () => {
    const aad = keyVersionAad('k', 258);
    assert.equal(aad.toString('hex'), Buffer.concat([
      Buffer.from([22]), Buffer.from('cryptod/key-version/v1'), Buffer.from([0, 0, 0, 1]), Buffer.from('k'), Buffer.from([0, 0, 1, 2]),
    ]).toString('hex'));
    const seen = new Set<string>();
    for (const [n, v] of [['ab', 1], ['a', 1], ['a\u0000\u0000\u0000', 1], ['b', 1], ['a', 2], ['ab', 2]] as const) {
      if (n.includes('\u0000')) { assert.throws(() => keyVersionAad(n, v), InvalidArgumentError); continue; }
      const hex = keyVersionAad(n, v).toString('hex');
      assert.ok(!seen.has(hex));
      seen.add(hex);
    }
    assert.throws(() => keyVersionAad('\ud800', 1), /lone surrogate/);
    assert.throws(() => keyVersionAad('k', 0), InvalidArgumentError);
    assert.throws(() => keyVersionAad('', 1), InvalidArgumentError);
  });
});

describe('nothing unwrapped at rest', () => {
  it('the data directory never contains planted key bytes, raw, hex or base64', async () => {
    const tmp = makeTempDir();
    const dir = path.join(tmp.path, 'data');
    const planted = Array.from({ length: 8 }, () => randomBytes(32));
    const blobs: Buffer[] = [];
    const store = await openSqliteKeystore({ dataDir: dir });
    const kek = await LocalKekProvider.open({ dir, store });
    const filesNow = (): Buffer => Buffer.concat(fs.readdirSync(dir).map((f) => fs.readFileSync(path.join(dir, f))));
    const assertClean = (when: string): void => {
      const bytes = filesNow();
      const text = bytes.toString('latin1');
      for (const key of planted) {
        assert.equal(bytes.indexOf(key), -1, `raw key bytes ${when}`);
        for (const enc of ['hex', 'base64', 'base64url'] as const) {
          const s = key.toString(enc);
          assert.ok(!text.includes(s) && !text.includes(s.toUpperCase()), `${enc} key ${when}`);
        }
      }
      // Control: the search does see what was written.
      for (const blob of blobs) assert.notEqual(bytes.indexOf(blob), -1, `wrapped blob on disk ${when}`);
    };
    try {
      for (const [i, key] of planted.entries()) {
        const name = `planted-${i}`;
        const blob = await kek.wrap(key, keyVersionAad(name, 1));
        blobs.push(blob);
        await store.transaction(async (tx) => {
          await tx.putKey(keyRecord(name));
          await tx.putVersion(versionRecord(name, 1, { wrapped: blob, kekId: kek.id }));
        });
      }
      assertClean('while open (WAL)');
      // And they unwrap back from what was stored.
      for (const [i, key] of planted.entries()) {
        const v = await store.read((r) => r.getVersion(`planted-${i}`, 1));
        const out = await kek.unwrap(v!.wrapped!, keyVersionAad(`planted-${i}`, 1));
        assert.ok(out.equals(key));
        out.fill(0);
      }
      await kek.close();
      await store.close();
      assertClean('after close');
    } finally {
      await tmp.cleanup();
    }
  });
});
