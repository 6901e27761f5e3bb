/**
 * A secured PostgreSQL node of the local stack: `ssl = on` with the stack's server certificate,
 * SCRAM-SHA-256 for every role (the superuser's password set by initdb from a file), and a
 * pg_hba.conf that takes TLS connections with a SCRAM password only and refuses every other —
 * a plaintext connection is turned away by name ("no encryption"), not left to fail later.
 */

import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface PostgresSecuritySpec {
  /** The server's certificate and key (copied into the data folder, owned by PostgreSQL's OS user). */
  cert: string;
  key: string;
  /** The CA clients check the certificate against (sslrootcert of the URLs). */
  ca: string;
  /** File of the superuser `postgres`'s password. */
  adminPasswordFile: string;
}

/** Only TLS with a SCRAM password, for every database and role, replication included. */
export const SECURED_HBA = `# written by Brabant's local stack (brabant up): TLS and a SCRAM-SHA-256 password for every role
# TYPE     DATABASE     USER  ADDRESS        METHOD
hostssl    all          all   127.0.0.1/32   scram-sha-256
hostssl    replication  all   127.0.0.1/32   scram-sha-256
hostnossl  all          all   0.0.0.0/0      reject
hostnossl  replication  all   0.0.0.0/0      reject
`;

function ids(user: string | undefined): { uid: number; gid: number } | undefined {
  if (user === undefined) return undefined;
  return {
    uid: Number(execFileSync('id', ['-u', user]).toString()),
    gid: Number(execFileSync('id', ['-g', user]).toString()),
  };
}

/** A copy of the admin's password file that PostgreSQL's OS user may read (initdb --pwfile); the caller removes it. */
export function adminPwfile(
  spec: { dataDir: string; security?: PostgresSecuritySpec },
  user: string | undefined,
): string {
  const file = `${spec.dataDir}.pwfile`;
  writeFileSync(file, readFileSync(spec.security!.adminPasswordFile), { mode: 0o600 });
  const owner = ids(user);
  if (owner !== undefined) chownSync(file, owner.uid, owner.gid);
  return file;
}

/**
 * After initdb: the certificate files in the data folder (PostgreSQL wants its key owned by its
 * OS user and private), the secured pg_hba.conf; returns the settings for brabant.conf.
 */
export function secureNode(
  dataDir: string,
  s: PostgresSecuritySpec,
  user: string | undefined,
): Record<string, string> {
  const owner = ids(user);
  for (const [from, to] of [
    [s.cert, 'server.crt'],
    [s.key, 'server.key'],
    [s.ca, 'root.crt'],
  ] as const) {
    const target = join(dataDir, to);
    copyFileSync(from, target);
    chmodSync(target, 0o600);
    if (owner !== undefined) chownSync(target, owner.uid, owner.gid);
  }
  const hba = join(dataDir, 'pg_hba.conf');
  writeFileSync(hba, SECURED_HBA);
  if (owner !== undefined) chownSync(hba, owner.uid, owner.gid);
  return {
    ssl: 'on',
    ssl_cert_file: "'server.crt'",
    ssl_key_file: "'server.key'",
    ssl_min_protocol_version: "'TLSv1.2'",
    password_encryption: "'scram-sha-256'",
  };
}
