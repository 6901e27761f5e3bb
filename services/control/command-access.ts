/**
 * How a command (status, dashboard, deadletters, node join and part) reaches a topology's Kafka
 * clusters and registries: on a secured topology as the cluster's admin over TLS checked against
 * the CA (as node init does), and to the registry with the topology's client certificate (its
 * mutual TLS); on a plaintext topology as nobody.
 */
import { readFileSync } from 'node:fs';
import type { KafkaConfig } from 'kafkajs';
import type { ClientTls } from '../runtime/security.ts';
import type { Topology } from '../runtime/topology.ts';
import { adminSasl } from './node-kafka.ts';

export function commandKafkaAuth(t: Topology, region: string): Pick<KafkaConfig, 'ssl' | 'sasl'> {
  const sec = t.security;
  if (sec === undefined) return {};
  return { ssl: { ca: [readFileSync(sec.ca, 'utf8')] }, sasl: adminSasl(sec, region) };
}

/** The TLS of a command's registry requests, or undefined on a plaintext topology. */
export function commandRegistryTls(t: Topology): ClientTls | undefined {
  const sec = t.security;
  if (sec === undefined) return undefined;
  return {
    ca: readFileSync(sec.ca, 'utf8'),
    ...(sec.registryCertificate === undefined || sec.registryKey === undefined
      ? {}
      : { cert: readFileSync(sec.registryCertificate, 'utf8'), key: readFileSync(sec.registryKey, 'utf8') }),
  };
}
