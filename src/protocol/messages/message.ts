/**
 * One operation's messages: its op code, the arguments a client sends and
 * the daemon checks, and the result a client reads. Declared once per
 * operation in this folder (docs/protocol.md §6), compiled into checkers
 * when the module loads.
 */
import type { OpCode } from '../ops.js';
import type { AnySchema, In, Out } from '../schema.js';

export interface Message<A extends AnySchema, R extends AnySchema> {
  readonly op: OpCode;
  readonly args: A;
  readonly result: R;
}

export function message<A extends AnySchema, R extends AnySchema>(op: OpCode, args: A, result: R): Message<A, R> {
  return { op, args, result };
}

/** What a client builds for `M`. */
export type ArgsIn<M extends Message<AnySchema, AnySchema>> = In<M['args']>;
/** What the daemon's handler gets for `M`, once checked. */
export type ArgsOf<M extends Message<AnySchema, AnySchema>> = Out<M['args']>;
/** What the client reads from `M`'s reply, once checked. */
export type ResultOf<M extends Message<AnySchema, AnySchema>> = Out<M['result']>;
