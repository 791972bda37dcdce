/**
 * WebCrypto's error names for `client.subtle` (W3C Web Cryptography API §6
 * "Exceptions"): code written for `crypto.subtle` branches on `err.name`, so
 * `client.subtle` throws what `crypto.subtle` throws — a `DOMException` named
 * `NotSupportedError`, `SyntaxError`, `InvalidAccessError`, `DataError`,
 * `OperationError` or `QuotaExceededError`, or a plain `TypeError` — and
 * keeps cryptod's stable `code` and `detail` on it.
 *
 * The wire keeps cryptod's codes (src/protocol/errors.ts). One code can stand
 * for several WebCrypto names (CRYPTOD_ERR_INVALID_ARGUMENT is a SyntaxError
 * for usages, an OperationError for a key length, a TypeError for a missing
 * member); the daemon then says which in `detail.webcrypto`. The table is
 * docs/errors.md "WebCrypto names".
 */
import { CRYPTOD_CODE, CryptodError, type ErrorDetail } from '../../protocol/errors.js';

export type WebCryptoErrorName =
  | 'NotSupportedError'
  | 'SyntaxError'
  | 'InvalidAccessError'
  | 'DataError'
  | 'OperationError'
  | 'QuotaExceededError'
  | 'TypeError';

const NAMES = new Set<string>(['NotSupportedError', 'SyntaxError', 'InvalidAccessError', 'DataError', 'OperationError', 'QuotaExceededError', 'TypeError']);

/** The WebCrypto name of each code that a subtle call can meet; a code not listed is an OperationError. */
export const WEBCRYPTO_NAME_BY_CODE: Readonly<Record<string, WebCryptoErrorName>> = {
  CRYPTOD_ERR_UNSUPPORTED: 'NotSupportedError',
  // Without detail.webcrypto: a member of the wrong type or a missing one (WebIDL).
  CRYPTOD_ERR_INVALID_ARGUMENT: 'TypeError',
  CRYPTOD_ERR_INVALID_KEY: 'InvalidAccessError',
  CRYPTOD_ERR_NOT_EXTRACTABLE: 'InvalidAccessError',
  // A released key (or one its connection took with it) cannot be used: WebCrypto has no "gone" key.
  CRYPTOD_ERR_NOT_FOUND: 'InvalidAccessError',
  CRYPTOD_ERR_DATA: 'DataError',
  CRYPTOD_ERR_DECRYPT_FAILED: 'OperationError',
  CRYPTOD_ERR_OPERATION: 'OperationError',
  CRYPTOD_ERR_QUOTA: 'QuotaExceededError',
  CRYPTOD_ERR_MEMORY_LIMIT: 'QuotaExceededError',
  CRYPTOD_ERR_FRAME_TOO_LARGE: 'QuotaExceededError',
};

/** The WebCrypto name for a cryptod code and detail: `detail.webcrypto` first, then the table. */
export function webCryptoName(code: string, detail?: ErrorDetail): WebCryptoErrorName {
  const named = detail?.webcrypto;
  if (typeof named === 'string' && NAMES.has(named)) return named as WebCryptoErrorName;
  return WEBCRYPTO_NAME_BY_CODE[code] ?? 'OperationError';
}

/** The fields every error from `client.subtle` carries besides WebCrypto's name and message. */
export interface CryptodErrorFields {
  /** cryptod's stable code (docs/errors.md), e.g. `CRYPTOD_ERR_INVALID_KEY`. */
  readonly code: string;
  readonly detail: ErrorDetail | undefined;
}

/**
 * A DOMException with cryptod's code. `code` shadows DOMException's legacy
 * numeric code (deprecated in WebIDL; `err.name` is what WebCrypto code reads).
 */
// DOMException's own typing says `code` is a number: this base forgets it so that ours can be the text code.
const DOMExceptionBase = DOMException as unknown as new (message: string, options: { name: string; cause?: unknown }) => Omit<DOMException, 'code'>;

