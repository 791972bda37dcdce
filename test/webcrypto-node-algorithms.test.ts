/**
 * Issue "Done when": no algorithm Node 20's WebCrypto supports is refused as
 * unsupported. For each algorithm and each operation Node supports it for,
 * the same well-formed call goes to client.subtle (a real daemon) and must
 * not end in NotSupportedError (cryptod's CRYPTOD_ERR_UNSUPPORTED); Node's
 * crypto.subtle is asked the same, so the list cannot claim what Node lacks.
 */
import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import { after, before, test } from 'node:test';
import type { Client } from '../src/client/client.js';
import { startTestDaemon, type TestDaemon } from './helpers/daemon.js';

let t: TestDaemon;
let c: Client;
before(async () => {
  t = await startTestDaemon();
  c = await t.connect('node-algorithms');
});
after(async () => {
  await c.close();
  await t.stop();
});

type S = Record<string, (...a: unknown[]) => Promise<unknown>>;
type Pair = { publicKey: unknown; privateKey: unknown };
const e65537 = new Uint8Array([1, 0, 1]);
const data = new TextEncoder().encode('node 20 algorithms');
const rsa = (name: string) => ({ name, modulusLength: 2048, publicExponent: e65537, hash: 'SHA-256' });

/** [algorithm, operation, call]: every algorithm of Node 20's crypto.subtle, each operation it is defined for. */
const CALLS: [string, string, (s: S) => Promise<unknown>][] = [];
for (const h of ['SHA-1', 'SHA-256', 'SHA-384', 'SHA-512']) CALLS.push([h, 'digest', (s) => s.digest!(h, data)]);
for (const [name, params] of [
  ['AES-GCM', { iv: new Uint8Array(12) }],
  ['AES-CBC', { iv: new Uint8Array(16) }],
  ['AES-CTR', { counter: new Uint8Array(16), length: 64 }],
] as const) {
  const gen = (s: S) => s.generateKey!({ name, length: 256 }, true, ['encrypt', 'decrypt', 'wrapKey', 'unwrapKey']);
  CALLS.push([name, 'generateKey', gen]);
  CALLS.push([name, 'importKey', (s) => s.importKey!('raw', new Uint8Array(16), name, true, ['encrypt'])]);
  CALLS.push([name, 'exportKey', async (s) => s.exportKey!('jwk', await gen(s))]);
  CALLS.push([name, 'encrypt', async (s) => s.encrypt!({ name, ...params }, await gen(s), data)]);
  CALLS.push([name, 'decrypt', async (s) => { const k = await gen(s); return s.decrypt!({ name, ...params }, k, await s.encrypt!({ name, ...params }, k, data)); }]);
  CALLS.push([name, 'wrapKey', async (s) => { const k = await gen(s); return s.wrapKey!('raw', k, k, { name, ...params }); }]);
  CALLS.push([name, 'unwrapKey', async (s) => { const k = await gen(s); return s.unwrapKey!('raw', await s.wrapKey!('raw', k, k, { name, ...params }), k, { name, ...params }, name, true, ['encrypt']); }]);
  CALLS.push([name, 'deriveKey (derived type)', async (s) => s.deriveKey!({ name: 'HKDF', hash: 'SHA-256', salt: data, info: data }, await s.importKey!('raw', data, 'HKDF', false, ['deriveKey']), { name, length: 128 }, true, ['encrypt'])]);
}
const kw = (s: S) => s.generateKey!({ name: 'AES-KW', length: 128 }, true, ['wrapKey', 'unwrapKey']);
CALLS.push(['AES-KW', 'generateKey', kw]);
CALLS.push(['AES-KW', 'importKey', (s) => s.importKey!('raw', new Uint8Array(16), 'AES-KW', true, ['wrapKey'])]);
CALLS.push(['AES-KW', 'wrapKey', async (s) => { const k = await kw(s); return s.wrapKey!('raw', k, k, 'AES-KW'); }]);
CALLS.push(['AES-KW', 'unwrapKey', async (s) => { const k = await kw(s); return s.unwrapKey!('raw', await s.wrapKey!('raw', k, k, 'AES-KW'), k, 'AES-KW', 'AES-KW', true, ['wrapKey']); }]);
const hmac = (s: S) => s.generateKey!({ name: 'HMAC', hash: 'SHA-256' }, true, ['sign', 'verify']);
CALLS.push(['HMAC', 'generateKey', hmac]);
CALLS.push(['HMAC', 'importKey', (s) => s.importKey!('raw', new Uint8Array(32), { name: 'HMAC', hash: 'SHA-512' }, true, ['sign'])]);
CALLS.push(['HMAC', 'sign', async (s) => s.sign!('HMAC', await hmac(s), data)]);
CALLS.push(['HMAC', 'verify', async (s) => { const k = await hmac(s); return s.verify!('HMAC', k, await s.sign!('HMAC', k, data), data); }]);
const signers: [string, unknown, unknown, string[]][] = [
  ['ECDSA', { name: 'ECDSA', namedCurve: 'P-256' }, { name: 'ECDSA', hash: 'SHA-256' }, ['P-256', 'P-384', 'P-521']],
  ['Ed25519', 'Ed25519', 'Ed25519', []],
  ['Ed448', 'Ed448', 'Ed448', []],
  ['RSA-PSS', rsa('RSA-PSS'), { name: 'RSA-PSS', saltLength: 32 }, []],
  ['RSASSA-PKCS1-v1_5', rsa('RSASSA-PKCS1-v1_5'), 'RSASSA-PKCS1-v1_5', []],
];
for (const [name, gen, alg, curves] of signers) {
  const pair = (s: S) => s.generateKey!(gen, true, ['sign', 'verify']) as Promise<Pair>;
  CALLS.push([name, 'generateKey', pair]);
  for (const crv of curves) CALLS.push([`${name} ${crv}`, 'generateKey', (s) => s.generateKey!({ name, namedCurve: crv }, true, ['sign', 'verify'])]);
  CALLS.push([name, 'exportKey/importKey', async (s) => { const p = await pair(s); return s.importKey!('spki', await s.exportKey!('spki', p.publicKey), gen, true, ['verify']); }]);
  CALLS.push([name, 'sign', async (s) => s.sign!(alg, (await pair(s)).privateKey, data)]);
  CALLS.push([name, 'verify', async (s) => { const p = await pair(s); return s.verify!(alg, p.publicKey, await s.sign!(alg, p.privateKey, data), data); }]);
}
const oaep = (s: S) => s.generateKey!(rsa('RSA-OAEP'), true, ['encrypt', 'decrypt', 'wrapKey', 'unwrapKey']) as Promise<Pair>;
CALLS.push(['RSA-OAEP', 'generateKey', oaep]);
CALLS.push(['RSA-OAEP', 'exportKey/importKey', async (s) => { const p = await oaep(s); return s.importKey!('pkcs8', await s.exportKey!('pkcs8', p.privateKey), rsa('RSA-OAEP'), true, ['decrypt']); }]);
CALLS.push(['RSA-OAEP', 'encrypt', async (s) => s.encrypt!('RSA-OAEP', (await oaep(s)).publicKey, data)]);
CALLS.push(['RSA-OAEP', 'decrypt', async (s) => { const p = await oaep(s); return s.decrypt!('RSA-OAEP', p.privateKey, await s.encrypt!('RSA-OAEP', p.publicKey, data)); }]);
CALLS.push(['RSA-OAEP', 'wrapKey', async (s) => { const p = await oaep(s); return s.wrapKey!('raw', await hmac(s), p.publicKey, 'RSA-OAEP'); }]);
CALLS.push(['RSA-OAEP', 'unwrapKey', async (s) => { const p = await oaep(s); return s.unwrapKey!('raw', await s.wrapKey!('raw', await hmac(s), p.publicKey, 'RSA-OAEP'), p.privateKey, 'RSA-OAEP', { name: 'HMAC', hash: 'SHA-256' }, true, ['sign']); }]);
const agreements: [string, unknown][] = [
  ['ECDH P-256', { name: 'ECDH', namedCurve: 'P-256' }],
  ['ECDH P-384', { name: 'ECDH', namedCurve: 'P-384' }],
  ['ECDH P-521', { name: 'ECDH', namedCurve: 'P-521' }],
  ['X25519', 'X25519'],
  ['X448', 'X448'],
];
for (const [what, gen] of agreements) {
  const name = typeof gen === 'string' ? gen : 'ECDH';
  const pair = (s: S) => s.generateKey!(gen, true, ['deriveBits', 'deriveKey']) as Promise<Pair>;
  CALLS.push([what, 'generateKey', pair]);
  CALLS.push([what, 'deriveBits', async (s) => { const p = await pair(s); return s.deriveBits!({ name, public: p.publicKey }, p.privateKey, 128); }]);
  CALLS.push([what, 'deriveKey', async (s) => { const p = await pair(s); return s.deriveKey!({ name, public: p.publicKey }, p.privateKey, { name: 'AES-GCM', length: 128 }, true, ['encrypt']); }]);
}
for (const [name, alg] of [
  ['HKDF', { name: 'HKDF', hash: 'SHA-256', salt: data, info: data }],
  ['PBKDF2', { name: 'PBKDF2', hash: 'SHA-256', salt: data, iterations: 1000 }],
] as const) {
  const base = (s: S) => s.importKey!('raw', data, name, false, ['deriveBits', 'deriveKey']);
  CALLS.push([name, 'importKey', base]);
  for (const length of [256, 0]) CALLS.push([name, `deriveBits ${length}`, async (s) => s.deriveBits!(alg, await base(s), length)]);
  CALLS.push([name, 'deriveKey', async (s) => s.deriveKey!(alg, await base(s), { name: 'HMAC', hash: 'SHA-256', length: 256 }, true, ['sign'])]);
}

test("every algorithm and operation of Node 20's crypto.subtle works through client.subtle", async () => {
  const node = webcrypto.subtle as unknown as S;
  const ours = c.subtle as unknown as S;
  const refused: string[] = [];
  for (const [alg, op, call] of CALLS) {
    await call(node); // the call is well-formed: Node does it
    try {
      await call(ours);
    } catch (err) {
      refused.push(`${alg} ${op}: ${(err as Error).name} ${(err as { code?: string }).code ?? ''} ${(err as Error).message}`);
    }
  }
  assert.deepEqual(refused, []);
  assert.ok(CALLS.length >= 88, `expected every algorithm × operation, listed ${CALLS.length}`);
});
