/**
 * The local stack harness: one module for three users (people via `brabant up`, the test suite via
 * vitest global setup, CI). It starts a described topology of real programs (Apache Kafka in KRaft
 * mode, PostgreSQL 15 nodes, a Confluent-compatible schema registry) on loopback ports, waits
 * until each is really ready, returns connection details, and stops everything it started. Any
 * component can instead be given from outside through environment variables (see externalConfig).
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { bool, list, loadConfig, str } from '../services/runtime/config.ts';
import { BrabantError } from '../services/runtime/errors.ts';
import { ensureKafkaJars, isKafkaFormatted, type RunningKafka, startKafka } from './kafka/kafka.ts';
import { initNode, isInitialized, type RunningPostgres, startNode } from './postgres/postgres.ts';
import { assertPortFree, freePort, isAlive, type ManagedProcess, stopPid } from './processes.ts';
import { ensureRegistryBuilt, type RunningRegistry, startRegistry } from './registry/registry.ts';
import {
  ensureRegistryDatabase,
  REGISTRY_DATABASE,
  type RegistryStorage,
  registryDbSettings,
  registryStorageFromUrl,
} from './registry/registry-db.ts';

export interface Topology {
  regions: { name: string; nodes: number }[];
  /** One Kafka cluster for all regions, or one per region (as across real datacenters). */
  kafka: 'shared' | 'per-region';
}

export interface StackOptions {
  /** Folder for data, logs and the state file. */
  workDir: string;
  /** First of a block of fixed ports; 0 = let the OS pick free ports. */
  basePort: number;
  /** Start again from data left in workDir by an earlier run instead of refusing. */
  reuse?: boolean;
  onProgress?: (message: string) => void;
  env?: Record<string, string | undefined>;
}

export interface NodeInfo {
  id: string;
  region: string;
  /** postgres:// URL of the node's `postgres` database. */
  url: string;
  port: number;
  external: boolean;
}

export interface RegionInfo {
  name: string;
  kafkaBrokers: string[];
  nodes: NodeInfo[];
}

/** Serializable description of a running stack (what tests and people connect to). */
export interface StackInfo {
  regions: RegionInfo[];
  registryUrl: string;
  workDir: string;
  pids: { name: string; pid: number; logFile: string }[];
}

export interface Stack extends StackInfo {
  stop(): Promise<void>;
  /** Let the processes outlive this one (`brabant up --detach`); `brabant down` stops them later. */
  release(): void;
}

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

export const STATE_FILE = 'stack.json';

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
}

