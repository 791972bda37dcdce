/**
 * The daemon for bench/vault-http.ts, in its own process as in production:
 * the native socket, the Vault API on node:http (or, with
 * CRYPTOD_BENCH_DOOR=fastify, the same API on fastify instead), one token
 * client (an administrator) whose token it prints with the addresses as one
 * JSON line on stdout.
 *
 * One server per process: fastify loaded into the same process made the
 * node:http door about 20 % slower (9,178 → 7,523 encrypts/s, 130 → 157 µs
 * of CPU per request, measured), so each side of the comparison gets a
 * process of its own and the main rows run without fastify, as `cryptod
 * serve` does.
 */
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDaemon } from '../src/daemon/assemble.js';
import { daemonConfig } from '../src/config/daemon-config.js';
import { createLogger } from '../src/observe/logger.js';
import { openSqliteClientRegistry } from '../src/store/sqlite/client-registry.js';
import { VaultFrontDoor } from '../src/http/vault-front-door.js';

const dir = mkdtempSync(join(tmpdir(), 'cdv-'));
const dataDir = join(dir, 'data');
const socket = join(dir, 'cryptod.sock');
const config = daemonConfig(null, { dataDir, socket, logLevel: 'warn', http: { url: 'tcp://127.0.0.1:0' }, adminClients: ['bench'] });
const useFastify = process.env.CRYPTOD_BENCH_DOOR === 'fastify';
// Imported only when asked for: loading fastify is what slows a node:http server in the same process.
const door = useFastify ? new (await import('./vault-fastify-door.js')).FastifyVaultDoor() : new VaultFrontDoor(config.http!);
const daemon = createDaemon(config, { logger: createLogger({ level: 'warn' }), frontDoors: [door] });
await daemon.start();
const registry = openSqliteClientRegistry({ dataDir });
const { token } = await registry.add('bench');
await registry.close();
// The floor: a node:http server that reads the body and answers a reply of the same size, doing nothing else.
const reply = JSON.stringify({ data: { ciphertext: `vault:v1:${'A'.repeat(1412)}`, key_version: 1 } });
const bare = createServer((req, res) => {
  req.on('data', () => undefined);
  req.on('end', () => {
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': reply.length });
    res.end(reply);
  });
});
await new Promise<void>((r) => bare.listen(0, '127.0.0.1', () => r()));
const barePort = (bare.address() as { port: number }).port;
process.stdout.write(`${JSON.stringify({ dir, socket, token, port: door.port, barePort })}\n`);
const stop = (): void => {
  bare.close();
  daemon.close().then(() => process.exit(0), () => process.exit(1));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
