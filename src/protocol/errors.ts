/**
 * The one registry of cryptod error codes.
 *
 * Every error that crosses the wire carries `{ code, message, detail? }`; the
 * client rebuilds the same class from the code (see {@link errorFromWire}).
 * Codes are stable: a retired code is never reused, only marked retired here
 * and in `docs/errors.md`. `test/errors.test.ts` checks that every code below
 * is documented and that every documented code exists.
 */

export interface ErrorDetail {
  readonly [field: string]: string | number | boolean | null | undefined;
}

/**
 * Marks an error that is not a CryptodError but stands for one: `client.subtle`
 * throws WebCrypto's DOMException or TypeError (src/client/webcrypto/errors.ts)
 * with this property set to its cryptod code, so `err instanceof
 * InvalidKeyError` keeps working for code written against cryptod's classes.
 */
export const CRYPTOD_CODE: unique symbol = Symbol.for('cryptod.error.code');

export class CryptodError extends Error {
  static override [Symbol.hasInstance](v: unknown): boolean {
    if (Function.prototype[Symbol.hasInstance].call(this, v)) return true;
    if (v === null || typeof v !== 'object') return false;
    const marked = (v as { [CRYPTOD_CODE]?: unknown })[CRYPTOD_CODE];
    const own = (this as { code?: unknown }).code; // set on each registered class; the base class matches any code
    return typeof marked === 'string' && (own === undefined || own === marked);
  }

  /** Stable machine-readable code, e.g. `CRYPTOD_ERR_NOT_FOUND`. */
  readonly code: string;
  /** Structured fields that say what was expected; never secret material. */
  readonly detail: ErrorDetail | undefined;

  constructor(code: string, message: string, options?: { cause?: unknown; detail?: ErrorDetail }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.detail = options?.detail;
  }

  override get name(): string {
    return this.constructor.name;
  }

  toJSON(): { code: string; message: string; detail?: ErrorDetail } {
    return this.detail === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, detail: this.detail };
  }
}

type ErrorClass = new (message?: string, options?: { cause?: unknown; detail?: ErrorDetail }) => CryptodError;

const registry = new Map<string, { cls: ErrorClass; defaultMessage: string }>();

function define(code: string, defaultMessage: string): ErrorClass {
  const cls = class extends CryptodError {
    static readonly code = code;
    constructor(message: string = defaultMessage, options?: { cause?: unknown; detail?: ErrorDetail }) {
      super(code, message, options);
    }
  };
  registry.set(code, { cls, defaultMessage });
  return cls;
}

// Naming the classes through `const X = define(...)` keeps `X.name` right and lets
// `instanceof X` work on both sides of the wire.
function named<T extends ErrorClass>(name: string, cls: T): T {
  Object.defineProperty(cls, 'name', { value: name });
  return cls;
}

