/**
 * Shared-memory windows (docs/protocol.md §6.16) over a real daemon, real
 * memory files and real SCM_RIGHTS: results identical to node:crypto for any
 * chunking, every refusal typed and harmless to the connection, and nothing
 * left mapped when a window, a connection or a whole client process goes.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { closeSync, openSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { connect, type Client } from '../src/client/client.js';
import { handleOf, type CryptoKey, type KeyUsage } from '../src/client/subtle.js';
import { peerCred } from '../src/daemon/peer-cred.js';
import { CryptodError } from '../src/protocol/errors.js';
import { Op } from '../src/protocol/ops.js';
import { abstractPath, windowAddon, type WindowAddon } from '../src/protocol/window-addon.js';
import { eventually, startTestDaemon, type TestDaemon } from './helpers/daemon.js';

const addon = windowAddon();
const KiB = 1024;
const MiB = 1024 * KiB;

/** Mappings of memory files made for windows in this process (client and in-process daemon both). */
function windowMappings(pid: number | 'self' = 'self'): number {
  return readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').filter((l) => l.includes('memfd:cryptod-window')).length;
}

/** Open descriptors of this process that are window memory files. */
function windowDescriptors(): number {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).includes('memfd:cryptod-window')) n++;
    } catch {
      // closed while listing
    }
  }
  return n;
}

