/**
 * A real second user for tests of who may connect and whose files the daemon
 * trusts: created with useradd under a name unique to this run (two suites
 * running at once must not share or delete each other's user), removed after.
 * Needs root; the callers assert that with their own message.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export interface TestUser {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
  /** userdel; `-f` because a client process of the user may still be exiting. */
  remove(): void;
}

export function createTestUser(prefix: string): TestUser {
  // useradd allows 32 characters: prefix (≤ 22) + '-' + 8 hex.
  const name = `${prefix.slice(0, 22)}-${randomBytes(4).toString('hex')}`;
  execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', name], { stdio: 'pipe' });
  const id = (flag: string): number => Number(execFileSync('id', [flag, name]).toString().trim());
  return {
    name,
    uid: id('-u'),
    gid: id('-g'),
    remove() {
      execFileSync('userdel', ['-f', name], { stdio: 'pipe' });
    },
  };
}
