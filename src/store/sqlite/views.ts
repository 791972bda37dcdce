/**
 * The objects handed to `read()` and `transaction()` callbacks. They validate
 * arguments at the edge, refuse use after their transaction ended (a callback
 * that leaks `tx` into a timer must not write into someone else's
 * transaction), translate driver errors into CryptodErrors that never quote
 * record contents, and — for transactions — collect the names each write
 * touched, for the change log (design note 3).
 */
import { CryptodError, InternalError, InvalidArgumentError, NotFoundError, StoreError } from '../../protocol/errors.js';
import type { KeystoreReader, KeystoreTx, KeyVersionRecord, KeyVersionState, ManagedKeyRecord } from '../keystore.js';
import {
  assertCount, assertKeyName, assertMetaKey, assertMetaValue, assertState, assertVersion,
  validateKeyRecord, validateVersionRecord,
} from '../records.js';
import type { ReadStatements, WriteStatements } from './statements.js';

/** Run a driver call; anything that is not already a CryptodError becomes a StoreError. */
export function driverCall<T>(op: string, f: () => T): T {
  try {
    return f();
  } catch (err) {
    if (err instanceof CryptodError) throw err;
    // SQLite messages name tables and constraints, never bound values, but
    // they stay in `cause` (never sent over the wire) all the same.
    throw new StoreError(`keystore ${op} failed`, { cause: err });
  }
}

export class SqliteReaderView implements KeystoreReader {
  readonly #s: ReadStatements;
  #live = true;
  readonly #what: string;

  constructor(statements: ReadStatements, what: 'read' | 'transaction') {
    this.#s = statements;
    this.#what = what;
  }

  /** Called when the read or transaction ends; every later call throws. */
  end(): void {
    this.#live = false;
  }

  protected check(): void {
    if (!this.#live) throw new InternalError(`this keystore ${this.#what} has already ended; do not keep its object past the callback`);
  }

  async getKey(name: string): Promise<ManagedKeyRecord | undefined> {
    this.check();
    assertKeyName(name);
    return driverCall('getKey', () => this.#s.getKey(name));
  }

  async listKeys(): Promise<ManagedKeyRecord[]> {
    this.check();
    return driverCall('listKeys', () => this.#s.listKeys());
  }

  async getVersions(name: string): Promise<KeyVersionRecord[]> {
    this.check();
    assertKeyName(name);
    return driverCall('getVersions', () => this.#s.getVersions(name));
  }

  async getVersion(name: string, version: number): Promise<KeyVersionRecord | undefined> {
    this.check();
    assertKeyName(name);
    assertVersion(version);
    return driverCall('getVersion', () => this.#s.getVersion(name, version));
  }

  async getMeta(key: string): Promise<string | undefined> {
    this.check();
    assertMetaKey(key);
    return driverCall('getMeta', () => this.#s.getMeta(key));
  }

  async generation(): Promise<number> {
    this.check();
    return driverCall('generation', () => this.#s.generation());
  }
}

export class SqliteTxView extends SqliteReaderView implements KeystoreTx {
  readonly #w: WriteStatements;
  /** Key names and meta keys this transaction wrote; logged at commit. */
  readonly changedNames = new Set<string>();
  readonly changedMeta = new Set<string>();
  /** Whether key material was erased, so the store can checkpoint old page images away. */
  destroyedMaterial = false;

  constructor(statements: WriteStatements) {
    super(statements, 'transaction');
    this.#w = statements;
  }

  get changed(): boolean {
    return this.changedNames.size > 0 || this.changedMeta.size > 0;
  }

  async putKey(record: ManagedKeyRecord): Promise<void> {
    this.check();
    const policyJson = validateKeyRecord(record);
    driverCall('putKey', () => this.#w.putKey(record, policyJson));
    this.changedNames.add(record.name);
  }

  async putVersion(record: KeyVersionRecord): Promise<void> {
    this.check();
    validateVersionRecord(record);
    driverCall('putVersion', () => {
      if (this.#w.getKey(record.name) === undefined) {
        throw new NotFoundError(`no managed key named "${record.name}"; put the key before its versions`);
      }
      if (this.#w.getVersion(record.name, record.version)?.state === 'destroyed') {
        throw new InvalidArgumentError(`version ${record.version} of "${record.name}" is destroyed and cannot be replaced`);
      }
      this.#w.putVersion(record);
    });
    this.changedNames.add(record.name);
  }

  async setVersionState(name: string, version: number, state: KeyVersionState): Promise<void> {
    this.check();
    assertKeyName(name);
    assertVersion(version);
    assertState(state);
    if (state === 'destroyed') return this.destroyVersionMaterial(name, version);
    const current = this.#existing('setVersionState', name, version);
    if (current.state === state) return;
    if (current.state === 'destroyed') {
      throw new InvalidArgumentError(`version ${version} of "${name}" is destroyed; its state cannot change`);
    }
    driverCall('setVersionState', () => this.#w.setState(name, version, state));
    this.changedNames.add(name);
  }

  async addEncryptions(name: string, version: number, n: number): Promise<number> {
    this.check();
    assertKeyName(name);
    assertVersion(version);
    assertCount('the number of encryptions to add', n, 1);
    const total = driverCall('addEncryptions', () => this.#w.addEncryptions(name, version, n));
    if (total === undefined) throw new NotFoundError(`no version ${version} of managed key "${name}"`);
    this.changedNames.add(name);
    return total;
  }

  async destroyVersionMaterial(name: string, version: number): Promise<void> {
    this.check();
    assertKeyName(name);
    assertVersion(version);
    if (this.#existing('destroyVersionMaterial', name, version).state === 'destroyed') return;
    driverCall('destroyVersionMaterial', () => this.#w.destroy(name, version));
    this.changedNames.add(name);
    this.destroyedMaterial = true;
  }

  async setMeta(key: string, value: string): Promise<void> {
    this.check();
    assertMetaKey(key);
    assertMetaValue(value);
    driverCall('setMeta', () => this.#w.setMeta(key, value));
    this.changedMeta.add(key);
  }

  #existing(op: string, name: string, version: number): KeyVersionRecord {
    const current = driverCall(op, () => this.#w.getVersion(name, version));
    if (current === undefined) throw new NotFoundError(`no version ${version} of managed key "${name}"`);
    return current;
  }
}
