/**
 * The operations a daemon serves, checked once at start so the request chain
 * can trust every entry: its decode phase looks an op code up here, its
 * authorize phase enforces the entry's declared `access`.
 */
import { ConfigError } from '../protocol/errors.js';
import { isManagedOp, opName } from '../protocol/ops.js';
import type { Operation } from '../ops/operation.js';

/**
 * The operations a daemon serves, by op code. Refuses (ConfigError) an op
 * code registered twice, and a managed-key operation that declares no
 * authorization: `access` is required by the type, `none` is for operations
 * whose nodes the data manager already scopes to their client.
 */
export function operationTable(operations: readonly Operation[]): Map<number, Operation> {
  const table = new Map<number, Operation>();
  for (const o of operations) {
    if (table.has(o.op)) throw new ConfigError(`operation 0x${o.op.toString(16)} registered twice`);
    if (isManagedOp(o.op) && o.access.kind === 'none') {
      throw new ConfigError(`operation ${opName(o.op)} uses managed keys but declares access 'none': declare the key argument and permission, 'admin' or 'visible-keys' (src/ops/operation.ts)`);
    }
    table.set(o.op, o);
  }
  return table;
}
