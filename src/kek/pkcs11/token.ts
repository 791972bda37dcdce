/**
 * One PKCS#11 token, reached through its module (any vendor's `.so`): the
 * module's initialisation, the slot found by token label, the login, a pool
 * of sessions, and recovery when the token goes away and comes back.
 *
 *            withSession(fn)
 *                 │
 *        connected? ──no──▶ connect: C_Initialize ─▶ slot by label ─▶ session ─▶ C_Login
 *                 │ yes            (at most once per retryMs while the token is away;
 *                 ▼                 a refused PIN is never retried: tokens lock the PIN)
 *        a free session, or open one (≤ sessions), or wait in FIFO order
 *                 │
 *                 ▼
 *        fn(lib, session, generation) ── token gone? (CKR_DEVICE_REMOVED, CKR_SESSION_HANDLE_INVALID,
 *                 │                       CKR_TOKEN_NOT_PRESENT, CKR_CRYPTOKI_NOT_INITIALIZED, …)
 *                 │                          └─▶ reset (generation + 1; C_Finalize once no call is
 *                 │                              in flight) and one more try on a fresh connection;
 *                 ▼                              still gone ─▶ KekUnavailableError
 *        release the session (dropped if it belongs to an older generation)
 *
 * Why a pool: a session runs one operation at a time (C_EncryptInit …
 * C_Encrypt belong together), and the *Async calls run on libuv's thread
 * pool, so N sessions let N wraps proceed while the event loop serves other
 * clients. `sessions` defaults to 4, the size of libuv's pool
 * (UV_THREADPOOL_SIZE); more sessions than threads only queue there.
 *
 * C_Finalize is never called while another of our calls may be inside the
 * module on a pool thread: PKCS#11 leaves that undefined, and a module may
 * crash the process. A reset waits for the last in-flight call.
 *
 * What a second PKCS11 object in the same process shares: the module's
 * initialisation is per process, so one that calls C_Finalize ends our
 * sessions too. We notice (CKR_CRYPTOKI_NOT_INITIALIZED) and reconnect,
 * which is exactly what the tests use to take the token away.
 */
import { createRequire } from 'node:module';
import type * as P from 'pkcs11js';
import { KekUnavailableError } from '../../protocol/errors.js';

type Lib = P.PKCS11;
type Handle = Buffer;
type Pkcs11Module = typeof P;

/** Why a provider cannot serve now: `detail.reason` of CRYPTOD_ERR_KEK_UNAVAILABLE. */
export type UnavailableReason = 'not-present' | 'device' | 'login' | 'key-missing' | 'closed' | 'not-configured';

export interface TokenOptions {
  /** The provider's name in the configuration, for messages. */
  provider: string;
  /** Path of the PKCS#11 module (shared library). */
  module: string;
  /** Token label (CKA_LABEL of the token, without the padding blanks). */
  token: string;
  /** Slot ID, when several tokens carry the same label. */
  slot?: number;
  pin: string;
  /** Sessions in the pool (1..64). */
  sessions: number;
  /** Least time between two attempts to reconnect while the token is away, in ms. */
  retryMs: number;
  now?: () => number;
}

export interface SessionContext {
  readonly lib: Lib;
  readonly pkcs11: Pkcs11Module;
  readonly session: Handle;
  /** Bumped at every reconnect: object handles of an older generation are void. */
  readonly generation: number;
}

let loaded: Pkcs11Module | undefined;
/** pkcs11js is loaded when a pkcs11 provider is configured, not before (nothing costs until switched on). */
export function pkcs11Module(): Pkcs11Module {
  loaded ??= createRequire(import.meta.url)('pkcs11js') as Pkcs11Module;
  return loaded;
}

const libraries = new Map<string, Lib>();
/**
 * One PKCS11 object per module path, loaded once and never unloaded: a
 * module's library may register exit handlers (SoftHSM2's OpenSSL does), and
 * dlclose followed by a new dlopen has crashed processes at random later
 * points. Providers share the object; each has its own sessions.
 */
function library(path: string): Lib {
  let lib = libraries.get(path);
  if (lib === undefined) {
    lib = new (pkcs11Module().PKCS11)();
    lib.load(path);
    libraries.set(path, lib);
  }
  return lib;
}

/** The CKR_* name of a pkcs11js error, or undefined for anything else. */
export function ckrName(err: unknown): string | undefined {
  const m = err instanceof Error ? /^(CKR_[A-Z0-9_]+)/.exec(err.message) : null;
  return m?.[1];
}

/** Return values that mean the token, the session or the module's state is gone, not that the input was bad. */
const LOST = new Set([
  'CKR_DEVICE_REMOVED', 'CKR_DEVICE_ERROR', 'CKR_DEVICE_MEMORY', 'CKR_SESSION_HANDLE_INVALID', 'CKR_SESSION_CLOSED',
  'CKR_TOKEN_NOT_PRESENT', 'CKR_TOKEN_NOT_RECOGNIZED', 'CKR_CRYPTOKI_NOT_INITIALIZED', 'CKR_SLOT_ID_INVALID',
  'CKR_USER_NOT_LOGGED_IN', 'CKR_KEY_HANDLE_INVALID', 'CKR_OBJECT_HANDLE_INVALID', 'CKR_FUNCTION_FAILED',
]);