function parsePgUrls(pairs: string[]): Map<string, string> {
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

/** Refuse to start over a live stack or over data from an earlier run (unless reuse). */
export function checkWorkDir(workDir: string, reuse: boolean): void {
  const state = readState(workDir);
  if (state !== undefined) {
    const live = state.pids.filter((p) => isAlive(p.pid));
    if (live.length > 0) {
      throw new BrabantError(
        'STACK_ALREADY_RUNNING',
        `a stack is already running from ${workDir} (${live.map((p) => `${p.name} pid ${p.pid}`).join(', ')}); ` +
          'use it, or stop it first with `brabant down`',
      );
    }
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

export function readState(workDir: string): StackInfo | undefined {
  const file = join(workDir, STATE_FILE);
  if (!existsSync(file)) return undefined;
  return JSON.parse(readFileSync(file, 'utf8')) as StackInfo;
}

/** Stop every process recorded in a state file (for `brabant down` and leftovers of killed runs). */
export async function stopRecorded(workDir: string, onProgress?: (m: string) => void): Promise<number> {
  const state = readState(workDir);
  if (state === undefined) return 0;
  let stopped = 0;
  // Reverse start order: registry, then Kafka and PostgreSQL.
  for (const p of [...state.pids].reverse()) {
    if (!isAlive(p.pid)) continue;
    onProgress?.(`stopping ${p.name} (pid ${p.pid})`);
    await stopPid(p.pid);
    stopped++;
  }
  rmSync(join(workDir, STATE_FILE), { force: true });
  return stopped;
}

interface PortPlan {
  next(): Promise<number>;
}

function portPlan(basePort: number): PortPlan {
  let offset = 0;
  return {
    async next() {
      if (basePort === 0) return freePort();
      return basePort + offset++;
    },
  };
}

export async function startStack(topology: Topology, options: StackOptions): Promise<Stack> {
  validateTopology(topology);
  const progress = options.onProgress ?? (() => {});
  const ext = loadConfig(externalConfig, options.env ?? process.env);
  const workDir = resolve(options.workDir);
  checkWorkDir(workDir, options.reuse ?? false);
  const dataDir = join(workDir, 'data');
  const logDir = join(workDir, 'logs');
  mkdirSync(dataDir, { recursive: true });
  mkdirSync(logDir, { recursive: true });
  const ids = nodeIds(topology);
  const externalPg = parsePgUrls(ext.pgUrls);
  const ports = portPlan(options.basePort);

  // Plan every port first, and check the fixed ones before starting anything.
  const kafkaNames =
    ext.kafkaBrokers.length > 0
      ? []
      : topology.kafka === 'shared'
        ? ['kafka']
        : topology.regions.map((r) => `kafka-${r.name}`);
  const kafkaPlan: { name: string; brokerPort: number; controllerPort: number }[] = [];
  for (const name of kafkaNames)
    kafkaPlan.push({ name, brokerPort: await ports.next(), controllerPort: await ports.next() });
  const pgPlan: { id: string; region: string; port: number }[] = [];
  for (const r of topology.regions) {
    for (const id of ids.get(r.name) ?? []) {
      if (!externalPg.has(id)) pgPlan.push({ id, region: r.name, port: await ports.next() });
    }
  }
  const registryPort = ext.registryUrl === '' ? await ports.next() : 0;
  // After the registry's own port, so that the ports of a stack made before it stay the same.
  const registryDbPort = ext.registryUrl === '' && ext.registryDbUrl === '' ? await ports.next() : 0;
  if (options.basePort !== 0) {
    for (const k of kafkaPlan) {
      await assertPortFree('127.0.0.1', k.brokerPort, `${k.name} (broker)`);
      await assertPortFree('127.0.0.1', k.controllerPort, `${k.name} (controller)`);
    }
    for (const n of pgPlan) await assertPortFree('127.0.0.1', n.port, `PostgreSQL node ${n.id}`);
    if (registryPort !== 0) await assertPortFree('127.0.0.1', registryPort, 'the schema registry');
    if (registryDbPort !== 0) await assertPortFree('127.0.0.1', registryDbPort, 'PostgreSQL registry-db');
  }

  const started: ManagedProcess[] = [];
  const pids: StackInfo['pids'] = [];
  const record = (p: ManagedProcess) => {
    started.push(p);
    pids.push({ name: p.name, pid: p.pid, logFile: p.logFile });
    writeState();
  };
  let info: StackInfo = { regions: [], registryUrl: '', workDir, pids };
  const writeState = () => writeFileSync(join(workDir, STATE_FILE), `${JSON.stringify(info, null, 2)}\n`);
  const stopAll = async () => {
    for (const p of [...started].reverse()) await p.stop();
    rmSync(join(workDir, STATE_FILE), { force: true });
  };
  // If our own process ends without stop(), take the children with it.
  const onExit = () => {
    for (const p of started) if (!p.hasExited()) process.kill(-p.pid, 'SIGKILL');
  };
  process.on('exit', onExit);

  try {
    const kafkaJobs: Promise<RunningKafka>[] = [];
    if (kafkaPlan.length > 0) {
      const libs = await ensureKafkaJars(progress);
      for (const k of kafkaPlan) {
        const kDir = join(dataDir, k.name);
        if (isKafkaFormatted(kDir) && !options.reuse)
          throw new BrabantError('DATA_DIR_LEFT_OVER', `${kDir} holds Kafka data from an earlier run`);
        progress(`starting ${k.name} on 127.0.0.1:${k.brokerPort}`);
        kafkaJobs.push(
          startKafka({ ...k, dataDir: kDir, logFile: join(logDir, `${k.name}.log`), libsDir: libs }).then(
            (running) => {
              record(running.process);
              progress(`${k.name} ready at ${running.bootstrap}`);
              return running;
            },
          ),
        );
      }
    }
    const pgJobs = pgPlan.map(async (n) => {
      const spec = {
        name: n.id,
        port: n.port,
        dataDir: join(dataDir, n.id),
        logFile: join(logDir, `${n.id}.log`),
      };
      if (!isInitialized(spec.dataDir)) {
        progress(`initdb of node ${n.id}`);
        initNode(spec);
      }
      progress(`starting PostgreSQL node ${n.id} on port ${n.port}`);
      const running = await startNode(spec);
      record(running.process);
      progress(`PostgreSQL node ${n.id} ready on port ${n.port}`);
      return running;
    });
    const registryBuild = ext.registryUrl === '' ? ensureRegistryBuilt(progress) : undefined;
    // The registry's schemas: in a PostgreSQL cluster of its own, or the database given.
    let registryStorage: RegistryStorage | undefined;
    const registryDbJobs: Promise<void>[] = [];
    if (ext.registryDbUrl !== '') registryStorage = registryStorageFromUrl(ext.registryDbUrl);
    else if (registryDbPort !== 0) {
      registryStorage = registryStorageFromUrl(
        `postgres://postgres@127.0.0.1:${registryDbPort}/${REGISTRY_DATABASE}`,
      );
      const spec = {
        name: 'registry-db',
        port: registryDbPort,
        dataDir: join(dataDir, 'registry-db'),
        logFile: join(logDir, 'registry-db.log'),
      };
      registryDbJobs.push(
        (async () => {
          if (!isInitialized(spec.dataDir)) {
            progress('initdb of the registry database');
            initNode(spec, registryDbSettings(spec.port));
          }
          const running = await startNode(spec);
          record(running.process);
          await ensureRegistryDatabase(running.url);
          progress(`registry-db ready on port ${spec.port}`);
        })(),
      );
    }

    const kafkas = await settleAll(kafkaJobs);
    const nodes = await settleAll<RunningPostgres>(pgJobs);
    await settleAll(registryDbJobs);
    let registryUrl = ext.registryUrl;
    if (registryBuild !== undefined) {
      const dist = await registryBuild;
      progress(`starting the schema registry on 127.0.0.1:${registryPort}`);
      const reg: RunningRegistry = await startRegistry({
        port: registryPort,
        distDir: dist,
        logFile: join(logDir, 'registry.log'),
        runDir: join(dataDir, 'registry'),
        storage: registryStorage!,
      });
      record(reg.process);
      registryUrl = reg.url;
      progress(`schema registry ready at ${registryUrl}`);
    }

    const brokersFor = (region: string): string[] => {
      if (ext.kafkaBrokers.length > 0) return ext.kafkaBrokers;
      const k =
        topology.kafka === 'shared'
          ? kafkas[0]
          : kafkas[topology.regions.findIndex((r) => r.name === region)];
      return [k!.bootstrap];
    };
    info = {
      workDir,
      registryUrl,
      pids,
      regions: topology.regions.map((r) => ({
        name: r.name,
        kafkaBrokers: brokersFor(r.name),
        nodes: (ids.get(r.name) ?? []).map((id) => {
          const extUrl = externalPg.get(id);
          if (extUrl !== undefined)
            return {
              id,
              region: r.name,
              url: extUrl,
              port: Number(new URL(extUrl).port || 5432),
              external: true,
            };
          const n = nodes.find((x) => x.name === id)!;
          return { id, region: r.name, url: n.url, port: n.port, external: false };
        }),
      })),
    };
    writeState();
  } catch (err) {
    await stopAll();
    process.off('exit', onExit);
    throw err;
  }
  return {
    ...info,
    async stop() {
      await stopAll();
      process.off('exit', onExit);
    },
    release() {
      process.off('exit', onExit);
      for (const p of started) p.unref();
    },
  };
}

/** Like Promise.all, but waits for every job so that none is left starting when one fails. */
async function settleAll<T>(jobs: Promise<T>[]): Promise<T[]> {
  const results = await Promise.allSettled(jobs);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<T>).value);
}
