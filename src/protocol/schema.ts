/**
 * A small schema kit for message payloads: each operation's arguments (and
 * the replies the client reads) are declared once in src/protocol/messages/,
 * the client builds values of the declared type and the daemon checks what
 * arrives against the same declaration.
 *
 *   declaration ──compile once──▶ checker closures ──per request──▶ the same object, typed
 *
 * A checker is a straight line of `typeof` tests over the value it is given
 * and returns that value itself (no copy), so checking an ENCRYPT request
 * costs a few comparisons. Paths such as `items[3].aad` are only joined when
 * an error is thrown.
 *
 * Strict by default (docs/protocol.md §6.1): a map refuses fields it does not
 * declare, with `detail.field` naming the field; floats never pass where an
 * integer is required (the daemon decodes floats as {@link CborFloat}).
 * Messages say what was expected and what kind of value arrived, never the
 * value: arguments may be secrets.
 */
import { CborFloat, type CborValue } from './cbor.js';
import { InvalidArgumentError } from './errors.js';

/** Checks `v`, found at `key` under the path `parent`, and returns it typed. */
type Check<T> = (v: unknown, parent: string, key: string | number) => T;

export interface Schema<T, I = T, O extends boolean = false> {
  /** What a value must be, as a phrase: "a byte string", "an integer from 1 to 65535". */
  readonly expected: string;
  /** Whether a value has this schema's CBOR kind (map, text, …): how {@link oneOf} picks a branch. */
  readonly is: (v: unknown) => boolean;
  readonly check: Check<T>;
  /** The field may be absent. */
  readonly optional: O;
  /** Check a whole payload; `what` names it in messages. */
  parse(v: unknown, what?: string): T;
  /** Phantom: the type a client builds (a Uint8Array where the daemon reads a Buffer). */
  readonly _in?: I;
}

export type AnySchema = Schema<unknown, unknown, boolean>;
/** The type a checked value has. */
export type Out<S> = S extends Schema<infer T, unknown, boolean> ? T : never;
/** The type a sender builds. */
export type In<S> = S extends Schema<unknown, infer I, boolean> ? I : never;

/** Opaque handle of a key or context (the daemon's DataNodeId has the same brand). */
export type Handle = string & { readonly __brand: 'DataNodeId' };

/** The kind of a value, for messages: "text", "a 16-byte byte string"… Never the value. */
export function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'nothing';
  if (v instanceof Uint8Array) return `a ${v.length}-byte byte string`;
  if (Array.isArray(v)) return 'an array';
  if (v instanceof CborFloat) return 'a floating-point number';
  switch (typeof v) {
    case 'string':
      return 'text';
    case 'number':
      return Number.isInteger(v) ? 'an integer' : 'a floating-point number';
    case 'boolean':
      return 'a boolean';
    case 'object':
      return 'a map';
    default:
      return `a ${typeof v}`;
  }
}

export function pathOf(parent: string, key: string | number): string {
  if (typeof key === 'number') return `${parent}[${key}]`;
  if (key === '') return parent;
  return parent === '' ? key : `${parent}.${key}`;
}

/** Throw INVALID_ARGUMENT for the value at `parent`/`key`. */
export function invalid(parent: string, key: string | number, expected: string, v: unknown, what = 'the request arguments', extra: Record<string, number | string> = {}): never {
  const field = pathOf(parent, key);
  const where = field === '' ? what : `'${field}'`;
  throw new InvalidArgumentError(`expected ${where} to be ${expected}, got ${kindOf(v)}`, {
    detail: field === '' ? { expected, ...extra } : { field, expected, ...extra },
  });
}

/** The label a top-level check names its value with; set by parse() for the duration of one synchronous check. */
let label = 'the request arguments';

function make<T, I = T>(expected: string, is: (v: unknown) => boolean, check: Check<T>): Schema<T, I> {
  return {
    expected,
    is,
    check,
    optional: false,
    parse(v: unknown, what = 'the request arguments'): T {
      label = what;
      try {
        return check(v, '', '');
      } finally {
        label = 'the request arguments';
      }
    },
  };
}

function fail(parent: string, key: string | number, expected: string, v: unknown, extra?: Record<string, number | string>): never {
  return invalid(parent, key, expected, v, label, extra);
}

const isText = (v: unknown): boolean => typeof v === 'string';
const isBytes = (v: unknown): boolean => v instanceof Uint8Array;
const isInt = (v: unknown): boolean => typeof v === 'number';
const isBool = (v: unknown): boolean => typeof v === 'boolean';
const isArray = (v: unknown): boolean => Array.isArray(v);
function isMap(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array) && !(v instanceof CborFloat);
}

export function text(opts: { maxLength?: number; pattern?: RegExp; expected?: string } = {}): Schema<string> {
  const { maxLength = Infinity, pattern } = opts;
  const expected = opts.expected ?? 'text';
  return make(expected, isText, (v, p, k) => {
    if (typeof v !== 'string') return fail(p, k, expected, v);
    if (v.length > maxLength || (pattern !== undefined && !pattern.test(v))) return fail(p, k, expected, v);
    return v;
  });
}

