/**
 * The shapes of the listener settings a configuration carries: who may
 * connect on the Unix socket, the TCP listener with mutual TLS, and what a
 * TLS reload reports. Declared here, below the daemon that enforces them, so
 * the configuration can be validated without loading the daemon.
 */

/** Who besides the daemon's own user and root may connect on the Unix socket. */
export interface AccessPolicy {
  /** Additional uids admitted. */
  uids?: readonly number[];
  /** Primary gids admitted (the peer's effective gid; supplementary groups are not seen). */
  gids?: readonly number[];
}

export interface TcpListenOptions {
  /** `tcp://HOST:PORT`; HOST an IPv4 address, a name, or `[IPv6]`; PORT 0 picks a free port. */
  url: string;
  /** PEM server certificate (chain), `--tls-cert`. */
  certFile?: string;
  /** PEM private key of the server certificate, `--tls-key`; must be mode 0600 or stricter. */
  keyFile?: string;
  /** PEM CA certificate(s) that client certificates must chain to, `--tls-client-ca`. */
  clientCaFile?: string;
  /**
   * PEM CRL(s) of the client CA, `--tls-crl`. With it OpenSSL checks every
   * certificate of the client's chain below the trust anchor, so an
   * intermediate CA needs its issuer's CRL in the file too.
   */
  crlFile?: string;
}

/** What re-reading the TLS files did (RELOAD, SIGHUP). */
export interface TlsReloadSummary {
  /** Serials the CRL lists. */
  revokedSerials: number;
  /** Live connections closed because the CRL lists their certificate. */
  closed: number;
}