// ── state ────────────────────────────────────────────────────────────────
export const NotFoundError = named('NotFoundError', define('CRYPTOD_ERR_NOT_FOUND', 'no such object'));
export const BusyError = named('BusyError', define('CRYPTOD_ERR_BUSY', 'the object is in use by another request'));
export const QuotaError = named('QuotaError', define('CRYPTOD_ERR_QUOTA', 'quota exceeded'));
export const ExpiredError = named('ExpiredError', define('CRYPTOD_ERR_EXPIRED', 'the context expired after being idle'));
export const MemoryLimitError = named('MemoryLimitError', define('CRYPTOD_ERR_MEMORY_LIMIT', 'the daemon has no memory left for another context'));
// ── input ────────────────────────────────────────────────────────────────
export const InvalidArgumentError = named('InvalidArgumentError', define('CRYPTOD_ERR_INVALID_ARGUMENT', 'invalid argument'));
export const InvalidKeyError = named('InvalidKeyError', define('CRYPTOD_ERR_INVALID_KEY', 'the key cannot be used for this operation'));
export const DataError = named('DataError', define('CRYPTOD_ERR_DATA', 'malformed key data'));
export const UnsupportedError = named('UnsupportedError', define('CRYPTOD_ERR_UNSUPPORTED', 'not supported'));
export const NotExtractableError = named('NotExtractableError', define('CRYPTOD_ERR_NOT_EXTRACTABLE', 'the key is not extractable'));
export const DecryptError = named('DecryptError', define('CRYPTOD_ERR_DECRYPT_FAILED', 'decryption failed: the data is not authentic'));
export const OperationError = named('OperationError', define('CRYPTOD_ERR_OPERATION', 'the operation failed'));
// ── managed keys ─────────────────────────────────────────────────────────
export const KeyVersionError = named('KeyVersionError', define('CRYPTOD_ERR_KEY_VERSION', 'the key version cannot be used now'));
export const KeyDisabledError = named('KeyDisabledError', define('CRYPTOD_ERR_KEY_DISABLED', 'the managed key is disabled'));
export const KeyDamagedError = named('KeyDamagedError', define('CRYPTOD_ERR_KEY_DAMAGED', 'the key version is damaged in the keystore'));
export const ForbiddenError = named('ForbiddenError', define('CRYPTOD_ERR_FORBIDDEN', 'the key policy does not allow this client this operation'));
// ── protocol ─────────────────────────────────────────────────────────────
export const BadFrameError = named('BadFrameError', define('CRYPTOD_ERR_BAD_FRAME', 'malformed frame'));
export const FrameTooLargeError = named('FrameTooLargeError', define('CRYPTOD_ERR_FRAME_TOO_LARGE', 'frame exceeds the maximum frame size'));
export const UnknownOperationError = named('UnknownOperationError', define('CRYPTOD_ERR_UNKNOWN_OP', 'unknown operation'));
export const ProtocolVersionError = named('ProtocolVersionError', define('CRYPTOD_ERR_PROTOCOL_VERSION', 'unsupported protocol version'));
export const HandshakeError = named('HandshakeError', define('CRYPTOD_ERR_HANDSHAKE', 'the connection has not completed the handshake'));
export const AuthFailedError = named('AuthFailedError', define('CRYPTOD_ERR_AUTH_FAILED', 'authentication failed'));
export const TooManyConnectionsError = named('TooManyConnectionsError', define('CRYPTOD_ERR_TOO_MANY_CONNECTIONS', 'the client has too many connections open'));
export const AccessDeniedError = named('AccessDeniedError', define('CRYPTOD_ERR_ACCESS_DENIED', "the daemon's access policy does not admit this user"));
// ── lifecycle ────────────────────────────────────────────────────────────
export const ConnectionClosedError = named('ConnectionClosedError', define('CRYPTOD_ERR_CONNECTION_CLOSED', 'the connection to the daemon is closed'));
export const ShuttingDownError = named('ShuttingDownError', define('CRYPTOD_ERR_SHUTTING_DOWN', 'the daemon is shutting down'));
export const DaemonRunningError = named('DaemonRunningError', define('CRYPTOD_ERR_DAEMON_RUNNING', 'another daemon is already listening on this socket'));
export const ConfigError = named('ConfigError', define('CRYPTOD_ERR_CONFIG', 'invalid configuration'));
// ── keystore ─────────────────────────────────────────────────────────────
export const StoreError = named('StoreError', define('CRYPTOD_ERR_STORE', 'the keystore failed'));
export const StoreBusyError = named('StoreBusyError', define('CRYPTOD_ERR_STORE_BUSY', 'the keystore is locked by another process; try again'));
export const StoreUnavailableError = named('StoreUnavailableError', define('CRYPTOD_ERR_STORE_UNAVAILABLE', 'the keystore cannot be reached; try again'));
export const LeaseLostError = named('LeaseLostError', define('CRYPTOD_ERR_LEASE_LOST', 'another process took the fleet lease'));
export const NotAcknowledgedError = named('NotAcknowledgedError', define('CRYPTOD_ERR_NOT_ACKNOWLEDGED', 'the change is committed, but not every live daemon has acknowledged it yet'));
export const InternalError = named('InternalError', define('CRYPTOD_ERR_INTERNAL', 'internal error'));
// ── data keys ─────────────────────────────────────────────────────────────
export const KekTimeoutError = named('KekTimeoutError', define('CRYPTOD_ERR_KEK_TIMEOUT', 'the KEK provider did not unwrap the data key in time'));
// ── KEK providers ────────────────────────────────────────────────────────
export const KekUnavailableError = named('KekUnavailableError', define('CRYPTOD_ERR_KEK_UNAVAILABLE', 'the key-encryption key provider is unavailable'));
// ── key backups ───────────────────────────────────────────────────────────
export const BackupInvalidError = named('BackupInvalidError', define('CRYPTOD_ERR_BACKUP_INVALID', 'the key backup is not authentic, not from a trusted signer, or not for this daemon'));

/** Every registered code, in registration order. */
export function errorCodes(): string[] {
  return [...registry.keys()];
}

/** Rebuild an error that came over the wire as the same typed class. */
export function errorFromWire(code: unknown, message: unknown, detail?: unknown): CryptodError {
  const msg = typeof message === 'string' ? message : 'error without message';
  const det = isDetail(detail) ? detail : undefined;
  const entry = typeof code === 'string' ? registry.get(code) : undefined;
  if (entry === undefined) {
    // A newer daemon may send a code this client does not know: keep the code.
    return new CryptodError(typeof code === 'string' ? code : 'CRYPTOD_ERR_INTERNAL', msg, det === undefined ? undefined : { detail: det });
  }
  return new entry.cls(msg, det === undefined ? undefined : { detail: det });
}

function isDetail(value: unknown): value is ErrorDetail {
  if (value === null || typeof value !== 'object' || Array.isArray(value) || value instanceof Uint8Array) return false;
  for (const v of Object.values(value)) {
    if (v !== null && v !== undefined && typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') return false;
  }
  return true;
}

/** Convert anything thrown inside the daemon into a wire-safe CryptodError. */
export function toCryptodError(err: unknown): CryptodError {
  if (err instanceof CryptodError) return err;
  // Never forward foreign messages verbatim: they can quote inputs.
  return new InternalError('internal error while processing the request', { cause: err });
}