export class SubtleDOMException extends DOMExceptionBase implements CryptodErrorFields {
  declare readonly code: string;
  readonly detail: ErrorDetail | undefined;

  constructor(name: Exclude<WebCryptoErrorName, 'TypeError'>, message: string, code: string, detail?: ErrorDetail, cause?: unknown) {
    super(message, cause === undefined ? { name } : { name, cause });
    Object.defineProperty(this, 'code', { value: code, enumerable: true });
    Object.defineProperty(this, CRYPTOD_CODE, { value: code });
    this.detail = detail;
  }
}

/** A TypeError (WebIDL conversion failed) with cryptod's code. */
export class SubtleTypeError extends TypeError implements CryptodErrorFields {
  readonly code: string;
  readonly detail: ErrorDetail | undefined;

  constructor(message: string, code: string, detail?: ErrorDetail, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.code = code;
    Object.defineProperty(this, CRYPTOD_CODE, { value: code });
    this.detail = detail;
  }
}

export type SubtleError = SubtleDOMException | SubtleTypeError;

/** Make the error `client.subtle` throws. */
export function subtleError(name: WebCryptoErrorName, message: string, code: string, detail?: ErrorDetail, cause?: unknown): SubtleError {
  return name === 'TypeError' ? new SubtleTypeError(message, code, detail, cause) : new SubtleDOMException(name, message, code, detail, cause);
}

/**
 * Anything a subtle call threw, as WebCrypto names it: a cryptod error (from
 * the daemon or the connection) keeps its code, detail and message, and is the
 * `cause`; an error that already has its WebCrypto name passes through.
 */
export function toSubtleError(err: unknown): unknown {
  if (err instanceof SubtleDOMException || err instanceof SubtleTypeError) return err;
  if (err instanceof CryptodError) return subtleError(webCryptoName(err.code, err.detail), err.message, err.code, err.detail, err);
  return err;
}

/** Shorthands for the checks in this folder, each with the code the daemon would give the same mistake. */
export const fail = {
  type: (message: string, detail?: ErrorDetail): never => {
    throw new SubtleTypeError(message, 'CRYPTOD_ERR_INVALID_ARGUMENT', detail);
  },
  notSupported: (message: string, detail?: ErrorDetail): never => {
    throw new SubtleDOMException('NotSupportedError', message, 'CRYPTOD_ERR_UNSUPPORTED', detail);
  },
  syntax: (message: string, detail?: ErrorDetail): never => {
    throw new SubtleDOMException('SyntaxError', message, 'CRYPTOD_ERR_INVALID_ARGUMENT', { ...detail, webcrypto: 'SyntaxError' });
  },
  invalidAccess: (message: string, detail?: ErrorDetail): never => {
    throw new SubtleDOMException('InvalidAccessError', message, 'CRYPTOD_ERR_INVALID_KEY', detail);
  },
  data: (message: string, detail?: ErrorDetail): never => {
    throw new SubtleDOMException('DataError', message, 'CRYPTOD_ERR_DATA', detail);
  },
  operation: (message: string, detail?: ErrorDetail): never => {
    throw new SubtleDOMException('OperationError', message, 'CRYPTOD_ERR_OPERATION', detail);
  },
  /** A parameter value the algorithm refuses (a key length, an iv, a tag length): the daemon's INVALID_ARGUMENT, WebCrypto's OperationError. */
  badParameter: (message: string, detail?: ErrorDetail): never => {
    throw new SubtleDOMException('OperationError', message, 'CRYPTOD_ERR_INVALID_ARGUMENT', { ...detail, webcrypto: 'OperationError' });
  },
  released: (message: string, detail?: ErrorDetail): never => {
    throw new SubtleDOMException('InvalidAccessError', message, 'CRYPTOD_ERR_NOT_FOUND', detail);
  },
};
