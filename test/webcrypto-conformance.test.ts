/**
 * Differential conformance: the same call to Node's `crypto.subtle` and to
 * `client.subtle` (a real daemon on a real socket) must give the same
 * outcome — the same result (bytes, JWK, key description, verify answer), or
 * the same error name of the same kind (DOMException or TypeError). Cases are
 * generated from tables (test/webcrypto/cases.ts): every algorithm cryptod
 * supports × every method × each class of bad input.
 *
 * Randomized signatures (ECDSA, RSA-PSS with a salt) cannot match byte for
 * byte: each side must verify the other's. Set CRYPTOD_CONFORMANCE_REPORT=1
 * to print every mismatch rather than the first few.
 */
import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import { after, before, test } from 'node:test';
import type { Client } from '../src/client/client.js';
import { startTestDaemon, type TestDaemon } from './helpers/daemon.js';
import { allCases, type Case } from './webcrypto/cases.js';
import { importFixtures, type AnySubtle, type Keys } from './webcrypto/fixtures.js';
import { DEVIATIONS, type Deviation, type Side } from './webcrypto/node-deviations.js';

let t: TestDaemon;
let c: Client;
const nodeSubtle = webcrypto.subtle as unknown as AnySubtle;
let ours: AnySubtle;
let nodeKeys: Keys;
let ourKeys: Keys;

before(async () => {
  t = await startTestDaemon({ limits: { maxNodesPerClient: 1_000_000 } } as never);
  c = await t.connect('conformance');
  ours = c.subtle as unknown as AnySubtle;
  nodeKeys = await importFixtures(nodeSubtle);
  ourKeys = await importFixtures(ours);
});
after(async () => {
  await c.close();
  await t.stop();
});

const hex = (b: ArrayBuffer): string => Buffer.from(b).toString('hex');

/** A result as text both sides can be compared by. */
function summary(v: unknown, randomized: boolean): unknown {
  if (v instanceof ArrayBuffer) return randomized ? `signature of ${v.byteLength} bytes` : `bytes ${hex(v)}`;
  if (Array.isArray(v)) return v.map((x) => summary(x, randomized));
  if (v !== null && typeof v === 'object') {
    if ('type' in v && 'algorithm' in v && 'usages' in v) {
      const k = v as { type: string; extractable: boolean; algorithm: object; usages: string[] };
      return { type: k.type, extractable: k.extractable, algorithm: plain(k.algorithm), usages: [...k.usages].sort(), tag: Object.prototype.toString.call(v) };
    }
    if ('privateKey' in v && 'publicKey' in v) {
      const p = v as { privateKey: unknown; publicKey: unknown };
      return { privateKey: summary(p.privateKey, randomized), publicKey: summary(p.publicKey, randomized) };
    }
    return plain(v);
  }
  return v;
}

/** Objects with sorted keys and bytes as hex, so JSON compares what matters. */
function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return `bytes ${Buffer.from(v).toString('hex')}`;
  if (Array.isArray(v)) return [...v].map(plain).sort();
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.keys(v).sort().map((k) => [k, plain((v as Record<string, unknown>)[k])]));
  return v;
}

type Outcome = { ok: true; value: unknown; raw: unknown } | { ok: false; error: string; message: string; field?: string };

async function outcome(p: () => Promise<unknown>, randomized: boolean, decode?: (v: ArrayBuffer) => unknown): Promise<Outcome> {
  try {
    const raw = await p();
    return { ok: true, value: decode !== undefined && raw instanceof ArrayBuffer ? plain(decode(raw)) : summary(raw, randomized), raw };
  } catch (err) {
    const e = err as Error;
    const kind = err instanceof DOMException ? 'DOMException' : err instanceof TypeError ? 'TypeError' : `not a DOMException (${e?.constructor?.name})`;
    const field = (err as { detail?: { field?: unknown } }).detail?.field;
    return { ok: false, error: `${e?.name} (${kind})`, message: String(e?.message).slice(0, 160), ...(typeof field === 'string' ? { field } : {}) };
  }
}

async function releaseAll(v: unknown): Promise<void> {
  if (Array.isArray(v)) for (const x of v) await releaseAll(x);
  else if (v !== null && typeof v === 'object') {
    if ('release' in v && typeof v.release === 'function') await (v as { release(): Promise<void> }).release();
    else if ('privateKey' in v && 'publicKey' in v) await releaseAll([v.privateKey, v.publicKey]);
  }
}

