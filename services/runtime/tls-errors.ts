/**
 * Whether a connection failed on TLS itself (pure): a certificate the client does not trust, a
 * name that does not match, a certificate the server wants and did not get. None of these heals
 * by retrying: a person must fix a CA file, a certificate or a URL.
 */

/** OpenSSL's and node's codes for a certificate the client rejects. */
const UNTRUSTED = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_REVOKED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** What went wrong in TLS, for a message (with its fix), or undefined when it was not TLS. */
export function tlsFailure(err: unknown): string | undefined {
  for (
    let e = err as { code?: unknown; cause?: unknown; message?: unknown } | undefined, depth = 0;
    e && depth < 6;
    depth++
  ) {
    const code = typeof e.code === 'string' ? e.code : '';
    const message = typeof e.message === 'string' ? e.message : '';
    if (UNTRUSTED.has(code))
      return `the server's certificate is not trusted (${code}: ${message}): give the CA that signed it (BRABANT_TLS_CA_FILE, sslrootcert), and check that the certificate names the host connected to`;
    if (/^ERR_SSL_.*ALERT_(CERTIFICATE_REQUIRED|BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_UNKNOWN)/.test(code))
      return `the server refused this client's certificate (${code}): give a certificate signed by the CA it trusts`;
    if (/does not support SSL/i.test(message))
      return `the server does not speak TLS (${message}): it runs without ssl = on, or the URL points at another port`;
    e = e.cause as typeof e;
  }
  return undefined;
}
