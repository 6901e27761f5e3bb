/**
 * The topology file of a local stack (`<stack folder>/topology.yaml`): what `brabant up` writes so
 * that the services and commands (`brabant start`, `brabant stop`, the services' --topology) work
 * on the local stack exactly as on a production layout. Capture, apply and router ports are fixed
 * here from the stack's port block, so `brabant start` can run them where the file says.
 */
import { writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { formatTopology, type Topology } from '../services/runtime/topology.ts';
import type { TopologySecurity } from '../services/runtime/topology-security.ts';
import type { StackState } from './stack-state.ts';

export const TOPOLOGY_FILE = 'topology.yaml';

/** Ports of the services a topology names (metrics of capture and apply per node, a router per region). */
export interface ServicePorts {
  node: Record<string, { capture: number; apply: number }>;
  router: Record<string, { port: number; controlPort: number }>;
}

export function stackTopology(
  state: Pick<StackState, 'regions' | 'peerStreams'> & { servicePorts?: ServicePorts },
  security?: TopologySecurity,
): Omit<Topology, 'file'> {
  const ports = state.servicePorts;
  return {
    ...(security === undefined ? {} : { security }),
    peerStreams: state.peerStreams ?? 'direct',
    regions: state.regions.map((r) => ({
      name: r.name,
      kafka: r.kafkaBrokers,
      kafkaFromPeers: r.kafkaFromPeers,
      registry: r.registryUrl,
      registryPrimary: r.registryPrimaryUrl,
    })),
    nodes: state.regions.flatMap((r) =>
      r.nodes.map((n) => ({
        id: n.id,
        region: r.name,
        postgres: n.url,
        ...(ports?.node[n.id]
          ? { captureMetricsPort: ports.node[n.id]!.capture, applyMetricsPort: ports.node[n.id]!.apply }
          : {}),
      })),
    ),
    routers: ports
      ? state.regions
          .filter((r) => ports.router[r.name] !== undefined)
          .map((r) => ({ region: r.name, ...ports.router[r.name]!, database: 'postgres' }))
      : [],
  };
}

/** Writes the stack's topology file; returns its path. */
export function writeStackTopology(
  workDir: string,
  state: Pick<StackState, 'regions' | 'peerStreams'> & { servicePorts?: ServicePorts },
  layout: string,
  security?: TopologySecurity,
): string {
  const file = join(workDir, TOPOLOGY_FILE);
  writeFileSync(
    file,
    formatTopology(
      stackTopology(state, security),
      `Topology of the local stack in ${workDir} (Kafka: ${layout}${security ? '; TLS and authentication on every link' : '; plaintext, no authentication (--insecure)'}), written by \`brabant up\`.\n` +
        '`brabant start` runs its capture, apply and routers; every service takes --topology this-file.' +
        (security ? '\nThe security section names files in secrets/; no password is in this file.' : ''),
      (p) => relative(workDir, p),
    ),
  );
  return file;
}
