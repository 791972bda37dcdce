/**
 * Vault's reply shapes (https://developer.hashicorp.com/vault/api-docs#http-status-codes):
 *
 *   success  200 { request_id, lease_id, renewable, lease_duration, data, wrap_info, warnings, auth }
 *            204 (no body) for writes that return nothing
 *   failure  4xx/5xx { errors: [ "message", … ] }, Content-Type: application/json
 *
 * A cryptod error keeps its stable code at the head of the message
 * (`CRYPTOD_ERR_NOT_FOUND: no managed key named 'x'`), so a Vault client that
 * shows `errors` shows the code too.
 */
import { randomUUID } from 'node:crypto';
import type { CryptodError } from '../protocol/errors.js';

/** An HTTP reply: a status and a JSON body (null: no body, 204). */
export interface VaultReply {
  readonly status: number;
  readonly body: unknown;
  /** Extra headers (Allow for 405). */
  readonly headers?: Readonly<Record<string, string>>;
}

/** A request the API answers with Vault's error body. */
export class VaultHttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    /** Extra headers (Allow for 405). */
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
  }
}

export function badRequest(message: string): VaultHttpError {
  return new VaultHttpError(400, message);
}

/** The success envelope around `data` (null for endpoints whose data is empty). */
export function envelope(data: unknown, warnings: string[] | null = null): VaultReply {
  return {
    status: 200,
    body: { request_id: randomUUID(), lease_id: '', renewable: false, lease_duration: 0, data, wrap_info: null, warnings, auth: null },
  };
}

export const NO_CONTENT: VaultReply = { status: 204, body: null };

export function errorBody(messages: readonly string[]): { errors: readonly string[] } {
  return { errors: messages };
}

/**
 * The HTTP status for a cryptod error: the status Vault gives the same
 * situation. Unknown codes are 400 (the request could not be served as
 * sent), never 500, which is kept for CRYPTOD_ERR_INTERNAL.
 */
export function statusOf(err: CryptodError): number {
  switch (err.code) {
    case 'CRYPTOD_ERR_NOT_FOUND':
      return 404;
    case 'CRYPTOD_ERR_FORBIDDEN':
    case 'CRYPTOD_ERR_AUTH_FAILED':
    case 'CRYPTOD_ERR_ACCESS_DENIED':
    case 'CRYPTOD_ERR_NOT_EXTRACTABLE':
      return 403;
    case 'CRYPTOD_ERR_SHUTTING_DOWN':
      return 503;
    case 'CRYPTOD_ERR_BUSY':
    case 'CRYPTOD_ERR_STORE_BUSY':
    case 'CRYPTOD_ERR_QUOTA':
    case 'CRYPTOD_ERR_MEMORY_LIMIT':
    case 'CRYPTOD_ERR_TOO_MANY_CONNECTIONS':
      return 429;
    case 'CRYPTOD_ERR_FRAME_TOO_LARGE':
      return 413;
    case 'CRYPTOD_ERR_INTERNAL':
    case 'CRYPTOD_ERR_STORE':
      return 500;
    default:
      return 400;
  }
}

export function messageOf(err: CryptodError): string {
  return `${err.code}: ${err.message}`;
}
