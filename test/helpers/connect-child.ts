/**
 * A client-library process for tests that run it as another uid: connects to
 * the socket given as argv[2], sends one PING, and prints as JSON what
 * happened — `{ ok: true }` or the typed error it got (class, code, message,
 * detail). Exits 0 either way; a crash is the test's failure.
 */
import { connect } from '../../src/client/client.js';
import { CryptodError } from '../../src/protocol/errors.js';

const socket = process.argv[2];
try {
  const client = await connect({ socket, clientName: 'child' });
  await client.ping('x');
  await client.close();
  process.stdout.write(JSON.stringify({ ok: true }));
} catch (err) {
  const e = err as Error;
  process.stdout.write(
    JSON.stringify({ ok: false, name: e.name, code: err instanceof CryptodError ? err.code : null, message: e.message, detail: err instanceof CryptodError ? (err.detail ?? null) : null }),
  );
}
