/**
 * The CBOR subset (src/protocol/cbor.ts): round trips (fast-check), the
 * RFC 8949 Appendix A examples that fall inside the subset, every rejection
 * the codec promises, and a fuzz that nothing but BadFrameError escapes.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { CborFloat, MAX_DEPTH, decode, encode, type CborValue } from '../src/protocol/cbor.js';
import { BadFrameError } from '../src/protocol/errors.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** A comparable form: byte strings as tagged hex, maps as ordered entry lists, numbers via Object.is. */
function canon(v: CborValue): unknown {
  if (v instanceof Uint8Array) return { bytes: Buffer.from(v).toString('hex') };
  if (Array.isArray(v)) return { array: v.map(canon) };
  if (v instanceof CborFloat) return { float: String(v.value) };
  if (v !== null && typeof v === 'object') return { map: Object.keys(v).map((k) => [k, canon(v[k]!)]) };
  if (typeof v === 'number') return { number: Object.is(v, -0) ? '-0' : String(v) };
  return v;
}

function assertSame(actual: CborValue, expected: CborValue): void {
  assert.deepStrictEqual(canon(actual), canon(expected));
}

function rejects(bytes: Buffer, pattern?: RegExp): void {
  assert.throws(
    () => decode(bytes),
    (e: unknown) => {
      assert.ok(e instanceof BadFrameError, `expected BadFrameError for ${bytes.toString('hex')}, got ${String(e)}`);
      assert.equal(e.code, 'CRYPTOD_ERR_BAD_FRAME');
      if (pattern !== undefined) assert.match(e.message, pattern);
      return true;
    },
  );
}

// ── arbitraries ──────────────────────────────────────────────────────────

const text = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.string({ unit: 'grapheme' }));
const scalar: fc.Arbitrary<CborValue> = fc.oneof(
  fc.maxSafeInteger(),
  fc.integer({ min: -30, max: 30 }),
  fc.constantFrom(23, 24, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER),
  fc.double(),
  text,
  fc.uint8Array({ maxLength: 300 }),
  fc.constantFrom(null, true, false, undefined),
);
const { value: cborValue } = fc.letrec<{ value: CborValue }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', maxDepth: 6 },
    scalar,
    fc.array(tie('value'), { maxLength: 6 }),
    // Map values are never `undefined`: the encoder omits such entries (tested below).
    fc.dictionary(text, tie('value').filter((x) => x !== undefined), { maxKeys: 6 }),
  ),
}));

