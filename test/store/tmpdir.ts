/** Fresh private temporary directories for store and KEK tests, removed by `cleanup()`. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface TempDir {
  readonly path: string;
  cleanup(): Promise<void>;
}

export function makeTempDir(prefix = 'cryptod-store-'): TempDir {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return {
    path: dir,
    async cleanup() {
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
