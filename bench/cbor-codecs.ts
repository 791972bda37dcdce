/**
 * The hand-written CBOR codec (src/protocol/cbor.ts) against cbor-x and
 * cborg on the shapes the hot path carries: an HMAC SIGN request (64 B),
 * an AES-GCM ENCRYPT request (1 KiB), a 32-byte reply, a CONTEXT_UPDATE of
 * 256 KiB. Decode and encode, interleaved rounds (median of ≥5, spread).
 * Returns a markdown section for docs/benchmarks.md; also runnable alone:
 *
 *   node --import tsx bench/cbor-codecs.ts
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Encoder as CborXEncoder, decode as cborXDecode } from 'cbor-x';
import { decode as cborgDecode, encode as cborgEncode } from 'cborg';
import { decode, encode, type CborValue } from '../src/protocol/cbor.js';
import { ROUNDS, spread, type Spread } from './interleave.js';

const shapes: Array<{ name: string; value: { [k: string]: CborValue } | Uint8Array }> = [
  { name: 'HMAC SIGN request, 64 B', value: { algorithm: { name: 'HMAC' }, key: 'AAAAAAAAAAAAAAAAAAAAAA', data: randomBytes(64) } },
  { name: 'AES-GCM ENCRYPT request, 1 KiB', value: { algorithm: { name: 'AES-GCM', iv: randomBytes(12) }, key: 'AAAAAAAAAAAAAAAAAAAAAA', data: randomBytes(1024) } },
  { name: 'reply: 32 B byte string', value: randomBytes(32) },
  { name: 'CONTEXT_UPDATE request, 256 KiB', value: { handle: 'AAAAAAAAAAAAAAAAAAAAAA', data: randomBytes(256 * 1024) } },
];

// cbor-x: plain maps (not Map), no records or structured clone extensions, so its output is standard CBOR.
const cborX = new CborXEncoder({ mapsAsObjects: true, useRecords: false, structuredClone: false, tagUint8Array: false });

interface Codec {
  name: string;
  encode(v: unknown): Uint8Array;
  decode(b: Buffer): unknown;
}
const codecs: Codec[] = [
  { name: 'cryptod (src/protocol/cbor.ts)', encode: (v) => encode(v as CborValue), decode: (b) => decode(b, 0, b.length, 'boxed') },
  { name: 'cbor-x', encode: (v) => cborX.encode(v), decode: (b) => cborXDecode(b) },
  { name: 'cborg', encode: (v) => cborgEncode(v), decode: (b) => cborgDecode(b) },
];

function rate(fn: () => unknown, ms: number): number {
  const end = process.hrtime.bigint() + BigInt(ms * 1e6);
  let n = 0;
  const t0 = process.hrtime.bigint();
  let t = t0;
  while (t < end) {
    for (let i = 0; i < 100; i++) fn();
    n += 100;
    t = process.hrtime.bigint();
  }
  return n / (Number(t - t0) / 1e9);
}

export function cborSection(ms = 200): string {
  const lines = [
    '## CBOR codecs on the hot path\'s shapes',
    '',
    `bench/cbor-codecs.ts: operations per second of each codec in this process, ${ROUNDS} interleaved rounds of ${ms} ms per cell (median, slowest–fastest round in brackets). Every codec decodes the same bytes (encoded by cryptod's codec, which the others read back identically). The daemon keeps its own codec unless another is faster while staying as strict: it rejects tags, duplicate keys, non-text keys, nesting deeper than its limit, trailing bytes and lengths beyond the payload, which cbor-x and cborg do not all do by default.`,
    '',
    `| shape | ${codecs.map((c) => `${c.name} decode`).join(' | ')} | ${codecs.map((c) => `${c.name} encode`).join(' | ')} |`,
    `|---|${codecs.map(() => '---:').join('|')}|${codecs.map(() => '---:').join('|')}|`,
  ];
  for (const shape of shapes) {
    const bytes = Buffer.from(encode(shape.value));
    for (const c of codecs) {
      // Same value back from every codec (byte strings compared as bytes).
      const back = c.decode(bytes);
      if (Buffer.compare(Buffer.from(encode(normalize(back))), bytes) !== 0) throw new Error(`${c.name} decodes ${shape.name} differently`);
    }
    const dec: number[][] = codecs.map(() => []);
    const enc: number[][] = codecs.map(() => []);
    for (let r = 0; r < ROUNDS; r++) {
      codecs.forEach((c, i) => {
        dec[i]!.push(rate(() => c.decode(bytes), ms));
        enc[i]!.push(rate(() => c.encode(shape.value), ms));
      });
    }
    const f = (s: Spread): string => `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})`;
    lines.push(`| ${shape.name} | ${dec.map((d) => f(spread(d))).join(' | ')} | ${enc.map((e) => f(spread(e))).join(' | ')} |`);
  }
  return lines.join('\n');
}

function fmt(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : `${Math.round(n / 1000)} k`;
}

/** Back to cryptod's value model: plain objects, Buffers. */
function normalize(v: unknown): CborValue {
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  if (v instanceof Map) return Object.fromEntries([...v].map(([k, x]) => [String(k), normalize(x)]));
  if (Array.isArray(v)) return v.map(normalize);
  if (v !== null && typeof v === 'object' && !(v as object).constructor?.name.includes('Float')) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normalize(x)]));
  }
  return v as CborValue;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(cborSection());
