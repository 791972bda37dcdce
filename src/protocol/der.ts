/**
 * The little DER (ITU-T X.690) reading cryptod needs where Node has no
 * parser: the PKCS#1 key inside an RSA-PSS SubjectPublicKeyInfo, and the
 * serial numbers a certificate revocation list names. Definite lengths only
 * (DER has no other), up to 4 length bytes; anything else is a DerError.
 */

export class DerError extends Error {
  override name = 'DerError';
}

export const DER = { INTEGER: 0x02, BIT_STRING: 0x03, UTC_TIME: 0x17, GENERALIZED_TIME: 0x18, SEQUENCE: 0x30 } as const;

/** One element: its tag, where its contents start and end, and where the element ends. */
export interface DerElement {
  readonly tag: number;
  readonly start: number;
  readonly end: number;
}

/** The element at `at`; with `tag`, it must have that tag. */
export function derElement(der: Uint8Array, at: number, tag?: number): DerElement {
  if (at + 2 > der.length) throw new DerError(`DER: element at ${at} runs past the end`);
  const t = der[at]!;
  if (tag !== undefined && t !== tag) throw new DerError(`DER: expected tag 0x${tag.toString(16)} at ${at}, found 0x${t.toString(16)}`);
  let len = der[at + 1]!;
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || start + n > der.length) throw new DerError(`DER: unsupported length form at ${at}`);
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + der[start + i]!;
    start += n;
  }
  if (start + len > der.length) throw new DerError(`DER: element at ${at} runs past the end`);
  return { tag: t, start, end: start + len };
}

/** The elements inside a constructed element, in order. */
export function derChildren(der: Uint8Array, parent: DerElement): DerElement[] {
  const out: DerElement[] = [];
  for (let at = parent.start; at < parent.end; ) {
    const e = derElement(der, at);
    if (e.end > parent.end) throw new DerError(`DER: element at ${at} runs past its parent`);
    out.push(e);
    at = e.end;
  }
  return out;
}

/**
 * The serial numbers a CRL revokes (RFC 5280 §5.1), as uppercase hex of
 * their bytes without DER's leading zero bytes — the form of node:tls's
 * `getPeerCertificate().serialNumber` (OpenSSL's BN_bn2hex: "01", "0123…").
 *
 *   CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue }
 *   TBSCertList ::= SEQUENCE { version INTEGER OPTIONAL, signature, issuer,
 *                              thisUpdate Time, nextUpdate Time OPTIONAL,
 *                              revokedCertificates SEQUENCE OF SEQUENCE { userCertificate INTEGER, … } OPTIONAL,
 *                              crlExtensions [0] OPTIONAL }
 *
 * The signature is not checked here: OpenSSL checks it for every handshake;
 * this only tells which live connections a new list ends.
 */
export function crlSerials(der: Uint8Array): string[] {
  const list = derElement(der, 0, DER.SEQUENCE);
  const tbs = derElement(der, list.start, DER.SEQUENCE);
  const fields = derChildren(der, tbs);
  let i = 0;
  if (fields[i]?.tag === DER.INTEGER) i++; // version
  i += 2; // signature, issuer
  const isTime = (e: DerElement | undefined): boolean => e?.tag === DER.UTC_TIME || e?.tag === DER.GENERALIZED_TIME;
  if (!isTime(fields[i])) throw new DerError('DER: not a CRL (no thisUpdate time where RFC 5280 puts it)');
  i++;
  if (isTime(fields[i])) i++; // nextUpdate
  const revoked = fields[i];
  if (revoked?.tag !== DER.SEQUENCE) return [];
  return derChildren(der, revoked).map((entry) => {
    const serial = derElement(der, entry.start, DER.INTEGER);
    if (serial.end === serial.start) throw new DerError(`DER: empty INTEGER at ${entry.start}`);
    let s = serial.start;
    while (s < serial.end - 1 && der[s] === 0) s++;
    return Buffer.from(der.subarray(s, serial.end)).toString('hex').toUpperCase();
  });
}

/**
 * A serial number in hex as a comparison key: uppercase, no leading zeros,
 * so the CRL's form and any library's (leading zero nibble or not) agree.
 */
export function serialKey(hex: string): string {
  return hex.toUpperCase().replace(/^0+(?=.)/, '');
}

/** The DER blocks of every PEM section labelled `label` in `text`. */
export function pemBlocks(text: string, label: string): Buffer[] {
  const re = new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]+)-----END ${label}-----`, 'g');
  return [...text.matchAll(re)].map((m) => Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64'));
}
