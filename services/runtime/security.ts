/**
 * How a service reaches Kafka, its PostgreSQL node and the schema registry: TLS checked against a
 * CA, SASL/SCRAM for Kafka, the node role's password, the registry's client certificate (its
 * mutual TLS). Declared once here (capture and apply share them), loaded once in main: every
 * secret is read at start from its file (or the environment), held in memory only, and never
 * printed — the options that hold one are marked `secret` and loadConfig never echoes them.
 *
 * PostgreSQL's TLS is in the node's URL (`sslmode=verify-full&sslrootcert=…`, as libpq takes it);
 * its password reaches node-postgres through PGPASSWORD of the service's own process (libpq's
 * variable, which node-postgres reads for every connection, the replication slot's included), so
 * no URL ever holds it. docs/security.md says what each link needs.
 */
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import type { SASLOptions } from 'kafkajs';
import { bool, type ConfigOf, oneOf, str } from './config.ts';
import { BrabantError } from './errors.ts';

export const KAFKA_SASL_MECHANISMS = ['none', 'scram-sha-512', 'scram-sha-256', 'plain'] as const;
export type KafkaSaslMechanism = (typeof KAFKA_SASL_MECHANISMS)[number];

/** The options of every service that reaches Kafka, a node and the registry. */
export function securityOptions() {
  return {
    tlsCaFile: str({
      env: 'BRABANT_TLS_CA_FILE',
      description:
        'PEM file of the CA that signed the certificates of Kafka’s brokers and the schema registry (checked on every connection; empty: the system’s CAs). PostgreSQL takes its CA in the node URL (sslmode=verify-full&sslrootcert=FILE)',
      default: '',
    }),
    kafkaTls: bool({
      env: 'BRABANT_KAFKA_TLS',
      description:
        'Connect to Kafka over TLS (SSL or SASL_SSL listeners), the brokers’ certificates and names checked against BRABANT_TLS_CA_FILE',
      default: false,
    }),
    kafkaSasl: oneOf({
      env: 'BRABANT_KAFKA_SASL',
      values: KAFKA_SASL_MECHANISMS,
      description:
        'SASL mechanism Kafka authenticates this service with (BRABANT_KAFKA_USER and its password); none: no authentication',
      default: 'none',
    }),
    kafkaUser: str({
      env: 'BRABANT_KAFKA_USER',
      description:
        'Kafka user (SASL) of this service, e.g. brabant-capture-vl-1 (brabant node init creates it)',
      default: '',
    }),
    kafkaPasswordFile: str({
      env: 'BRABANT_KAFKA_PASSWORD_FILE',
      description:
        'File holding the Kafka user’s password (read at start; readable by the service only); or give it in BRABANT_KAFKA_PASSWORD',
      default: '',
    }),
    kafkaPassword: str({
      env: 'BRABANT_KAFKA_PASSWORD',
      description:
        'The Kafka user’s password itself, from the environment (never printed); overrides the file',
      default: '',
      secret: true,
    }),
    pgPasswordFile: str({
      env: 'BRABANT_PG_PASSWORD_FILE',
      description:
        'File holding the password of the user of BRABANT_PG_URL (read at start); or give it in PGPASSWORD. Never put it in the URL',
      default: '',
    }),
    registryCertFile: str({
      env: 'BRABANT_REGISTRY_CERT_FILE',
      description:
        'PEM certificate this service shows the schema registry (its mutual TLS, docs/security.md); with BRABANT_REGISTRY_KEY_FILE',
      default: '',
    }),
    registryKeyFile: str({
      env: 'BRABANT_REGISTRY_KEY_FILE',
      description: 'PEM private key of BRABANT_REGISTRY_CERT_FILE (readable by the service only)',
      default: '',
    }),
  };
}

export type SecurityConfig = ConfigOf<ReturnType<typeof securityOptions>>;

/** TLS options of a client connection: the CA to check the server against, and a client certificate. */
export interface ClientTls {
  ca?: string;
  cert?: string;
  key?: string;
}

