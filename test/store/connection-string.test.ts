/**
 * Where the PostgreSQL keystore is (--store, store: in the YAML): a URL, an
 * environment variable or a file; the password redacted everywhere it is
 * shown, and never quoted in an error.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ConfigFileError, parseConfigText } from '../../src/config/load.js';
import { ConfigError } from '../../src/protocol/errors.js';
import { redactUrl, resolveStoreUrl } from '../../src/store/postgres/connection-string.js';
import { makeTempDir } from './tmpdir.js';

const SECRET = 's3cr3t-Pa55';
const URL_ = `postgres://cryptod:${SECRET}@db.example:5433/keys?sslmode=require`;

test('redactUrl keeps user, host, port, database and options, never the password', () => {
  assert.equal(redactUrl(URL_), 'postgres://cryptod:***@db.example:5433/keys?sslmode=require');
  assert.equal(redactUrl(`postgres://u@h/db?password=${SECRET}`), 'postgres://u@h/db?password=***');
  assert.equal(redactUrl('postgres://h/db'), 'postgres://h/db');
  assert.equal(redactUrl('not a url ' + SECRET), 'postgres://(unparseable URL)');
});

test('resolveStoreUrl: the URL itself, env:NAME and file:PATH; errors name the source, never the content', async () => {
  assert.deepEqual(resolveStoreUrl(URL_), { url: URL_, redacted: 'postgres://cryptod:***@db.example:5433/keys?sslmode=require' });
  assert.equal(resolveStoreUrl('env:CD_PG', { CD_PG: ` ${URL_}\n` }).url, URL_);
  const tmp = makeTempDir();
  try {
    const file = path.join(tmp.path, 'url');
    writeFileSync(file, `${URL_}\nsecond line ignored\n`, { mode: 0o600 });
    assert.equal(resolveStoreUrl(`file:${file}`).url, URL_);
    writeFileSync(file, `mysql://root:${SECRET}@h/db\n`);
    assert.throws(() => resolveStoreUrl(`file:${file}`), (e: unknown) => e instanceof ConfigError && /is a mysql URL/.test(e.message) && !e.message.includes(SECRET));
    assert.throws(() => resolveStoreUrl(`file:${path.join(tmp.path, 'missing')}`), (e: unknown) => e instanceof ConfigError && /ENOENT/.test(e.message));
  } finally {
    await tmp.cleanup();
  }
  assert.throws(() => resolveStoreUrl('env:CD_PG_UNSET', {}), /\$CD_PG_UNSET, which is not set/);
  assert.throws(() => resolveStoreUrl('env:bad-name', {}), /env:NAME with an environment variable name/);
  assert.throws(() => resolveStoreUrl('env:CD_PG', { CD_PG: `${SECRET} not a url` }), (e: unknown) => e instanceof ConfigError && !e.message.includes(SECRET));
});

test('store: in the configuration file: checked, a relative file: path taken from the file\'s directory, a bad value not quoted', () => {
  assert.equal(parseConfigText(`store: ${URL_}\n`, '/etc/cryptod/c.yaml').config.store, URL_);
  assert.equal(parseConfigText('store: env:CRYPTOD_STORE_URL\n', '/etc/cryptod/c.yaml').config.store, 'env:CRYPTOD_STORE_URL');
  assert.equal(parseConfigText('store: file:pg-url\n', '/etc/cryptod/c.yaml').config.store, 'file:/etc/cryptod/pg-url');
  assert.throws(() => parseConfigText(`store: mysql://root:${SECRET}@h/db\n`, '/etc/cryptod/c.yaml'), (e: unknown) =>
    e instanceof ConfigFileError && /c\.yaml:1:\d+: store: expected postgres:\/\//.test(e.message) && !e.message.includes(SECRET));
  assert.throws(() => parseConfigText('store: 42\n', '/etc/cryptod/c.yaml'), /store: expected postgres/);
});
