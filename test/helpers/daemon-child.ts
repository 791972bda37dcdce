/**
 * A daemon in its own process, for tests that need to starve or kill the
 * daemon itself (fd limits) without taking the test runner with it.
 * Prints `listening` once it accepts connections; logs go to stderr.
 *
 * Usage: node --import tsx test/helpers/daemon-child.ts <socket>
 */
import { startDaemon } from '../../src/daemon/server.js';
import { createLogger } from '../../src/observe/logger.js';

const socketPath = process.argv[2];
if (socketPath === undefined) {
  process.stderr.write('usage: daemon-child.ts <socket>\n');
  process.exit(2);
}
const daemon = await startDaemon({ socketPath, logger: createLogger({ level: 'warn' }) });
process.stdout.write('listening\n');
process.on('SIGTERM', () => {
  void daemon.close().then(() => process.exit(0));
});
