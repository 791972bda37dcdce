/**
 * The schema kit (src/protocol/schema.ts) against random values: a checker
 * accepts exactly the values a plain reference predicate accepts, returns
 * them unchanged, and names the offending field in detail.field.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { CborFloat, decode, encode } from '../src/protocol/cbor.js';
import { InvalidArgumentError } from '../src/protocol/errors.js';
import { array, bytes, handle, map, nullable, oneOf, optional, text, uint } from '../src/protocol/schema.js';

const item = map({ data: bytes(), aad: optional(bytes()) });
const schema = map({ name: text(), n: optional(uint(1, 10)), items: array(item), when: oneOf(text(), uint()), h: nullable(handle()) });

const isBytes = (v: unknown): boolean => v instanceof Uint8Array;
const isMap = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v) && !isBytes(v) && !(v instanceof CborFloat);
const onlyKeys = (v: Record<string, unknown>, keys: string[]): boolean => Object.keys(v).every((k) => keys.includes(k) || v[k] === undefined);
const isInt = (v: unknown): boolean => typeof v === 'number' && Number.isInteger(v);

/** The reference: what docs/protocol.md says the declaration accepts, written without the kit. */
function reference(v: unknown): boolean {
  if (!isMap(v) || !onlyKeys(v, ['name', 'n', 'items', 'when', 'h'])) return false;
  if (typeof v.name !== 'string') return false;
  if (v.n !== undefined && !(isInt(v.n) && (v.n as number) >= 1 && (v.n as number) <= 10)) return false;
  if (!Array.isArray(v.items) || !v.items.every((i) => isMap(i) && onlyKeys(i, ['data', 'aad']) && isBytes(i.data) && (i.aad === undefined || isBytes(i.aad)))) return false;
  if (!(typeof v.when === 'string' || (isInt(v.when) && (v.when as number) >= 0))) return false;
  return v.h === null || (typeof v.h === 'string' && /^[A-Za-z0-9_-]{22}$/.test(v.h));
}

const leaf = fc.oneof(
  fc.string({ maxLength: 4 }),
  fc.integer({ min: -3, max: 12 }),
  fc.double({ noNaN: true }).map((d) => new CborFloat(d)),
  fc.uint8Array({ maxLength: 3 }).map((b) => Buffer.from(b)),
  fc.boolean(),
  fc.constant(null),
  fc.constant(undefined),
  fc.constant('AAAAAAAAAAAAAAAAAAAAAA'),
);
const itemArb = fc.oneof(
  fc.record({ data: fc.uint8Array({ maxLength: 3 }).map((b) => Buffer.from(b)), aad: fc.option(fc.uint8Array().map((b) => Buffer.from(b)), { nil: undefined }) }, { requiredKeys: ['data'] }),
  fc.dictionary(fc.constantFrom('data', 'aad', 'x'), leaf),
  leaf,
);
const value = fc.oneof(
  fc.record(
    { name: fc.oneof(fc.string({ maxLength: 3 }), leaf), n: leaf, items: fc.oneof(fc.array(itemArb, { maxLength: 3 }), leaf), when: leaf, h: leaf, extra: leaf },
    { requiredKeys: [] },
  ),
  leaf,
);

test('accepted exactly when the reference accepts; the value comes back unchanged', () => {
  fc.assert(
    fc.property(value, (v) => {
      let ok = true;
      let out: unknown;
      try {
        out = schema.parse(v);
      } catch (err) {
        assert.ok(err instanceof InvalidArgumentError, String(err));
        ok = false;
      }
      assert.equal(ok, reference(v), `value ${JSON.stringify(v, (_k, x: unknown) => (x instanceof Uint8Array ? `bytes(${x.length})` : x))}`);
      if (ok) assert.equal(out, v);
    }),
    { numRuns: 3000 },
  );
});

test('an error names the field, with its path, and never the value', () => {
  const good = { name: 'k', items: [{ data: Buffer.alloc(1) }, { data: Buffer.alloc(1) }], when: 1, h: null };
  fc.assert(
    fc.property(fc.nat(1), fc.constantFrom('aad', 'data', 'zz'), fc.string({ minLength: 8, maxLength: 12 }), (i, field, secret) => {
      const items = good.items.map((x) => ({ ...x }));
      (items[i] as Record<string, unknown>)[field] = secret;
      const err = (() => {
        try {
          schema.parse({ ...good, items });
        } catch (e) {
          return e as InstanceType<typeof InvalidArgumentError>;
        }
        return null;
      })();
      assert.ok(err instanceof InvalidArgumentError);
      assert.equal(err.detail?.field, `items[${i}].${field}`);
      assert.ok(!err.message.includes(secret), err.message);
    }),
  );
});

test('a whole-number float from the wire is not an integer', () => {
  const n = map({ n: uint() });
  const fromWire = decode(Buffer.concat([Buffer.from([0xa1, 0x61, 0x6e, 0xfb]), Buffer.from(new Float64Array([1]).buffer).reverse()]), 0, undefined, 'boxed');
  assert.throws(() => n.parse(fromWire), (e: unknown) => e instanceof InvalidArgumentError && e.detail?.field === 'n' && /floating-point/.test(e.message));
  assert.equal(n.parse(decode(encode({ n: 1 }), 0, undefined, 'boxed')).n, 1);
  // The client's decoder keeps plain numbers (replies carry floats in error details).
  assert.deepEqual(decode(encode(new CborFloat(1))), 1);
});

test('no arguments: nothing or an empty map; anything else is refused', async () => {
  const { none } = await import('../src/protocol/schema.js');
  const s = none();
  assert.equal(s.parse(undefined), undefined);
  assert.deepEqual(s.parse({}), {});
  for (const bad of [[1], 'x', 0, null, Buffer.alloc(0)]) assert.throws(() => s.parse(bad), InvalidArgumentError);
  assert.throws(() => s.parse({ a: 1 }), (e: unknown) => e instanceof InvalidArgumentError && e.detail?.field === 'a');
});
