/**
 * Stopping, clearing and restarting a recorded stack (stack-state.ts), from the process that
 * started it or from any other (`brabant down`, `brabant restart`, a test run after a killed one).
 * Every stop runs the component's shutdown plan (shutdown.ts) until none of its processes is left,
 * and the state file goes only once that is so.
 */
import { existsSync, readdirSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BrabantError } from '../services/runtime/errors.ts';
import { startComponent } from './components.ts';
import type { Progress } from './maven.ts';
import { type ProcessInfo, readProcessTable } from './process-table.ts';
import { stopProcesses } from './processes.ts';
import { describeStray, leftoverTarget, membersOf, shutdownPlan, stackProcesses } from './shutdown.ts';
import {
  type ComponentRecord,
  classifyWorkDir,
  identityOf,
  type LiveComponent,
  readState,
  STATE_FILE,
  type WorkDirStatus,
  writeState,
} from './stack-state.ts';

/** The stack folder as the kernel names it (symlinks resolved): how processes' folders are compared. */
export function canonical(folder: string): string {
  const abs = resolve(folder);
  return existsSync(abs) ? realpathSync(abs) : abs;
}

/** Stop order: what depends on others first (the registry needs its database). */
const STOP_RANK: Record<ComponentRecord['kind'], number> = {
  registry: 0,
  mirror: 0,
  'registry-standby': 1,
  'registry-db': 2,
  postgres: 2,
  link: 2,
  kafka: 3,
};

/** What was stopped or removed, for the one message about it. */
interface Cleared {
  stopped: string[];
  staleFiles: string[];
}

async function stopAll(
  workDir: string,
  live: LiveComponent[],
  strays: ProcessInfo[],
  progress?: Progress,
): Promise<Cleared> {
  const stopped: string[] = [];
  const ranks = [...new Set(live.map((l) => STOP_RANK[l.record.kind]))].sort();
  for (const rank of ranks) {
    // One rank at a time, its parts at once: every node's fast shutdown runs side by side.
    await Promise.all(
      live
        .filter((l) => STOP_RANK[l.record.kind] === rank)
        .map(async ({ record, processes }) => {
          const more = processes.length > 1 ? ` and ${processes.length - 1} more process(es)` : '';
          progress?.(`stopping ${record.name} (pid ${record.pid}${more})`);
          await stopProcesses(identityOf(record), shutdownPlan(record.kind), record.name);
          stopped.push(`${record.name} (pid ${record.pid}${more})`);
        }),
    );
  }
  for (const p of strays) {
    // A stray may have ended with a postmaster stopped above (it was one of its backends).
    if (membersOf({ pid: p.pid, startTime: p.startTime }, readProcessTable()).length === 0) continue;
    const { id, plan } = leftoverTarget(p);
    const what = describeStray(p);
    progress?.(`stopping ${what}, left in ${workDir}`);
    await stopProcesses(id, plan, what);
    stopped.push(what);
  }
  return { stopped, staleFiles: removeStalePidFiles(workDir) };
}

/**
 * A postmaster.pid whose postmaster is gone. PostgreSQL clears it itself unless the pid in it now
 * belongs to another program (pids come round quickly), in which case it refuses to start.
 */
function removeStalePidFiles(workDir: string): string[] {
  const data = join(workDir, 'data');
  if (!existsSync(data)) return [];
  const table = readProcessTable();
  const removed: string[] = [];
  for (const name of readdirSync(data)) {
    const file = join(data, name, 'postmaster.pid');
    if (!existsSync(file)) continue;
    const pid = Number(readFileSync(file, 'utf8').split('\n')[0]);
    const dir = join(data, name);
    if (table.some((p) => p.pid === pid && p.comm === 'postgres' && p.cwd === dir)) continue;
    rmSync(file, { force: true });
    removed.push(name);
  }
  return removed;
}

/** Fails with STOP_FAILED, keeping the state file, if something of the stack is still running. */
function assertNothingLeft(workDir: string): void {
  const after = classifyWorkDir(workDir, readState(workDir), readProcessTable());
  if (after.kind === 'clean') return;
  const pids = [...after.live.flatMap((l) => l.processes), ...after.strays].map((p) => p.pid).join(' ');
  throw new BrabantError(
    'STOP_FAILED',
    `processes ${pids} of the stack in ${workDir} are still running after SIGKILL; the state file stays; ` +
      `end them with \`kill -9 ${pids}\` and run \`brabant down\` again`,
  );
}

/**
 * Stops everything of the stack in workDir: what its state file lists, and what a dead run left
 * without one. Returns how many parts were stopped (0: nothing ran). For `brabant down`, a stack's
 * stop(), and test runs that start after a killed one.
 */
export async function stopRecorded(folder: string, progress?: Progress): Promise<number> {
  const workDir = canonical(folder);
  const status = classifyWorkDir(workDir, readState(workDir), readProcessTable());
  const { live, strays } = status.kind === 'clean' ? { live: [], strays: [] } : status;
  const cleared = await stopAll(workDir, live, strays, progress);
  assertNothingLeft(workDir);
  rmSync(join(workDir, STATE_FILE), { force: true });
  if (cleared.staleFiles.length > 0)
    progress?.(`removed the stale postmaster.pid of ${cleared.staleFiles.join(', ')}`);
  return cleared.stopped.length;
}