describe('round trip', () => {
  test('decode(encode(v)) equals v for every value of the subset', () => {
    fc.assert(
      fc.property(cborValue, (v) => {
        assertSame(decode(encode(v)), v);
      }),
      { numRuns: 2000 },
    );
  });

  test('decoding inside a larger buffer uses only [start, end)', () => {
    fc.assert(
      fc.property(cborValue, fc.uint8Array({ maxLength: 8 }), fc.uint8Array({ maxLength: 8 }), (v, pre, post) => {
        const body = encode(v);
        const buf = Buffer.concat([pre, body, post]);
        assertSame(decode(buf, pre.length, pre.length + body.length), v);
      }),
    );
  });

  // Regression: TextDecoder strips a leading U+FEFF unless told not to, so a
  // text string that began with it came back one character shorter.
  test('a text string that starts with U+FEFF keeps it', () => {
    for (const s of ['\uFEFF', '\uFEFFabc', '\uFEFFé', 'é\uFEFF']) {
      assert.equal(decode(encode(s)), s);
    }
    assert.equal(decode(hex('63 efbbbf')), '\uFEFF');
  });

  // Regression: -0 passed Number.isSafeInteger and went out as integer 0.
  test('-0 keeps its sign (sent as a float, RFC 8949 §3.3)', () => {
    assert.ok(Object.is(decode(encode(-0)), -0));
    assert.ok(Object.is(decode(hex('f9 8000')), -0));
    assert.deepEqual(encode(0), hex('00'));
  });

  test('map entries whose value is undefined are omitted', () => {
    assert.deepEqual(encode({ a: 1, b: undefined }), hex('a1 6161 01'));
    assert.equal(decode(encode([undefined])) instanceof Array, true);
    assertSame(decode(encode([undefined])), [undefined]);
  });

  test('byte strings decode as views into the input (no copy)', () => {
    const buf = encode({ k: new Uint8Array([1, 2, 3]) });
    const v = decode(buf) as { k: Buffer };
    v.k[0] = 9;
    assert.equal(buf.includes(9), true);
  });

  test('a map key named __proto__ is an ordinary key', () => {
    const v = decode(hex('a1 69 5f5f70726f746f5f5f 01')) as Record<string, CborValue>;
    // Maps are plain objects (fast properties); the key is an own property, the prototype untouched.
    assert.equal(Object.getPrototypeOf(v), Object.prototype);
    assert.ok(Object.hasOwn(v, '__proto__'));
    assert.deepEqual(Object.keys(v), ['__proto__']);
    assert.equal(v['__proto__'], 1);
    // A map whose __proto__ is a map sets no prototype either.
    const nested = decode(hex('a1 69 5f5f70726f746f5f5f a1 61 78 01')) as Record<string, CborValue>;
    assert.equal(Object.getPrototypeOf(nested), Object.prototype);
    assert.equal((nested as { x?: unknown }).x, undefined);
    // A key named like an Object.prototype member is a duplicate only of itself.
    assert.deepEqual(Object.keys(decode(hex('a2 68 746f537472696e67 01 63 6b6579 02')) as object), ['toString', 'key']);
  });
});

