/**
 * What is running, read from Linux's /proc: the only place the stack looks at processes it did not
 * spawn itself (after a crash, from another shell). Each entry carries the kernel's start time, so
 * a pid the kernel has handed to another program since is never taken for one of ours.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

export interface ProcessInfo {
  pid: number;
  ppid: number;
  /** Process group: spawnManaged makes each component the leader of its own group. */
  pgid: number;
  /** One letter, as in ps: R, S, D, Z (zombie: exited, not yet reaped), T, … */
  state: string;
  /** Program name (at most 15 characters): `postgres`, `java`, … */
  comm: string;
  /** Clock ticks since boot when the process started (field 22 of /proc/PID/stat). */
  startTime: number;
  /** Working directory, when we may read it. PostgreSQL's processes all run in their data folder. */
  cwd: string | undefined;
  args: string[];
}

/**
 * Parses one /proc/PID/stat line. The program name is in parentheses and may itself hold spaces or
 * parentheses, so the fields after it are found from the last ')'.
 */
export function parseStat(line: string): Omit<ProcessInfo, 'cwd' | 'args'> | undefined {
  const open = line.indexOf('(');
  const close = line.lastIndexOf(')');
  if (open < 0 || close < open) return undefined;
  const pid = Number(line.slice(0, open).trim());
  const rest = line
    .slice(close + 2)
    .trim()
    .split(' ');
  // rest[0] is field 3 (state); field N is rest[N - 3].
  const [state, ppid, pgid, startTime] = [rest[0], rest[1], rest[2], rest[19]];
  if (!Number.isInteger(pid) || state === undefined || startTime === undefined) return undefined;
  return {
    pid,
    state,
    ppid: Number(ppid),
    pgid: Number(pgid),
    comm: line.slice(open + 1, close),
    startTime: Number(startTime),
  };
}

function readProcess(pid: number): ProcessInfo | undefined {
  try {
    const stat = parseStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    if (stat === undefined) return undefined;
    let cwd: string | undefined;
    try {
      cwd = readlinkSync(`/proc/${pid}/cwd`);
    } catch {
      cwd = undefined; // another user's process, or it just exited
    }
    let args: string[] = [];
    try {
      args = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
        .split('\0')
        .filter((a) => a !== '');
    } catch {
      args = [];
    }
    return { ...stat, cwd, args };
  } catch {
    return undefined; // exited while we looked
  }
}

/** Every process of the machine (as far as we may see it), zombies included. */
export function readProcessTable(): ProcessInfo[] {
  const out: ProcessInfo[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const p = readProcess(Number(name));
    if (p !== undefined) out.push(p);
  }
  return out;
}

/** One process, or undefined when there is none with that pid. */
export function readProcessInfo(pid: number): ProcessInfo | undefined {
  return readProcess(pid);
}
