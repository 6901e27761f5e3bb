/**
 * The local stack harness: one module for three users (people via `brabant up`, the test suite via
 * vitest global setup, CI). It starts a described topology of real programs (Apache Kafka in KRaft
 * mode, PostgreSQL 15 nodes, a Confluent-compatible schema registry) on loopback ports, waits
 * until each is really ready, returns connection details, and stops everything it started. Any
 * component can instead be given from outside through environment variables (see externalConfig).
 *
 * What runs is recorded in the stack folder's state file (stack-state.ts) as each part becomes
 * ready; stopping, clearing a dead run's leftovers and restarting one part work from that file
 * (stack-control.ts), so they work the same from this process or any other.
 */
import { mkdirSync, realpathSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { type ConfigOf, loadConfig } from '../services/runtime/config.ts';
import { readSecretFile } from '../services/runtime/security.ts';
import { type StartedComponent, startComponent } from './components.ts';
import { ensureKafkaJars, kafkaLibsDir } from './kafka/kafka.ts';
import { ensureMirrorJars, mirrorLibsDir } from './kafka/mirror.ts';
import type { RelaySpec } from './link/relay.ts';
import { postgresOsUser } from './postgres/postgres.ts';
import { ensureReachable } from './postgres/reach.ts';
import { readProcessInfo, readProcessTable } from './process-table.ts';
import { CCOMPAT_PATH, ensureRegistryBuilt } from './registry/registry.ts';
import { type RegistryStorage, registryStorageFromUrl } from './registry/registry-db.ts';
import { waitForRegistryTables } from './registry/registry-standby.ts';
import {
  adminPasswordFile,
  REGISTRY_DB_ROLE,
  registryDbPasswordFile,
  type StackSecrets,
} from './security/stack-secrets.ts';
import {
  kafkaSecurity,
  postgresSecurity,
  registryDbStorage,
  registrySecurity,
  securedStackSecrets,
} from './security/stack-security.ts';
import { clearLeftovers, killRecordedNow, stopRecorded } from './stack-control.ts';
import { assertPortsFree, type Planned, portPlan } from './stack-ports.ts';
import {
  type ComponentRecord,
  classifyWorkDir,
  type NodeInfo,
  type RegionInfo,
  readState,
  STATE_FILE,
  type StackInfo,
  type StackState,
  writeState,
} from './stack-state.ts';
import { type ServicePorts, writeStackTopology } from './stack-topology.ts';

export { checkWorkDir, externalConfig, nodeIds, validateTopology, withoutExternal } from './stack-config.ts';
export type { NodeInfo, RegionInfo, StackInfo };
export { readState, STATE_FILE, stopRecorded };

import {
  checkWorkDir,
  externalConfig,
  nodeIds,
  type PortPlan,
  parsePgUrls,
  validateTopology,
} from './stack-config.ts';

export interface Topology {
  regions: { name: string; nodes: number }[];
  /** One Kafka cluster for all regions, or one per region (as across real datacenters). */
  kafka: 'shared' | 'per-region';
  /** Per region: apply reads peers' clusters across the link (default), or a MirrorMaker 2 copy. */
  peerStreams?: 'direct' | 'mirror';
  /** PostgreSQL major of a node (by node id) other than the default 15 (infra/postgres/majors.ts). */
  postgresMajors?: Record<string, number>;
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
  /**
   * secured: TLS and authentication on every link (a CA, certificates and passwords of the
   * stack's own in <workDir>/secrets, infra/security/stack-secrets.ts); insecure (the default
   * here; `brabant up` says secured unless --insecure): plaintext, trust.
   */
  security?: 'secured' | 'insecure';
}

export interface Stack extends StackInfo {
  stop(): Promise<void>;
  /** Let the processes outlive this one (`brabant up --detach`); `brabant down` stops them later. */
  release(): void;
}

/** Every part to start, with its spec (ports, folders), in start order; nothing starts yet. */
async function planParts(
  topology: Topology,
  ext: ConfigOf<typeof externalConfig>,
  workDir: string,
  ports: PortPlan,
  secrets: StackSecrets | undefined,
): Promise<Planned[]> {
  const dataDir = join(workDir, 'data');
  const logFile = (name: string) => join(workDir, 'logs', `${name}.log`);
  const ids = nodeIds(topology);
  const externalPg = parsePgUrls(ext.pgUrls);
  const planned: Planned[] = [];
  const kafkaNames =
    ext.kafkaBrokers.length > 0
      ? []
      : topology.kafka === 'shared'
        ? ['kafka']
        : topology.regions.map((r) => `kafka-${r.name}`);
  for (const name of kafkaNames) {
    const spec = {
      name,
      brokerPort: await ports.next(),
      controllerPort: await ports.next(),
      dataDir: join(dataDir, name),
      logFile: logFile(name),
      libsDir: kafkaLibsDir(),
      ...(secrets === undefined ? {} : { security: kafkaSecurity(secrets, name, topology) }),
    };
    planned.push({ kind: 'kafka', id: name, name, spec });
  }
  for (const r of topology.regions) {
    for (const id of ids.get(r.name) ?? []) {
      if (externalPg.has(id)) continue;
      const major = topology.postgresMajors?.[id];
      const spec = {
        name: id,
        port: await ports.next(),
        dataDir: join(dataDir, id),
        logFile: logFile(id),
        ...(secrets === undefined ? {} : { security: postgresSecurity(secrets, id) }),
        ...(major === undefined ? {} : { major }),
      };
      planned.push({ kind: 'postgres', id, name: `postgres ${id}`, spec });
    }
  }
  if (ext.registryUrl === '') {
    const registryPort = await ports.next();
    let storage: RegistryStorage;
    if (ext.registryDbUrl !== '') {
      storage = registryStorageFromUrl(ext.registryDbUrl);
    } else {
      // After the registry's own port, so that the ports of a stack made before it stay the same.
      const port = await ports.next();
      const spec = {
        name: 'registry-db',
        port,
        dataDir: join(dataDir, 'registry-db'),
        logFile: logFile('registry-db'),
        ...(secrets === undefined
          ? {}
          : {
              security: postgresSecurity(secrets, 'registry-db'),
              owner: {
                role: REGISTRY_DB_ROLE,
                passwordFile: registryDbPasswordFile(secrets, REGISTRY_DB_ROLE),
              },
            }),
      };
      planned.push({ kind: 'registry-db', id: 'registry-db', name: 'registry-db', spec });
      storage = registryDbStorage(secrets, port);
    }
    const spec = {
      port: registryPort,
      logFile: logFile('registry'),
      runDir: join(dataDir, 'registry'),
      storage,
      ...(secrets === undefined ? {} : { security: registrySecurity(secrets) }),
    };
    planned.push({ kind: 'registry', id: 'registry', name: 'schema-registry', spec });
  }
  if (topology.kafka === 'per-region') await planLink(topology, ext, planned, workDir, ports, secrets);
  return planned;
}

/**
 * The per-region layout's parts after the shared ones (so that older stacks keep their ports):
 * each cluster's listener for the other regions, every region but the first a standby of the
 * registry database and a follower registry on it, and the link — a relay on every cross-region
 * connection (a cluster's peer listener, the primary registry, the registry database's
 * replication) so that tests and the demo can cut it.
 */
async function planLink(
  topology: Topology,
  ext: ConfigOf<typeof externalConfig>,
  planned: Planned[],
  workDir: string,
  ports: PortPlan,
  secrets: StackSecrets | undefined,
): Promise<void> {
  const dataDir = join(workDir, 'data');
  const logFile = (name: string) => join(workDir, 'logs', `${name}.log`);
  const relays: RelaySpec[] = [];
  for (const p of planned) {
    if (p.kind !== 'kafka') continue;
    p.spec.peer = { port: await ports.next(), advertisedPort: await ports.next() };
    relays.push({
      name: `${p.name} for the other regions`,
      listenPort: p.spec.peer.advertisedPort,
      targetHost: '127.0.0.1',
      targetPort: p.spec.peer.port,
    });
  }
  const db = planned.find((p) => p.kind === 'registry-db');
  const registry = planned.find((p) => p.kind === 'registry');
  if (db?.kind === 'registry-db' && registry?.kind === 'registry' && ext.registryDbUrl === '') {
    for (const r of topology.regions.slice(1)) {
      const dbRelay = await ports.next();
      const registryRelay = await ports.next();
      relays.push(
        {
          name: `registry-db for ${r.name} (replication)`,
          listenPort: dbRelay,
          targetHost: '127.0.0.1',
          targetPort: db.spec.port,
        },
        {
          name: `schema-registry (primary) for ${r.name}`,
          listenPort: registryRelay,
          targetHost: '127.0.0.1',
          targetPort: registry.spec.port,
        },
      );
      const standby = {
        name: `registry-db-${r.name}`,
        port: await ports.next(),
        dataDir: join(dataDir, `registry-db-${r.name}`),
        logFile: logFile(`registry-db-${r.name}`),
        primaryHost: '127.0.0.1',
        primaryPort: dbRelay,
        // a copy of the secured primary: its TLS, pg_hba and roles come with it
        ...(secrets === undefined ? {} : { security: postgresSecurity(secrets, 'registry-db') }),
      };
      planned.push({ kind: 'registry-standby', id: standby.name, name: standby.name, spec: standby });
      planned.push({
        kind: 'registry',
        id: `registry-${r.name}`,
        name: `schema-registry-${r.name}`,
        spec: {
          port: await ports.next(),
          logFile: logFile(`registry-${r.name}`),
          runDir: join(dataDir, `registry-${r.name}`),
          storage: registryDbStorage(secrets, standby.port),
          primaryRelayPort: registryRelay,
          ...(secrets === undefined ? {} : { security: registrySecurity(secrets) }),
        },
      });
    }
  }
  if (topology.peerStreams === 'mirror') {
    const kafkas = planned.filter((p) => p.kind === 'kafka');
    for (const target of kafkas) {
      if (target.kind !== 'kafka' || target.spec.peer === undefined) continue;
      const region = target.id.replace(/^kafka-/, '');
      planned.push({
        kind: 'mirror',
        id: `mirror-${region}`,
        name: `mirror-${region}`,
        spec: {
          region,
          brokers: [`127.0.0.1:${target.spec.brokerPort}`],
          sources: kafkas
            .filter((k) => k !== target)
            .map((k) => ({
              region: k.id.replace(/^kafka-/, ''),
              brokers: [`127.0.0.1:${k.kind === 'kafka' ? k.spec.peer!.advertisedPort : 0}`],
            })),
          restPort: await ports.next(),
          propertiesFile: join(dataDir, `mirror-${region}`, 'mm2.properties'),
          logFile: logFile(`mirror-${region}`),
          libsDir: mirrorLibsDir(),
        },
      });
    }
  }
  if (relays.length === 0) return;
  planned.push({
    kind: 'link',
    id: 'link',
    name: 'link',
    spec: {
      controlPort: await ports.next(),
      relays,
      logFile: logFile('link'),
      specFile: join(dataDir, 'link.json'),
    },
  });
}

export async function startStack(topology: Topology, options: StackOptions): Promise<Stack> {
  validateTopology(topology);
  const progress = options.onProgress ?? (() => {});
  const ext = loadConfig(externalConfig, options.env ?? process.env);
  mkdirSync(resolve(options.workDir), { recursive: true });
  // Canonical: PostgreSQL's processes are found by their working directory, which the kernel
  // reports with symlinks resolved.
  const workDir = realpathSync(resolve(options.workDir));
  const status = classifyWorkDir(workDir, readState(workDir), readProcessTable());
  if (status.kind !== 'running' && status.kind !== 'clean') await clearLeftovers(workDir, status, progress);
  else if (status.kind === 'clean' && status.staleState) rmSync(join(workDir, STATE_FILE), { force: true });
  checkWorkDir(workDir, options.reuse ?? false, status);
  const dataDir = join(workDir, 'data');
  mkdirSync(dataDir, { recursive: true });
  mkdirSync(join(workDir, 'logs'), { recursive: true });
  const ids = nodeIds(topology);
  const externalPg = parsePgUrls(ext.pgUrls);
  const secrets =
    options.security === 'secured' ? securedStackSecrets(topology, ext, workDir, progress, ids) : undefined;
  // Plan every part and port first, and check the fixed ports before starting anything.
  const plan = portPlan(options.basePort);
  const planned = await planParts(topology, ext, workDir, plan, secrets);
  const servicePorts = await planServicePorts(topology, plan);
  if (options.basePort !== 0) await assertPortsFree(planned);
  const pgUser = postgresOsUser();
  if (pgUser !== undefined && planned.some((p) => p.kind === 'postgres' || p.kind === 'registry-db'))
    ensureReachable(pgUser, workDir, dataDir, progress);

  const state: StackState = {
    regions: [],
    registryUrl: ext.registryUrl,
    workDir,
    pids: [],
    owner: { pid: process.pid, startTime: readProcessInfo(process.pid)?.startTime ?? 0 },
    detached: false,
  };
  const started = new Map<string, StartedComponent>();
  const record = (p: Planned, s: StartedComponent) => {
    started.set(p.id, s);
    const { id, name } = p;
    const entry = {
      ...p,
      id,
      name,
      pid: s.process.pid,
      startTime: s.process.startTime,
      logFile: s.process.logFile,
    };
    state.pids.push(entry as ComponentRecord);
    // In planned order, whichever part became ready first: the file reads like the topology.
    const order = (r: ComponentRecord) => planned.findIndex((x) => x.id === r.id);
    state.pids.sort((a, b) => order(a) - order(b));
    writeState(workDir, state);
  };
  const start = async (p: Planned) => {
    progress(`starting ${p.name}`);
    const s = await startComponent(p, progress);
    record(p, s);
    progress(`${p.name} ready at ${s.address}`);
  };
  // If our own process ends without stop(), take the parts with it.
  const onExit = () => killRecordedNow(workDir, process.pid);
  process.on('exit', onExit);

  try {
    if (planned.some((p) => p.kind === 'kafka')) await ensureKafkaJars(progress);
    if (planned.some((p) => p.kind === 'mirror')) await ensureMirrorJars(progress);
    // The registry's first build (a minute) runs while the others start.
    const build = planned.some((p) => p.kind === 'registry') ? ensureRegistryBuilt(progress) : undefined;
    // The standby copies its primary through the link; the registries need their databases.
    const later = new Set(['registry', 'registry-standby', 'mirror']);
    await settleAll<unknown>([
      ...planned.filter((p) => !later.has(p.kind)).map(start),
      ...(build ? [build] : []),
    ]);
    await settleAll(planned.filter((p) => p.kind === 'registry-standby').map(start));
    await settleAll(planned.filter((p) => p.id === 'registry').map(start));
    // A follower registry needs the tables the primary created, replicated to its standby.
    for (const p of planned)
      if (p.kind === 'registry-standby')
        await waitForRegistryTables(
          started.get(p.id)!.address,
          p.spec.security === undefined
            ? undefined
            : readSecretFile(p.spec.security.adminPasswordFile, 'the registry database admin'),
        );
    await settleAll(planned.filter((p) => p.kind === 'registry' && p.id !== 'registry').map(start));
    // MirrorMaker needs both clusters and the link.
    await settleAll(planned.filter((p) => p.kind === 'mirror').map(start));

    const address = (id: string) => started.get(id)!.address;
    state.registryUrl = ext.registryUrl !== '' ? ext.registryUrl : address('registry');
    const link = planned.find((p) => p.kind === 'link');
    if (link !== undefined) state.linkUrl = address('link');
    state.regions = topology.regions.map((r) => {
      const kafkaId = topology.kafka === 'shared' ? 'kafka' : `kafka-${r.name}`;
      const kafka = planned.find((p) => p.id === kafkaId);
      const kafkaBrokers = ext.kafkaBrokers.length > 0 ? ext.kafkaBrokers : [address(kafkaId)];
      const follower = planned.find((p) => p.id === `registry-${r.name}`);
      return {
        name: r.name,
        kafkaBrokers,
        kafkaFromPeers:
          kafka?.kind === 'kafka' && kafka.spec.peer
            ? [`127.0.0.1:${kafka.spec.peer.advertisedPort}`]
            : kafkaBrokers,
        registryUrl: follower ? address(follower.id) : state.registryUrl,
        registryPrimaryUrl:
          follower?.kind === 'registry' && follower.spec.primaryRelayPort !== undefined
            ? `${follower.spec.security === undefined ? 'http' : 'https'}://127.0.0.1:${follower.spec.primaryRelayPort}${CCOMPAT_PATH}`
            : state.registryUrl,
        nodes: (ids.get(r.name) ?? []).map((id): NodeInfo => {
          const extUrl = externalPg.get(id);
          if (extUrl !== undefined)
            return {
              id,
              region: r.name,
              url: extUrl,
              port: Number(new URL(extUrl).port || 5432),
              external: true,
            };
          const url = address(id);
          return { id, region: r.name, url, port: Number(new URL(url).port), external: false };
        }),
      };
    });
    state.servicePorts = servicePorts;
    if (topology.peerStreams === 'mirror') state.peerStreams = 'mirror';
    if (secrets !== undefined)
      state.security = {
        ca: secrets.ca,
        secrets: secrets.dir,
        clientCert: secrets.clientCert,
        clientKey: secrets.clientKey,
        adminPasswordFile: adminPasswordFile(secrets, state.regions[0]!.nodes[0]!.id),
      };
    state.topologyFile = writeStackTopology(workDir, state, topology.kafka, secrets?.topology);
    writeState(workDir, state);
  } catch (err) {
    await stopRecorded(workDir).catch(() => {});
    process.off('exit', onExit);
    throw err;
  }
  const { regions, registryUrl, pids, linkUrl, topologyFile, security } = state;
  return {
    regions,
    registryUrl,
    ...(security === undefined ? {} : { security }),
    ...(linkUrl === undefined ? {} : { linkUrl }),
    ...(topologyFile === undefined ? {} : { topologyFile }),
    workDir,
    pids,
    async stop() {
      await stopRecorded(workDir);
      process.off('exit', onExit);
    },
    release() {
      process.off('exit', onExit);
      for (const s of started.values()) s.process.unref();
      // Re-read: `brabant restart` may have replaced entries since.
      const now = readState(workDir);
      if (now !== undefined) writeState(workDir, { ...now, detached: true });
    },
  };
}

/** Ports of the services the stack's topology file names, after every part's (brabant start uses them). */
async function planServicePorts(topology: Topology, ports: PortPlan): Promise<ServicePorts> {
  const out: ServicePorts = { node: {}, router: {} };
  for (const [, nodes] of nodeIds(topology))
    for (const id of nodes) out.node[id] = { capture: await ports.next(), apply: await ports.next() };
  for (const r of topology.regions)
    out.router[r.name] = { port: await ports.next(), controlPort: await ports.next() };
  return out;
}

/** Like Promise.all, but waits for every job so that none is left starting when one fails. */
async function settleAll<T>(jobs: Promise<T>[]): Promise<T[]> {
  const results = await Promise.allSettled(jobs);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<T>).value);
}
