/**
 * The error registry and docs/errors.md stay in step: every registered code
 * is documented with its class, every documented code exists, and the client
 * rebuilds each code as its own class.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import * as errors from '../src/protocol/errors.js';
import { CryptodError, errorCodes, errorFromWire } from '../src/protocol/errors.js';

interface DocRow {
  code: string;
  className: string;
  when: string;
  todo: string;
}

/** The rows of the code table: `| \`CODE\` | \`Class\` | when | what to do |`. */
function documentedRows(): DocRow[] {
  const text = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
  const rows: DocRow[] = [];
  for (const line of text.split('\n')) {
    if (!/^\|\s*`CRYPTOD_ERR_/.test(line)) continue;
    const cells = line
      .replace(/^\|/, '')
      .replace(/\|\s*$/, '')
      .split(/(?<!\\)\|/)
      .map((c) => c.trim());
    assert.equal(cells.length, 4, `docs/errors.md row has ${cells.length} cells, expected 4: ${line.slice(0, 80)}`);
    const [code, className, when, todo] = cells as [string, string, string, string];
    rows.push({ code: code.replace(/`/g, ''), className: className.replace(/`/g, ''), when, todo });
  }
  return rows;
}

/** Every exported error class, by the code it carries. */
function classesByCode(): Map<string, { name: string; cls: new (message?: string) => CryptodError }> {
  const out = new Map<string, { name: string; cls: new (message?: string) => CryptodError }>();
  for (const [name, value] of Object.entries(errors)) {
    if (typeof value !== 'function' || !(value.prototype instanceof CryptodError)) continue;
    const code = (value as unknown as { code?: unknown }).code;
    if (typeof code === 'string') out.set(code, { name, cls: value as new (message?: string) => CryptodError });
  }
  return out;
}

test('docs/errors.md documents every registered code, and nothing else', () => {
  const documented = documentedRows().map((r) => r.code);
  const registered = errorCodes();
  assert.ok(registered.length >= 20, `expected the registry to hold the error codes, got ${registered.length}`);
  const missing = registered.filter((c) => !documented.includes(c));
  const unknown = documented.filter((c) => !registered.includes(c));
  assert.deepEqual(missing, [], `codes missing from docs/errors.md: ${missing.join(', ')}`);
  assert.deepEqual(unknown, [], `docs/errors.md documents codes that do not exist: ${unknown.join(', ')}`);
  const dupes = documented.filter((c, i) => documented.indexOf(c) !== i);
  assert.deepEqual(dupes, [], `codes documented twice: ${dupes.join(', ')}`);
});

test('each documented row names the exported class of its code and says when and what to do', () => {
  const classes = classesByCode();
  for (const row of documentedRows()) {
    const entry = classes.get(row.code);
    assert.ok(entry !== undefined, `no exported class carries ${row.code}`);
    assert.equal(row.className, entry.name, `${row.code} is documented as ${row.className}, exported as ${entry.name}`);
    assert.equal(entry.cls.name, entry.name, `${entry.name}.name must be the class name`);
    assert.ok(row.when.length >= 20, `${row.code}: the "when it happens" cell is too short`);
    assert.ok(row.todo.length >= 20, `${row.code}: the "what the client should do" cell is too short`);
  }
});

test('every registered code has exactly one exported class', () => {
  const classes = classesByCode();
  for (const code of errorCodes()) assert.ok(classes.has(code), `${code} has no exported class`);
  assert.equal(classes.size, errorCodes().length);
});

test('errorFromWire rebuilds the right class for every code', () => {
  const classes = classesByCode();
  for (const code of errorCodes()) {
    const { cls, name } = classes.get(code)!;
    const err = errorFromWire(code, `message for ${code}`, { field: 'x', n: 1 });
    assert.ok(err instanceof cls, `${code} was rebuilt as ${err.constructor.name}, expected ${name}`);
    assert.ok(err instanceof CryptodError);
    assert.ok(err instanceof Error);
    assert.equal(err.code, code);
    assert.equal(err.name, name);
    assert.equal(err.message, `message for ${code}`);
    assert.deepEqual(err.detail, { field: 'x', n: 1 });
    // No other class claims it.
    for (const [other, o] of classes) if (other !== code) assert.ok(!(err instanceof o.cls), `${code} is also an instance of ${o.name}`);
  }
});

test('errorFromWire keeps an unknown code and its message', () => {
  const err = errorFromWire('CRYPTOD_ERR_FROM_THE_FUTURE', 'a newer daemon said this', { hint: 'upgrade' });
  assert.ok(err instanceof CryptodError);
  assert.equal(err.constructor, CryptodError);
  assert.equal(err.code, 'CRYPTOD_ERR_FROM_THE_FUTURE');
  assert.equal(err.message, 'a newer daemon said this');
  assert.deepEqual(err.detail, { hint: 'upgrade' });
});

test('errorFromWire tolerates a malformed error payload', () => {
  const noCode = errorFromWire(42, undefined, [1, 2]);
  assert.equal(noCode.code, 'CRYPTOD_ERR_INTERNAL');
  assert.equal(noCode.message, 'error without message');
  assert.equal(noCode.detail, undefined);
  // Detail values must be scalars; a nested map is dropped rather than trusted.
  const nested = errorFromWire('CRYPTOD_ERR_BUSY', 'busy', { inner: { x: 1 } });
  assert.ok(nested instanceof errors.BusyError);
  assert.equal(nested.detail, undefined);
});
