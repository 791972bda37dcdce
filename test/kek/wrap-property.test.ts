/**
 * Properties of the local KEK's wrapping (fast-check):
 *   - unwrap(wrap(p, aad), aad) = p for any plaintext and AAD;
 *   - flipping any single bit of the blob makes unwrap fail with DecryptError;
 *   - so does any change of the AAD.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { DecryptError } from '../../src/protocol/errors.js';
import { LocalKekProvider } from '../../src/kek/local.js';
import { openSqliteKeystore, type SqliteKeystore } from '../../src/store/sqlite/sqlite-store.js';
import { makeTempDir, type TempDir } from '../store/tmpdir.js';

describe('local KEK wrap properties', () => {
  let tmp: TempDir;
  let store: SqliteKeystore;
  let kek: LocalKekProvider;

  before(async () => {
    tmp = makeTempDir();
    store = await openSqliteKeystore({ dataDir: tmp.path });
    kek = await LocalKekProvider.open({ dir: tmp.path, store });
  });

  after(async () => {
    await kek.close();
    await store.close();
    await tmp.cleanup();
  });

  const plaintexts = fc.uint8Array({ minLength: 0, maxLength: 600 });
  const aads = fc.uint8Array({ minLength: 0, maxLength: 300 });

  it('round-trips any plaintext under any AAD', async () => {
    await fc.assert(
      fc.asyncProperty(plaintexts, aads, async (p, aad) => {
        const blob = await kek.wrap(p, aad);
        assert.equal(blob.length, p.length + 29);
        const out = await kek.unwrap(blob, aad);
        assert.ok(Buffer.from(p).equals(out));
      }),
      { numRuns: 300 },
    );
  });

  it('rejects any single-bit flip of the blob', async () => {
    await fc.assert(
      fc.asyncProperty(plaintexts, aads, fc.nat(), async (p, aad, at) => {
        const blob = await kek.wrap(p, aad);
        const bit = at % (blob.length * 8);
        blob[bit >> 3]! ^= 1 << (bit & 7);
        await assert.rejects(kek.unwrap(blob, aad), DecryptError);
      }),
      { numRuns: 300 },
    );
  });

  it('rejects every single-bit flip of one blob (exhaustive)', async () => {
    const aad = Buffer.from('exhaustive');
    const blob = await kek.wrap(Buffer.from('sixteen byte key'), aad);
    for (let bit = 0; bit < blob.length * 8; bit++) {
      const tampered = Buffer.from(blob);
      tampered[bit >> 3]! ^= 1 << (bit & 7);
      await assert.rejects(kek.unwrap(tampered, aad), DecryptError, `bit ${bit}`);
    }
  });

  it('rejects any other AAD', async () => {
    await fc.assert(
      fc.asyncProperty(plaintexts, aads, aads, async (p, aad, other) => {
        fc.pre(!Buffer.from(aad).equals(Buffer.from(other)));
        const blob = await kek.wrap(p, aad);
        await assert.rejects(kek.unwrap(blob, other), DecryptError);
      }),
      { numRuns: 200 },
    );
  });
});
