/**
 * Starts and closes an assembled daemon, then does nothing: the process must
 * exit on its own, which it only does when close() left no timer, socket,
 * watcher or file handle behind. Prints `started` and `closed`.
 *
 * Usage: node --import tsx test/helpers/assemble-child.ts <data dir> <audit log> <socket>
 */
import { daemonConfig } from '../../src/config/daemon-config.js';
import { createDaemon } from '../../src/daemon/assemble.js';
import { silentLogger } from '../../src/observe/logger.js';

const [dataDir, auditLog, socket] = process.argv.slice(2);
if (dataDir === undefined || auditLog === undefined || socket === undefined) {
  process.stderr.write('usage: assemble-child.ts <data dir> <audit log> <socket>\n');
  process.exit(2);
}
const daemon = createDaemon(daemonConfig(null, { dataDir, auditLog, socket }), { logger: silentLogger });
await daemon.start();
process.stdout.write('started\n');
await daemon.close();
process.stdout.write('closed\n');