/** Text that is one of `values`: the type is their union. */
export function literal<const V extends readonly string[]>(values: V): Schema<V[number]> {
  const set = new Set<string>(values);
  const expected = values.map((x) => `'${x}'`).join(values.length === 2 ? ' or ' : ', ');
  return make(expected, isText, (v, p, k) => {
    if (typeof v !== 'string') return fail(p, k, expected, v);
    if (!set.has(v)) throw new InvalidArgumentError(`expected '${pathOf(p, k)}' to be ${expected}, got other text`, { detail: { field: pathOf(p, k), expected } });
    return v as V[number];
  });
}

/** A byte string. The daemon decodes byte strings as Buffer views of the frame; a client sends any Uint8Array. */
export function bytes(opts: { min?: number; max?: number } = {}): Schema<Buffer, Uint8Array> {
  const { min = 0, max = Infinity } = opts;
  const expected = min === 0 && max === Infinity ? 'a byte string' : max === Infinity ? `a byte string of at least ${min} bytes` : `a byte string of ${min} to ${max} bytes`;
  return make<Buffer, Uint8Array>(expected, isBytes, (v, p, k) => {
    if (!(v instanceof Uint8Array) || v.length < min || v.length > max) return fail(p, k, expected, v);
    // A decoded byte string is a Buffer view; a Uint8Array from elsewhere is viewed as one without a copy.
    return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  });
}

/** An integer (never a float, even a whole one) from `min` to `max`. */
export function uint(min = 0, max = Number.MAX_SAFE_INTEGER): Schema<number> {
  const expected = min === 0 && max === Number.MAX_SAFE_INTEGER ? 'a non-negative integer' : `an integer from ${min} to ${max}`;
  return make(expected, isInt, (v, p, k) => {
    if (typeof v !== 'number' || !Number.isInteger(v)) return fail(p, k, expected, v);
    if (v < min || v > max) {
      const field = pathOf(p, k);
      throw new InvalidArgumentError(`expected '${field}' to be ${expected}, got an integer outside that range`, { detail: { field, min, max } });
    }
    return v;
  });
}

export function bool(): Schema<boolean> {
  return make('a boolean', isBool, (v, p, k) => (typeof v === 'boolean' ? v : fail(p, k, 'a boolean', v)));
}

const HANDLE = /^[A-Za-z0-9_-]{22}$/;

/** A key or context handle: 22 base64url characters (16 bytes). */
export function handle(): Schema<Handle, string> {
  const expected = 'a handle (22 base64url characters)';
  return make<Handle, string>(expected, isText, (v, p, k) => (typeof v === 'string' && HANDLE.test(v) ? (v as Handle) : fail(p, k, expected, v)));
}

/** Any value of the CBOR subset (PING's payload, the members of a JWK): checked to be encodable, not interpreted. */
export function cbor(): Schema<CborValue> {
  const check = (v: unknown, p: string, k: string | number, depth: number): CborValue => {
    if (v === null || v === undefined || typeof v === 'string' || typeof v === 'boolean' || typeof v === 'number') return v;
    if (v instanceof Uint8Array || v instanceof CborFloat) return v;
    if (depth > 16) return fail(p, k, 'a value nested at most 16 levels', v);
    if (Array.isArray(v)) {
      const path = pathOf(p, k);
      for (let i = 0; i < v.length; i++) check(v[i], path, i, depth + 1);
      return v as CborValue[];
    }
    if (isMap(v)) {
      const path = pathOf(p, k);
      for (const key in v) check(v[key], path, key, depth + 1);
      return v as { [key: string]: CborValue };
    }
    return fail(p, k, 'a CBOR value', v);
  };
  return make('a CBOR value', () => true, (v, p, k) => check(v, p, k, 1));
}

export function optional<T, I>(s: Schema<T, I, boolean>): Schema<T | undefined, I | undefined, true> {
  const inner = s.check;
  return { ...s, optional: true, check: (v, p, k) => (v === undefined ? undefined : inner(v, p, k)) } as Schema<T | undefined, I | undefined, true>;
}

export function nullable<T, I>(s: Schema<T, I>): Schema<T | null, I | null> {
  const inner = s.check;
  const expected = `${s.expected} or null`;
  return make<T | null, I | null>(expected, (v) => v === null || s.is(v), (v, p, k) => (v === null ? null : v === undefined ? fail(p, k, expected, v) : inner(v, p, k)));
}

export type Fields = Record<string, AnySchema>;
type OptKeys<F extends Fields> = { [K in keyof F]: F[K]['optional'] extends true ? K : never }[keyof F];
type ReqKeys<F extends Fields> = Exclude<keyof F, OptKeys<F>>;
type Flat<T> = { [K in keyof T]: T[K] };
export type MapOut<F extends Fields> = Flat<{ [K in ReqKeys<F>]: Out<F[K]> } & { [K in OptKeys<F>]?: Out<F[K]> }>;
export type MapIn<F extends Fields> = Flat<{ [K in ReqKeys<F>]: In<F[K]> } & { [K in OptKeys<F>]?: In<F[K]> }>;

