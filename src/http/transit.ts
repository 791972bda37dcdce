/**
 * Vault's transit secrets engine (https://developer.hashicorp.com/vault/api-docs/secret/transit),
 * each endpoint mapped onto the managed-key operations (docs/vault-compat.md
 * has the table). Nothing here does cryptography with a key: every request
 * becomes one operation (or one per key version, for a key's public keys)
 * run through the daemon's chain by `call`.
 *
 *   keys            LIST/GET ?list ─▶ KEY_LIST      POST ─▶ KEY_CREATE
 *   keys/:name      GET ─▶ KEY_DESCRIBE (+ KEY_PUBLIC)   DELETE ─▶ KEY_DESTROY
 *     …/config ─▶ KEY_SET_POLICY   …/rotate ─▶ KEY_ROTATE   …/trim ─▶ KEY_TRIM
 *   encrypt decrypt rewrap ─▶ MANAGED_ENCRYPT / _DECRYPT / _REWRAP (batch: items)
 *   sign verify hmac ─▶ MANAGED_SIGN / _VERIFY / _MAC / _VERIFY_MAC
 *   hash ─▶ DIGEST   random (no key)   export ─▶ KEY_EXPORT / KEY_PUBLIC
 *   datakey/plaintext|wrapped ─▶ DATAKEY_GENERATE (and decrypt, rewrap of its
 *     ciphertexts ─▶ DATAKEY_UNWRAP / _REWRAP: transit-datakeys.ts)
 *
 * The keys and export endpoints are in transit-keys.ts, the data operations
 * in transit-data.ts.
 *
 * Ciphertexts are `vault:v<N>:` + base64 of cryptod's managed ciphertext
 * (docs/formats.md), which names key and version itself. Signatures and
 * MACs are `vault:v<N>:` + the bare signature or tag, as Vault gives them,
 * so outside verifiers can check them with the public key; cryptod's header
 * is rebuilt from the key's type and N to verify.
 */
import { randomBytes } from 'node:crypto';
import type { CborValue } from '../protocol/cbor.js';
import { Op, type OpCode } from '../protocol/ops.js';
import type { ManagedKeyType } from '../protocol/messages/managed.js';
import type { CryptodError } from '../protocol/errors.js';
import { VaultHttpError, badRequest, envelope, messageOf, statusOf, type VaultReply } from './vault-reply.js';
import { HASHES, fromBase64, optInt, optString, reqString } from './vault-values.js';
import { configKey, createKey, deleteKey, exportKey, listKeys, readKey, rotateKey, trimKey } from './transit-keys.js';
import { dataOperation } from './transit-data.js';
import { generateDataKey } from './transit-datakeys.js';

/** Runs one operation as the authenticated client (src/ops/front-door.ts `run`). */
export interface Caller {
  readonly clientId: string;
  run(op: OpCode, args: CborValue): Promise<CborValue>;
  /** Key types seen lately, by name (KeyTypes): sign, verify and hmac need the type before the operation. */
  readonly types: KeyTypes;
}

/**
 * Key types by name, remembered for a second: a key's type never changes,
 * but its name may come back as another key after a configuration reload
 * removed it. A remembered type only shapes the request (which hash, how
 * to rebuild the header): the operation still authorizes the key itself.
 */
export class KeyTypes {
  readonly #types = new Map<string, { type: ManagedKeyType; until: number }>();

  get(name: string): ManagedKeyType | undefined {
    const e = this.#types.get(name);
    return e !== undefined && e.until > Date.now() ? e.type : undefined;
  }

