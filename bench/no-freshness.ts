/**
 * Preload for bench/fleet.ts's "before" daemon (`node --import tsx --import
 * ./bench/no-freshness.ts …`): the SQLite keystore without maybeChanged(), so
 * operations start without the freshness check (src/keys/freshness.ts) — the
 * daemon as it was before it, everything else identical. Benchmarks only.
 */
import { SqliteKeystore } from '../src/store/sqlite/sqlite-store.js';

delete (SqliteKeystore.prototype as { maybeChanged?: unknown }).maybeChanged;
