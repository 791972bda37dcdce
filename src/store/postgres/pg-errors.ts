/**
 * Driver errors as CryptodErrors. The class tells the caller what to do:
 *
 *   cannot connect, connection lost, server shutting down,
 *   connect or query timeout                    ─▶ StoreUnavailableError (retry later)
 *   lock_timeout, serialization failure,
 *   deadlock                                    ─▶ StoreBusyError (retry now)
 *   anything else                               ─▶ StoreError
 *
 * The driver's message stays in `cause` (never sent over the wire, and
 * never the connection string: pg does not put the password in messages).
 */
import type pg from 'pg';
import { CryptodError, StoreBusyError, StoreError, StoreUnavailableError } from '../../protocol/errors.js';

/** SQLSTATE classes and codes that mean "the server is not there for us right now". */
const UNAVAILABLE_SQLSTATE = /^(08|57P0[1-4]|53300|3D000)/;
const UNAVAILABLE_ERRNO = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'ENOENT']);
const UNAVAILABLE_MESSAGE = /Connection terminated|timeout exceeded when trying to connect|Query read timeout|connection timeout|Client has encountered a connection error|not queryable|Connection ended/i;
const BUSY_SQLSTATE = new Set(['55P03', '40001', '40P01']);

export function isUnavailable(err: unknown): boolean {
  if (err instanceof StoreUnavailableError) return true;
  const e = err as { code?: unknown; message?: unknown } | null;
  const code = typeof e?.code === 'string' ? e.code : '';
  if (UNAVAILABLE_ERRNO.has(code) || UNAVAILABLE_SQLSTATE.test(code)) return true;
  return typeof e?.message === 'string' && UNAVAILABLE_MESSAGE.test(e.message);
}

/** Translate `err` from operation `op` on the store at `where` (redacted). */
export function storeError(op: string, where: string, err: unknown, extra?: { commitUnknown?: boolean }): CryptodError {
  if (err instanceof CryptodError) return err;
  if (isUnavailable(err)) {
    const unknown = extra?.commitUnknown === true;
    return new StoreUnavailableError(
      `the keystore ${where} is unavailable (${op})` +
        (unknown ? '; the connection was lost during COMMIT, so the write may or may not have been kept — read it back before repeating it' : '; try again later'),
      { cause: err, detail: { op, ...(unknown ? { commitUnknown: true } : {}) } },
    );
  }
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && BUSY_SQLSTATE.has(code)) {
    return new StoreBusyError(`the keystore ${where} is locked by another process (${op}); try again`, { cause: err, detail: { op } });
  }
  return new StoreError(`keystore ${op} failed`, { cause: err });
}

const guarded = new WeakSet<pg.PoolClient>();

/**
 * A checked-out pool client whose server goes away between two queries emits
 * 'error' with nobody listening (the pool listens only while it is idle),
 * which would crash the daemon. The next query on it fails and is translated
 * like any other; this only keeps the event from being unhandled. Once per
 * client: the pool hands the same clients out again and again.
 */
export function guardClient(client: pg.PoolClient): pg.PoolClient {
  if (!guarded.has(client)) {
    guarded.add(client);
    client.on('error', () => undefined);
  }
  return client;
}

/**
 * `f` in a transaction of its own on `client`, which is released afterwards:
 * a connection the server dropped (or whose ROLLBACK failed) is destroyed
 * instead of going back to the pool. A failure of `f` or of COMMIT is
 * thrown as `wrap` makes it.
 */
export async function inTransaction<T>(client: pg.PoolClient, f: (c: pg.PoolClient) => Promise<T>, wrap: (err: unknown) => Error): Promise<T> {
  let broken = false;
  try {
    await client.query('BEGIN');
    const result = await f(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    broken = isUnavailable(err);
    if (!broken) await client.query('ROLLBACK').catch(() => { broken = true; });
    throw wrap(err);
  } finally {
    client.release(broken);
  }
}