  set(name: string, type: ManagedKeyType): void {
    if (this.#types.size >= 4096) this.#types.clear();
    this.#types.set(name, { type, until: Date.now() + 1000 });
  }
}

export interface TransitRequest {
  /** GET, POST, PUT, DELETE, or LIST (also GET with ?list=true). */
  readonly method: string;
  /** Path segments after the mount: ['keys', 'orders', 'rotate']. */
  readonly path: readonly string[];
  readonly body: Record<string, unknown>;
}

export type Body = Record<string, unknown>;

/** Endpoints served, for the 404 that names them. */
const ENDPOINTS = 'keys, keys/:name, keys/:name/config, keys/:name/rotate, keys/:name/trim, encrypt/:name, decrypt/:name, rewrap/:name, sign/:name, verify/:name, hmac/:name, hash, random, export/:type/:name, datakey/plaintext|wrapped/:name';

export async function transit(call: Caller, req: TransitRequest): Promise<VaultReply> {
  const [head, name, sub, extra] = req.path;
  const m = req.method;
  switch (head) {
    case 'keys':
      if (name === undefined) {
        if (m === 'LIST') return listKeys(call);
        throw methodNotAllowed(m, 'transit/keys', ['LIST']);
      }
      if (sub === undefined) {
        if (m === 'GET') return envelope(await readKey(call, name));
        if (m === 'POST' || m === 'PUT') return createKey(call, name, req.body);
        if (m === 'DELETE') return deleteKey(call, name);
        throw methodNotAllowed(m, `transit/keys/${name}`, ['GET', 'POST', 'DELETE']);
      }
      if (extra !== undefined) break;
      if (m !== 'POST' && m !== 'PUT') throw methodNotAllowed(m, `transit/keys/${name}/${sub}`, ['POST']);
      if (sub === 'config') return configKey(call, name, req.body);
      if (sub === 'rotate') return rotateKey(call, name);
      if (sub === 'trim') return trimKey(call, name, req.body);
      if (sub === 'import' || sub === 'import_version') throw badRequest(`transit/keys/${name}/${sub} is not supported: cryptod imports keys with \`cryptod key import\` (KEY_IMPORT), not Vault's wrapped import`);
      break;
    case 'encrypt':
    case 'decrypt':
    case 'rewrap':
    case 'sign':
    case 'verify':
    case 'hmac':
      if (name === undefined) break;
      if (m !== 'POST' && m !== 'PUT') throw methodNotAllowed(m, `transit/${head}/${name}`, ['POST']);
      if (head === 'sign' || head === 'verify' || head === 'hmac') {
        if (extra !== undefined) break;
        if (sub !== undefined) req.body[head === 'hmac' ? 'algorithm' : 'hash_algorithm'] ??= sub; // sign/:name/:hash_algorithm
      } else if (sub !== undefined) break;
      return dataOperation(call, head, name, req.body);
    case 'hash':
      if (m !== 'POST' && m !== 'PUT') throw methodNotAllowed(m, 'transit/hash', ['POST']);
      if (sub !== undefined) break;
      return hash(call, name, req.body);
    case 'random':
      if (m !== 'POST' && m !== 'PUT') throw methodNotAllowed(m, 'transit/random', ['POST']);
      return random(req.path.slice(1), req.body);
    case 'export':
      if (m !== 'GET') throw methodNotAllowed(m, 'transit/export', ['GET']);
      if (name === undefined || sub === undefined) break;
      return exportKey(call, name, sub, extra);
    case 'datakey':
      if (name === undefined || sub === undefined || extra !== undefined) break;
      if (m !== 'POST' && m !== 'PUT') throw methodNotAllowed(m, `transit/datakey/${name}/${sub}`, ['POST']);
      return generateDataKey(call, name, sub, req.body);
    case 'backup':
    case 'restore':
      throw badRequest(`transit/${head} is not supported: cryptod's keystore is backed up as a whole (README "Backup"); per-key backup waits for the key-transfer format`);
    case 'cache-config':
    case 'wrapping_key':
      throw badRequest(`transit/${head} is not supported by cryptod (no key cache to configure, no Vault-style key import)`);
    default:
      break;
  }
  throw new VaultHttpError(404, `unsupported path transit/${req.path.join('/')}; cryptod serves ${ENDPOINTS}`);
}

function methodNotAllowed(method: string, path: string, allowed: readonly string[]): VaultHttpError {
  return new VaultHttpError(405, `${method} is not supported on ${path}; use ${allowed.join(' or ')}`, { Allow: allowed.filter((a) => a !== 'LIST').join(', ') || 'GET' });
}

// ── keyless ───────────────────────────────────────────────────────────────

async function hash(call: Caller, pathAlgorithm: string | undefined, body: Body): Promise<VaultReply> {
  const algorithm = pathAlgorithm ?? optString(body, 'algorithm') ?? 'sha2-256';
  const name = HASHES[algorithm];
  if (name === undefined) throw badRequest(`hash algorithm '${algorithm}' is not supported; supported: ${Object.keys(HASHES).join(', ')}`);
  const format = optString(body, 'format') ?? 'hex';
  if (format !== 'hex' && format !== 'base64') throw badRequest(`format '${format}' is not supported; use hex or base64`);
  const input = fromBase64(reqString(body, 'input', 'the base64 data to hash'), 'input');
  const sum = (await call.run(Op.DIGEST, { algorithm: { name }, data: input })) as Buffer;
  return envelope({ sum: sum.toString(format) });
}

/** Vault's limit on transit/random. */
const MAX_RANDOM = 128 * 1024;

function random(rest: readonly string[], body: Body): VaultReply {
  let bytes = optInt(body, 'bytes') ?? 32;
  let format = optString(body, 'format') ?? 'base64';
  for (const seg of rest) {
    if (/^[0-9]+$/.test(seg)) bytes = Number(seg);
    else if (seg === 'hex' || seg === 'base64') format = seg;
    else if (seg === 'platform' || seg === 'all') continue;
    else if (seg === 'seal') throw badRequest("random source 'seal' is not supported: cryptod has no seal; use platform");
    else throw new VaultHttpError(404, `unsupported path transit/random/${rest.join('/')}; use transit/random[/platform][/:bytes]`);
  }
  if (format !== 'hex' && format !== 'base64') throw badRequest(`format '${format}' is not supported; use hex or base64`);
  if (bytes < 1 || bytes > MAX_RANDOM) throw badRequest(`bytes must be from 1 to ${MAX_RANDOM}, got ${bytes}`);
  const out = randomBytes(bytes);
  const text = out.toString(format);
  out.fill(0);
  return envelope({ random_bytes: text });
}

/** A cryptod error as Vault's reply. */
export function errorReply(err: CryptodError): VaultReply {
  return { status: statusOf(err), body: { errors: [messageOf(err)] } };
}
