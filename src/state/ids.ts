import { randomFillSync } from 'node:crypto';

/** An authenticated client identity. Branded so it cannot be swapped with a node id. */
export type ClientId = string & { readonly __brand: 'ClientId' };
/** An unguessable, client-scoped handle to a data node. */
export type DataNodeId = string & { readonly __brand: 'DataNodeId' };

export function clientId(s: string): ClientId {
  return s as ClientId;
}

/**
 * DataNodeIds are 16 bytes, base64url (22 characters): 8 random bytes, which
 * make an id unguessable, then a 64-bit counter, which makes it unique for the
 * life of the process (an id is never reused while the daemon runs, even after
 * 2^32 random draws).
 *
 *   ┌────────── 8 random bytes ──────────┬────────── counter u64 BE ─────────┐
 */
export class NodeIdGenerator {
  #counter = 0n;
  readonly #pool = Buffer.alloc(8 * 512);
  #poolPos = this.#pool.length;
  readonly #out = Buffer.alloc(16);

  next(): DataNodeId {
    if (this.#poolPos === this.#pool.length) {
      randomFillSync(this.#pool);
      this.#poolPos = 0;
    }
    this.#pool.copy(this.#out, 0, this.#poolPos, this.#poolPos + 8);
    this.#poolPos += 8;
    this.#counter += 1n;
    this.#out.writeBigUInt64BE(this.#counter, 8);
    return this.#out.toString('base64url') as DataNodeId;
  }
}

/** Cheap shape check for ids that arrive from the wire. */
export function isNodeIdShape(s: unknown): s is DataNodeId {
  return typeof s === 'string' && s.length === 22 && /^[A-Za-z0-9_-]{22}$/.test(s);
}
