/**
 * Every limit declared in src/config/limits.ts is documented where operators
 * and client authors look: README "Limits" (its flag and its `limits:` key)
 * and docs/protocol.md §8 (its flag, and its HELLO name when HELLO reports
 * it). A limit added to the table without docs fails here. The reverse
 * holds for §8: a flag it names must be declared.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { LIMITS, LIMIT_NAMES, type LimitDeclaration } from '../src/config/limits.js';
import { errorCodes } from '../src/protocol/errors.js';

const root = new URL('..', import.meta.url);
const readme = readFileSync(new URL('README.md', root), 'utf8');
const protocol = readFileSync(new URL('docs/protocol.md', root), 'utf8');
const errorsDoc = readFileSync(new URL('docs/errors.md', root), 'utf8');

/** The text from `heading` to the next heading of the same level. */
function section(doc: string, heading: string): string {
  const start = doc.indexOf(`\n${heading}\n`);
  assert.ok(start >= 0, `no section ${heading}`);
  const level = heading.split(' ')[0]!;
  const next = doc.indexOf(`\n${level} `, start + heading.length + 2);
  return doc.slice(start, next < 0 ? undefined : next);
}

const readmeLimits = section(readme, '## Limits');
const protocolLimits = section(protocol, '## 8. Limits');

/** What `table` leaves undocumented, one line per omission. */
function missingDocs(table: Readonly<Record<string, LimitDeclaration>>): string[] {
  const missing: string[] = [];
  for (const [name, d] of Object.entries(table)) {
    if (!readmeLimits.includes(`\`--${d.flag}\``)) missing.push(`README "Limits" does not name --${d.flag}`);
    if (!readmeLimits.includes(`\`${name}\``)) missing.push(`README "Limits" does not name the limits: key ${name}`);
    if (!protocolLimits.includes(`--${d.flag}`)) missing.push(`docs/protocol.md §8 does not name --${d.flag}`);
    if (d.hello && !new RegExp(`\\| ${name} —`).test(protocolLimits)) missing.push(`docs/protocol.md §8 has no row for the HELLO name ${name}`);
  }
  return missing;
}

test('every declared limit is in README "Limits" and docs/protocol.md §8', () => {
  assert.deepEqual(missingDocs(LIMITS), []);
});

test('a limit declared without docs is reported', () => {
  const undocumented: LimitDeclaration = { default: 1, min: 1, max: 2, flag: 'max-widgets', unit: 'N', hello: true, doc: 'widgets', error: null };
  assert.deepEqual(missingDocs({ ...LIMITS, maxWidgets: undocumented }), [
    'README "Limits" does not name --max-widgets',
    'README "Limits" does not name the limits: key maxWidgets',
    'docs/protocol.md §8 does not name --max-widgets',
    'docs/protocol.md §8 has no row for the HELLO name maxWidgets',
  ]);
});

test('every flag protocol §8 names is declared, and README "Configuration" has a row for each', () => {
  const declared = new Set<string>(LIMIT_NAMES.map((n) => LIMITS[n].flag));
  // README "Limits" also lists limits of other commands (files given to `encrypt --in`), so only §8 is checked this way.
  for (const [, flag] of protocolLimits.matchAll(/`--([a-z][a-z-]*)/g)) assert.ok(declared.has(flag!), `docs/protocol.md §8 names --${flag}, which no limit declares`);
  // The flag table of README "Configuration" documents every limit flag too.
  const configuration = section(readme, '## Configuration');
  for (const flag of declared) assert.ok(configuration.includes(`| \`--${flag} `), `README "Configuration" has no row for --${flag}`);
});

test("each limit's error code exists and is documented", () => {
  for (const name of LIMIT_NAMES) {
    const code: string | null = LIMITS[name].error;
    if (code === null) continue;
    assert.ok(errorCodes().includes(code), `${name}: ${code} is not a registered error code`);
    assert.ok(errorsDoc.includes(code), `${name}: ${code} is not in docs/errors.md`);
    assert.ok(readmeLimits.includes(code), `README "Limits" does not say ${name} fails with ${code}`);
  }
});
