/**
 * A special file or a huge one where the daemon expects a small regular file
 * (src/files/trusted-files.ts): `serve --config /dev/zero`, a FIFO, and a
 * 1.5 GB sparse file are refused at start with a message saying what the
 * file is; swapping the configuration for a FIFO or a 1.5 GB file and
 * reloading answers an error while the daemon keeps serving, without reading
 * the big file (its peak memory stays small); a FIFO as the CRL, the KEK
 * passphrase file, or a file given to the CLI is refused the same way.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { loadTlsMaterial } from '../src/daemon/tls-listener.js';
import { ConfigError } from '../src/protocol/errors.js';
import { runCliWithin } from './helpers/bounded-cli.js';
import { startCliDaemon, type CliDaemon } from './helpers/cli-daemon.js';

/** 1.5 GB: the size from the issue; sparse, so it costs no disk. */
const HUGE = 1536 * 1024 * 1024;
/** Far below HUGE: what the daemon may use while refusing it (Node itself is ~100 MB). */
const PEAK_LIMIT = 512 * 1024 * 1024;
const DEADLINE_MS = 30_000;

const dirs: string[] = [];
let d: CliDaemon;
let config: string;

function tmp(): string {
  const dir = mkdtempSync(join(tmpdir(), 'csf-'));
  dirs.push(dir);
  return dir;
}

function fifo(p: string): string {
  execFileSync('mkfifo', ['-m', '600', p]);
  return p;
}

function sparse(p: string, size: number): string {
  execFileSync('truncate', ['-s', String(size), p]);
  return p;
}

before(async () => {
  d = await startCliDaemon((dir) => {
    config = join(dir, 'cryptod.yaml');
    writeFileSync(config, 'keys:\n  orders: { type: aes256-gcm }\n');
    return ['--config', config];
  });
});

