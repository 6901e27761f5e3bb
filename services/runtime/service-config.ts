/**
 * How a service finds its configuration: `--topology FILE` (or BRABANT_TOPOLOGY) and the node it
 * runs for (`--node ID` or BRABANT_NODE_ID; a router: `--region R` or BRABANT_REGION) give the
 * defaults, each service's config.ts says how it reads them from the topology, and environment
 * variables override any of them. Without a topology the environment alone configures it, as
 * before.
 */
import { parseArgs } from 'node:util';
import { type ConfigOf, envFor, loadConfig, type Spec } from './config.ts';
import { BrabantError } from './errors.ts';
import { readTopology, type Topology } from './topology.ts';

/** How a service's options follow from the topology, for the node (or region) it runs for. */
export interface TopologyBinding<S extends Spec> {
  /** What one instance runs for. */
  target: 'node' | 'region';
  options(t: Topology, id: string): Partial<ConfigOf<S>>;
}

export const TOPOLOGY_ENV = 'BRABANT_TOPOLOGY';

export function loadServiceConfig<S extends Spec>(
  name: string,
  spec: S,
  binding: TopologyBinding<S> | undefined,
  argv: string[] = process.argv.slice(2),
  env: Record<string, string | undefined> = process.env,
): ConfigOf<S> {
  let values: { topology?: string | undefined; node?: string | undefined; region?: string | undefined };
  try {
    values = parseArgs({
      args: argv,
      options: { topology: { type: 'string' }, node: { type: 'string' }, region: { type: 'string' } },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    throw new BrabantError(
      'CONFIG_INVALID',
      `${(err as Error).message}; brabant ${name} takes --topology FILE and --${binding?.target ?? 'node'} ${binding?.target === 'region' ? 'REGION' : 'ID'} (or the environment: docs/configuration.md)`,
    );
  }
  const file = values.topology ?? env[TOPOLOGY_ENV];
  if (file === undefined || file === '' || binding === undefined) return loadConfig(spec, env);
  const topology = readTopology(file);
  const idEnv = binding.target === 'node' ? 'BRABANT_NODE_ID' : 'BRABANT_REGION';
  const id = (binding.target === 'node' ? values.node : values.region) ?? env[idEnv];
  if (id === undefined || id === '') {
    const choices =
      binding.target === 'node' ? topology.nodes.map((n) => n.id) : topology.regions.map((r) => r.name);
    throw new BrabantError(
      'CONFIG_INVALID',
      `brabant ${name} with the topology ${file} runs for one ${binding.target}: say which with --${binding.target} (or ${idEnv}), one of ${choices.join(', ')}`,
    );
  }
  const fromTopology = envFor(spec, binding.options(topology, id), name);
  const overrides = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  return loadConfig(spec, { ...fromTopology, ...overrides });
}
