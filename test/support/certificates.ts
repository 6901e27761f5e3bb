/** A CA and a router certificate made with openssl for a test (EC P-256 keys, valid two days). */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TestCertificates {
  /** The CA that signed the router's certificate (sslrootcert for verify-full). */
  ca: string;
  /** The router's certificate (CN localhost, SAN DNS:localhost and IP:127.0.0.1) and key. */
  cert: string;
  key: string;
  /** A CA that did not sign it. */
  otherCa: string;
}

export function makeCertificates(dir: string): TestCertificates {
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const days = ['-days', '2'];
  ssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', ...days, '-subj', '/CN=Brabant test CA');
  ssl(
    'req',
    '-x509',
    ...ec,
    '-keyout',
    'other-ca.key',
    '-out',
    'other-ca.pem',
    ...days,
    '-subj',
    '/CN=Other CA',
  );
  ssl('req', ...ec, '-keyout', 'router.key', '-out', 'router.csr', '-subj', '/CN=localhost');
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  ssl(
    'x509',
    ...['-req', '-in', 'router.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial'],
    ...['-out', 'router.pem', ...days, '-extfile', 'san.ext'],
  );
  return {
    ca: join(dir, 'ca.pem'),
    cert: join(dir, 'router.pem'),
    key: join(dir, 'router.key'),
    otherCa: join(dir, 'other-ca.pem'),
  };
}