/** Raised by a caller's probe that found the token gone although the failing call's return value did not say so. */
export class TokenLostError extends Error {}

export function isLost(err: unknown): boolean {
  if (err instanceof TokenLostError) return true;
  const name = ckrName(err);
  return name !== undefined && LOST.has(name);
}

/** PKCS#11 session state of a read/write session with the user logged in (pkcs11js exports no CKS_* constants). */
const CKS_RW_USER_FUNCTIONS = 3;

function slotNumber(h: Handle): number {
  return h.length >= 8 ? Number(h.readBigUInt64LE(0)) : h.readUInt32LE(0);
}

export class Pkcs11Token {
  readonly #o: TokenOptions;
  readonly #pkcs11: Pkcs11Module;
  readonly #lib: Lib;
  readonly #now: () => number;
  #connected = false;
  #slot: Handle | null = null;
  #generation = 0;
  #free: Handle[] = [];
  #open = 0;
  #inFlight = 0;
  #finalizePending = false;
  #waiters: Array<() => void> = [];
  #lastAttempt = Number.NEGATIVE_INFINITY;
  #lastFailure: InstanceType<typeof KekUnavailableError> | null = null;
  #loginRefused: InstanceType<typeof KekUnavailableError> | null = null;
  #closed = false;

  /**
   * Load the module and connect (sync: start-up only).
   * @throws KekUnavailableError when the module cannot be loaded, no token carries the label, or the PIN is refused.
   */
  constructor(options: TokenOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
    this.#pkcs11 = pkcs11Module();
    try {
      this.#lib = library(options.module);
    } catch (cause) {
      throw this.#unavailable('not-present', `cannot load the PKCS#11 module ${options.module}: ${(cause as Error).message}`, cause);
    }
    this.#connect();
  }

  get generation(): number {
    return this.#generation;
  }

  /** The configured provider name. */
  get provider(): string {
    return this.#o.provider;
  }

  /**
   * Run `fn` on a session of its own. A lost token is reconnected and `fn`
   * tried once more; `fn` must therefore be safe to repeat (wrap and unwrap are).
   */
  async withSession<T>(fn: (ctx: SessionContext) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const ctx = await this.#acquire();
      let lost = false;
      let failed = false;
      try {
        return await fn(ctx);
      } catch (err) {
        failed = true;
        if (!isLost(err)) {
          const name = ckrName(err);
          if (name === undefined) throw err;
          throw this.#unavailable('device', `the token "${this.#o.token}" failed the operation (${name})`, err, name);
        }
        lost = true;
        this.#reset();
        if (attempt >= 1 || this.#closed) throw this.#unavailable('device', `the token "${this.#o.token}" went away during the operation (${ckrName(err) ?? 'probe failed'})`, err, ckrName(err));
      } finally {
        this.#release(ctx, lost, failed);
      }
    }
  }

  /** Mark the connection dead (the caller saw the token go): the next call reconnects. */
  invalidate(): void {
    this.#reset();
  }

  /** End this provider's sessions (the library stays loaded and initialised, see library()). Later calls fail with reason `closed`. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const w of this.#waiters.splice(0)) w();
    while (this.#inFlight > 0) await new Promise((r) => setTimeout(r, 5));
    // Our sessions only: C_Finalize would end those of another provider on the same module.
    for (const s of this.#free.splice(0)) {
      try {
        this.#lib.C_CloseSession(s);
      } catch {
        // already gone with the token
      }
    }
    this.#connected = false;
    this.#open = 0;
    if (this.#finalizePending) this.#finalize();
  }

  async #acquire(): Promise<SessionContext> {
    for (;;) {
      if (this.#closed) throw this.#unavailable('closed', `the KEK provider ${this.#o.provider} is closed`);
      if (!this.#connected) this.#reconnect();
      const session = this.#free.pop() ?? (this.#open < this.#o.sessions ? this.#openSession() : undefined);
      if (session !== undefined) {
        this.#inFlight++;
        return { lib: this.#lib, pkcs11: this.#pkcs11, session, generation: this.#generation };
      }
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  /**
   * Back to the pool, unless the call failed: a failed operation may leave
   * the session mid-operation (CKR_OPERATION_ACTIVE on its next Init), so the
   * session is closed and a fresh one opened when needed.
   */
  #release(ctx: SessionContext, lost: boolean, failed: boolean): void {
    this.#inFlight--;
    const current = ctx.generation === this.#generation && this.#connected;
    if (current && !lost && !failed) this.#free.push(ctx.session);
    else if (current && !lost) {
      this.#open--;
      try {
        this.#lib.C_CloseSession(ctx.session);
      } catch {
        // the session is gone either way
      }
    }
    if (this.#finalizePending && this.#inFlight === 0) this.#finalize();
    this.#waiters.shift()?.();
  }

