/**
 * A throwaway PKI for the TLS tests, made with the openssl command line in a
 * directory the test owns: a CA, certificates signed by it, and (through
 * `openssl(['ca', …])`) revocations and CRLs.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TestPki {
  readonly dir: string;
  /** Run openssl in the PKI's directory. */
  openssl(args: string[]): void;
  /** A P-256 key and a certificate for `cn`, signed by `ca` (or self-signed as a CA when ca is null); `ext` is the X.509v3 extension file's text. */
  makeCert(name: string, cn: string, ca: string | null, ext: string): void;
  /** A minimal `openssl ca` database (index.txt, crlnumber, ca.cnf) for revocations and CRLs signed by `ca`. */
  caDatabase(): void;
  /** Sign a CRL of what the database revokes so far into `out`. */
  gencrl(out: string): void;
  /** Revoke the certificate `name`.crt in the database. */
  revoke(name: string): void;
  pem(name: string): Buffer;
  file(name: string): string;
}

/** @throws when the openssl command line is missing (the test cannot make certificates). */
export function createTestPki(dir: string): TestPki {
  try {
    execFileSync('openssl', ['version'], { stdio: 'pipe' });
  } catch {
    throw new Error('the openssl command line is needed to make test certificates (apt-get install openssl)');
  }
  const openssl = (args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  };
  return {
    dir,
    openssl,
    makeCert(name, cn, ca, ext) {
      if (ca === null) {
        openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '1', '-subj', `/CN=${cn}`]);
      } else {
        writeFileSync(join(dir, `${name}.ext`), ext);
        openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`]);
        openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-set_serial', String(Date.now() % 1e9), '-days', '1', '-out', `${name}.crt`, '-extfile', `${name}.ext`]);
      }
      chmodSync(join(dir, `${name}.key`), 0o600);
    },
    caDatabase() {
      writeFileSync(join(dir, 'index.txt'), '');
      writeFileSync(join(dir, 'crlnumber'), '01\n');
      writeFileSync(join(dir, 'ca.cnf'), '[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\ncrlnumber = crlnumber\ndefault_md = sha256\ndefault_crl_days = 1\n');
    },
    gencrl: (out) => openssl(['ca', '-config', 'ca.cnf', '-keyfile', 'ca.key', '-cert', 'ca.crt', '-gencrl', '-out', out]),
    revoke: (name) => openssl(['ca', '-config', 'ca.cnf', '-keyfile', 'ca.key', '-cert', 'ca.crt', '-revoke', `${name}.crt`]),
    pem: (name) => readFileSync(join(dir, name)),
    file: (name) => join(dir, name),
  };
}

/** X.509v3 extensions of a TLS client certificate. */
export const CLIENT_CERT_EXT = 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n';
/** X.509v3 extensions of the server certificate, for 127.0.0.1 and localhost. */
export const SERVER_CERT_EXT = 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n';

/**
 * The PKI the TLS tests share: the client CA 'ca', a CA the daemon does not
 * trust ('other-ca'), the server certificate 'server' (127.0.0.1,
 * localhost), one client certificate per entry of `clients` (file name →
 * subject CN and issuing CA, 'ca' unless given), an `openssl ca` database for
 * revocations, and an empty CRL 'crl-empty.pem'.
 */
export function createServerPki(dir: string, clients: Record<string, { cn: string; ca?: 'ca' | 'other-ca' }>): TestPki {
  const pki = createTestPki(dir);
  pki.makeCert('ca', 'cryptod test CA', null, '');
  pki.makeCert('other-ca', 'some other CA', null, '');
  pki.makeCert('server', 'localhost', 'ca', SERVER_CERT_EXT);
  for (const [name, { cn, ca }] of Object.entries(clients)) pki.makeCert(name, cn, ca ?? 'ca', CLIENT_CERT_EXT);
  pki.caDatabase();
  pki.gencrl('crl-empty.pem');
  return pki;
}
