/**
 * Where Node 20's `crypto.subtle` departs from the Web Cryptography API
 * specification, `client.subtle` follows the specification, and the
 * differential test accepts the difference only as one of these named rules.
 * Each rule is narrow (method, both outcomes, and what the case is about) and
 * must match at least one case, so a rule that no longer applies is noticed.
 */
export interface Side {
  readonly ok: boolean;
  /** `Name (DOMException)` or `TypeError (TypeError)`; empty on success. */
  readonly error: string;
  readonly message: string;
  /** cryptod's `detail.field`: which argument the error is about. */
  readonly field?: string;
}

export interface Deviation {
  readonly name: string;
  /** Why cryptod's outcome is the specification's. */
  readonly reason: string;
  matches(op: string, id: string, node: Side, ours: Side): boolean;
}

const err = (s: Side, name: string): boolean => !s.ok && s.error === `${name} (${name === 'TypeError' ? 'TypeError' : 'DOMException'})`;

export const DEVIATIONS: readonly Deviation[] = [
  {
    name: 'usages before parameters',
    reason:
      "each algorithm's generate key / import key steps check the usages first (SyntaxError); Node 20 checks namedCurve, AES length (AES-GCM, AES-KW, AES-CBC, AES-CTR) and the JWK's kty/crv first",
    matches: (op, _id, node, ours) =>
      (op === 'generateKey' || op === 'importKey') &&
      (err(node, 'NotSupportedError') || err(node, 'OperationError') || err(node, 'DataError')) &&
      err(ours, 'SyntaxError') &&
      ours.field === 'usages',
  },
  {
    name: 'InvalidAccessException',
    reason: "exportKey and wrapKey: a non-extractable key is an InvalidAccessError; Node 20 misspells the name 'InvalidAccessException'",
    matches: (op, id, node, ours) =>
      (op === 'exportKey' || op === 'wrapKey' || (op === 'unwrapKey' && id.includes('wrapKey('))) && err(node, 'InvalidAccessException') && err(ours, 'InvalidAccessError'),
  },
  {
    name: 'format the algorithm does not export',
    reason:
      "AES, HMAC and RSA-PSS export key: a format the algorithm has no form for (AES in spki, RSA in raw) — 'Otherwise: throw a NotSupportedError'; Node 20 says InvalidAccessError",
    matches: (op, id, node, ours) =>
      (op === 'exportKey' || op === 'wrapKey') && /\((raw|spki|pkcs8)\b/.test(id) && err(node, 'InvalidAccessError') && err(ours, 'NotSupportedError') && /export/.test(ours.message),
  },
  {
    name: "error named 'Error'",
    reason: "HMAC import key: a format other than raw/jwk is a NotSupportedError; Node 20 throws a DOMException named 'Error'",
    matches: (op, id, node, ours) => (op === 'importKey' || op === 'exportKey') && id.includes('HMAC spki') && err(node, 'Error') && err(ours, 'NotSupportedError'),
  },
  {
    name: 'jwk with bytes',
    reason: "importKey: format 'jwk' with keyData that is not a JsonWebKey is a TypeError, checked before the algorithm is normalized; Node 20 says DataError, after the usages",
    matches: (op, id, _node, ours) => (op === 'importKey' || op === 'exportKey') && id.includes('jwk with bytes') && err(ours, 'TypeError'),
  },
  {
    name: 'derived key algorithm normalized first',
    reason:
      "deriveKey and unwrapKey normalize derivedKeyType / unwrappedKeyAlgorithm among their first steps, before the key is looked at; Node 20 does it after the key's usages",
    matches: (op, _id, _node, ours) =>
      (op === 'deriveKey' || op === 'unwrapKey') &&
      (err(ours, 'TypeError') || err(ours, 'NotSupportedError')) &&
      /^(derivedKeyType|unwrappedKeyAlgorithm)\b/.test(ours.field ?? ''),
  },
  {
    name: 'AES-GCM 1-byte iv',
    reason: 'AES-GCM encrypt/decrypt bound the iv only from above (2^64 − 1 bytes), as NIST SP 800-38D; Node 20 refuses a 1-byte iv',
    matches: (op, id, node, ours) => (op === 'encrypt' || op === 'decrypt') && id.includes('"iv":"bytes(1)"') && err(node, 'OperationError') && ours.ok,
  },
  {
    name: 'AES-KW unwrap of nothing',
    reason:
      'unwrapKey unwraps first (RFC 3394 needs at least 24 bytes: OperationError) and imports after; Node 20 imports the empty result (DataError, or SyntaxError for the usages)',
    matches: (op, id, _node, ours) => op === 'unwrapKey' && id.includes('unwrapKey(raw, bytes(0)') && err(ours, 'OperationError'),
  },
  {
    name: 'RSA-PSS verify with an impossible salt',
    reason: 'RSA-PSS verify returns whether EMSA-PSS-VERIFY (RFC 8017 §9.1.2) says "consistent": a salt longer than the key allows is "inconsistent", so false; Node 20 throws OperationError',
    matches: (op, id, node, ours) => op === 'verify' && id.includes('"saltLength":1000') && err(node, 'OperationError') && ours.ok,
  },
  {
    name: 'agreement length past the secret',
    reason:
      'ECDH/X25519 deriveBits: a length beyond the shared secret is an OperationError; Node 20 returns the whole secret for 4294967288 (length -8 converted as an unsigned long)',
    matches: (op, id, node, ours) => op === 'deriveBits' && id.endsWith(', -8)') && !id.startsWith('deriveBits(HKDF') && node.ok && err(ours, 'OperationError'),
  },
  {
    name: 'AES-KW of a JWK that is not whole blocks',
    reason:
      'AES-KW wrapKey: plaintext that is not a multiple of 64 bits is an OperationError (the JWK JSON is not padded); Node 20 pads the JSON with spaces. Use AES-KWP for JWKs',
    matches: (op, id, node, ours) => op === 'wrapKey' && id.startsWith('wrapKey(jwk,') && node.ok && err(ours, 'OperationError') && ours.message.startsWith('AES-KW wraps a multiple of 8 bytes'),
  },
];
