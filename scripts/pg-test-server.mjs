#!/usr/bin/env node
// A throwaway PostgreSQL server for the tests: initdb in a temporary
// directory, a free port on 127.0.0.1, password authentication (scram) with a
// random password — so the tests also check that the password is redacted.
//
//   node scripts/pg-test-server.mjs start        prints `export CRYPTOD_TEST_PG_URL=…` and `export CRYPTOD_TEST_PG_DIR=…`
//   node scripts/pg-test-server.mjs stop DIR     stops it and removes DIR
//
// As root, initdb/pg_ctl/postgres run as the `postgres` user (PostgreSQL
// refuses to run as root). test/helpers/postgres.ts uses the same functions.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** The directory holding initdb, or null when PostgreSQL is not installed. */
export function findPgBin() {
  for (const dir of [process.env.CRYPTOD_PG_BIN, ...(process.env.PATH ?? '').split(':'), '/usr/lib/postgresql/15/bin']) {
    if (dir && fs.existsSync(path.join(dir, 'initdb')) && fs.existsSync(path.join(dir, 'pg_ctl'))) return dir;
  }
  return null;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function asPostgres(bin, args, options = {}) {
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const runuser = ['/usr/sbin/runuser', '/sbin/runuser', '/usr/bin/runuser'].find((p) => fs.existsSync(p)) ?? 'runuser';
  const [cmd, argv] = isRoot ? [runuser, ['-u', 'postgres', '--', bin, ...args]] : [bin, args];
  const r = spawnSync(cmd, argv, { encoding: 'utf8', ...options });
  if (r.status !== 0) throw new Error(`${path.basename(bin)} failed (${r.error?.message ?? `exit ${r.status}`}): ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** Start a server; returns { url, dir, port, password }. */
export async function startServer() {
  const bin = findPgBin();
  if (bin === null) throw new Error('PostgreSQL binaries (initdb, pg_ctl) not found');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cryptod-pg-'));
  try {
    return await startIn(bin, dir);
  } catch (err) {
    stopServer(dir); // nothing left behind by a server that did not start
    throw err;
  }
}

async function startIn(bin, dir) {
  const data = path.join(dir, 'data');
  const password = randomBytes(12).toString('hex');
  const pwfile = path.join(dir, 'pw');
  fs.writeFileSync(pwfile, password + '\n', { mode: 0o600 });
  if (process.getuid?.() === 0) {
    execFileSync('chown', ['-R', 'postgres:', dir]);
  }
  asPostgres(path.join(bin, 'initdb'), ['-D', data, '-U', 'cryptod', '--auth=scram-sha-256', `--pwfile=${pwfile}`, '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync']);
  fs.rmSync(pwfile);
  const port = await freePort();
  // In the configuration file, not on pg_ctl's command line, so a restart
  // (pgCtl 'start', the outage tests) comes back on the same port.
  // fsync off: a throwaway server; the tests stop and restart it, they never pull the power.
  fs.appendFileSync(path.join(data, 'postgresql.conf'), [
    '', '# cryptod test server', `port = ${port}`, `unix_socket_directories = '${dir}'`, "listen_addresses = '127.0.0.1'",
    'fsync = off', 'max_connections = 200', '',
  ].join('\n'));
  asPostgres(path.join(bin, 'pg_ctl'), ['-D', data, '-l', path.join(dir, 'log'), '-w', '-t', '60', 'start']);
  return { url: `postgres://cryptod:${password}@127.0.0.1:${port}/postgres`, dir, port, password };
}

/** Stop the server in `dir` (immediate: a throwaway) and remove the directory. */
export function stopServer(dir) {
  const bin = findPgBin();
  if (bin !== null && fs.existsSync(path.join(dir, 'data'))) {
    try { asPostgres(path.join(bin, 'pg_ctl'), ['-D', path.join(dir, 'data'), '-m', 'immediate', '-w', 'stop']); } catch { /* already stopped */ }
  }
  fs.rmSync(dir, { recursive: true, force: true });
}

/** pg_ctl stop/start on an existing server (outage tests). */
export function pgCtl(dir, action) {
  const bin = findPgBin();
  const args = ['-D', path.join(dir, 'data'), '-w', '-t', '60'];
  if (action === 'stop') asPostgres(path.join(bin, 'pg_ctl'), [...args, '-m', 'fast', 'stop']);
  else asPostgres(path.join(bin, 'pg_ctl'), [...args, '-l', path.join(dir, 'log'), 'start']);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [cmd, arg] = process.argv.slice(2);
  if (cmd === 'start') {
    const s = await startServer();
    process.stdout.write(`export CRYPTOD_TEST_PG_URL='${s.url}'\nexport CRYPTOD_TEST_PG_DIR='${s.dir}'\n`);
  } else if (cmd === 'stop' && arg) {
    stopServer(arg);
  } else {
    process.stderr.write('usage: pg-test-server.mjs start | stop DIR\n');
    process.exit(2);
  }
}
