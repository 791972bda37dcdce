/**
 * The objects handed to `read()` and `transaction()` callbacks on
 * PostgreSQL; the same contract as the SQLite views (src/store/sqlite/views.ts):
 * arguments validated at the edge (records.ts, shared, so both backends
 * refuse the same inputs), use after the end refused, driver errors
 * translated (pg-errors.ts), and the names each write touched collected for
 * the change log.
 */
import { InternalError, InvalidArgumentError, NotFoundError } from '../../protocol/errors.js';
import type { KeystoreReader, KeystoreTx, KeyVersionRecord, KeyVersionState, ManagedKeyRecord } from '../keystore.js';
import {
  assertCount, assertKeyName, assertMetaKey, assertMetaValue, assertState, assertVersion,
  validateKeyRecord, validateVersionRecord,
} from '../records.js';
import { storeError } from './pg-errors.js';
import * as sql from './queries.js';

export class PgReaderView implements KeystoreReader {
  protected readonly q: sql.Queryable;
  readonly #where: string;
  readonly #what: string;
  #live = true;

  constructor(q: sql.Queryable, where: string, what: 'read' | 'transaction') {
    this.q = q;
    this.#where = where;
    this.#what = what;
  }

  end(): void {
    this.#live = false;
  }

  protected check(): void {
    if (!this.#live) throw new InternalError(`this keystore ${this.#what} has already ended; do not keep its object past the callback`);
  }

  protected async call<T>(op: string, f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (err) {
      throw storeError(op, this.#where, err);
    }
  }

  async getKey(name: string): Promise<ManagedKeyRecord | undefined> {
    this.check();
    assertKeyName(name);
    return this.call('getKey', () => sql.getKey(this.q, name));
  }

  async listKeys(): Promise<ManagedKeyRecord[]> {
    this.check();
    return this.call('listKeys', () => sql.listKeys(this.q));
  }

  async getVersions(name: string): Promise<KeyVersionRecord[]> {
    this.check();
    assertKeyName(name);
    return this.call('getVersions', () => sql.getVersions(this.q, name));
  }

  async getVersion(name: string, version: number): Promise<KeyVersionRecord | undefined> {
    this.check();
    assertKeyName(name);
    assertVersion(version);
    return this.call('getVersion', () => sql.getVersion(this.q, name, version));
  }

  async getMeta(key: string): Promise<string | undefined> {
    this.check();
    assertMetaKey(key);
    return this.call('getMeta', () => sql.getMeta(this.q, key));
  }

  async generation(): Promise<number> {
    this.check();
    return this.call('generation', () => sql.generation(this.q));
  }
}

export class PgTxView extends PgReaderView implements KeystoreTx {
  readonly changedNames = new Set<string>();
  readonly changedMeta = new Set<string>();

  constructor(q: sql.Queryable, where: string) {
    super(q, where, 'transaction');
  }

  get changed(): boolean {
    return this.changedNames.size > 0 || this.changedMeta.size > 0;
  }

  async putKey(record: ManagedKeyRecord): Promise<void> {
    this.check();
    const policyJson = validateKeyRecord(record);
    await this.call('putKey', () => sql.putKey(this.q, record, policyJson));
    this.changedNames.add(record.name);
  }

  async putVersion(record: KeyVersionRecord): Promise<void> {
    this.check();
    validateVersionRecord(record);
    await this.call('putVersion', async () => {
      if ((await sql.getKey(this.q, record.name)) === undefined) {
        throw new NotFoundError(`no managed key named "${record.name}"; put the key before its versions`);
      }
      if ((await sql.getVersion(this.q, record.name, record.version))?.state === 'destroyed') {
        throw new InvalidArgumentError(`version ${record.version} of "${record.name}" is destroyed and cannot be replaced`);
      }
      await sql.putVersion(this.q, record);
    });
    this.changedNames.add(record.name);
  }

  async setVersionState(name: string, version: number, state: KeyVersionState): Promise<void> {
    this.check();
    assertKeyName(name);
    assertVersion(version);
    assertState(state);
    if (state === 'destroyed') return this.destroyVersionMaterial(name, version);
    const current = await this.#existing('setVersionState', name, version);
    if (current.state === state) return;
    if (current.state === 'destroyed') throw new InvalidArgumentError(`version ${version} of "${name}" is destroyed; its state cannot change`);
    await this.call('setVersionState', () => sql.setState(this.q, name, version, state));
    this.changedNames.add(name);
  }

  async addEncryptions(name: string, version: number, n: number): Promise<number> {
    this.check();
    assertKeyName(name);
    assertVersion(version);
    assertCount('the number of encryptions to add', n, 1);
    const total = await this.call('addEncryptions', () => sql.addEncryptions(this.q, name, version, n));
    if (total === undefined) throw new NotFoundError(`no version ${version} of managed key "${name}"`);
    this.changedNames.add(name);
    return total;
  }

  async destroyVersionMaterial(name: string, version: number): Promise<void> {
    this.check();
    assertKeyName(name);
    assertVersion(version);
    if ((await this.#existing('destroyVersionMaterial', name, version)).state === 'destroyed') return;
    await this.call('destroyVersionMaterial', () => sql.destroy(this.q, name, version));
    this.changedNames.add(name);
  }

  async setMeta(key: string, value: string): Promise<void> {
    this.check();
    assertMetaKey(key);
    assertMetaValue(value);
    await this.call('setMeta', () => sql.setMeta(this.q, key, value));
    this.changedMeta.add(key);
  }

  async #existing(op: string, name: string, version: number): Promise<KeyVersionRecord> {
    const current = await this.call(op, () => sql.getVersion(this.q, name, version));
    if (current === undefined) throw new NotFoundError(`no version ${version} of managed key "${name}"`);
    return current;
  }
}