describe('RFC 8949 Appendix A', () => {
  // [diagnostic value, encoding] — both directions hold: our encoder picks the
  // shortest integer head and float64 for non-integers, like these examples.
  const both: Array<[CborValue, string]> = [
    [0, '00'],
    [1, '01'],
    [10, '0a'],
    [23, '17'],
    [24, '1818'],
    [25, '1819'],
    [100, '1864'],
    [1000, '1903e8'],
    [1000000, '1a000f4240'],
    [1000000000000, '1b000000e8d4a51000'],
    [-1, '20'],
    [-10, '29'],
    [-100, '3863'],
    [-1000, '3903e7'],
    [1.1, 'fb3ff199999999999a'],
    [1.0e300, 'fb7e37e43c8800759c'],
    [-4.1, 'fbc010666666666666'],
    [false, 'f4'],
    [true, 'f5'],
    [null, 'f6'],
    [undefined, 'f7'],
    [new Uint8Array(0), '40'],
    [new Uint8Array([1, 2, 3, 4]), '4401020304'],
    ['', '60'],
    ['a', '6161'],
    ['IETF', '6449455446'],
    ['"\\', '62225c'],
    ['\u00fc', '62c3bc'],
    ['\u6c34', '63e6b0b4'],
    ['\ud800\udd51', '64f0908591'],
    [[], '80'],
    [[1, 2, 3], '83010203'],
    [[1, [2, 3], [4, 5]], '8301820203820405'],
    [Array.from({ length: 25 }, (_, i) => i + 1), '98190102030405060708090a0b0c0d0e0f101112131415161718181819'],
    [{}, 'a0'],
    [{ a: 1, b: [2, 3] }, 'a26161016162820203'],
    [['a', { b: 'c' }], '826161a161626163'],
    [{ a: 'A', b: 'B', c: 'C', d: 'D', e: 'E' }, 'a56161614161626142616361436164614461656145'],
  ];
  for (const [value, enc] of both) {
    test(`${enc} ⇄ ${JSON.stringify(canon(value))}`, () => {
      assertSame(decode(hex(enc)), value);
      assert.equal(encode(value).toString('hex'), enc);
    });
  }

  // Decode-only: half and single floats (our encoder always writes float64).
  const decodeOnly: Array<[number, string]> = [
    [0, 'f90000'],
    [-0, 'f98000'],
    [1, 'f93c00'],
    [1.5, 'f93e00'],
    [65504, 'f97bff'],
    [100000, 'fa47c35000'],
    [3.4028234663852886e38, 'fa7f7fffff'],
    [5.960464477539063e-8, 'f90001'],
    [0.00006103515625, 'f90400'],
    [-4, 'f9c400'],
    [Infinity, 'f97c00'],
    [NaN, 'f97e00'],
    [-Infinity, 'f9fc00'],
    [Infinity, 'fa7f800000'],
    [NaN, 'fa7fc00000'],
    [-Infinity, 'faff800000'],
    [Infinity, 'fb7ff0000000000000'],
    [NaN, 'fb7ff8000000000000'],
    [-Infinity, 'fbfff0000000000000'],
  ];
  for (const [value, enc] of decodeOnly) {
    test(`${enc} → ${Object.is(value, -0) ? '-0' : value}`, () => {
      assertSame(decode(hex(enc)), value);
      assertSame(decode(encode(value)), value);
    });
  }

  // Outside the subset: each is refused, never misread.
  const refused: Array<[string, string]> = [
    ['18446744073709551615 (beyond 2^53-1)', '1bffffffffffffffff'],
    ['-18446744073709551616 (beyond -(2^53-1))', '3bffffffffffffffff'],
    ['bignum (tag 2)', 'c249010000000000000000'],
    ['negative bignum (tag 3)', 'c349010000000000000000'],
    ['tag 0 date string', 'c074323031332d30332d32315432303a30343a30305a'],
    ['tag 1 epoch date', 'c11a514b67b0'],
    ['tag 23 expected base16', 'd74401020304'],
    ['tag 32 URI', 'd82076687474703a2f2f7777772e6578616d706c652e636f6d'],
    ['simple(16)', 'f0'],
    ['simple(255)', 'f8ff'],
    ['map with integer keys', 'a201020304'],
    ['indefinite byte string', '5f42010243030405ff'],
    ['indefinite text string', '7f657374726561646d696e67ff'],
    ['indefinite array []', '9fff'],
    ['indefinite nested arrays', '9f018202039f0405ffff'],
    ['indefinite map', 'bf61610161629f0203ffff'],
    ['map with an indefinite key', 'bf6346756ef563416d7421ff'],
  ];
  for (const [what, enc] of refused) {
    test(`refuses ${what}`, () => rejects(hex(enc)));
  }
});

