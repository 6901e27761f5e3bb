/**
 * What each part of a secured local stack is given (pure, from the stack's secrets): Kafka its
 * keystore and admin, every PostgreSQL cluster its certificate and superuser password, the
 * registry its certificate and the truststore its clients' certificates are checked against.
 */

import { BrabantError } from '../../services/runtime/errors.ts';
import { secretFile } from '../../services/runtime/topology-security.ts';
import type { KafkaSecuritySpec } from '../kafka/kafka-security.ts';
import type { PostgresSecuritySpec } from '../postgres/postgres-security.ts';
import type { RegistrySecuritySpec } from '../registry/registry.ts';
import { REGISTRY_DATABASE, type RegistryStorage, registryStorageFromUrl } from '../registry/registry-db.ts';
import {
  adminPasswordFile,
  ensureStackSecrets,
  KAFKA_BROKER_SUBJECT,
  REGISTRY_DB_ROLE,
  registryDbPasswordFile,
  type StackSecrets,
} from './stack-secrets.ts';

interface StackLayout {
  regions: { name: string; nodes: number }[];
  kafka: 'shared' | 'per-region';
  peerStreams?: 'direct' | 'mirror';
}

/** The stack's secrets, made if missing; refuses what the secured stack does not cover yet. */
export function securedStackSecrets(
  topology: StackLayout,
  ext: { kafkaBrokers: string[]; registryUrl: string; registryDbUrl: string; pgUrls: string[] },
  workDir: string,
  progress: (m: string) => void,
  nodeIds: Map<string, string[]>,
): StackSecrets {
  if (topology.peerStreams === 'mirror')
    throw new BrabantError(
      'CONFIG_INVALID',
      'the secured local stack does not run MirrorMaker yet: --peer-streams mirror runs only plaintext for now; add --insecure, or leave --peer-streams direct',
    );
  const external = [
    ext.kafkaBrokers.length > 0 ? 'BRABANT_KAFKA_BROKERS' : '',
    ext.registryUrl !== '' ? 'BRABANT_REGISTRY_URL' : '',
    ext.registryDbUrl !== '' ? 'BRABANT_REGISTRY_DB_URL' : '',
    ext.pgUrls.length > 0 ? 'BRABANT_PG_URLS' : '',
  ].filter((x) => x !== '');
  if (external.length > 0)
    throw new BrabantError(
      'CONFIG_INVALID',
      `${external.join(', ')} name${external.length === 1 ? 's a component' : ' components'} of your own, which the secured local stack cannot give its certificates and passwords: start it with --insecure, or secure yours and describe them in a topology file (docs/security.md)`,
    );
  const regions = topology.regions.map((r) => ({ name: r.name, nodes: nodeIds.get(r.name) ?? [] }));
  return ensureStackSecrets(workDir, regions, true, progress);
}

export function kafkaSecurity(s: StackSecrets, _name: string, topology: StackLayout): KafkaSecuritySpec {
  return {
    keystore: s.kafkaKeystore,
    keystorePasswordFile: s.kafkaKeystorePasswordFile,
    ca: s.ca,
    brokerPrincipal: KAFKA_BROKER_SUBJECT,
    adminUser: s.topology.kafkaAdmin,
    // the shared cluster: every region's admin file holds the same password
    adminPasswordFile: secretFile(s.topology, {
      kafka: s.topology.kafkaAdmin,
      region: topology.regions[0]!.name,
    }),
    mechanism: 'SCRAM-SHA-512',
  };
}

export function postgresSecurity(s: StackSecrets, id: string): PostgresSecuritySpec {
  return {
    cert: s.serverCert,
    key: s.serverKey,
    ca: s.ca,
    adminPasswordFile:
      id === 'registry-db' ? registryDbPasswordFile(s, 'postgres') : adminPasswordFile(s, id),
  };
}

export function registrySecurity(s: StackSecrets): RegistrySecuritySpec {
  return {
    cert: s.serverCert,
    key: s.serverKey,
    truststore: s.truststore,
    truststorePasswordFile: s.truststorePasswordFile,
    ca: s.ca,
    clientCert: s.clientCert,
    clientKey: s.clientKey,
  };
}

/**
 * Where a registry of the stack keeps its schemas: the registry database (or its standby) on
 * `port` — secured, as the registry's own role over verify-full TLS with its password file;
 * plaintext, as postgres.
 */
export function registryDbStorage(s: StackSecrets | undefined, port: number): RegistryStorage {
  if (s === undefined)
    return registryStorageFromUrl(`postgres://postgres@127.0.0.1:${port}/${REGISTRY_DATABASE}`);
  return {
    ...registryStorageFromUrl(
      `postgres://${REGISTRY_DB_ROLE}@127.0.0.1:${port}/${REGISTRY_DATABASE}?sslmode=verify-full&sslrootcert=${encodeURIComponent(s.ca)}`,
    ),
    passwordFile: registryDbPasswordFile(s, REGISTRY_DB_ROLE),
  };
}
