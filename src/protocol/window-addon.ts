/**
 * The native half of shared-memory windows (docs/protocol.md §6.16;
 * native/window.c): making a sealed memory file, passing its descriptor over
 * a Unix socket, and mapping one that arrived. Both sides need it, and the
 * client may import only protocol/, so its loader lives here — the one module
 * of protocol/ that touches the platform. Where the addon is missing (not
 * built, not Linux) `windowAddon()` is null and both sides carry every byte
 * inline, as before.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface WindowAddon {
  readonly supported: boolean;
  /** A memory file of `size` bytes sealed against shrinking and growing, mapped shared. */
  createWindow(size: number): { fd: number; buffer: ArrayBuffer };
  /** One sendmsg of `payload` with `fd` attached (SCM_RIGHTS). */
  sendFd(socketFd: number, fd: number, payload: Uint8Array): void;
  /** One non-blocking recvmsg: null when nothing is there yet; `fd` -1 when none came. */
  recvFd(socketFd: number, maxPayload: number): { fd: number; payload: Buffer; eof: boolean; truncated: boolean } | null;
  /** Map a memory file that arrived, after checking its seals and size. */
  mapWindow(fd: number, maxSize: number): { buffer: ArrayBuffer; size: number };
  /** Detach `buffer` now: its views become empty and the mapping goes. */
  releaseWindow(buffer: ArrayBuffer): void;
}

let loaded: WindowAddon | null | undefined;

function isAddon(v: unknown): v is WindowAddon {
  const a = v as Partial<Record<keyof WindowAddon, unknown>> | null;
  return typeof a === 'object' && a !== null && typeof a.supported === 'boolean' &&
    (['createWindow', 'sendFd', 'recvFd', 'mapWindow', 'releaseWindow'] as const).every((f) => typeof a[f] === 'function');
}

/** The package root (this file runs from src/ under tsx and from dist/src/ after tsc): where node-gyp put build/Release. Also how ops/native-crypto.ts finds its addon. */
export function packageRoot(): string | null {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; ) {
    try {
      if ((JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown }).name === 'cryptod') return dir;
    } catch {
      // no package.json here, or not ours: keep walking up
    }
    const parent = dirname(dir);
    if (parent === dir) return null;
    dir = parent;
  }
}

/** The addon when it is built and the platform has sealed memory files; else null. Loaded once. */
export function windowAddon(): WindowAddon | null {
  if (loaded !== undefined) return loaded;
  loaded = null;
  const root = packageRoot();
  if (root === null || process.env.CRYPTOD_NO_WINDOWS === '1') return null;
  try {
    const mod: unknown = createRequire(import.meta.url)(join(root, 'build', 'Release', 'window.node'));
    if (isAddon(mod) && mod.supported) loaded = mod;
  } catch {
    // not built (npm install --ignore-scripts): windows are off, inline data works everywhere
  }
  return loaded;
}

/** An abstract Unix socket's name as the protocol writes it ("@name") → as node:net takes it ("\0name"). */
export function abstractPath(socket: string): string {
  if (!socket.startsWith('@') || socket.length < 2) throw new RangeError(`expected an abstract socket name starting with '@', got '${socket}'`);
  return `\0${socket.slice(1)}`;
}