describe('rejections', () => {
  test('indefinite lengths of every major type', () => {
    for (const ib of ['5f', '7f', '9f', 'bf']) rejects(hex(`${ib} ff`), /indefinite/);
    rejects(hex('1f'), /indefinite/);
  });

  test('reserved additional information 28–30', () => {
    for (const ib of ['1c', '1d', '1e', '3c', '5d', '7e', '9c', 'bd']) rejects(hex(ib), /reserved/);
  });

  test('tags, whatever they wrap', () => {
    for (const enc of ['c000', 'd818 00', 'd9ffff 00', 'da00010000 00', 'db0000000000000001 00']) rejects(hex(enc), /tags/);
  });

  test('map keys that are not text', () => {
    for (const key of ['01', '20', '41 00', '80', 'a0', 'f5', 'f6', 'f7', 'fb3ff199999999999a']) {
      rejects(hex(`a1 ${key} 00`), /map key is not a text string/);
    }
  });

  test('duplicate map keys, ASCII or not', () => {
    rejects(hex('a2 6161 01 6161 02'), /duplicate map key/);
    rejects(hex('a3 6161 01 6162 02 6161 03'), /duplicate map key/);
    rejects(hex('a2 62c3bc 01 62c3bc 02'), /duplicate map key/);
    // The same key nested in different maps is fine.
    assertSame(decode(hex('a2 6161 a1 6161 01 6162 a1 6161 02')), { a: { a: 1 }, b: { a: 2 } });
  });

  test('integers beyond the safe range, in either sign', () => {
    assert.equal(decode(hex('1b 001fffffffffffff')), Number.MAX_SAFE_INTEGER);
    rejects(hex('1b 0020000000000000'), /2\^53-1/);
    rejects(hex('1b ffffffffffffffff'), /2\^53-1/);
    assert.equal(decode(hex('3b 001ffffffffffffe')), -Number.MAX_SAFE_INTEGER);
    rejects(hex('3b 0020000000000000'));
  });

  // Regression: major type 1 with n = 2^53-1 decoded to -2^53, which is not a safe integer.
  test('-2^53 is refused: -1 - (2^53-1) is outside the safe range', () => {
    rejects(hex('3b 001fffffffffffff'), /2\^53-1/);
  });

  test('nesting deeper than MAX_DEPTH, for arrays and maps', () => {
    const arrays = (n: number): Buffer => Buffer.concat([Buffer.alloc(n, 0x81), hex('00')]);
    const maps = (n: number): Buffer => Buffer.concat([...Array.from({ length: n }, () => hex('a1 6161')), hex('00')]);
    assert.equal(Array.isArray(decode(arrays(MAX_DEPTH))), true);
    assert.equal(typeof decode(maps(MAX_DEPTH)), 'object');
    rejects(arrays(MAX_DEPTH + 1), /nested deeper/);
    rejects(maps(MAX_DEPTH + 1), /nested deeper/);
    rejects(Buffer.alloc(100_000, 0x81), /nested deeper/); // no stack overflow
  });

  // Regression: the encoder allowed one level more than the decoder, so it
  // could produce a payload the other side refuses.
  test('the encoder refuses exactly what the decoder would refuse', () => {
    let ok: CborValue = [];
    for (let i = 1; i < MAX_DEPTH; i++) ok = [ok];
    assert.equal(decode(encode(ok)) instanceof Array, true);
    assert.throws(() => encode([ok]), BadFrameError);
    let okMap: CborValue = {};
    for (let i = 1; i < MAX_DEPTH; i++) okMap = { k: okMap };
    assert.equal(typeof decode(encode(okMap)), 'object');
    assert.throws(() => encode({ k: okMap }), BadFrameError);
  });

  test('every proper prefix of a valid encoding is truncated', () => {
    fc.assert(
      fc.property(cborValue, (v) => {
        const enc = encode(v);
        for (let n = 0; n < enc.length; n++) rejects(enc.subarray(0, n));
      }),
      { numRuns: 300 },
    );
    rejects(Buffer.alloc(0), /truncated/);
  });

  test('lengths larger than the payload are refused before anything is allocated', () => {
    rejects(hex('5a ffffffff 00'), /truncated/);
    rejects(hex('7b 001fffffffffffff 00'), /truncated/);
    rejects(hex('9b 001fffffffffffff 00'), /array longer than the payload/);
    rejects(hex('bb 001fffffffffffff 00'), /map longer than the payload/);
    rejects(hex('9a ffffffff'), /array longer than the payload/);
  });

  test('trailing bytes after the value', () => {
    rejects(hex('00 00'), /1 trailing byte/);
    rejects(hex('80 ff'), /trailing/);
    rejects(hex('6161 6161'), /trailing/);
  });

  test('invalid UTF-8 in text strings (keys too)', () => {
    for (const bad of ['61 ff', '61 80', '62 c328', '63 eda080', '62 c0af', '64 f8888080', '62 e282', '64 f4908080']) {
      rejects(hex(bad), /not valid UTF-8/);
      const [len, ...rest] = bad.split(' ');
      rejects(hex(`a1 ${len} ${rest.join('')} 00`), /not valid UTF-8/);
    }
  });

  test('simple values other than false/true/null/undefined, and a lone break', () => {
    for (const enc of ['e0', 'f3', 'f8 20', 'ff']) rejects(hex(enc));
  });

  test('the encoder refuses what CBOR cannot carry in this subset', () => {
    assert.throws(() => encode(10n as unknown as CborValue), TypeError);
    assert.throws(() => encode((() => 1) as unknown as CborValue), TypeError);
  });
});

