/**
 * The WebIDL conversions SubtleCrypto's arguments go through before any of
 * its steps run (WebIDL §3.2 "JavaScript type mapping"): `extractable: "RED"`
 * is `true`, usages are any iterable of strings, a BufferSource is an
 * ArrayBuffer or a view on one, an integer member with [EnforceRange] refuses
 * NaN, infinities and out-of-range values. Every failure is a TypeError, as in
 * WebIDL; nothing here talks to the daemon.
 */
import { fail } from './errors.js';
import { KEY_USAGES, type KeyUsage } from './rules.js';

/** SubtleCrypto's methods refuse a call with too few arguments (WebIDL overload resolution). */
export function requireArgs(method: string, args: IArguments | unknown[] | { readonly length: number }, required: number): void {
  if (args.length < required) {
    fail.type(`Failed to execute '${method}' on 'SubtleCrypto': ${required} arguments required, but only ${args.length} present`, {
      expected: required,
      actual: args.length,
    });
  }
}

/** ECMAScript ToBoolean: every value converts. */
export function toBoolean(v: unknown): boolean {
  return Boolean(v);
}

/** WebIDL DOMString: ToString, which refuses only Symbols. */
export function toDOMString(v: unknown, what: string): string {
  if (typeof v === 'symbol') fail.type(`${what} cannot be converted to a string`, { field: what });
  return String(v);
}

/** A WebIDL enumeration value. */
export function toEnum<T extends string>(v: unknown, values: readonly T[], what: string, type: string): T {
  const s = toDOMString(v, what);
  if (!(values as readonly string[]).includes(s)) {
    fail.type(`${what} '${s.slice(0, 32)}' is not a valid enum value of type ${type}; expected one of ${values.join(', ')}`, { field: what });
  }
  return s as T;
}

/** A WebIDL sequence<T>: an object with an iterator; each item converted in turn. */
export function toSequence<T>(v: unknown, what: string, item: (x: unknown, at: string) => T): T[] {
  const iter = v !== null && (typeof v === 'object' || typeof v === 'function') ? (v as { [Symbol.iterator]?: unknown })[Symbol.iterator] : undefined;
  if (typeof iter !== 'function') fail.type(`${what} cannot be converted to a sequence: expected an array or another iterable`, { field: what });
  const out: T[] = [];
  let i = 0;
  for (const x of v as Iterable<unknown>) out.push(item(x, `${what}[${i++}]`));
  return out;
}

/**
 * A WebIDL BufferSource, copied at once (WebCrypto: "get a copy of the bytes
 * held by" the argument, so a caller changing its buffer afterwards changes
 * nothing).
 */
export function toBufferSource(v: unknown, what: string): Uint8Array {
  if (v instanceof ArrayBuffer) return new Uint8Array(v.slice(0));
  if (ArrayBuffer.isView(v)) {
    const n = v.byteLength;
    // A new array and a set cost less than ArrayBuffer#slice (a runtime call per argument); a detached buffer (length 0) still goes through slice, which refuses it.
    if (n === 0) return new Uint8Array(v.buffer.slice(v.byteOffset, v.byteOffset));
    const out = new Uint8Array(n);
    out.set(v instanceof Uint8Array ? v : new Uint8Array(v.buffer, v.byteOffset, n));
    return out;
  }
  return fail.type(`${what} is not an ArrayBuffer, a TypedArray or a DataView`, { field: what });
}

export type IntegerType = 'octet' | 'unsigned short' | 'unsigned long';
const BITS: Record<IntegerType, number> = { octet: 8, 'unsigned short': 16, 'unsigned long': 32 };

/** A WebIDL unsigned integer: with [EnforceRange] a TypeError outside the type's range, without it modulo 2^bits. */
export function toUnsigned(v: unknown, type: IntegerType, what: string, enforceRange: boolean): number {
  if (typeof v === 'symbol' || typeof v === 'bigint') fail.type(`${what} cannot be converted to a number`, { field: what });
  const n = Number(v);
  const max = 2 ** BITS[type] - 1;
  if (enforceRange) {
    if (!Number.isFinite(n)) fail.type(`${what} is not a finite number; expected an integer from 0 to ${max}`, { field: what, min: 0, max });
    const t = Math.trunc(n);
    if (t < 0 || t > max) fail.type(`${what} is outside the range of ${type}: expected an integer from 0 to ${max}, got ${t}`, { field: what, min: 0, max });
    return t === 0 ? 0 : t;
  }
  if (!Number.isFinite(n)) return 0;
  const t = Math.trunc(n) % 2 ** BITS[type];
  return t < 0 ? t + 2 ** BITS[type] : t === 0 ? 0 : t;
}

/** A WebIDL dictionary source: undefined and null are the empty dictionary; other non-objects are refused. */
export function dictionarySource(v: unknown, what: string): Record<string, unknown> {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' && typeof v !== 'function') fail.type(`${what} cannot be converted to a dictionary: expected an object`, { field: what });
  return v as Record<string, unknown>;
}

/** AlgorithmIdentifier is (object or DOMString). */
export function idlAlgorithm(v: unknown, what: string): unknown {
  return v !== null && (typeof v === 'object' || typeof v === 'function') ? v : toDOMString(v, what);
}

/** sequence<KeyUsage>: an unknown usage is a TypeError (an enumeration), before any algorithm's rules. */
export function idlUsages(v: unknown, what: string): KeyUsage[] {
  return toSequence(v, what, (x, at) => toEnum(x, KEY_USAGES, at, 'KeyUsage'));
}

/** (BufferSource or JsonWebKey): bytes are copied; null, undefined and other objects are a JWK dictionary. */
export function idlKeyData(v: unknown): Uint8Array | Record<string, unknown> {
  if (v instanceof ArrayBuffer || ArrayBuffer.isView(v)) return toBufferSource(v, 'keyData');
  if (v === undefined || v === null) return {};
  if (typeof v === 'object' || typeof v === 'function') return v as Record<string, unknown>;
  return fail.type('keyData is neither a BufferSource nor a JsonWebKey object', { field: 'keyData' });
}
