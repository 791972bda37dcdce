/**
 * Connecting the client commands (digest, status) to a daemon. A failure to
 * reach the socket is the most common mistake, so it gets its own sentence
 * that says how to fix it, not an error code.
 */
import { connect, type Client } from '../client/client.js';
import { ConnectionClosedError } from '../protocol/errors.js';
import type { OptionSpec } from './args.js';
import { LocalFailure } from './output.js';

/** The `--socket` option shared by every command that talks to a daemon. */
export const SOCKET_OPTION: OptionSpec = {
  socket: { type: 'string', short: 's' },
};

/** The name the CLI gives itself at HELLO; it shows up in `cryptod status`. */
export const CLI_CLIENT_NAME = 'cryptod-cli';

/** Connect to the socket named by `--socket`, else CRYPTOD_SOCKET, else the per-user default (src/client/socket-path.ts). */
export async function connectCli(socketFlag: string | undefined): Promise<Client> {
  try {
    // connect() applies the default and its ownership check itself.
    return await connect({ ...(socketFlag === undefined ? {} : { socket: socketFlag }), clientName: CLI_CLIENT_NAME });
  } catch (err) {
    // Errors of the socket itself (ENOENT, ECONNREFUSED, EACCES) carry the
    // errno error as cause; an error the daemon sent back during HELLO does
    // not, and keeps its code.
    if (err instanceof ConnectionClosedError && err.cause instanceof Error) {
      throw new LocalFailure(err.message, { cause: err });
    }
    throw err;
  }
}