describe('fuzz', () => {
  test('random bytes decode or fail with BadFrameError, nothing else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        try {
          decode(Buffer.from(bytes));
        } catch (e) {
          assert.ok(e instanceof BadFrameError, `${Buffer.from(bytes).toString('hex')}: ${String(e)}`);
        }
      }),
      { numRuns: 20_000 },
    );
  });

  test('valid encodings with bytes flipped, cut or spliced fail only with BadFrameError', () => {
    const mutated = fc
      .tuple(cborValue, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), fc.nat())
      .map(([v, edits, cut]) => {
        const b = Buffer.from(encode(v));
        for (const [at, byte] of edits) if (b.length > 0) b[at % b.length] = byte;
        return b.subarray(0, b.length === 0 ? 0 : b.length - (cut % 2));
      });
    fc.assert(
      fc.property(mutated, (bytes) => {
        try {
          decode(bytes);
        } catch (e) {
          assert.ok(e instanceof BadFrameError, `${bytes.toString('hex')}: ${String(e)}`);
        }
      }),
      { numRuns: 5000 },
    );
  });
});

describe('map keys through the decoder key cache', () => {
  test('maps round-trip whatever keys collide in the cache, repeat, or are not ASCII', () => {
    // A small alphabet makes keys repeat and collide in the cache's slots; the full one brings non-ASCII and long keys.
    const key = fc.oneof(fc.string({ unit: fc.constantFrom('a', 'b', 'k', 'y', '_'), maxLength: 6 }), fc.string({ maxLength: 30 }), fc.string({ unit: 'grapheme', maxLength: 8 }));
    fc.assert(
      fc.property(fc.array(fc.dictionary(key, fc.oneof(fc.integer(), fc.string({ maxLength: 4 }))), { minLength: 1, maxLength: 8 }), (maps) => {
        // fast-check builds null-prototype objects; the decoder plain ones (spread keeps an own "__proto__" key own).
        for (const m of maps) assert.deepEqual(decode(encode(m)), { ...m });
      }),
      { numRuns: 3000 },
    );
  });

  test('a key seen before, after hundreds of others took the cache, decodes to itself; duplicates are still refused', () => {
    const first = decode(encode({ algorithm: 1, key: 2, data: 3 }));
    for (let i = 0; i < 2000; i++) {
      const k = `k${i.toString(36)}`;
      assert.deepEqual(Object.keys(decode(encode({ [k]: i })) as object), [k]);
    }
    assert.deepEqual(decode(encode({ algorithm: 1, key: 2, data: 3 })), first);
    // {"key": 1, "key": 2}: the second "key" comes from the cache and must still be seen as a duplicate.
    const dup = Buffer.from([0xa2, 0x63, 0x6b, 0x65, 0x79, 0x01, 0x63, 0x6b, 0x65, 0x79, 0x02]);
    assert.throws(() => decode(dup), (e: unknown) => e instanceof BadFrameError && /duplicate map key "key"/.test(e.message));
    // "__proto__" stays an own key, through the cache as well (twice: the second from the slot).
    for (let i = 0; i < 2; i++) {
      const v = decode(Buffer.from([0xa1, 0x69, ...Buffer.from('__proto__'), 0x05])) as { [k: string]: CborValue };
      assert.ok(Object.hasOwn(v, '__proto__'));
      assert.equal(Object.getPrototypeOf(v), Object.prototype);
    }
  });
});