/**
 * A map with the declared fields. Strict unless `open` (replies: a newer
 * daemon may add fields): an undeclared field is INVALID_ARGUMENT naming it.
 * A field whose value is `undefined` counts as absent (docs/protocol.md §3).
 */
export function map<F extends Fields>(fields: F, opts: { open?: boolean } = {}): Schema<MapOut<F>, MapIn<F>> {
  const names = Object.keys(fields);
  const checks = names.map((n) => fields[n]!.check);
  const known: Record<string, boolean> = Object.create(null) as Record<string, boolean>;
  for (const n of names) known[n] = true;
  const strict = opts.open !== true;
  return make<MapOut<F>, MapIn<F>>('a map', isMap, (v, p, k) => {
    if (!isMap(v)) return fail(p, k, 'a map', v);
    const path = pathOf(p, k);
    for (let i = 0; i < names.length; i++) checks[i]!(v[names[i]!], path, names[i]!);
    if (strict) {
      // Object.keys, not for…in: own keys only, and cheaper.
      const present = Object.keys(v);
      for (let i = 0; i < present.length; i++) {
        const f = present[i]!;
        if (known[f] !== true && v[f] !== undefined) {
          const field = pathOf(path, f.length > 64 ? `${f.slice(0, 64)}…` : f);
          throw new InvalidArgumentError(`unexpected field '${field}'; ${path === '' ? 'the operation takes' : `'${path}' takes`} ${names.length === 0 ? 'no fields' : names.join(', ')}`, {
            detail: { field, expected: 'no such field' },
          });
        }
      }
    }
    return v as MapOut<F>;
  });
}

/** A map from any text key to values of one schema (a policy's `clients`, a JWK's members). */
export function record<T, I>(value: Schema<T, I, boolean>): Schema<{ [key: string]: T }, { [key: string]: I }> {
  const inner = value.check;
  return make<{ [key: string]: T }, { [key: string]: I }>('a map', isMap, (v, p, k) => {
    if (!isMap(v)) return fail(p, k, 'a map', v);
    const path = pathOf(p, k);
    for (const f in v) inner(v[f], path, f);
    return v as { [key: string]: T };
  });
}

export function array<T, I>(item: Schema<T, I, boolean>, opts: { max?: number } = {}): Schema<T[], I[]> {
  const inner = item.check;
  const max = opts.max ?? Infinity;
  const expected = item.expected === 'text' ? 'an array of text' : item.expected === 'a map' ? 'an array of maps' : `an array (each ${item.expected})`;
  return make<T[], I[]>(expected, isArray, (v, p, k) => {
    if (!Array.isArray(v)) return fail(p, k, expected, v);
    if (v.length > max) {
      const field = pathOf(p, k);
      throw new InvalidArgumentError(`expected '${field}' to hold at most ${max} items, got ${v.length}`, { detail: { field, max } });
    }
    const path = pathOf(p, k);
    for (let i = 0; i < v.length; i++) inner(v[i], path, i);
    return v as T[];
  });
}

/** One of several schemas of different CBOR kinds (text or map, text or integer): the kind picks the branch. */
export function oneOf<S extends readonly Schema<unknown, unknown>[]>(...options: S): Schema<Out<S[number]>, In<S[number]>> {
  const expected = options.map((o) => o.expected).join(' or ');
  const is = options.map((o) => o.is);
  const checks = options.map((o) => o.check);
  return make<Out<S[number]>, In<S[number]>>(expected, (v) => is.some((f) => f(v)), (v, p, k) => {
    for (let i = 0; i < is.length; i++) if (is[i]!(v)) return checks[i]!(v, p, k) as Out<S[number]>;
    return fail(p, k, expected, v);
  });
}

/** Two map shapes told apart by `pick` (a single item or a batch): the checked value is the union. */
export function either<A, AI, B, BI>(pick: (v: Record<string, unknown>) => boolean, a: Schema<A, AI>, b: Schema<B, BI>): Schema<A | B, AI | BI> {
  return make<A | B, AI | BI>('a map', isMap, (v, p, k) => {
    if (!isMap(v)) return fail(p, k, 'a map', v);
    return pick(v) ? a.check(v, p, k) : b.check(v, p, k);
  });
}

/** No arguments: an empty payload or an empty map. */
export function none(): Schema<Record<string, never> | undefined, Record<string, never> | undefined> {
  const empty = map({});
  return make<Record<string, never> | undefined, Record<string, never> | undefined>('nothing or an empty map', (v) => v === undefined || isMap(v), (v, p, k) =>
    v === undefined ? undefined : (empty.check(v, p, k) as Record<string, never>),
  );
}

/** A value that is plain data of the CBOR subset, as the daemon's own results are (status, reload summaries, errors). */
export const asCbor: (v: unknown, what?: string) => CborValue = (() => {
  const s = cbor();
  return (v: unknown, what?: string) => s.parse(v, what);
})();