/** Clears what a dead run left (the caller checked it is one), with one message saying what. */
export async function clearLeftovers(
  workDir: string,
  status: Extract<WorkDirStatus, { kind: 'left-over' }>,
  progress: Progress,
): Promise<void> {
  const cleared = await stopAll(workDir, status.live, status.strays);
  assertNothingLeft(workDir);
  rmSync(join(workDir, STATE_FILE), { force: true });
  const files =
    cleared.staleFiles.length > 0
      ? `; removed the stale postmaster.pid of ${cleared.staleFiles.join(', ')}`
      : '';
  progress(
    `an earlier run from ${workDir} ended without \`brabant down\` and left ${cleared.stopped.length} part(s) running: ` +
      `stopped ${cleared.stopped.join(', ')}${files}`,
  );
}

/**
 * On our own exit without stop() (an uncaught error, process.exit): SIGKILL at once, synchronously
 * (no waiting is possible there), everything of the stack, if we still own it — what the state
 * file lists, and parts still starting that it does not list yet.
 */
export function killRecordedNow(workDir: string, ownerPid: number): void {
  const state = readState(workDir);
  if (state === undefined || state.detached === true || state.owner?.pid !== ownerPid) return;
  const table = readProcessTable();
  const doomed = [
    ...state.pids.flatMap((r) => membersOf(identityOf(r), table)),
    ...stackProcesses(workDir, table),
  ];
  for (const p of doomed) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
}

/**
 * The parts `brabant restart TARGET` means: `kafka` (every Kafka cluster), `kafka-<region>`,
 * `registry`, `registry-db`, or a node id.
 */
export function selectTargets(records: ComponentRecord[], target: string): ComponentRecord[] {
  const chosen = records.filter((r) => r.id === target || (target === 'kafka' && r.kind === 'kafka'));
  if (chosen.length > 0) return chosen;
  const names = [
    ...new Set([...(records.some((r) => r.kind === 'kafka') ? ['kafka'] : []), ...records.map((r) => r.id)]),
  ];
  throw new BrabantError(
    'CONFIG_INVALID',
    `the stack has no part '${target}'; \`brabant restart\` takes one of: ${names.join(', ')}`,
  );
}

export interface Restarted {
  name: string;
  oldPid: number;
  newPid: number;
}

function runningState(workDir: string) {
  const state = readState(workDir);
  const status = classifyWorkDir(workDir, state, readProcessTable());
  if (state === undefined || status.kind !== 'running') {
    throw new BrabantError(
      'STACK_NOT_RUNNING',
      `no running stack was found in ${workDir}; start one with \`brabant up --detach\` (or \`brabant up --reuse\`)`,
    );
  }
  return state;
}

/** Stops one part of a running stack by its plan; its entry stays, for startPart (a fault test's outage). */
export async function stopPart(folder: string, id: string, progress: Progress = () => {}): Promise<void> {
  const workDir = canonical(folder);
  for (const record of selectTargets(runningState(workDir).pids, id)) {
    progress(`stopping ${record.name} (pid ${record.pid})`);
    await stopProcesses(identityOf(record), shutdownPlan(record.kind), record.name);
  }
}

/**
 * Starts parts of a running stack again from their recorded spec (same ports and data), and
 * records the new processes in the state file, so that `brabant down` and the owner's stop() stop
 * the new ones.
 */
export async function startPart(
  folder: string,
  id: string,
  progress: Progress = () => {},
): Promise<Restarted[]> {
  const workDir = canonical(folder);
  const out: Restarted[] = [];
  // not runningState: the part stopped may have been the only one running (an external database)
  const state = readState(workDir);
  if (state === undefined)
    throw new BrabantError(
      'STACK_NOT_RUNNING',
      `no stack was found in ${workDir}; start one with \`brabant up\``,
    );
  for (const record of selectTargets(state.pids, id)) {
    progress(`starting ${record.name}`);
    const started = await startComponent(record, progress);
    // It must outlive this command, like the rest of the stack.
    started.process.unref();
    const now = readState(workDir)!;
    const updated: ComponentRecord = {
      ...record,
      pid: started.process.pid,
      startTime: started.process.startTime,
    };
    writeState(workDir, { ...now, pids: now.pids.map((r) => (r.id === record.id ? updated : r)) });
    progress(`${record.name} ready at ${started.address} (pid ${record.pid} → ${started.process.pid})`);
    out.push({ name: record.name, oldPid: record.pid, newPid: started.process.pid });
  }
  return out;
}

/** Restarts parts of a running stack: stops each by its plan and starts it again (startPart). */
export async function restartComponent(
  folder: string,
  target: string,
  progress: Progress,
): Promise<Restarted[]> {
  await stopPart(folder, target, progress);
  return startPart(folder, target, progress);
}