const side = (o: Outcome): Side => (o.ok ? { ok: true, error: '', message: '' } : { ok: false, error: o.error, message: o.message, ...(o.field === undefined ? {} : { field: o.field }) });

/** null: the same outcome; a Deviation: a documented Node departure from the spec; text: a mismatch. */
async function runCase(cs: Case): Promise<string | Deviation | null> {
  const randomized = cs.verifyWith !== undefined;
  const theirs = await outcome(() => cs.run(nodeSubtle, nodeKeys), randomized, cs.decode);
  const mine = await outcome(() => cs.run(ours, ourKeys), randomized, cs.decode);
  try {
    const a = theirs.ok ? { ok: true, value: theirs.value } : { ok: false, error: theirs.error };
    const b = mine.ok ? { ok: true, value: mine.value } : { ok: false, error: mine.error };
    if (JSON.stringify(a) !== JSON.stringify(b)) {
      const known = DEVIATIONS.find((d) => d.matches(cs.op, cs.id, side(theirs), side(mine)));
      if (known !== undefined) return known;
      return `${cs.id}\n    node:    ${JSON.stringify(a).slice(0, 300)}${theirs.ok ? '' : ` — ${theirs.message}`}\n    cryptod: ${JSON.stringify(b).slice(0, 300)}${mine.ok ? '' : ` — ${mine.message}`}`;
    }
    if (randomized && theirs.ok && mine.ok) {
      // Each implementation accepts the other's signature.
      const x = await outcome(() => cs.verifyWith!(ours, ourKeys, theirs.raw as ArrayBuffer), false);
      const y = await outcome(() => cs.verifyWith!(nodeSubtle, nodeKeys, mine.raw as ArrayBuffer), false);
      if (!(x.ok && x.value === true && y.ok && y.value === true)) return `${cs.id}\n    cross-verify: cryptod accepts Node's ${JSON.stringify(x)}, Node accepts cryptod's ${JSON.stringify(y)}`;
    }
    return null;
  } finally {
    if (mine.ok) await releaseAll(mine.raw);
  }
}

test('client.subtle and crypto.subtle give the same outcome for every generated case', async () => {
  const cases = allCases();
  const byOp = new Map<string, { total: number; same: number; spec: number }>();
  const byDeviation = new Map<Deviation, number>(DEVIATIONS.map((d) => [d, 0]));
  const mismatches: string[] = [];
  for (const cs of cases) {
    const diff = await runCase(cs);
    const s = byOp.get(cs.op) ?? { total: 0, same: 0, spec: 0 };
    s.total += 1;
    if (diff === null) s.same += 1;
    else if (typeof diff === 'string') mismatches.push(diff);
    else {
      s.spec += 1;
      byDeviation.set(diff, byDeviation.get(diff)! + 1);
    }
    byOp.set(cs.op, s);
  }
  const same = [...byOp.values()].reduce((n, s) => n + s.same, 0);
  const table = [...byOp].map(([op, s]) => `  ${op.padEnd(12)} ${s.same} same, ${s.spec} spec over Node, of ${s.total}`).join('\n');
  const devs = [...byDeviation].map(([d, n]) => `  ${String(n).padStart(5)}  ${d.name}`).join('\n');
  console.log(
    `webcrypto conformance: ${same} of ${cases.length} cases agree with Node's crypto.subtle, ` +
      `${cases.length - same - mismatches.length} follow the spec where Node 20 does not, ${mismatches.length} differ\n${table}\n${devs}`,
  );
  const shown = process.env.CRYPTOD_CONFORMANCE_REPORT === '1' ? mismatches : mismatches.slice(0, 40);
  assert.ok(cases.length >= 5000, `expected thousands of cases, generated ${cases.length}`);
  assert.equal(mismatches.length, 0, `${mismatches.length} cases differ:\n${shown.join('\n')}`);
  // Every documented deviation still happens (a stale rule could hide a regression).
  for (const [d, n] of byDeviation) assert.ok(n > 0, `deviation rule '${d.name}' matched no case: remove it`);
  // The connection survived every bad call.
  assert.equal(await c.ping('alive'), 'alive');
});
