/**
 * Child process for crash.test.ts: writes keys, each with <versions> versions,
 * one transaction per key, forever, and prints each key's name on its own
 * line only after its commit has returned. The parent SIGKILLs it at random
 * moments. Yields to the event loop between writes so kills also land inside
 * open transactions, not only between them.
 *
 *   usage: node --import tsx crash-writer.ts <dataDir> <prefix> <versions>
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { setImmediate as yieldNow } from 'node:timers/promises';
import { openSqliteKeystore } from '../../src/store/sqlite/sqlite-store.js';

async function main(): Promise<void> {
  const [dataDir, prefix, versionsArg] = process.argv.slice(2);
  const VERSIONS = Number(versionsArg);
  if (dataDir === undefined || prefix === undefined || !(VERSIONS >= 1)) throw new Error('usage: crash-writer.ts <dataDir> <prefix> <versions>');
  const store = await openSqliteKeystore({ dataDir });
  // Synchronous writes: a line the parent reads was written after the commit returned.
  fs.writeSync(1, 'ready\n');
  for (let i = 0; ; i++) {
    const name = `${prefix}-${i}`;
    await store.transaction(async (tx) => {
      const now = Date.now();
      await tx.putKey({ name, type: 'aes-256-gcm', policy: { i }, createdAt: now, updatedAt: now, disabled: false });
      for (let v = 1; v <= VERSIONS; v++) {
        await yieldNow();
        await tx.putVersion({
          name, version: v, state: v === VERSIONS ? 'active' : 'decrypt-only', createdAt: now, notBefore: now + v,
          notAfter: null, wrapped: randomBytes(29 + 32 + 64 * (i % 3)), kekId: 'local:crash', encryptions: 0,
        });
      }
    });
    fs.writeSync(1, `${name}\n`);
  }
}

main().catch((err: unknown) => {
  fs.writeSync(2, `crash-writer: ${String(err)}\n`);
  process.exit(1);
});
