/**
 * A real daemon (createDaemon, a temporary data directory) with the Vault
 * HTTP front door on TCP loopback (an ephemeral port) or a Unix socket, and
 * token clients added through the same SQLite registry `cryptod client add`
 * writes.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDaemon, type AssembledDaemon } from '../../src/daemon/assemble.js';
import { daemonConfig } from '../../src/config/daemon-config.js';
import { createLogger } from '../../src/observe/logger.js';
import { openSqliteClientRegistry } from '../../src/store/sqlite/client-registry.js';
import { VaultFrontDoor } from '../../src/http/vault-front-door.js';
import type { Limits } from '../../src/config/limits.js';

export interface VaultDaemon {
  readonly daemon: AssembledDaemon;
  readonly door: VaultFrontDoor;
  /** `http://127.0.0.1:PORT` on TCP; null on a Unix socket. */
  readonly url: string | null;
  /** The HTTP socket's path on a Unix socket. */
  readonly socketPath: string | null;
  readonly dir: string;
  /** Issue a token client (as `cryptod client add NAME`). */
  addClient(name: string, uid?: number): Promise<string>;
  revokeClient(name: string): Promise<void>;
  stop(): Promise<void>;
}

export async function startVaultDaemon(options: { transport: 'tcp' | 'unix'; adminClients?: string[]; limits?: Partial<Limits>; auditLog?: string; mount?: string }): Promise<VaultDaemon> {
  const dir = mkdtempSync(join(tmpdir(), `cv-${options.transport}-`));
  const dataDir = join(dir, 'data');
  const httpSock = join(dir, 'http', 'http.sock');
  const config = daemonConfig(null, {
    dataDir,
    socket: join(dir, 'run', 'cryptod.sock'),
    logLevel: 'error',
    ...(options.limits === undefined ? {} : { limits: options.limits }),
    ...(options.auditLog === undefined ? {} : { auditLog: options.auditLog }),
    http: { url: options.transport === 'tcp' ? 'tcp://127.0.0.1:0' : `unix:${httpSock}`, ...(options.mount === undefined ? {} : { mount: options.mount }) },
    ...(options.adminClients === undefined ? {} : { adminClients: options.adminClients }),
  });
  const door = new VaultFrontDoor(config.http!);
  const daemon = createDaemon(config, { logger: createLogger({ level: 'error' }), frontDoors: [door], revocationCheckMs: 50 });
  await daemon.start();
  const registry = openSqliteClientRegistry({ dataDir });
  return {
    daemon,
    door,
    url: options.transport === 'tcp' ? `http://127.0.0.1:${door.port!}` : null,
    socketPath: options.transport === 'unix' ? httpSock : null,
    dir,
    async addClient(name, uid) {
      return (await registry.add(name, uid === undefined ? {} : { uid })).token;
    },
    async revokeClient(name) {
      await registry.revoke(name);
    },
    async stop() {
      await daemon.close();
      await registry.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
