/**
 * Edge validation of request arguments: small assert helpers whose errors say
 * what was expected and what arrived ("expected 'iv' to be a byte string, got
 * text"). Never echo argument values: they may be secrets.
 */
import { CborFloat, type CborValue } from '../protocol/cbor.js';
import { InvalidArgumentError } from '../protocol/errors.js';
import { isNodeIdShape, type DataNodeId } from '../state/ids.js';

export type Args = { readonly [key: string]: CborValue };

export function kindOf(v: CborValue): string {
  if (v === null) return 'null';
  if (v === undefined) return 'nothing';
  if (v instanceof Uint8Array) return `a ${v.length}-byte byte string`;
  if (Array.isArray(v)) return 'an array';
  if (v instanceof CborFloat) return 'a floating-point number';
  switch (typeof v) {
    case 'string':
      return 'text';
    case 'number':
      return Number.isInteger(v) ? 'an integer' : 'a number';
    case 'boolean':
      return 'a boolean';
    default:
      return 'a map';
  }
}

function bad(field: string, expected: string, got: CborValue): never {
  throw new InvalidArgumentError(`expected '${field}' to be ${expected}, got ${kindOf(got)}`, { detail: { field, expected } });
}

export function asArgs(v: CborValue, what = 'the request arguments'): Args {
  if (v === null || typeof v !== 'object' || v instanceof Uint8Array || Array.isArray(v) || v instanceof CborFloat) {
    throw new InvalidArgumentError(`expected ${what} to be a map, got ${kindOf(v)}`);
  }
  return v;
}

export function str(a: Args, field: string): string {
  const v = a[field];
  if (typeof v !== 'string') bad(field, 'text', v);
  return v;
}

export function optStr(a: Args, field: string): string | undefined {
  const v = a[field];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') bad(field, 'text', v);
  return v;
}

export function bytes(a: Args, field: string): Buffer {
  const v = a[field];
  if (!(v instanceof Uint8Array)) bad(field, 'a byte string', v);
  return v as Buffer;
}

export function optBytes(a: Args, field: string): Buffer | undefined {
  const v = a[field];
  if (v === undefined) return undefined;
  if (!(v instanceof Uint8Array)) bad(field, 'a byte string', v);
  return v as Buffer;
}

export function int(a: Args, field: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const v = a[field];
  if (typeof v !== 'number' || !Number.isInteger(v)) bad(field, 'an integer', v);
  if (v < min || v > max) {
    throw new InvalidArgumentError(`expected '${field}' to be an integer from ${min} to ${max}, got ${v}`, { detail: { field, min, max } });
  }
  return v;
}

export function optInt(a: Args, field: string, min = 0, max = Number.MAX_SAFE_INTEGER): number | undefined {
  return a[field] === undefined ? undefined : int(a, field, min, max);
}

export function bool(a: Args, field: string, fallback: boolean): boolean {
  const v = a[field];
  if (v === undefined) return fallback;
  if (typeof v !== 'boolean') bad(field, 'a boolean', v);
  return v;
}

export function map(a: Args, field: string): Args {
  const v = a[field];
  if (v === undefined) bad(field, 'a map', v);
  return asArgs(v, `'${field}'`);
}

export function strList(a: Args, field: string): string[] {
  const v = a[field];
  if (!Array.isArray(v)) bad(field, 'an array of text', v);
  for (const item of v) if (typeof item !== 'string') bad(`${field}[]`, 'text', item);
  return v as string[];
}

export function nodeId(a: Args, field: string): DataNodeId {
  const v = a[field];
  if (typeof v !== 'string') bad(field, 'a handle (22-character text)', v);
  if (!isNodeIdShape(v)) throw new InvalidArgumentError(`expected '${field}' to be a handle (22 base64url characters)`, { detail: { field } });
  return v;
}

/** Copy wire bytes into memory the daemon owns and zero the frame's view. */
export function takeSecret(view: Uint8Array): Buffer {
  const out = Buffer.alloc(view.length);
  out.set(view);
  view.fill(0);
  return out;
}
