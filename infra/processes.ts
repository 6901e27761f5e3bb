/**
 * Process plumbing for the local stack: start real programs as detached children with their
 * output in log files, wait for readiness by condition (never by sleeping a fixed time), check
 * ports, and stop components by their shutdown plan (shutdown.ts) until none of their processes
 * is left.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { userInfo } from 'node:os';
import { BrabantError } from '../services/runtime/errors.ts';
import { readProcessInfo, readProcessTable } from './process-table.ts';
import { defaultPlan, membersOf, type ProcessIdentity, type ShutdownStep, withGrace } from './shutdown.ts';

export interface ManagedProcess {
  readonly name: string;
  readonly pid: number;
  /** Kernel start time of pid (see process-table.ts), recorded so a reused pid is never signalled. */
  readonly startTime: number;
  readonly logFile: string;
  /** Resolves with the exit code (or signal name) when the process ends. */
  readonly exited: Promise<number | string>;
  hasExited(): boolean;
  /** Runs its shutdown plan until none of its processes is left; graceMs replaces the first wait. */
  stop(graceMs?: number): Promise<void>;
  /** Stop keeping this process's event loop alive for the child (it outlives us). */
  unref(): void;
}

export interface SpawnOptions {
  name: string;
  command: string;
  args: string[];
  logFile: string;
  env?: Record<string, string>;
  cwd?: string;
  /** Run as this OS user when we are root (PostgreSQL refuses to run as root). */
  runAs?: string;
  /** How to stop it (shutdown.ts); default SIGTERM to its group, SIGKILL after 10 s. */
  stopPlan?: ShutdownStep[];
  /** PostgreSQL: its data folder, where its backends (each in a process group of its own) work. */
  dataDir?: string;
}

export function spawnManaged(opts: SpawnOptions): ManagedProcess {
  const fd = openSync(opts.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(opts.command, opts.args, {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      // Own process group: Ctrl-C in the terminal reaches us, and we stop children in order.
      detached: true,
      stdio: ['ignore', fd, fd],
      ...osUser(opts.runAs),
    });
  } finally {
    closeSync(fd);
  }
  let exitedWith: number | string | undefined;
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => {
      exitedWith = code ?? signal ?? 'unknown';
      resolve(exitedWith);
    });
    child.once('error', (err) => {
      exitedWith = `spawn error: ${err.message}`;
      resolve(exitedWith);
    });
  });
  if (child.pid === undefined) {
    throw new BrabantError('COMPONENT_START_FAILED', `could not start ${opts.name} (${opts.command})`);
  }
  const pid = child.pid;
  const identity: ProcessIdentity = {
    pid,
    startTime: readProcessInfo(pid)?.startTime ?? 0,
    ...(opts.dataDir === undefined ? {} : { dataDir: opts.dataDir }),
  };
  const plan = opts.stopPlan ?? defaultPlan(10_000);
  return {
    name: opts.name,
    pid,
    startTime: identity.startTime,
    logFile: opts.logFile,
    exited,
    hasExited: () => exitedWith !== undefined,
    unref: () => child.unref(),
    async stop(graceMs) {
      if (exitedWith !== undefined && membersOf(identity, readProcessTable()).length === 0) return;
      await stopProcesses(identity, withGrace(plan, graceMs), opts.name);
      // Our own child: wait for Node to have reaped it, so `exited` has settled for the caller.
      await Promise.race([exited, delay(1_000)]);
    },
  };
}

/**
 * Runs a shutdown plan (shutdown.ts) until no process of the component is left. Throws TIMEOUT,
 * naming the processes and the command to end them, if some survive even SIGKILL (a process stuck
 * in the kernel, or one we may not signal).
 */
export async function stopProcesses(id: ProcessIdentity, plan: ShutdownStep[], what: string): Promise<void> {
  for (const step of plan) {
    const left = membersOf(id, readProcessTable());
    if (left.length === 0) return;
    const targets = step.to === 'leader' ? left.filter((p) => p.pid === id.pid) : left;
    // The leader is gone but others are left (e.g. backends of a killed postmaster): signal those.
    for (const p of targets.length > 0 ? targets : left) signalPid(p.pid, step.signal);
    const deadline = Date.now() + step.waitMs;
    while (Date.now() < deadline && membersOf(id, readProcessTable()).length > 0) await delay(100);
  }
  const left = membersOf(id, readProcessTable());
  if (left.length > 0) {
    const pids = left.map((p) => p.pid).join(' ');
    throw new BrabantError(
      'TIMEOUT',
      `${what} still has process(es) ${pids} after SIGKILL; see \`ps -o pid,stat,args -p ${pids.replace(/ /g, ',')}\`, ` +
        `end them (\`kill -9 ${pids}\`) and run the command again`,
    );
  }
}

function signalPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    /* already gone */
  }
}

function osUser(name: string | undefined): { uid?: number; gid?: number } {
  if (name === undefined || process.getuid?.() !== 0) return {};
  const uid = Number(execFileSync('id', ['-u', name]).toString().trim());
  const gid = Number(execFileSync('id', ['-g', name]).toString().trim());
  return { uid, gid };
}

export function currentUserIsRoot(): boolean {
  return process.getuid?.() === 0 || userInfo().uid === 0;
}

/** Send a signal to a whole process group (falls back to the pid); ignores processes already gone. */
export function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      /* already gone */
    }
  }
}

/**
 * Whether a process still runs. A zombie does not: it has exited and only waits to be reaped,
 * which an orphan's new parent (init, or a container's first process) may do only seconds later.
 */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const state = readProcessInfo(pid)?.state;
  return state !== undefined && state !== 'Z' && state !== 'X';
}

export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Fails with PORT_IN_USE, naming the component and the fix, if something already listens there. */
export async function assertPortFree(host: string, port: number, wantedBy: string): Promise<void> {
  const free = await new Promise<boolean>((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve(true)));
  });
  if (!free) {
    throw new BrabantError(
      'PORT_IN_USE',
      `port ${host}:${port} is wanted by ${wantedBy} but something already listens there` +
        ` (see \`ss -ltnp 'sport = :${port}'\`); stop that program, or choose other ports` +
        ` (brabant up --base-port N, or BRABANT_BASE_PORT)`,
    );
  }
}

/**
 * An unused loopback port, below Linux's ephemeral range (32768–60999): a port the OS hands out
 * for listen(0) is one its outgoing connections use too, and a busy machine gave one of them to a
 * client between our check and Kafka's bind ("Address already in use"). Random ports of
 * 20000–32767 are tried until one listens; the OS's choice is the fallback.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = LOW_PORTS.from + Math.floor(Math.random() * (LOW_PORTS.to - LOW_PORTS.from + 1));
    if (await listensOn(host, port)) return port;
  }
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen({ host, port: 0 }, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

const LOW_PORTS = { from: 20_000, to: 32_767 };

/** Whether `port` can be listened on now (closed again at once). */
function listensOn(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ host, port }, () => srv.close(() => resolve(true)));
  });
}

export interface WaitOptions {
  what: string;
  timeoutMs: number;
  intervalMs?: number;
  /** If this process exits while we wait, fail at once with the end of its log. */
  process?: ManagedProcess;
  /** Says why waiting is pointless (e.g. a service died), failing the wait at once. */
  abort?: () => string | undefined;
}

/** Poll `check` until it returns a value other than undefined/false, or fail after the deadline. */
export async function waitFor<T>(check: () => Promise<T | undefined | false>, opts: WaitOptions): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  let lastError: unknown;
  for (;;) {
    const aborted = opts.abort?.();
    if (aborted !== undefined) throw new BrabantError('TIMEOUT', `${opts.what}: ${aborted}`);
    if (opts.process?.hasExited()) {
      throw new BrabantError(
        'COMPONENT_START_FAILED',
        `${opts.what}: ${opts.process.name} exited (${await opts.process.exited}) before it was ready; ` +
          `last lines of ${opts.process.logFile}:\n${tail(opts.process.logFile, 15)}`,
      );
    }
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const why = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
      const log = opts.process
        ? `; last lines of ${opts.process.logFile}:\n${tail(opts.process.logFile, 15)}`
        : '';
      throw new BrabantError('TIMEOUT', `${opts.what}: not ready after ${opts.timeoutMs} ms${why}${log}`);
    }
    await delay(opts.intervalMs ?? 100);
  }
}

export function tail(file: string, lines: number): string {
  if (!existsSync(file)) return '(no log)';
  return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
}

/** Path of a program on PATH, or undefined. */
export function which(cmd: string): string | undefined {
  try {
    return (
      execFileSync('sh', ['-c', `command -v ${cmd}`])
        .toString()
        .trim() || undefined
    );
  } catch {
    return undefined;
  }
}

/** Run a readiness wait; if it fails, stop the process so nothing half-started is left behind. */
export async function waitUntilReady<T>(proc: ManagedProcess, wait: () => Promise<T>): Promise<T> {
  try {
    return await wait();
  } catch (err) {
    await proc.stop(5_000);
    throw err;
  }
}
