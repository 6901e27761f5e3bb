/**
 * The state file (`stack.json` in the stack folder): what a local stack runs and how to start each
 * part again. It is the one record every command works from — `brabant down` and a stack's own
 * stop() stop what it lists, `brabant restart` replaces a part's entry with the new process — and
 * it is removed only once none of the listed processes is left.
 *
 * Which kind of folder a stack folder is (classifyWorkDir) is decided here without I/O, from the
 * state file and the process table.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { KafkaNodeSpec } from './kafka/kafka.ts';
import type { MirrorSpec } from './kafka/mirror.ts';
import type { LinkSpec } from './link/main.ts';
import type { PostgresNodeSpec } from './postgres/postgres.ts';
import type { ProcessInfo } from './process-table.ts';
import type { RegistrySpec } from './registry/registry.ts';
import type { StandbySpec } from './registry/registry-standby.ts';
import { leaderAlive, membersOf, type ProcessIdentity, stackProcesses } from './shutdown.ts';

export const STATE_FILE = 'stack.json';

/** A part of the stack and what it needs to be started again. */
export type ComponentSpec =
  | { kind: 'kafka'; spec: KafkaNodeSpec }
  | { kind: 'mirror'; spec: MirrorSpec }
  | { kind: 'postgres'; spec: PostgresNodeSpec }
  | {
      kind: 'registry-db';
      /** owner: the role (and its password's file) the registry's database belongs to and the registry logs in as. */
      spec: PostgresNodeSpec & { owner?: { role: string; passwordFile: string } };
    }
  | { kind: 'registry-standby'; spec: StandbySpec }
  | { kind: 'registry'; spec: RegistrySpec }
  | { kind: 'link'; spec: LinkSpec };

export type ComponentRecord = ComponentSpec & {
  /** What `brabant restart` takes: kafka (or kafka-<region>), a node id, registry, registry-db. */
  id: string;
  /** For people and logs: `kafka`, `postgres vl-1`, `schema-registry`, … */
  name: string;
  pid: number;
  /** Kernel start time of pid: a later process that got the same pid is never taken for it. */
  startTime: number;
  logFile: string;
};

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
  /** Where the other regions reach the region's cluster (through the link); kafkaBrokers when shared. */
  kafkaFromPeers: string[];
  /** The region's registry (a follower on a standby in every region but the first, per-region layout). */
  registryUrl: string;
  /** Where the region registers new schemas: the first region's registry, through the link. */
  registryPrimaryUrl: string;
  nodes: NodeInfo[];
}

export interface StackSecurityInfo {
  /** The CA that signed every server's certificate (sslrootcert, BRABANT_TLS_CA_FILE). */
  ca: string;
  /** The folder of its password files (names: services/runtime/topology-security.ts secretFile). */
  secrets: string;
  /** The client certificate the registry's mutual TLS takes. */
  clientCert: string;
  clientKey: string;
  /** The file of the password of `postgres`, the superuser of every node (one for the whole stack). */
  adminPasswordFile: string;
}

/** Serializable description of a running stack (what tests and people connect to). */
export interface StackInfo {
  regions: RegionInfo[];
  /** The primary (first region's) registry. */
  registryUrl: string;
  /** Control API of the link between regions (per-region layout), to cut and heal it. */
  linkUrl?: string;
  /** How apply gets the other regions' streams: across the link, or from a local MirrorMaker 2 copy. */
  peerStreams?: 'direct' | 'mirror';
  /** The topology file `brabant up` wrote for the stack (every service and command reads it). */
  topologyFile?: string;
  /** A secured stack's CA and secrets folder (TLS and authentication on every link); absent: plaintext. */
  security?: StackSecurityInfo;
  workDir: string;
  pids: { name: string; pid: number; logFile: string }[];
}

export interface StackState extends StackInfo {
  pids: ComponentRecord[];
  /** The process that started the stack; while it lives (or once detached) the stack is in use. */
  owner?: { pid: number; startTime: number };
  /** `brabant up --detach`: the stack outlives its owner on purpose. */
  detached?: boolean;
  /** Ports of the services the topology file names. */
  servicePorts?: import('./stack-topology.ts').ServicePorts;
}

export function readState(workDir: string): StackState | undefined {
  const file = join(workDir, STATE_FILE);
  if (!existsSync(file)) return undefined;
  return JSON.parse(readFileSync(file, 'utf8')) as StackState;
}

/**
 * Writes the whole state at once (a reader never sees half a file), readable by its owner only:
 * it may hold the password of BRABANT_REGISTRY_DB_URL.
 */
export function writeState(workDir: string, state: StackState): void {
  const file = join(workDir, STATE_FILE);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, file);
}

/** The processes a record stands for (PostgreSQL's include the backends working in its folder). */
export function identityOf(r: ComponentRecord): ProcessIdentity {
  const base = { pid: r.pid, startTime: r.startTime };
  return r.kind === 'postgres' || r.kind === 'registry-db' || r.kind === 'registry-standby'
    ? { ...base, dataDir: r.spec.dataDir }
    : base;
}

export interface LiveComponent {
  record: ComponentRecord;
  processes: ProcessInfo[];
}

export type WorkDirStatus =
  /** Nothing of a stack runs here; `staleState` when a state file says otherwise. */
  | { kind: 'clean'; staleState: boolean }
  /** A stack is in use: its owner runs, or it was detached on purpose. */
  | { kind: 'running'; live: LiveComponent[]; strays: ProcessInfo[] }
  /** A run ended without stopping what it started (killed, crashed): clear before starting. */
  | { kind: 'left-over'; live: LiveComponent[]; strays: ProcessInfo[] };

/**
 * What a stack folder holds, from its state file and the process table. `strays` are processes of
 * the folder that no record lists (a run killed before it wrote its state file, a PostgreSQL
 * backend whose postmaster was recorded under an old pid).
 */
export function classifyWorkDir(
  workDir: string,
  state: StackState | undefined,
  table: ProcessInfo[],
): WorkDirStatus {
  const live: LiveComponent[] = [];
  for (const record of state?.pids ?? []) {
    const processes = membersOf(identityOf(record), table);
    if (processes.length > 0) live.push({ record, processes });
  }
  const claimed = new Set(live.flatMap((l) => l.processes.map((p) => p.pid)));
  const strays = stackProcesses(workDir, table).filter((p) => !claimed.has(p.pid));
  if (state !== undefined && live.length > 0) {
    // A state file from before owners were recorded: count it as in use, as it was then.
    const inUse = state.detached === true || state.owner === undefined || leaderAlive(state.owner, table);
    if (inUse) return { kind: 'running', live, strays };
  }
  if (live.length > 0 || strays.length > 0) return { kind: 'left-over', live, strays };
  return { kind: 'clean', staleState: state !== undefined };
}
