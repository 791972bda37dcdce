/**
 * Every buffer written to a socket in this process while `fn` runs (and,
 * with `reads`, every chunk read from one), kept by reference: for tests
 * that key material is zeroed once the socket is done with it. The real
 * socket cannot show what stays in memory; the buffers handed to it can.
 */
import { Socket } from 'node:net';

export async function watchSockets<T>(fn: () => Promise<T>, options: { reads?: boolean } = {}): Promise<{ result: T; seen: Buffer[] }> {
  const seen: Buffer[] = [];
  const realEmit = Socket.prototype.emit;
  const realWrite = Socket.prototype.write;
  if (options.reads === true) {
    Socket.prototype.emit = function (this: Socket, event: string | symbol, ...args: unknown[]) {
      if (event === 'data' && Buffer.isBuffer(args[0])) seen.push(args[0]);
      return (realEmit as (...a: unknown[]) => boolean).call(this, event, ...args);
    } as typeof Socket.prototype.emit;
  }
  Socket.prototype.write = function (this: Socket, chunk: unknown, ...rest: unknown[]) {
    if (Buffer.isBuffer(chunk)) seen.push(chunk);
    return (realWrite as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
  } as typeof Socket.prototype.write;
  try {
    return { result: await fn(), seen };
  } finally {
    Socket.prototype.emit = realEmit;
    Socket.prototype.write = realWrite;
  }
}
