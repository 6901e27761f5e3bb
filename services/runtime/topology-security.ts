/**
 * The topology file's `security` section: the CA every server's certificate is checked against,
 * the folder of password files, Kafka's SASL mechanism, the registry's client certificate and the
 * roles the services log in as. No secret is ever written in the topology: it names files, one
 * per principal (secretFile below says which), and the environment can give any of them instead
 * (a service's BRABANT_KAFKA_PASSWORD, PGPASSWORD). Paths are relative to the topology file.
 *
 * ```yaml
 * security:
 *   ca: secrets/ca.pem                 # signed Kafka's, PostgreSQL's and the registry's certificates
 *   secrets: secrets                   # password files (see docs/security.md for their names)
 *   kafkaSasl: scram-sha-512
 *   registryCertificate: secrets/client.pem   # the registry's mutual TLS
 *   registryKey: secrets/client.key
 * ```
 */
import { dirname, isAbsolute, join, resolve } from 'node:path';
import type { SecurityConfig } from './security.ts';
import { type Field, oneOf, text } from './topology-parse.ts';

export interface TopologySecurity {
  /** PEM file of the CA (absolute). */
  ca: string;
  /** Folder of the password files (absolute). */
  secrets: string;
  kafkaSasl: 'scram-sha-512' | 'scram-sha-256';
  /** Kafka user `brabant node init` creates users and ACLs as. */
  kafkaAdmin: string;
  registryCertificate?: string;
  registryKey?: string;
  /** The PostgreSQL roles capture and apply log in as (brabant node init creates them). */
  captureRole: string;
  applyRole: string;
  /** The role routers log in to the nodes as (node init creates it when the topology has routers). */
  routerRole: string;
  /** PEM certificate and key routers show their clients (TLS required when given). */
  routerCertificate?: string;
  routerKey?: string;
}

const ROLE = /^[a-z_][a-z0-9_]*$/;

export const SECURITY_FIELDS = {
  ca: {
    description:
      'PEM file of the CA that signed the certificates of Kafka, PostgreSQL and the registry (checked on every connection: sslmode=verify-full for PostgreSQL)',
    expects: 'a file path',
    required: true,
    parse: text(),
  },
  secrets: {
    description:
      'Folder of password files, one per principal (docs/security.md names them); never a password in this file',
    expects: 'a folder path',
    required: true,
    parse: text(),
  },
  kafkaSasl: {
    description: 'SASL mechanism of the Kafka users over TLS (SASL_SSL)',
    expects: 'scram-sha-512 or scram-sha-256',
    required: false,
    parse: oneOf(['scram-sha-512', 'scram-sha-256']),
  },
  kafkaAdmin: {
    description:
      'Kafka user `brabant node init` creates the services’ users, topics and ACLs as (default admin)',
    expects: 'a user name',
    required: false,
    parse: text(),
  },
  registryCertificate: {
    description: 'PEM certificate the services show the schema registry (its mutual TLS)',
    expects: 'a file path',
    required: false,
    parse: text(),
  },
  registryKey: {
    description: 'PEM private key of registryCertificate',
    expects: 'a file path',
    required: false,
    parse: text(),
  },
  captureRole: {
    description: 'PostgreSQL role capture logs in as (default brabant_capture; brabant node init creates it)',
    expects: 'a role name',
    required: false,
    parse: text(ROLE),
  },
  applyRole: {
    description: 'PostgreSQL role apply logs in as (default brabant_apply; brabant node init creates it)',
    expects: 'a role name',
    required: false,
    parse: text(ROLE),
  },
  routerRole: {
    description:
      'PostgreSQL role the routers log in to the nodes as (default brabant_router; brabant node init creates it when the topology has routers)',
    expects: 'a role name',
    required: false,
    parse: text(ROLE),
  },
  routerCertificate: {
    description:
      'PEM certificate the routers show their clients; given, they require TLS and SCRAM passwords of every client',
    expects: 'a file path',
    required: false,
    parse: text(),
  },
  routerKey: {
    description: 'PEM private key of routerCertificate',
    expects: 'a file path',
    required: false,
    parse: text(),
  },
} satisfies Record<string, Field>;

/** The section's parsed fields as the topology holds them, paths made absolute against the file. */
export function topologySecurity(fields: Record<string, unknown>, file: string): TopologySecurity {
  const at = (p: string) => (isAbsolute(p) ? p : resolve(dirname(file), p));
  return {
    ca: at(fields.ca as string),
    secrets: at(fields.secrets as string),
    kafkaSasl: (fields.kafkaSasl as TopologySecurity['kafkaSasl'] | undefined) ?? 'scram-sha-512',
    kafkaAdmin: (fields.kafkaAdmin as string | undefined) ?? 'admin',
    ...(fields.registryCertificate === undefined
      ? {}
      : { registryCertificate: at(fields.registryCertificate as string) }),
    ...(fields.registryKey === undefined ? {} : { registryKey: at(fields.registryKey as string) }),
    captureRole: (fields.captureRole as string | undefined) ?? 'brabant_capture',
    applyRole: (fields.applyRole as string | undefined) ?? 'brabant_apply',
    routerRole: (fields.routerRole as string | undefined) ?? 'brabant_router',
    ...(fields.routerCertificate === undefined
      ? {}
      : { routerCertificate: at(fields.routerCertificate as string) }),
    ...(fields.routerKey === undefined ? {} : { routerKey: at(fields.routerKey as string) }),
  };
}