  #openSession(): Handle {
    const p = this.#pkcs11;
    try {
      const s = this.#lib.C_OpenSession(this.#slot!, p.CKF_SERIAL_SESSION | p.CKF_RW_SESSION);
      this.#open++;
      // Closing a failed session may have closed the last one, which logs the user out.
      if (this.#lib.C_GetSessionInfo(s).state !== CKS_RW_USER_FUNCTIONS) {
        try {
          this.#lib.C_Login(s, p.CKU_USER, this.#o.pin);
        } catch (err) {
          if (ckrName(err) !== 'CKR_USER_ALREADY_LOGGED_IN') throw err;
        }
      }
      return s;
    } catch (err) {
      this.#reset();
      throw this.#unavailable('device', `cannot open a session on the token "${this.#o.token}" (${ckrName(err) ?? (err as Error).message})`, err, ckrName(err));
    }
  }

  /** Reconnect after a loss, at most once per retryMs; between attempts the last failure is repeated at once. */
  #reconnect(): void {
    if (this.#loginRefused !== null) throw this.#loginRefused;
    if (this.#inFlight > 0 || this.#finalizePending) {
      throw this.#unavailable('device', `the token "${this.#o.token}" is being reconnected; retry`);
    }
    if (this.#lastFailure !== null && this.#now() - this.#lastAttempt < this.#o.retryMs) throw this.#lastFailure;
    this.#connect();
  }

  #connect(): void {
    const p = this.#pkcs11;
    const lib = this.#lib;
    this.#lastAttempt = this.#now();
    try {
      try {
        // CKF_OS_LOCKING_OK: the *Async calls enter the module from several threads at once. Without
        // the flag PKCS#11 lets a module assume one thread, and SoftHSM2 then takes no locks (crashes, hangs).
        lib.C_Initialize({ flags: p.CKF_OS_LOCKING_OK });
      } catch (err) {
        if (ckrName(err) !== 'CKR_CRYPTOKI_ALREADY_INITIALIZED') throw err;
      }
      const matches = lib.C_GetSlotList(true).filter((slot) => {
        if (this.#o.slot !== undefined && slotNumber(slot) !== this.#o.slot) return false;
        return lib.C_GetTokenInfo(slot).label.trim() === this.#o.token;
      });
      if (matches.length === 0) {
        throw this.#unavailable(
          'not-present',
          `no token labelled "${this.#o.token}"${this.#o.slot === undefined ? '' : ` in slot ${this.#o.slot}`} is present in ${this.#o.module}; ` +
            'plug the token in (or initialise it), or fix `token:` of the provider',
        );
      }
      if (matches.length > 1) {
        throw this.#unavailable('not-present', `${matches.length} tokens are labelled "${this.#o.token}" in ${this.#o.module}; name the slot (\`slot:\`) of the provider`);
      }
      this.#slot = matches[0]!;
      this.#generation++;
      this.#free = [];
      this.#open = 0;
      const first = lib.C_OpenSession(this.#slot, p.CKF_SERIAL_SESSION | p.CKF_RW_SESSION);
      this.#open = 1;
      try {
        lib.C_Login(first, p.CKU_USER, this.#o.pin);
      } catch (err) {
        const name = ckrName(err);
        if (name !== 'CKR_USER_ALREADY_LOGGED_IN') {
          if (name === undefined || /PIN|USER/.test(name)) {
            // Never retried: a token locks its PIN after a few wrong tries.
            this.#loginRefused = this.#unavailable('login', `the token "${this.#o.token}" refused the PIN (${name ?? 'error'}); fix the PIN source of the provider and restart`, undefined, name);
            throw this.#loginRefused;
          }
          throw err;
        }
      }
      this.#free.push(first);
      this.#connected = true;
      this.#lastFailure = null;
    } catch (err) {
      const failure = err instanceof KekUnavailableError
        ? err
        : this.#unavailable('device', `cannot reach the token "${this.#o.token}" through ${this.#o.module} (${ckrName(err) ?? (err as Error).message})`, err, ckrName(err));
      this.#lastFailure = failure;
      this.#connected = false;
      this.#finalize();
      throw failure;
    }
  }

  #reset(): void {
    if (this.#connected) this.#generation++;
    this.#connected = false;
    this.#free = [];
    this.#open = 0;
    this.#finalizePending = true;
    if (this.#inFlight === 0) this.#finalize();
  }

  #finalize(): void {
    this.#finalizePending = false;
    try {
      this.#lib.C_Finalize();
    } catch {
      // not initialised (another PKCS11 object finalized it): nothing to end
    }
  }

  #unavailable(reason: UnavailableReason, message: string, cause?: unknown, ckr?: string): InstanceType<typeof KekUnavailableError> {
    return new KekUnavailableError(message, {
      ...(cause === undefined ? {} : { cause }),
      detail: { provider: this.#o.provider, reason, ...(ckr === undefined ? {} : { ckr }) },
    });
  }
}
