/**
 * Memory hygiene, observed from outside: known keys are planted in a daemon
 * started exactly as an operator would (`cryptod serve`, as a child process,
 * at --log-level debug, with the audit log on), operations are run on them —
 * successful and failing ones: bad tags, wrong usages, malformed keys and
 * JWKs that carry the key in the wrong member — and then everything the
 * daemon said is searched for the keys: its stdout and stderr, the audit
 * file, every error the client received, and `cryptod status --json`.
 *
 * Each secret is searched raw and in hex (both cases), base64 and base64url,
 * at every byte alignment, and by every 8-byte window: a message that quotes
 * a third of a key is a leak too.
 *
 * A second test drives the daemon's error path in-process: a handler that
 * throws a foreign error whose message quotes its input (as node:crypto or a
 * driver might) must reach neither the client nor the log.
 */
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { connect, type Client } from '../src/client/client.js';
import type { CryptoKey, JsonWebKey, KeyUsage } from '../src/client/subtle.js';
import { createLogger } from '../src/observe/logger.js';
import type { Operation } from '../src/ops/operation.js';
import { allOperations } from '../src/ops/index.js';
import { CryptodError, toCryptodError } from '../src/protocol/errors.js';
import { Op, type OpCode } from '../src/protocol/ops.js';
import { runCli, startCliDaemon } from './helpers/cli-daemon.js';
import { startTestDaemon } from './helpers/daemon.js';

/** Smallest run of key bytes whose appearance counts as a leak. */
const WINDOW = 8;

/**
 * Every form in which `secret` (or any WINDOW-byte run of it) could show up
 * in text or bytes: raw, hex both cases, and base64/base64url at each of the
 * three alignments a run can have inside a longer encoded blob.
 */
function needles(secret: Uint8Array): Buffer[] {
  const out: Buffer[] = [];
  const s = Buffer.from(secret);
  for (let off = 0; off + WINDOW <= s.length; off++) {
    const w = s.subarray(off, off + WINDOW);
    out.push(Buffer.from(w));
    out.push(Buffer.from(w.toString('hex')));
    out.push(Buffer.from(w.toString('hex').toUpperCase()));
  }
  // base64 runs: encode the whole secret behind 0, 1 and 2 filler bytes and
  // keep only characters that depend on secret bytes alone (cut 4 at each end),
  // then every 12-character (9-byte) window of that.
  for (let pad = 0; pad < 3; pad++) {
    for (const enc of ['base64', 'base64url'] as const) {
      const text = Buffer.concat([Buffer.alloc(pad), s]).toString(enc).replace(/=+$/, '');
      const inner = text.slice(4, text.length - 4);
      for (let i = 0; i + 12 <= inner.length; i += 4) out.push(Buffer.from(inner.slice(i, i + 12)));
    }
  }
  return out;
}

function assertAbsent(haystacks: Record<string, Buffer>, secrets: Record<string, Uint8Array>): void {
  const leaks: string[] = [];
  for (const [sname, secret] of Object.entries(secrets)) {
    const ns = needles(secret);
    for (const [hname, hay] of Object.entries(haystacks)) {
      for (const n of ns) {
        const at = hay.indexOf(n);
        if (at >= 0) {
          leaks.push(`${sname} in ${hname} at ${at}: …${hay.subarray(Math.max(0, at - 40), at + n.length + 20).toString('latin1')}…`);
          break;
        }
      }
    }
  }
  assert.deepEqual(leaks, [], 'key bytes leaked');
}