async function refusal(p: Promise<unknown>): Promise<CryptodError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof CryptodError, `expected a CryptodError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a refusal');
}

/** Connect to the window socket and send `fd` with `payload`, as the client library does. */
function sendOver(a: WindowAddon, socket: string, fd: number, payload: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = createConnection(abstractPath(socket));
    s.once('error', reject);
    s.once('connect', () => {
      a.sendFd((s as unknown as { _handle: { fd: number } })._handle.fd, fd, payload);
      s.destroy();
      resolve();
    });
  });
}

/** Feed `data` in the given chunk sizes (cycled) through `stream`; collect the output. */
async function through(stream: Transform, data: Buffer, chunks: number[]): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for (let off = 0, i = 0; off < data.length; i++) {
    const n = chunks[i % chunks.length]!;
    pieces.push(data.subarray(off, off + n));
    off += n;
  }
  const out: Buffer[] = [];
  await pipeline(Readable.from(pieces), stream, async (source: AsyncIterable<Buffer>) => {
    for await (const b of source) out.push(b as Buffer);
  });
  return Buffer.concat(out);
}

/** Run `code` in a child node process (`module`: ESM through tsx); resolves when it exits, rejects on a failure. */
async function runChild(code: string, module: boolean): Promise<void> {
  const args = module ? ['--import', 'tsx', '--input-type=module', '-e', code] : ['-e', code];
  const child = spawn(process.execPath, args, { stdio: 'inherit' });
  const status = await new Promise<number | null>((r) => child.once('exit', r));
  assert.equal(status, 0, 'the child process succeeded');
}

/** The client's digest of `chunks` through one context. */
async function daemonDigest(c: Client, chunks: Uint8Array[], key?: CryptoKey): Promise<Buffer> {
  const h = key === undefined ? c.createHash('SHA-256') : c.createHmac(key);
  for (const chunk of chunks) await h.update(chunk);
  return Buffer.from(await h.digest());
}

if (addon === null) {
  it('shared-memory windows need the native addon', { skip: 'build/Release/window.node is not built here (npm install builds it)' }, () => undefined);
} else {
  describe('shared-memory windows', () => {
    let td: TestDaemon;
    let c: Client;
    before(async () => {
      td = await startTestDaemon({ peerIdentity: peerCred, limits: { maxWindowBytes: 16 * MiB, maxWindowsPerConnection: 3 } });
      c = await td.connect('win');
    });
    after(async () => {
      await td.stop();
    });

    it('large updates go through the window, and every chunking hashes as node:crypto does', async () => {
      const data = randomBytes(3 * MiB + 12_345);
      const expected = createHash('sha256').update(data).digest();
      assert.deepEqual(await daemonDigest(c, [data]), expected);
      const w = await c.connection.window();
      assert.ok(w !== null, 'the connection has a window');
      assert.equal(windowMappings(), 2, 'mapped once by the client and once by the (in-process) daemon');
      await fc.assert(
        fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 600 * KiB }), { minLength: 1, maxLength: 12 }), async (cuts) => {
          const chunks: Uint8Array[] = [];
          let off = 0;
          for (const n of cuts) {
            chunks.push(data.subarray(off % data.length, Math.min(data.length, (off % data.length) + n)));
            off += n;
          }
          const ref = createHash('sha256');
          for (const ch of chunks) ref.update(ch);
          assert.deepEqual(await daemonDigest(c, chunks), ref.digest());
        }),
        { numRuns: 25 },
      );
    });

    it('HMAC contexts, and several contexts on one connection sharing the window at once', async () => {
      const raw = randomBytes(32);
      const key = await c.subtle.importKey('raw', raw, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
      const inputs = [randomBytes(5 * MiB), randomBytes(2 * MiB + 1), randomBytes(700 * KiB), randomBytes(20 * KiB)];
      const results = await Promise.all(inputs.map((d, i) => (i % 2 === 0 ? daemonDigest(c, [d, d.subarray(7)], key) : daemonDigest(c, [d.subarray(0, 100), d]))));
      inputs.forEach((d, i) => {
        const ref = i % 2 === 0 ? createHmac('sha256', raw).update(d).update(d.subarray(7)).digest() : createHash('sha256').update(d.subarray(0, 100)).update(d).digest();
        assert.deepEqual(results[i], ref, `context ${i}`);
      });
    });

    it('AEAD streams through the window: the same format, read back by a client without windows, and tampering still caught', async () => {
      const inline = await connect({ socket: td.socketPath, clientName: 'win', windows: false });
      try {
        for (const [name, segmentSize] of [['AES-GCM', 65_536], ['ChaCha20-Poly1305', 4096], ['AES-GCM', 256 * KiB], ['AES-GCM', MiB]] as const) {
          const raw = randomBytes(32);
          const usages: KeyUsage[] = ['encrypt', 'decrypt'];
          const kw = await c.subtle.importKey('raw', raw, { name }, false, usages);
          const ki = await inline.subtle.importKey('raw', raw, { name }, false, usages);
          const data = randomBytes(3 * MiB + 777);
          const params = { name, segmentSize, additionalData: Buffer.from('ad') };
          const sealed = await through(c.createEncryptStream(kw, params), data, [MiB, 1000, 300_000]);
          assert.deepEqual(await through(inline.createDecryptStream(ki, params), sealed, [700_000]), data, `${name}/${segmentSize}: window → inline`);
          const sealedInline = await through(inline.createEncryptStream(ki, params), data, [MiB]);
          assert.deepEqual(await through(c.createDecryptStream(kw, params), sealedInline, [MiB, 5]), data, `${name}/${segmentSize}: inline → window`);
          const bad = Buffer.from(sealed);
          bad[bad.length >> 1]! ^= 1;
          const e = await refusal(through(c.createDecryptStream(kw, params), bad, [MiB]));
          assert.equal(e.code, 'CRYPTOD_ERR_DECRYPT_FAILED');
        }
      } finally {
        await inline.close();
      }
    });

    it('a windowed CIPHER_UPDATE refuses output regions outside the window or too small, typed', async () => {
      const w = await c.connection.window();
      assert.ok(w !== null);
      const key = await c.subtle.importKey('raw', randomBytes(32), { name: 'AES-GCM' }, false, ['encrypt']);
      const created = (await c.request(Op.CIPHER_CREATE, { key: handleOf(key, 'key'), mode: 'encrypt', algorithm: { name: 'AES-GCM', segmentSize: 1024 } })) as { handle: string };
      const h1 = created.handle;
      const e1 = await refusal(c.request(Op.CIPHER_UPDATE, { handle: h1, window: w.handle, offset: 0, length: 4096, outputOffset: w.bytes.length - 10, outputLength: 11 }));
      assert.equal(e1.code, 'CRYPTOD_ERR_INVALID_ARGUMENT');
      assert.equal(e1.detail?.field, 'outputLength');
      // Too small for the output: the stream moved on, so it ends (as any failed update).
      const e2 = await refusal(c.request(Op.CIPHER_UPDATE, { handle: h1, window: w.handle, offset: 0, length: 4096, outputOffset: 0, outputLength: 100 }));
      assert.equal(e2.detail?.needed, 3 * (1024 + 16));
      const e3 = await refusal(c.request(Op.CIPHER_UPDATE, { handle: h1, window: w.handle, offset: 0, length: 1, outputOffset: 0, outputLength: 100 }));
      assert.equal(e3.code, 'CRYPTOD_ERR_NOT_FOUND');
    });

    it('refusals are typed, name what was expected, and leave the connection working', async () => {
      const offer = (size: unknown): Promise<unknown> => c.request(Op.WINDOW_OFFER, { size } as never);
      const e1 = await refusal(offer(0));
      assert.equal(e1.code, 'CRYPTOD_ERR_INVALID_ARGUMENT');
      const e2 = await refusal(offer(17 * MiB));
      assert.equal(e2.code, 'CRYPTOD_ERR_INVALID_ARGUMENT');
      assert.equal(e2.detail?.max, 16 * MiB);
      assert.match(e2.message, /maxWindowBytes/);

      const e3 = await refusal(c.request(Op.WINDOW_ATTACH, { offer: randomBytes(32) }));
      assert.equal(e3.code, 'CRYPTOD_ERR_NOT_FOUND');

      // Offered, never sent: ATTACH waits a bounded time, then says so.
      const o1 = (await offer(MiB)) as { socket: string; offer: Uint8Array };
      assert.match(o1.socket, /^@cryptod-window-/);
      const e4 = await refusal(c.request(Op.WINDOW_ATTACH, { offer: o1.offer }));
      assert.equal(e4.code, 'CRYPTOD_ERR_INVALID_ARGUMENT');
      assert.equal(e4.detail?.reason, 'not-sent');

      // A plain file (no seals: it could be truncated under the daemon's mapping).
      const o2 = (await offer(4096)) as { socket: string; offer: Uint8Array };
      const path = join(td.dir, 'plain');
      writeFileSync(path, Buffer.alloc(4096));
      const fd = openSync(path, 'r+');
      await sendOver(addon, o2.socket, fd, o2.offer);
      closeSync(fd);
      const e5 = await refusal(c.request(Op.WINDOW_ATTACH, { offer: o2.offer }));
      assert.equal(e5.code, 'CRYPTOD_ERR_INVALID_ARGUMENT');
      assert.equal(e5.detail?.reason, 'not-sealed');
      assert.match(e5.message, /F_SEAL_SHRINK|memfd_create/);

      // A sealed memory file of another size than offered.
      const o3 = (await offer(MiB)) as { socket: string; offer: Uint8Array };
      const other = addon.createWindow(2 * MiB);
      await sendOver(addon, o3.socket, other.fd, o3.offer);
      closeSync(other.fd);
      addon.releaseWindow(other.buffer);
      const e6 = await refusal(c.request(Op.WINDOW_ATTACH, { offer: o3.offer }));
      assert.equal(e6.detail?.reason, 'size');

      // Another connection's offer is not this one's.
      const c2 = await td.connect('win');
      const o4 = (await c2.request(Op.WINDOW_OFFER, { size: MiB })) as { socket: string; offer: Uint8Array };
      const e7 = await refusal(c.request(Op.WINDOW_ATTACH, { offer: o4.offer }));
      assert.equal(e7.code, 'CRYPTOD_ERR_NOT_FOUND');

      // maxWindowsPerConnection (3) counts windows and pending offers: c2 has one offer.
      await c2.request(Op.WINDOW_OFFER, { size: MiB });
      await c2.request(Op.WINDOW_OFFER, { size: MiB });
      const e8 = await refusal(c2.request(Op.WINDOW_OFFER, { size: MiB }));
      assert.equal(e8.code, 'CRYPTOD_ERR_QUOTA');

      // Regions: outside the window, and a handle of the wrong kind either way.
      const w = await c.connection.window();
      assert.ok(w !== null);
      const h = (await c.request(Op.HASH_CREATE, { algorithm: 'SHA-256' })) as { handle: string };
      const e9 = await refusal(c.request(Op.CONTEXT_UPDATE, { handle: h.handle, window: w.handle, offset: w.bytes.length - 10, length: 11 }));
      assert.equal(e9.code, 'CRYPTOD_ERR_INVALID_ARGUMENT');
      assert.equal(e9.detail?.size, w.bytes.length);
      const e10 = await refusal(c.request(Op.CONTEXT_UPDATE, { handle: w.handle, window: w.handle, offset: 0, length: 1 }));
      assert.equal(e10.code, 'CRYPTOD_ERR_INVALID_ARGUMENT');
      const e11 = await refusal(c.request(Op.CONTEXT_UPDATE, { handle: h.handle, window: h.handle, offset: 0, length: 1 }));
      assert.equal(e11.code, 'CRYPTOD_ERR_INVALID_ARGUMENT');
      // The region is read as it is when the update runs; the context is intact after the refusals.
      w.bytes.set(Buffer.from('abc'), 0);
      await c.request(Op.CONTEXT_UPDATE, { handle: h.handle, window: w.handle, offset: 0, length: 3 });
      const d = (await c.request(Op.CONTEXT_FINAL, { handle: h.handle })) as Uint8Array;
      assert.deepEqual(Buffer.from(d), createHash('sha256').update('abc').digest());
      assert.deepEqual(await daemonDigest(c, [Buffer.alloc(MiB, 1)]), createHash('sha256').update(Buffer.alloc(MiB, 1)).digest());
      c2.connection.destroy();
    });

    it('a memory file sent by another process than the connection is never taken, and no descriptor is kept', async () => {
      // A process with no offer of its own waiting is dropped at accept: its message is never read.
      const o1 = (await c.request(Op.WINDOW_OFFER, { size: MiB })) as { socket: string; offer: Uint8Array };
      await runChild(`
        const a = require(${JSON.stringify(join(process.cwd(), 'build', 'Release', 'window.node'))});
        const net = require('node:net');
        const w = a.createWindow(${MiB});
        const s = net.createConnection(${JSON.stringify(abstractPath(o1.socket))}, () => {
          // The daemon may have closed it already (EPIPE): that is the point.
          try { a.sendFd(s._handle.fd, w.fd, Buffer.from('${Buffer.from(o1.offer).toString('hex')}', 'hex')); } catch (e) { if (e.code !== 'EPIPE' && e.code !== 'ECONNRESET') throw e; }
          s.destroy();
        });
        s.on('error', () => {});
      `, false);
      const e1 = await refusal(c.request(Op.WINDOW_ATTACH, { offer: o1.offer }));
      assert.equal(e1.detail?.reason, 'not-sent');
      // One that has an offer of its own waiting, and sends another connection's offer: refused by pid.
      const o2 = (await c.request(Op.WINDOW_OFFER, { size: MiB })) as { socket: string; offer: Uint8Array };
      await runChild(`
        import { createConnection } from 'node:net';
        import { connect } from ${JSON.stringify(join(process.cwd(), 'src', 'client', 'client.ts'))};
        import { windowAddon, abstractPath } from ${JSON.stringify(join(process.cwd(), 'src', 'protocol', 'window-addon.ts'))};
        const a = windowAddon();
        const c = await connect({ socket: ${JSON.stringify(td.socketPath)}, clientName: 'thief' });
        await c.request(${Op.WINDOW_OFFER}, { size: ${MiB} });
        const w = a.createWindow(${MiB});
        await new Promise((resolve) => { const s = createConnection(abstractPath(${JSON.stringify(o2.socket)}), () => { a.sendFd(s._handle.fd, w.fd, Buffer.from('${Buffer.from(o2.offer).toString('hex')}', 'hex')); s.destroy(); resolve(); }); });
        await new Promise((r) => setTimeout(r, 200));
        c.connection.destroy();
      `, true);
      const e2 = await refusal(c.request(Op.WINDOW_ATTACH, { offer: o2.offer }));
      assert.equal(e2.code, 'CRYPTOD_ERR_FORBIDDEN');
      assert.equal(e2.detail?.reason, 'other-process');
      // The refused memory file was closed, not kept (the daemon runs in this process; the client closes its own once sent).
      await eventually(() => windowDescriptors() === 0, 5000, 'no descriptor of a window memory file left open');
    });

    it('released windows and closed connections leave nothing mapped or counted', async () => {
      const c3 = await td.connect('win-life');
      await daemonDigest(c3, [randomBytes(MiB)]);
      const w = await c3.connection.window();
      assert.ok(w !== null);
      assert.equal(windowMappings() >= 2, true, 'the client and the in-process daemon each map it');
      const before = windowMappings();
      // RELEASE of the window: the daemon unmaps; a later region naming it is NOT_FOUND.
      await c3.request(Op.RELEASE, { handle: w.handle });
      assert.equal(windowMappings(), before - 1);
      const h = (await c3.request(Op.HASH_CREATE, { algorithm: 'SHA-256' })) as { handle: string };
      const e = await refusal(c3.request(Op.CONTEXT_UPDATE, { handle: h.handle, window: w.handle, offset: 0, length: 1 }));
      assert.equal(e.code, 'CRYPTOD_ERR_NOT_FOUND');
      c3.connection.destroy();
      await eventually(() => windowMappings() === before - 2, 5000, 'both sides unmapped');
      assert.equal(windowDescriptors(), 0, 'neither side keeps the memory file open');
    });
  });

  it('a client process killed mid-stream leaves no window behind in the daemon', async () => {
    const td = await startTestDaemon({ peerIdentity: peerCred });
    try {
      await eventually(() => windowMappings() === 0, 5000, 'the earlier tests\' windows unmapped');
      const baseline = 0;
      const child = spawn(process.execPath, ['--import', 'tsx', '-e', `
        import { connect } from ${JSON.stringify(join(process.cwd(), 'src', 'client', 'client.ts'))};
        const c = await connect({ socket: ${JSON.stringify(td.socketPath)}, clientName: 'doomed' });
        const h = c.createHash('SHA-256');
        await h.update(Buffer.alloc(4 << 20, 7));
        process.stdout.write('ready\\n');
        setInterval(() => h.update(Buffer.alloc(1 << 20, 1)), 1);
      `], { stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((resolve) => child.stdout.on('data', (b: Buffer) => b.toString().includes('ready') && resolve()));
      assert.equal(windowMappings(), baseline + 1, "the daemon maps the child's window");
      child.kill('SIGKILL');
      await eventually(() => windowMappings() === baseline && td.daemon.dm.liveNodes() === 0, 5000, 'window and contexts gone');
    } finally {
      await td.stop();
    }
  });

  it('without peer credentials the daemon offers no window, and the client sends inline with the same results', async () => {
    const td = await startTestDaemon({});
    try {
      const c = await td.connect('inline');
      const e = await refusal(c.request(Op.WINDOW_OFFER, { size: MiB }));
      assert.equal(e.code, 'CRYPTOD_ERR_UNSUPPORTED');
      const data = randomBytes(2 * MiB);
      assert.deepEqual(await daemonDigest(c, [data]), createHash('sha256').update(data).digest());
      assert.equal(await c.connection.window(), null);
    } finally {
      await td.stop();
    }
  });
}