/** What a service's connections are given, secrets read. */
export interface ServiceSecurity {
  kafka: { ssl?: ConnectionOptions; sasl?: SASLOptions };
  /** undefined: plain HTTP(S) with the system's CAs and no client certificate. */
  registry: ClientTls | undefined;
  /** The node role's password (set as PGPASSWORD by applyPgPassword), if one was given. */
  pgPassword: string | undefined;
}

/** A secret (password, key) from its file; the message names the file and the option, never the content. */
export function readSecretFile(file: string, option: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new BrabantError(
      'CONFIG_INVALID',
      `${option}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); give a file the service may read`,
    );
  }
  // a trailing newline (echo pw > file) is not part of the secret
  const secret = text.replace(/\r?\n$/, '');
  if (secret === '') throw new BrabantError('CONFIG_INVALID', `${option}: ${file} is empty`);
  return secret;
}

function readPem(file: string, option: string): string {
  const pem = readSecretFile(file, option);
  if (!pem.includes('-----BEGIN '))
    throw new BrabantError('CONFIG_INVALID', `${option}: ${file} is not a PEM file (no -----BEGIN line)`);
  return pem;
}

/** Reads every file the options name; one error lists what is wrong. */
export function loadSecurity(c: SecurityConfig, env = process.env): ServiceSecurity {
  const ca = c.tlsCaFile === '' ? undefined : readPem(c.tlsCaFile, 'BRABANT_TLS_CA_FILE');
  const kafka: ServiceSecurity['kafka'] = {};
  if (c.kafkaTls) kafka.ssl = ca === undefined ? {} : { ca: [ca] };
  if (c.kafkaSasl !== 'none') {
    if (c.kafkaUser === '')
      throw new BrabantError(
        'CONFIG_INVALID',
        `BRABANT_KAFKA_SASL=${c.kafkaSasl} needs BRABANT_KAFKA_USER (the service's Kafka user)`,
      );
    const password =
      c.kafkaPassword !== ''
        ? c.kafkaPassword
        : c.kafkaPasswordFile !== ''
          ? readSecretFile(c.kafkaPasswordFile, 'BRABANT_KAFKA_PASSWORD_FILE')
          : undefined;
    if (password === undefined)
      throw new BrabantError(
        'CONFIG_INVALID',
        `BRABANT_KAFKA_SASL=${c.kafkaSasl} needs the password of ${c.kafkaUser}: BRABANT_KAFKA_PASSWORD_FILE or BRABANT_KAFKA_PASSWORD`,
      );
    kafka.sasl = { mechanism: c.kafkaSasl, username: c.kafkaUser, password } as SASLOptions;
  }
  if ((c.registryCertFile === '') !== (c.registryKeyFile === ''))
    throw new BrabantError(
      'CONFIG_INVALID',
      'BRABANT_REGISTRY_CERT_FILE and BRABANT_REGISTRY_KEY_FILE go together: give both or neither',
    );
  const registry: ClientTls | undefined =
    ca === undefined && c.registryCertFile === ''
      ? undefined
      : {
          ...(ca === undefined ? {} : { ca }),
          ...(c.registryCertFile === ''
            ? {}
            : {
                cert: readPem(c.registryCertFile, 'BRABANT_REGISTRY_CERT_FILE'),
                key: readPem(c.registryKeyFile, 'BRABANT_REGISTRY_KEY_FILE'),
              }),
        };
  const pgPassword =
    c.pgPasswordFile !== '' ? readSecretFile(c.pgPasswordFile, 'BRABANT_PG_PASSWORD_FILE') : env.PGPASSWORD;
  return { kafka, registry, pgPassword };
}

/** The node role's password as PGPASSWORD of this process: node-postgres reads it for every connection. */
export function applyPgPassword(s: ServiceSecurity, env = process.env): void {
  if (s.pgPassword !== undefined) env.PGPASSWORD = s.pgPassword;
}

/** The secrets a service holds, for redaction (logs, errors): never printed as they are. */
export function secretsOf(s: ServiceSecurity): string[] {
  const sasl = s.kafka.sasl as { password?: string } | undefined;
  return [sasl?.password, s.pgPassword, s.registry?.key].filter(
    (x): x is string => typeof x === 'string' && x !== '',
  );
}
