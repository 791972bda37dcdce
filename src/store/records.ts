/**
 * Validation of keystore records at the edge, shared by every backend so that
 * SQLite and PostgreSQL refuse exactly the same inputs with the same messages.
 * Messages name the field and what was expected; they never quote key material.
 */
import { InvalidArgumentError } from '../protocol/errors.js';
import { KEY_VERSION_STATES, type KeyVersionRecord, type KeyVersionState, type ManagedKeyRecord } from './keystore.js';

/** Names are identifiers, not payloads: a generous bound keeps indexes and AADs small. */
export const MAX_NAME_BYTES = 256;
export const MAX_META_VALUE_BYTES = 64 * 1024;
export const MAX_WRAPPED_BYTES = 64 * 1024;
export const MAX_POLICY_BYTES = 64 * 1024;

// A lone surrogate encodes to U+FFFD in UTF-8, so two different JS strings
// would map to one stored name (and one AAD). Refuse them.
const LONE_SURROGATE = /\p{Cs}/u;
// NUL and other C0 controls in identifiers only cause trouble in logs and tools.
const CONTROL = /[\u0000-\u001f\u007f]/;

export function assertName(what: string, name: unknown): asserts name is string {
  if (typeof name !== 'string') throw new InvalidArgumentError(`expected ${what} to be a string, got ${typeof name}`);
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes === 0 || bytes > MAX_NAME_BYTES) {
    throw new InvalidArgumentError(`expected ${what} of 1..${MAX_NAME_BYTES} UTF-8 bytes, got ${bytes}`);
  }
  if (LONE_SURROGATE.test(name)) throw new InvalidArgumentError(`expected ${what} to be well-formed Unicode (it has a lone surrogate)`);
  if (CONTROL.test(name)) throw new InvalidArgumentError(`expected ${what} without control characters`);
}

export function assertKeyName(name: unknown): asserts name is string {
  assertName('a key name', name);
}

export function assertVersion(version: unknown): asserts version is number {
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 1 || version > 0xffff_ffff) {
    throw new InvalidArgumentError(`expected a key version as an integer in 1..4294967295, got ${describe(version)}`);
  }
}

export function assertState(state: unknown): asserts state is KeyVersionState {
  if (!KEY_VERSION_STATES.includes(state as KeyVersionState)) {
    throw new InvalidArgumentError(`expected a version state (${KEY_VERSION_STATES.join(', ')}), got ${describe(state)}`);
  }
}

export function assertTime(what: string, t: unknown): asserts t is number {
  if (typeof t !== 'number' || !Number.isSafeInteger(t) || t < 0) {
    throw new InvalidArgumentError(`expected ${what} as epoch milliseconds (a non-negative integer), got ${describe(t)}`);
  }
}

export function assertCount(what: string, n: unknown, min: number): asserts n is number {
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min) {
    throw new InvalidArgumentError(`expected ${what} as an integer >= ${min}, got ${describe(n)}`);
  }
}

export function assertMetaKey(key: unknown): asserts key is string {
  assertName('a meta key', key);
}

export function assertMetaValue(value: unknown): asserts value is string {
  if (typeof value !== 'string') throw new InvalidArgumentError(`expected a meta value to be a string, got ${typeof value}`);
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes > MAX_META_VALUE_BYTES) throw new InvalidArgumentError(`expected a meta value of at most ${MAX_META_VALUE_BYTES} bytes, got ${bytes}`);
  if (LONE_SURROGATE.test(value)) throw new InvalidArgumentError('expected a meta value to be well-formed Unicode');
  // PostgreSQL text cannot hold NUL; refusing it on every backend keeps them interchangeable.
  if (value.includes('\u0000')) throw new InvalidArgumentError('expected a meta value without NUL characters');
}

/** Checks a key record and returns its policy encoded as JSON. */
export function validateKeyRecord(r: ManagedKeyRecord): string {
  if (r === null || typeof r !== 'object') throw new InvalidArgumentError('expected a key record object');
  assertKeyName(r.name);
  assertName('a key type', r.type);
  assertTime('createdAt', r.createdAt);
  assertTime('updatedAt', r.updatedAt);
  if (typeof r.disabled !== 'boolean') throw new InvalidArgumentError(`expected disabled to be a boolean, got ${typeof r.disabled}`);
  return encodePolicy(r.policy);
}

export function validateVersionRecord(r: KeyVersionRecord): void {
  if (r === null || typeof r !== 'object') throw new InvalidArgumentError('expected a key version record object');
  assertKeyName(r.name);
  assertVersion(r.version);
  assertState(r.state);
  assertTime('createdAt', r.createdAt);
  assertTime('notBefore', r.notBefore);
  if (r.notAfter !== null) {
    assertTime('notAfter', r.notAfter);
    if (r.notAfter < r.notBefore) {
      throw new InvalidArgumentError(`expected notAfter >= notBefore, got ${r.notAfter} < ${r.notBefore}`);
    }
  }
  assertName('a KEK id', r.kekId);
  assertCount('encryptions', r.encryptions, 0);
  if (r.state === 'destroyed') {
    if (r.wrapped !== null) throw new InvalidArgumentError('expected wrapped = null for a destroyed version');
  } else {
    if (!(r.wrapped instanceof Uint8Array)) {
      throw new InvalidArgumentError(`expected wrapped material (bytes) for a ${r.state} version, got ${describe(r.wrapped)}`);
    }
    if (r.wrapped.length === 0 || r.wrapped.length > MAX_WRAPPED_BYTES) {
      throw new InvalidArgumentError(`expected 1..${MAX_WRAPPED_BYTES} bytes of wrapped material, got ${r.wrapped.length}`);
    }
  }
}

/** JSON-encode a policy, refusing anything that would not survive the round trip. */
export function encodePolicy(policy: unknown): string {
  if (policy === null || typeof policy !== 'object' || Array.isArray(policy)) {
    throw new InvalidArgumentError(`expected policy to be a plain object, got ${describe(policy)}`);
  }
  let json: string;
  try {
    json = JSON.stringify(policy);
  } catch (cause) {
    throw new InvalidArgumentError('expected policy to be JSON-serializable', { cause });
  }
  // undefined members, functions, NaN, Dates… are silently altered by
  // JSON.stringify; comparing the re-encoding catches them.
  if (!sameJson(policy, JSON.parse(json))) {
    throw new InvalidArgumentError('expected policy to survive a JSON round trip (no undefined, functions, NaN, Dates, class instances)');
  }
  const bytes = Buffer.byteLength(json, 'utf8');
  if (bytes > MAX_POLICY_BYTES) throw new InvalidArgumentError(`expected policy of at most ${MAX_POLICY_BYTES} JSON bytes, got ${bytes}`);
  return json;
}

export function decodePolicy(json: string): Record<string, unknown> {
  return JSON.parse(json) as Record<string, unknown>;
}

function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a === 'number' || typeof a !== 'object' || a === null || typeof b !== 'object' || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const proto = Object.getPrototypeOf(a);
  if (!Array.isArray(a) && proto !== Object.prototype && proto !== null) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => sameJson((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'number') return String(v);
  if (v instanceof Uint8Array) return `${v.length} bytes`;
  return typeof v;
}