/** The needles catch what they should (a test that cannot fail proves nothing). */
test('the search finds a planted key in each encoding and alignment', () => {
  const key = randomBytes(32);
  const forms = [
    key,
    Buffer.from(`x ${key.toString('hex')} y`),
    Buffer.from(key.subarray(5, 20).toString('hex').toUpperCase()),
    Buffer.from(Buffer.concat([Buffer.from('a'), key]).toString('base64')),
    Buffer.from(Buffer.concat([Buffer.from('ab'), key]).toString('base64url')),
    Buffer.from(`{"k":"${key.subarray(3, 30).toString('base64url')}"}`),
  ];
  for (const f of forms) assert.throws(() => assertAbsent({ f }, { key }), /key bytes leaked/);
  assertAbsent({ other: randomBytes(4096), text: Buffer.from(randomBytes(2048).toString('base64')) }, { key });
});

test('no planted key appears in any log, audit line, error message or status output', { timeout: 120_000 }, async () => {
  const daemon = await startCliDaemon((dir) => ['--log-level', 'debug', '--audit-log', join(dir, 'audit.log')]);
  const auditPath = join(daemon.dir, 'audit.log');
  const errors: string[] = [];
  const fails = async (p: Promise<unknown>): Promise<void> => {
    try {
      await p;
    } catch (err) {
      assert.ok(err instanceof CryptodError, `expected a typed error, got ${String(err)}`);
      errors.push(`${err.code} ${err.message} ${JSON.stringify(err.detail ?? null)}`);
      return;
    }
    assert.fail('expected the request to fail');
  };

  const hmacKey = randomBytes(32);
  const aesKey = randomBytes(32);
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pkcs8 = privateKey.export({ format: 'der', type: 'pkcs8' });
  const seed = pkcs8.subarray(pkcs8.length - 32); // RFC 8410 §7: the last 32 bytes are the private key
  const spki = publicKey.export({ format: 'der', type: 'spki' });
  const plaintext = randomBytes(48);
  let exported = Buffer.alloc(0);
  const b64u = (b: Uint8Array): string => Buffer.from(b).toString('base64url');
  const pubX = b64u(createPublicKey(privateKey).export({ format: 'der', type: 'spki' }).subarray(12));

  let c: Client | null = null;
  try {
    c = await connect({ socket: daemon.socketPath, clientName: 'hygiene' });
    const s = c.subtle;
    const msg = Buffer.from('a message');

    // HMAC, raw import: sign, verify, a forged signature, the wrong usage.
    const hk = await s.importKey('raw', hmacKey, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
    const mac = Buffer.from(await s.sign('HMAC', hk, msg));
    assert.equal(await s.verify('HMAC', hk, mac, msg), true);
    mac[0]! ^= 1;
    assert.equal(await s.verify('HMAC', hk, mac, msg), false);
    const verifyOnly = await s.importKey('raw', hmacKey, { name: 'HMAC', hash: 'SHA-256' }, false, ['verify']);
    await fails(s.sign('HMAC', verifyOnly, msg));
    await fails(s.exportKey('raw', hk));
    await fails(s.importKey('raw', hmacKey.subarray(0, 15), { name: 'AES-GCM' }, false, ['encrypt']));
    await fails(s.importKey('raw', hmacKey, { name: 'HMAC', hash: 'SHA-256', length: 100 }, false, ['sign']));
    await fails(s.importKey('raw', hmacKey, { name: 'HMAC', hash: 'SHA-256' }, false, ['encrypt' as KeyUsage]));
    {
      await using h = c.createHmac(hk);
      await h.update(plaintext);
      await h.digest();
    }

    // AES-GCM, raw import: a round trip, a bad tag, a wrong IV, the wrong usage.
    const ak = await s.importKey('raw', aesKey, { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
    const iv = randomBytes(12);
    const ct = Buffer.from(await s.encrypt({ name: 'AES-GCM', iv }, ak, plaintext));
    assert.deepEqual(Buffer.from(await s.decrypt({ name: 'AES-GCM', iv }, ak, ct)), plaintext);
    const bad = Buffer.from(ct);
    bad[bad.length - 1]! ^= 0x80;
    await fails(s.decrypt({ name: 'AES-GCM', iv }, ak, bad));
    await fails(s.decrypt({ name: 'AES-GCM', iv: randomBytes(12) }, ak, ct));
    const encOnly = await s.importKey('raw', aesKey, { name: 'AES-GCM' }, false, ['encrypt']);
    await fails(s.decrypt({ name: 'AES-GCM', iv }, encOnly, ct));

    // Ed25519 from pkcs8: sign and verify; a damaged pkcs8, the wrong curve, the wrong usage.
    const ek = await s.importKey('pkcs8', pkcs8, { name: 'Ed25519' }, false, ['sign']);
    const sig = await s.sign('Ed25519', ek, msg);
    const pk = await s.importKey('spki', spki, { name: 'Ed25519' }, true, ['verify']);
    assert.equal(await s.verify('Ed25519', pk, sig, msg), true);
    const damaged = Buffer.from(pkcs8);
    damaged[5]! ^= 0xff;
    await fails(s.importKey('pkcs8', damaged, { name: 'Ed25519' }, false, ['sign']));
    await fails(s.importKey('pkcs8', pkcs8, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']));
    await fails(s.importKey('pkcs8', pkcs8, { name: 'Ed25519' }, false, ['verify']));
    await fails(s.importKey('pkcs8', pkcs8.subarray(0, 40), { name: 'Ed25519' }, false, ['sign']));

    // An extractable key made in the daemon, exported: its bytes are now planted too.
    const xk = await s.generateKey({ name: 'HMAC', hash: 'SHA-256', length: 256 }, true, ['sign']);
    exported = Buffer.from(await s.exportKey('raw', xk as CryptoKey));
    await s.exportKey('jwk', xk as CryptoKey);
    const kw = await s.importKey('raw', aesKey, { name: 'AES-KW' }, false, ['wrapKey', 'unwrapKey']);
    const wrapped = await s.wrapKey('raw', xk as CryptoKey, kw, 'AES-KW');
    await s.unwrapKey('raw', wrapped, kw, 'AES-KW', { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    const tampered = Buffer.from(wrapped);
    tampered[3]! ^= 1;
    await fails(s.unwrapKey('raw', tampered, kw, 'AES-KW', { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']));

    // Malformed JWKs that carry the key, some of it in members whose values an error might quote.
    const k = b64u(aesKey);
    const jwkAes = (jwk: Record<string, unknown>, usages: KeyUsage[] = ['encrypt']): Promise<unknown> =>
      s.importKey('jwk', jwk as JsonWebKey, { name: 'AES-GCM' }, false, usages);
    await fails(jwkAes({ kty: 'oct', k, alg: 'A128GCM' }));
    await fails(jwkAes({ kty: 'oct', k: `${k}=` }));
    await fails(jwkAes({ kty: 'oct', k: `${k}!` }));
    await fails(jwkAes({ kty: 'oct', k, alg: k }));
    await fails(jwkAes({ kty: k, k }));
    await fails(jwkAes({ kty: 'oct', k, use: aesKey.toString('hex') }));
    await fails(jwkAes({ kty: 'oct', k, key_ops: [k, k] }));
    await fails(jwkAes({ kty: 'oct', k, ext: k }));
    await fails(jwkAes({ kty: 'oct', k: k.slice(0, 20) }));
    await fails(s.importKey('jwk', { kty: 'oct', k: b64u(hmacKey), alg: b64u(hmacKey) } as JsonWebKey, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']));
    await fails(s.importKey('jwk', { kty: 'OKP', crv: b64u(seed), d: b64u(seed), x: pubX } as JsonWebKey, { name: 'Ed25519' }, false, ['sign']));
    await fails(s.importKey('jwk', { kty: 'OKP', crv: 'Ed25519', d: `${b64u(seed)}==`, x: pubX } as JsonWebKey, { name: 'Ed25519' }, false, ['sign']));
    await fails(s.importKey('jwk', { kty: 'OKP', crv: 'Ed25519', d: b64u(seed), x: b64u(seed) } as JsonWebKey, { name: 'Ed25519' }, false, ['sign']));
    await fails(s.importKey('jwk', { kty: 'EC', crv: 'P-256', d: b64u(seed), x: pubX, y: pubX } as JsonWebKey, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']));
    // Key bytes where the protocol expects something else entirely.
    await fails(c.request(Op.IMPORT_KEY, { format: 'raw', keyData: aesKey.toString('hex'), algorithm: { name: 'AES-GCM' }, extractable: false, usages: ['encrypt'] }));
    await fails(c.request(Op.IMPORT_KEY, { format: 'jwk', keyData: aesKey, algorithm: { name: 'AES-GCM' }, extractable: false, usages: ['encrypt'] }));
    await fails(c.request(Op.IMPORT_KEY, { format: 'raw', keyData: aesKey, algorithm: { name: 'AES-GCM' }, extractable: false, usages: [aesKey] }));
    await fails(c.request(Op.DIGEST, { algorithm: 'SHA-256', data: aesKey.toString('hex') }));

    // Status while the keys are live: the CLI's JSON output and the raw reply.
    const status = await runCli(['status', '--json', '--socket', daemon.socketPath]);
    assert.equal(status.code, 0, status.stderr.toString());
    const statusReply = Buffer.from(JSON.stringify(await c.status()));

    assert.ok(errors.length >= 30, `expected the failing operations to report errors, got ${errors.length}`);
    await c.close();
    c = null;
    assert.equal(await daemon.stop(true), 0);

    const haystacks: Record<string, Buffer> = {
      'daemon stdout': daemon.stdout(),
      'daemon stderr': daemon.stderr(),
      'audit log': readFileSync(auditPath),
      'client error messages': Buffer.from(errors.join('\n')),
      'cryptod status --json': Buffer.concat([status.stdout, status.stderr]),
      'STATUS reply': statusReply,
    };
    // The haystacks are not empty: the debug log and the audit log did record this run.
    assert.ok(haystacks['daemon stderr']!.length > 0);
    assert.match(haystacks['audit log']!.toString(), /"event":"key.exported"/);
    assert.match(haystacks['audit log']!.toString(), /"event":"request.denied"/);
    assertAbsent(haystacks, { hmacKey, aesKey, seed, pkcs8, exported, plaintext });
  } finally {
    await c?.close();
    await daemon.stop();
  }
});

test('no data-key plaintext in any log, audit line, error, status output or file of the data directory', { timeout: 120_000 }, async () => {
  const daemon = await startCliDaemon((dir) => ['--log-level', 'debug', '--audit-log', join(dir, 'audit.log')]);
  const errors: string[] = [];
  const fails = async (p: Promise<unknown>): Promise<void> => {
    await p.then(
      () => assert.fail('expected the request to fail'),
      (err: unknown) => {
        assert.ok(err instanceof CryptodError, `expected a typed error, got ${String(err)}`);
        errors.push(`${err.code} ${err.message} ${JSON.stringify(err.detail ?? null)}`);
      },
    );
  };
  let c: Client | null = null;
  try {
    c = await connect({ socket: daemon.socketPath, clientName: 'hygiene' });
    await c.keys.create('tenants', { type: 'aes256-kwp' });
    // The only way to learn a data key's bytes: ask for them (datakey-plaintext; no policy grants every data right).
    const g = await c.dataKeys.generate({ kek: 'tenants', plaintext: true, aad: Buffer.from('tenant 1') });
    const dataKey = Buffer.from(g.plaintext!);
    const g16 = await c.dataKeys.generate({ kek: 'tenants', plaintext: true, length: 16 });
    const dataKey16 = Buffer.from(g16.plaintext!);
    const ct = await c.dataKeys.encrypt(g.wrappedKey, Buffer.from('row'), { aad: Buffer.from('a') });
    await c.dataKeys.decrypt(g.wrappedKey, ct, { aad: Buffer.from('a') });
    await c.dataKeys.encryptBatch(g16.wrappedKey, [{ data: Buffer.from('x') }]);
    await fails(c.dataKeys.decrypt(g.wrappedKey, ct, { aad: Buffer.from('b') }));
    const altered = Buffer.from(g.wrappedKey);
    altered[altered.length - 2]! ^= 1;
    await fails(c.dataKeys.encrypt(altered, Buffer.from('x')));
    await fails(c.dataKeys.encrypt(dataKey, Buffer.from('x'))); // the key itself where a wrapped key belongs
    await c.keys.rotate('tenants');
    await c.dataKeys.open(g.wrappedKey);
    await c.dataKeys.rewrap(g16.wrappedKey);
    const status = await runCli(['status', '--json', '--socket', daemon.socketPath]);
    assert.equal(status.code, 0, status.stderr.toString());
    assert.match(status.stdout.toString(), /"cache": ?\{/);
    const statusReply = Buffer.from(JSON.stringify(await c.status()));
    await c.close();
    c = null;
    assert.equal(await daemon.stop(true), 0);

    const haystacks: Record<string, Buffer> = {
      'daemon stdout': daemon.stdout(),
      'daemon stderr': daemon.stderr(),
      'client error messages': Buffer.from(errors.join('\n')),
      'cryptod status --json': Buffer.concat([status.stdout, status.stderr]),
      'STATUS reply': statusReply,
    };
    for (const f of filesUnder(daemon.dir)) haystacks[f] = readFileSync(f);
    assert.ok(Object.keys(haystacks).some((f) => f.endsWith('keystore.sqlite')), 'the keystore file is searched');
    assert.match(readFileSync(join(daemon.dir, 'audit.log'), 'utf8'), /"event":"datakey.generated".*"plaintext":true/);
    assertAbsent(haystacks, { dataKey, dataKey16 });
  } finally {
    await c?.close();
    await daemon.stop();
  }
});

/** Every regular file below `dir` (the data directory, the audit log, the socket directory). */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...filesUnder(p));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

test('a foreign error quoting its input reaches neither the client nor the log', async () => {
  const secret = randomBytes(32);
  // What a foreign library might throw: its message quotes the input bytes.
  const foreign = (): Error => Object.assign(new Error(`bad key material 0x${secret.toString('hex')} (${secret.toString('base64')})`), { code: 'ERR_OSSL_BAD_DECRYPT' });
  const direct = toCryptodError(foreign());
  assert.equal(direct.code, 'CRYPTOD_ERR_INTERNAL');
  assert.ok(!direct.message.includes(secret.toString('hex')));

  const THROWS = 0x7f30 as OpCode;
  const REJECTS = 0x7f31 as OpCode;
  const ops: Operation[] = [
    ...allOperations(),
    { op: THROWS, access: { kind: 'none' }, handle: () => { throw foreign(); } },
    { op: REJECTS, access: { kind: 'none' }, handle: async () => { throw foreign(); } },
  ];
  const logStream = new PassThrough();
  let log = '';
  logStream.on('data', (b: Buffer) => (log += b.toString()));
  const t = await startTestDaemon({ operations: ops, logger: createLogger({ level: 'debug', stream: logStream }) });
  const seen: string[] = [];
  try {
    const c = await t.connect('foreign');
    for (const op of [THROWS, REJECTS]) {
      await assert.rejects(c.request(op), (err: unknown) => {
        assert.ok(err instanceof CryptodError);
        assert.equal(err.code, 'CRYPTOD_ERR_INTERNAL');
        seen.push(`${err.message} ${JSON.stringify(err.detail ?? null)}`);
        return true;
      });
    }
  } finally {
    await t.stop();
  }
  // The daemon did log the failure (so operators can find it) — without the message.
  assert.match(log, /"msg":"request failed"/);
  assert.match(log, /ERR_OSSL_BAD_DECRYPT/);
  assertAbsent({ 'client errors': Buffer.from(seen.join('\n')), 'daemon log': Buffer.from(log) }, { secret });
});
