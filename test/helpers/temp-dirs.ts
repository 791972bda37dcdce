/**
 * Fresh private temporary directories for a test file, removed when it ends.
 *
 *   const tempDir = tempDirs('cd-x-');                       // removed by an `after` hook of the file
 *   const tempDir = tempDirs('cd-x-', (rm) => cleanups.push(rm));   // removed in the file's own cleanup order
 *
 * The second form is for files that close daemons and keystores in a
 * cleanup list first: a directory goes only after what was open in it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';

export function tempDirs(prefix: string, register?: (remove: () => Promise<void>) => void): (prefixOverride?: string) => string {
  const make = (p?: string): string => mkdtempSync(join(tmpdir(), p ?? prefix));
  const remove = (d: string): void => rmSync(d, { recursive: true, force: true });
  if (register !== undefined) {
    return (p) => {
      const d = make(p);
      register(async () => remove(d));
      return d;
    };
  }
  const dirs: string[] = [];
  after(() => {
    for (const d of dirs) remove(d);
  });
  return (p) => {
    const d = make(p);
    dirs.push(d);
    return d;
  };
}
