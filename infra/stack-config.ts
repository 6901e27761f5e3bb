/**
 * The local stack's configuration checks (pure): external components declared once, a topology's
 * node ids, its validation, and whether a stack folder may be used.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { bool, list, str } from '../services/runtime/config.ts';
import { BrabantError } from '../services/runtime/errors.ts';
import { supportedMajors } from './postgres/majors.ts';
import type { Topology } from './stack.ts';
import type { WorkDirStatus } from './stack-state.ts';

/** External components, declared once each. */
export const externalConfig = {
  kafkaBrokers: list({
    env: 'BRABANT_KAFKA_BROKERS',
    description: 'Use this Kafka cluster (host:port list) for every region instead of starting one',
    default: [],
  }),
  registryUrl: str({
    env: 'BRABANT_REGISTRY_URL',
    description: 'Use this Confluent-compatible schema registry instead of starting one',
    default: '',
  }),
  registryDbUrl: str({
    env: 'BRABANT_REGISTRY_DB_URL',
    description:
      "Keep the started registry's schemas in this PostgreSQL database (postgres://user:password@host:5432/db) instead of a registry-db cluster of the stack",
    default: '',
  }),
  pgUrls: list({
    env: 'BRABANT_PG_URLS',
    description:
      'Use these PostgreSQL servers instead of starting nodes: nodeId=postgres://… pairs, e.g. vl-1=postgres://u@h:5432/postgres',
    default: [],
  }),
  keep: bool({
    env: 'BRABANT_KEEP_STACK',
    description: 'Leave the started test stack running after the test run (for debugging)',
    default: false,
  }),
};

/** An environment without the external components (a stack of a test's or benchmark's own starts its own). */
export function withoutExternal(env: Record<string, string | undefined>): Record<string, string | undefined> {
  const out = { ...env };
  for (const o of Object.values(externalConfig)) if (o.env !== 'BRABANT_KEEP_STACK') delete out[o.env];
  return out;
}

/** Node ids: first two letters of the region (vl-1, wa-1), or the whole name when those clash. */
export function nodeIds(topology: Topology): Map<string, string[]> {
  const prefixes = topology.regions.map((r) => r.name.slice(0, 2).toLowerCase());
  const clash = new Set(prefixes).size !== prefixes.length;
  const out = new Map<string, string[]>();
  for (const r of topology.regions) {
    const prefix = clash ? r.name.toLowerCase() : r.name.slice(0, 2).toLowerCase();
    out.set(
      r.name,
      Array.from({ length: r.nodes }, (_, i) => `${prefix}-${i + 1}`),
    );
  }
  return out;
}

export function validateTopology(topology: Topology): void {
  if (topology.regions.length === 0)
    throw new BrabantError('CONFIG_INVALID', 'a topology needs at least one region');
  const names = new Set<string>();
  for (const r of topology.regions) {
    if (!/^[a-z][a-z0-9_]*$/.test(r.name)) {
      throw new BrabantError(
        'CONFIG_INVALID',
        `region name '${r.name}' must be lower-case letters, digits and _`,
      );
    }
    if (names.has(r.name)) throw new BrabantError('CONFIG_INVALID', `region '${r.name}' is listed twice`);
    names.add(r.name);
    if (!Number.isInteger(r.nodes) || r.nodes < 1 || r.nodes > 8) {
      throw new BrabantError('CONFIG_INVALID', `region '${r.name}' must have 1 to 8 nodes, not ${r.nodes}`);
    }
  }
  const ids = new Set([...nodeIds(topology).values()].flat());
  for (const [id, major] of Object.entries(topology.postgresMajors ?? {})) {
    if (!ids.has(id))
      throw new BrabantError(
        'CONFIG_INVALID',
        `a PostgreSQL major is given for node '${id}', which the topology lacks`,
      );
    if (!supportedMajors().includes(major))
      throw new BrabantError(
        'CONFIG_INVALID',
        `node '${id}' cannot run PostgreSQL ${major}; the majors are ${supportedMajors().join(', ')}`,
      );
  }
}

export function parsePgUrls(pairs: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const p of pairs) {
    const eq = p.indexOf('=');
    if (eq <= 0) {
      throw new BrabantError(
        'CONFIG_INVALID',
        `BRABANT_PG_URLS entry '${p}' must look like nodeId=postgres://…`,
      );
    }
    out.set(p.slice(0, eq), p.slice(eq + 1));
  }
  return out;
}

/**
 * Refuse to start over a stack in use, or over data from an earlier run unless reusing it. A run
 * that died without stopping what it started is not refused: startStack clears it first.
 */
export function checkWorkDir(workDir: string, reuse: boolean, status: WorkDirStatus): void {
  if (status.kind === 'running') {
    const live = status.live.map((l) => `${l.record.name} pid ${l.record.pid}`).join(', ');
    throw new BrabantError(
      'STACK_ALREADY_RUNNING',
      `a stack is already running from ${workDir} (${live}); use it, or stop it first with \`brabant down\``,
    );
  }
  const dataDir = join(workDir, 'data');
  if (!reuse && existsSync(dataDir)) {
    throw new BrabantError(
      'DATA_DIR_LEFT_OVER',
      `data folder ${dataDir} is left from an earlier run; start over with \`brabant down --purge\` ` +
        'then `brabant up`, or keep its data with `brabant up --reuse`',
    );
  }
}

export interface PortPlan {
  next(): Promise<number>;
}
