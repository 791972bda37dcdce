/**
 * The DER reader (src/protocol/der.ts): element lengths in every form, the
 * serials of a CRL built here by hand, and — over random and mutated
 * input — a DerError or an answer, never another exception or a read past
 * the end.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { DER, DerError, crlSerials, derChildren, derElement, pemBlocks } from '../src/protocol/der.js';

/** A DER element: tag, definite length in the shortest form, contents. */
function tlv(tag: number, ...contents: Uint8Array[]): Buffer {
  const body = Buffer.concat(contents);
  const n = body.length;
  const len = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : n < 0x10000 ? [0x82, n >> 8, n & 0xff] : [0x83, n >> 16, (n >> 8) & 0xff, n & 0xff];
  return Buffer.concat([Buffer.from([tag, ...len]), body]);
}

const time = tlv(DER.UTC_TIME, Buffer.from('261129000000Z'));
const algId = tlv(DER.SEQUENCE, tlv(0x06, Buffer.from([0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02])));
const issuer = tlv(DER.SEQUENCE);

function crl(serials: Buffer[], opts: { version?: boolean; nextUpdate?: boolean } = {}): Buffer {
  const entries = serials.map((s) => tlv(DER.SEQUENCE, tlv(DER.INTEGER, s), time));
  const tbs = tlv(
    DER.SEQUENCE,
    ...(opts.version === false ? [] : [tlv(DER.INTEGER, Buffer.from([1]))]),
    algId,
    issuer,
    time,
    ...(opts.nextUpdate === false ? [] : [time]),
    ...(serials.length === 0 ? [] : [tlv(DER.SEQUENCE, ...entries)]),
  );
  return tlv(DER.SEQUENCE, tbs, algId, tlv(DER.BIT_STRING, Buffer.from([0, 1, 2, 3])));
}

test('lengths: short, one-byte and two-byte long forms; children in order', () => {
  for (const n of [0, 5, 127, 128, 255, 256, 1000]) {
    const e = tlv(DER.SEQUENCE, Buffer.alloc(n, 1));
    const el = derElement(e, 0, DER.SEQUENCE);
    assert.equal(el.end - el.start, n);
    assert.equal(el.end, e.length);
  }
  const parent = tlv(DER.SEQUENCE, tlv(DER.INTEGER, Buffer.from([7])), tlv(DER.BIT_STRING, Buffer.from([0])));
  assert.deepEqual(derChildren(parent, derElement(parent, 0)).map((c) => c.tag), [DER.INTEGER, DER.BIT_STRING]);
  assert.throws(() => derElement(Buffer.from([0x30, 0x05, 0x00]), 0), DerError);
  assert.throws(() => derElement(Buffer.from([0x30, 0x80]), 0), DerError, 'indefinite length is not DER');
  assert.throws(() => derElement(Buffer.from([0x02, 0x01, 0x00]), 0, DER.SEQUENCE), /expected tag 0x30/);
});

test('crlSerials: with and without version and nextUpdate, leading zero bytes dropped, none revoked', () => {
  const serials = [Buffer.from([0x01]), Buffer.from([0x00, 0x9a, 0xbc]), Buffer.from('0123456789abcdef', 'hex')];
  for (const version of [true, false]) {
    for (const nextUpdate of [true, false]) {
      assert.deepEqual(crlSerials(crl(serials, { version, nextUpdate })), ['01', '9ABC', '0123456789ABCDEF']);
    }
  }
  assert.deepEqual(crlSerials(crl([])), []);
  assert.throws(() => crlSerials(tlv(DER.SEQUENCE, tlv(DER.SEQUENCE, algId, issuer))), /not a CRL/);
});

test('pemBlocks finds every block of its label', () => {
  const a = crl([Buffer.from([5])]);
  const text = `junk\n-----BEGIN X509 CRL-----\n${a.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END X509 CRL-----\n-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n`;
  assert.deepEqual(pemBlocks(text, 'X509 CRL'), [a]);
  assert.deepEqual(pemBlocks('nothing', 'X509 CRL'), []);
});

test('random and mutated input: an answer or a DerError, nothing else', () => {
  const valid = crl([Buffer.from([1, 2]), Buffer.from([3])]);
  const tryParse = (b: Uint8Array): void => {
    try {
      const out = crlSerials(b);
      assert.ok(out.every((s) => /^[0-9A-F]+$/.test(s)));
    } catch (err) {
      if (!(err instanceof DerError)) throw err;
    }
  };
  fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (b) => tryParse(b)), { numRuns: 5000 });
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), fc.nat(valid.length), (edits, cut) => {
      const b = Buffer.from(valid);
      for (const [i, v] of edits) b[i] = v;
      tryParse(b.subarray(0, cut));
      tryParse(b);
    }),
    { numRuns: 5000 },
  );
});