/** The section as YAML lines (what `brabant up` writes), paths as given. */
export function formatSecurity(s: TopologySecurity, relative: (p: string) => string): string[] {
  const q = (v: string) => JSON.stringify(v);
  return [
    'security:',
    `  ca: ${q(relative(s.ca))}`,
    `  secrets: ${q(relative(s.secrets))}`,
    `  kafkaSasl: ${s.kafkaSasl}`,
    `  kafkaAdmin: ${q(s.kafkaAdmin)}`,
    ...(s.registryCertificate ? [`  registryCertificate: ${q(relative(s.registryCertificate))}`] : []),
    ...(s.registryKey ? [`  registryKey: ${q(relative(s.registryKey))}`] : []),
    `  captureRole: ${s.captureRole}`,
    `  applyRole: ${s.applyRole}`,
    `  routerRole: ${s.routerRole}`,
    ...(s.routerCertificate ? [`  routerCertificate: ${q(relative(s.routerCertificate))}`] : []),
    ...(s.routerKey ? [`  routerKey: ${q(relative(s.routerKey))}`] : []),
  ];
}

/** The Kafka users of a node's services (brabant node init creates them, with their ACLs). */
export function kafkaUser(service: 'capture' | 'apply', nodeId: string): string {
  return `brabant-${service}-${nodeId}`;
}

/**
 * Where a principal's password is: `<secrets>/kafka-<user>` for a Kafka user (one password on
 * every cluster it is created on; the admin's per region: `kafka-<region>-<admin>`), and
 * `<secrets>/postgres-<node>-<role>` for a PostgreSQL role on a node's server.
 */
export function secretFile(
  s: Pick<TopologySecurity, 'secrets'>,
  principal: { kafka: string; region?: string } | { postgres: string; node: string },
): string {
  if ('kafka' in principal)
    return join(
      s.secrets,
      principal.region === undefined
        ? `kafka-${principal.kafka}`
        : `kafka-${principal.region}-${principal.kafka}`,
    );
  return join(s.secrets, `postgres-${principal.node}-${principal.postgres}`);
}

/**
 * The password of the routers' role: one for every node, since a router logs in to each
 * (`<secrets>/postgres-routers-<role>`; node init gives the role this password on every node).
 */
export function routerSecretFile(s: Pick<TopologySecurity, 'secrets' | 'routerRole'>): string {
  return join(s.secrets, `postgres-routers-${s.routerRole}`);
}

/**
 * A node URL as a service connects with it: as `role`, TLS required and the server's certificate
 * and name checked against the CA (libpq's sslmode=verify-full), unless the URL says otherwise.
 */
export function securedPgUrl(url: string, role: string | undefined, ca: string): string {
  const u = new URL(url);
  if (role !== undefined) u.username = role;
  u.password = '';
  if (!u.searchParams.has('sslmode')) u.searchParams.set('sslmode', 'verify-full');
  if (!u.searchParams.has('sslrootcert')) u.searchParams.set('sslrootcert', ca);
  return u.toString();
}

/**
 * What a node's capture or apply connects with, from the security section: its Kafka user over
 * TLS, its PostgreSQL role over verify-full TLS, the files of their passwords, and the registry's
 * CA and client certificate. Without a section: nothing (plaintext, as the URLs say).
 */
export function serviceSecurity(
  s: TopologySecurity | undefined,
  service: 'capture' | 'apply',
  node: { id: string; postgres: string },
): Partial<SecurityConfig> & { pgUrl: string } {
  if (s === undefined) return { pgUrl: node.postgres };
  const role = service === 'capture' ? s.captureRole : s.applyRole;
  const user = kafkaUser(service, node.id);
  return {
    pgUrl: securedPgUrl(node.postgres, role, s.ca),
    pgPasswordFile: secretFile(s, { postgres: role, node: node.id }),
    tlsCaFile: s.ca,
    kafkaTls: true,
    kafkaSasl: s.kafkaSasl,
    kafkaUser: user,
    kafkaPasswordFile: secretFile(s, { kafka: user }),
    ...(s.registryCertificate === undefined ? {} : { registryCertFile: s.registryCertificate }),
    ...(s.registryKey === undefined ? {} : { registryKeyFile: s.registryKey }),
  };
}
