/** Every operation the daemon serves, by family. */
import type { Operation } from '../daemon/operation.js';
import { digestOperations } from './digest.js';
import { sessionOperations } from './session.js';

export function allOperations(): Operation[] {
  return [...sessionOperations, ...digestOperations];
}
