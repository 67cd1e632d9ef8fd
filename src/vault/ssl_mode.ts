/**
 * The one meaning of a connection's sslmode (libpq's, PostgreSQL docs "SSL Support", table
 * "SSL Mode Descriptions"): every upstream connection, relayed or pgward's own, follows it.
 */
export const SSL_MODES = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export type SslMode = (typeof SSL_MODES)[number];

export interface TlsPlan {
  /** Send SSLRequest. */
  request: boolean;
  /** A target that answers 'N' is used without TLS (prefer). */
  plaintextFallback: boolean;
  /** Check the certificate chain against the connection's CA. */
  verifyChain: boolean;
  /** Check that the certificate names the host. */
  verifyHost: boolean;
}

/**
 * What an sslmode asks for. As in libpq, a CA given with prefer or require is checked too
 * (libpq does so when a root certificate file exists).
 */
export function tlsPlan(sslmode: SslMode, sslCa: string | undefined): TlsPlan {
  switch (sslmode) {
    case 'disable':
      return { request: false, plaintextFallback: true, verifyChain: false, verifyHost: false };
    case 'prefer':
      return { request: true, plaintextFallback: true, verifyChain: sslCa !== undefined, verifyHost: false };
    case 'require':
      return { request: true, plaintextFallback: false, verifyChain: sslCa !== undefined, verifyHost: false };
    case 'verify-ca':
      return { request: true, plaintextFallback: false, verifyChain: true, verifyHost: false };
    case 'verify-full':
      return { request: true, plaintextFallback: false, verifyChain: true, verifyHost: true };
  }
}

/** sslmodes from weakest to strongest; a change to a lower one weakens a connection. */
export const SSL_MODE_STRENGTH: Record<SslMode, number> = {
  disable: 0,
  prefer: 1,
  require: 2,
  'verify-ca': 3,
  'verify-full': 4,
};