after(async () => {
  await d?.stop();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function serveWithConfig(file: string): Promise<Awaited<ReturnType<typeof runCliWithin>>> {
  const dir = tmp();
  return runCliWithin(['serve', '--config', file, '--data-dir', join(dir, 'data'), '--socket', join(dir, 's.sock')], DEADLINE_MS);
}

test('serve --config /dev/zero is refused as a character device, not a crash', async () => {
  const r = await serveWithConfig('/dev/zero');
  assert.equal(r.timedOut, false, r.stderr);
  assert.equal(r.signal, null, `the daemon died of ${r.signal}: ${r.stderr}`);
  assert.equal(r.code, 1, r.stderr);
  assert.ok(r.stderr.includes('the configuration file /dev/zero is not a regular file (a character device)'), r.stderr);
});

test('serve --config FIFO is refused at once instead of waiting for a writer', async () => {
  const f = fifo(join(tmp(), 'cryptod.yaml'));
  const r = await serveWithConfig(f);
  assert.equal(r.timedOut, false, `serve waited on the FIFO until killed: ${r.stderr}`);
  assert.equal(r.code, 1, r.stderr);
  assert.ok(r.stderr.includes(`the configuration file ${f} is not a regular file (a FIFO)`), r.stderr);
});

test('serve --config with a 1.5 GB sparse file is refused by its size', async () => {
  const f = sparse(join(tmp(), 'cryptod.yaml'), HUGE);
  const r = await serveWithConfig(f);
  assert.equal(r.timedOut, false, r.stderr);
  assert.equal(r.code, 1, r.stderr);
  assert.ok(r.stderr.includes(`the configuration file ${f} is ${HUGE} bytes; it may have at most 1048576`), r.stderr);
});

test('reload of a configuration swapped for a FIFO answers an error and the daemon keeps serving status', async () => {
  const good = join(d.dir, 'good.yaml');
  renameSync(config, good);
  fifo(config);
  try {
    const r = await runCliWithin(['reload', '--socket', d.socketPath], DEADLINE_MS);
    assert.equal(r.timedOut, false, 'cryptod reload got no answer: the daemon is stuck on the FIFO');
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /CRYPTOD_ERR_CONFIG/);
    assert.ok(r.stderr.includes(`the configuration file ${config} is not a regular file (a FIFO)`), r.stderr);
    const s = await runCliWithin(['status', '--socket', d.socketPath], DEADLINE_MS);
    assert.equal(s.timedOut, false, 'status timed out after the reload');
    assert.equal(s.code, 0, s.stderr);
  } finally {
    rmSync(config);
    renameSync(good, config);
  }
});

test('reload of a 1.5 GB sparse configuration is refused by size without reading it', async () => {
  const good = join(d.dir, 'good.yaml');
  renameSync(config, good);
  sparse(config, HUGE);
  try {
    const r = await runCliWithin(['reload', '--socket', d.socketPath], DEADLINE_MS);
    assert.equal(r.code, 1, r.stderr);
    assert.ok(r.stderr.includes(`is ${HUGE} bytes; it may have at most 1048576`), r.stderr);
    const mem = d.memory();
    assert.ok(mem !== null, 'needs /proc/PID/status');
    assert.ok(mem.peak < PEAK_LIMIT, `the daemon's peak RSS reached ${mem.peak} bytes: it read the file`);
    const s = await runCliWithin(['status', '--socket', d.socketPath], DEADLINE_MS);
    assert.equal(s.code, 0, s.stderr);
  } finally {
    rmSync(config);
    renameSync(good, config);
  }
  // The real file reloads again.
  const ok = await runCliWithin(['reload', '--socket', d.socketPath], DEADLINE_MS);
  assert.equal(ok.code, 0, ok.stderr);
});

test('a FIFO as the KEK passphrase file is refused at start', async () => {
  const dir = tmp();
  const pass = fifo(join(dir, 'kek.pass'));
  const file = join(dir, 'cryptod.yaml');
  writeFileSync(file, `kek: { passphraseFile: ${pass} }\n`);
  const r = await serveWithConfig(file);
  assert.equal(r.timedOut, false, `serve waited on the FIFO until killed: ${r.stderr}`);
  assert.equal(r.code, 1, r.stderr);
  assert.ok(r.stderr.includes(`kek.passphraseFile ${pass} is not a regular file (a FIFO)`), r.stderr);
});

test('a FIFO as the CRL and an oversize certificate are refused before reading', () => {
  const dir = tmp();
  const files = { certFile: join(dir, 'cert.pem'), keyFile: join(dir, 'key.pem'), clientCaFile: join(dir, 'ca.pem') };
  for (const f of Object.values(files)) writeFileSync(f, '-----BEGIN X-----\n-----END X-----\n', { mode: 0o600 });
  const crlFile = fifo(join(dir, 'crl.pem'));
  assert.throws(
    () => loadTlsMaterial({ url: 'tcp://127.0.0.1:0', ...files, crlFile }),
    (err: unknown) => err instanceof ConfigError && err.message.includes(`--tls-crl ${crlFile} is not a regular file (a FIFO)`) && err.detail?.field === '--tls-crl',
  );
  sparse(files.certFile, HUGE);
  assert.throws(
    () => loadTlsMaterial({ url: 'tcp://127.0.0.1:0', ...files }),
    (err: unknown) => err instanceof ConfigError && err.message.includes(`--tls-cert ${files.certFile} is ${HUGE} bytes`),
  );
});

test('files given to the CLI: a FIFO or an oversize --in, a FIFO --material-file are refused before reading', async () => {
  const dir = tmp();
  const pipe = fifo(join(dir, 'in'));
  const r = await runCliWithin(['encrypt', '--key', 'orders', '--in', pipe, '--socket', d.socketPath], DEADLINE_MS);
  assert.equal(r.timedOut, false, 'encrypt waited on the FIFO until killed');
  assert.equal(r.code, 1, r.stderr);
  assert.ok(r.stderr.includes(`the input file ${pipe} is not a regular file (a FIFO); give a regular file, or - to read standard input`), r.stderr);

  const big = sparse(join(dir, 'big'), 65 * 1024 * 1024);
  const b = await runCliWithin(['encrypt', '--key', 'orders', '--in', big, '--socket', d.socketPath], DEADLINE_MS);
  assert.equal(b.code, 1, b.stderr);
  assert.ok(b.stderr.includes(`the input file ${big} is ${65 * 1024 * 1024} bytes; it may have at most ${64 * 1024 * 1024}`), b.stderr);

  const k = await runCliWithin(['key', 'import', 'imported', '--type', 'aes256-gcm', '--material-file', pipe, '--socket', d.socketPath], DEADLINE_MS);
  assert.equal(k.timedOut, false, 'key import waited on the FIFO until killed');
  assert.equal(k.code, 1, k.stderr);
  assert.ok(k.stderr.includes(`--material-file ${pipe} is not a regular file (a FIFO)`), k.stderr);
});

test('standard input larger than the largest request is cut off as it passes the limit, not read to the end', async () => {
  // /dev/zero never ends: before the bound, the CLI read it until memory ran out.
  const zero = openSync('/dev/zero', 'r');
  try {
    const r = await runCliWithin(['encrypt', '--key', 'orders', '--socket', d.socketPath], DEADLINE_MS, zero);
    assert.equal(r.timedOut, false, 'encrypt kept reading standard input until killed');
    assert.equal(r.code, 1, r.stderr);
    assert.ok(r.stderr.includes(`standard input is larger than ${64 * 1024 * 1024} bytes`), r.stderr);
  } finally {
    closeSync(zero);
  }
});
