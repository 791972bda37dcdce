/**
 * The behaviour every client-registry backend must show (SQLite and
 * PostgreSQL): `clientRegistrySuite(name, open)`, `open` giving a fresh one.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ClientRegistry } from '../../src/auth/client-registry.js';
import { issueToken, parseToken } from '../../src/auth/tokens.js';
import { InvalidArgumentError, NotFoundError } from '../../src/protocol/errors.js';

export function clientRegistrySuite(name: string, open: () => Promise<{ registry: ClientRegistry; reopen(): Promise<ClientRegistry>; cleanup(): Promise<void> }>): void {
  describe(`client registry contract: ${name}`, () => {
    it('issues, verifies, refuses a second active token, revokes, re-adds', async () => {
      const { registry, reopen, cleanup } = await open();
      try {
        const { token, client } = await registry.add('billing');
        assert.deepEqual([client.name, client.uid, client.revokedAt], ['billing', null, null]);
        assert.equal((await registry.verify(token))?.name, 'billing');
        await assert.rejects(registry.add('billing'), (e: unknown) => e instanceof InvalidArgumentError && /already has an active token/.test(e.message));
        await assert.rejects(registry.add('bad name'), InvalidArgumentError);
        const flipped = token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A');
        assert.equal(await registry.verify(flipped), null);
        assert.equal(await registry.verify(issueToken().token), null);
        assert.equal(await registry.verify('not a token'), null);
        const { token: restricted } = await registry.add('reports', { uid: 1234 });
        assert.equal((await registry.verify(restricted))?.uid, 1234);
        // Another process (another registry on the same store) sees the revocation at once.
        const other = await reopen();
        try {
          assert.notEqual((await other.revoke('billing')).revokedAt, null);
          assert.equal(await registry.verify(token), null);
          await assert.rejects(registry.revoke('billing'), NotFoundError);
        } finally {
          await other.close();
        }
        const again = await registry.add('billing');
        const ids = [(await registry.verify(again.token))!.tokenId, parseToken(token)!.id];
        assert.deepEqual([...(await registry.stillValid(ids))], [ids[0]]);
        assert.deepEqual([...(await registry.stillValid([]))], []);
        const list = await registry.list();
        assert.deepEqual(list.map((c) => `${c.name} ${c.uid} ${c.revokedAt === null ? 'active' : 'revoked'}`).sort(),
          ['billing null active', 'billing null revoked', 'reports 1234 active']);
        assert.ok(!JSON.stringify(list).includes('cdt_'));
        await registry.close();
        await assert.rejects(registry.list(), /closed/);
      } finally {
        await registry.close();
        await cleanup();
      }
    });

    it('two processes adding one name at once: exactly one token', async () => {
      const { registry, reopen, cleanup } = await open();
      const other = await reopen();
      try {
        const results = await Promise.allSettled([registry.add('race'), other.add('race'), registry.add('race'), other.add('race')]);
        assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
        assert.equal((await registry.list()).filter((c) => c.revokedAt === null).length, 1);
      } finally {
        await other.close();
        await registry.close();
        await cleanup();
      }
    });
  });
}
