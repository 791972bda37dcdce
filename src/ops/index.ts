/** Every operation the daemon serves, by family. */
import type { Operation } from './operation.js';
import { digestOperations } from './digest.js';
import { keyOperations } from './keys.js';
import { signOperations } from './sign.js';
import { deriveOperations } from './derive.js';
import { wrapOperations } from './wrap.js';
import { cipherOperations } from './cipher.js';
import { contextOperations } from './contexts.js';
import { windowOperations } from './windows.js';
import { streamCipherOperations } from './stream-cipher.js';
import { sessionOperations } from './session.js';
import { managedDataOperations } from './managed-data.js';
import { managedAdminOperations } from './managed-admin.js';
import { dataKeyOperations } from './datakeys.js';
import { kekOperations } from './kek-admin.js';
import { randomOperations } from './random.js';
import { managedBackupOperations } from './managed-backup.js';

export function allOperations(): Operation[] {
  return [...sessionOperations, ...digestOperations, ...keyOperations, ...signOperations, ...deriveOperations, ...wrapOperations, ...cipherOperations, ...contextOperations, ...windowOperations, ...streamCipherOperations, ...managedDataOperations, ...managedAdminOperations, ...dataKeyOperations, ...kekOperations, ...randomOperations, ...managedBackupOperations];
}
