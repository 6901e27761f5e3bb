/**
 * How each kind of component is stopped, and which processes belong to it — as data, without I/O,
 * so that `brabant down`, `brabant restart`, a test's stop() and the clean-up after a crashed run
 * all stop things the same way. The executor that sends the signals is stopProcesses in
 * processes.ts.
 *
 * Stopping means: ask nicely, wait a bounded time, ask harder, and in the end SIGKILL, until no
 * process of the component is left. "Left" counts PostgreSQL's backends too: each backend calls
 * setsid(), so it is in a process group of its own and a signal to the postmaster's group never
 * reaches it. A backend outlives a SIGKILLed postmaster (holding its shared memory, so that no new
 * postmaster can start on that data folder); it is found by its working directory, which every
 * PostgreSQL process sets to its data folder.
 */
import { basename } from 'node:path';
import type { ProcessInfo } from './process-table.ts';

export type ComponentKind =
  | 'kafka'
  | 'mirror'
  | 'postgres'
  | 'registry-db'
  | 'registry-standby'
  | 'registry'
  | 'link';

export interface ShutdownStep {
  signal: NodeJS.Signals;
  /** `leader`: the component's main process only; `all`: every process that belongs to it. */
  to: 'leader' | 'all';
  /** How long to wait for every process of the component to be gone before the next step. */
  waitMs: number;
}

/**
 * PostgreSQL: SIGINT is its fast shutdown (ends every session, checkpoints, exits), never SIGTERM,
 * which is the smart shutdown that waits for every client to leave on its own. SIGQUIT is the
 * immediate shutdown (no checkpoint; crash recovery at the next start).
 */
const POSTGRES: ShutdownStep[] = [
  { signal: 'SIGINT', to: 'leader', waitMs: 30_000 },
  { signal: 'SIGQUIT', to: 'leader', waitMs: 10_000 },
  { signal: 'SIGKILL', to: 'all', waitMs: 5_000 },
];

/** A JVM runs its shutdown hooks on SIGTERM (Kafka: controlled shutdown, flushes its logs). */
const jvm = (graceMs: number): ShutdownStep[] => [
  { signal: 'SIGTERM', to: 'leader', waitMs: graceMs },
  { signal: 'SIGKILL', to: 'all', waitMs: 5_000 },
];

export function shutdownPlan(kind: ComponentKind): ShutdownStep[] {
  switch (kind) {
    case 'postgres':
    case 'registry-db':
    case 'registry-standby':
      return POSTGRES;
    case 'kafka':
      return jvm(30_000);
    case 'mirror':
      return jvm(15_000);
    case 'registry':
      return jvm(15_000);
    case 'link':
      return defaultPlan(5_000);
    default:
      return kind satisfies never;
  }
}

/** A plain program: SIGTERM to its group, SIGKILL after the grace time (spawnManaged's default). */
export function defaultPlan(graceMs: number): ShutdownStep[] {
  return [
    { signal: 'SIGTERM', to: 'all', waitMs: graceMs },
    { signal: 'SIGKILL', to: 'all', waitMs: 5_000 },
  ];
}

/** The same plan with a different first wait (a caller in a hurry, e.g. a start that failed). */
export function withGrace(plan: ShutdownStep[], graceMs: number | undefined): ShutdownStep[] {
  if (graceMs === undefined || plan.length === 0) return plan;
  return [{ ...plan[0]!, waitMs: graceMs }, ...plan.slice(1)];
}

/** What identifies a component's processes. */
export interface ProcessIdentity {
  pid: number;
  /** Start time of `pid` (ProcessInfo.startTime); tells our process from a later one with its pid. */
  startTime: number;
  /** PostgreSQL: its data folder (the working directory of every one of its processes). */
  dataDir?: string;
}

const gone = (p: ProcessInfo) => p.state === 'Z' || p.state === 'X';

/**
 * The live processes of a component: its leader (same pid and start time), the rest of the
 * leader's process group, and for PostgreSQL every `postgres` process working in its data folder.
 * The group is only counted while it can still be ours: if the pid now belongs to a later process,
 * the group of that number is someone else's.
 */
export function membersOf(id: ProcessIdentity, table: ProcessInfo[]): ProcessInfo[] {
  const out = new Map<number, ProcessInfo>();
  const holder = table.find((p) => p.pid === id.pid && !gone(p));
  const leaderIsOurs = holder !== undefined && holder.startTime === id.startTime;
  const groupIsOurs = holder === undefined || leaderIsOurs;
  for (const p of table) {
    if (gone(p)) continue;
    if (p.pid === id.pid && leaderIsOurs) out.set(p.pid, p);
    else if (p.pgid === id.pid && groupIsOurs) out.set(p.pid, p);
    else if (id.dataDir !== undefined && p.comm === 'postgres' && p.cwd === id.dataDir) out.set(p.pid, p);
  }
  return [...out.values()];
}

/** Whether the identity's own main process still runs. */
export function leaderAlive(id: ProcessIdentity, table: ProcessInfo[]): boolean {
  return table.some((p) => p.pid === id.pid && p.startTime === id.startTime && !gone(p));
}

const within = (path: string | undefined, dir: string) => path?.startsWith(`${dir}/`) === true;

/**
 * Processes a stack in `workDir` started and nobody stopped, found without its state file: the
 * programs the stack runs (PostgreSQL, the JVMs of Kafka and the registry) working in, or started
 * with a file in, the stack's data/ or logs/ folders. Only those folders: a user's shell in the
 * stack folder, or a stack in a folder below it (tests keep theirs in .cache/), is never matched.
 */
export function stackProcesses(workDir: string, table: ProcessInfo[]): ProcessInfo[] {
  const dirs = [`${workDir}/data`, `${workDir}/logs`];
  return table.filter(
    (p) =>
      !gone(p) &&
      (p.comm === 'postgres' || p.comm === 'java') &&
      dirs.some((d) => within(p.cwd, d) || p.args.some((a) => within(a, d))),
  );
}

/**
 * How to stop a process found by stackProcesses when no record says what it is: a postmaster
 * (started with -D) gets PostgreSQL's plan with its data folder; anything else is stopped alone.
 */
export function leftoverTarget(p: ProcessInfo): { id: ProcessIdentity; plan: ShutdownStep[] } {
  const d = p.args.indexOf('-D');
  if (p.comm === 'postgres' && d >= 0 && p.args[d + 1] !== undefined) {
    return { id: { pid: p.pid, startTime: p.startTime, dataDir: p.args[d + 1]! }, plan: POSTGRES };
  }
  return {
    id: { pid: p.pid, startTime: p.startTime },
    plan: [
      { signal: 'SIGTERM', to: 'leader', waitMs: 10_000 },
      { signal: 'SIGKILL', to: 'all', waitMs: 5_000 },
    ],
  };
}

/** A name for a process found by stackProcesses, for the message saying what was cleared. */
export function describeStray(p: ProcessInfo): string {
  const d = p.args.indexOf('-D');
  if (p.comm === 'postgres' && d >= 0 && p.args[d + 1] !== undefined)
    return `postgres ${basename(p.args[d + 1]!)} (pid ${p.pid})`;
  if (p.comm === 'postgres') return `a postgres backend of ${basename(p.cwd ?? '?')} (pid ${p.pid})`;
  if (p.args.includes('kafka.Kafka')) return `kafka (pid ${p.pid})`;
  if (p.args.some((a) => a.endsWith('quarkus-run.jar'))) return `schema-registry (pid ${p.pid})`;
  return `${p.comm} (pid ${p.pid})`;
}
