/**
 * CPU seconds spent by the processes of a run, read from /proc before and after (user + system
 * time, in clock ticks). A PostgreSQL server is its postmaster's whole tree: the backends alive
 * now plus those that exited (the postmaster's reaped children's time), so walsenders, apply
 * workers and the writers' backends all count. Processes are found by pid or by the loopback port
 * they listen on (the Kafka broker, the registry, a PostgreSQL server).
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** Linux's USER_HZ: the unit of utime/stime in /proc/<pid>/stat. */
const TICKS_PER_SECOND = 100;

interface Stat {
  ppid: number;
  /** utime + stime of the process itself. */
  own: number;
  /** cutime + cstime: its children that exited and were waited for. */
  reaped: number;
}

function stat(pid: number): Stat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // the command name (field 2) may hold spaces and parentheses: fields after its last ')'
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const n = (i: number) => Number(f[i - 3]);
  return { ppid: n(4), own: n(14) + n(15), reaped: n(16) + n(17) };
}

function allPids(): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number);
}

/** CPU ticks of a process and, with `tree`, of every child it has or had. */
function ticks(pid: number, tree: boolean): number {
  const s = stat(pid);
  if (s === undefined) return 0;
  if (!tree) return s.own;
  let sum = s.own + s.reaped;
  for (const p of allPids()) {
    if (p === pid) continue;
    const c = stat(p);
    if (c?.ppid === pid) sum += c.own;
  }
  return sum;
}

/** The pid of the process listening on TCP `port` (IPv4 or IPv6), if this machine has one. */
export function pidListeningOn(port: number): number | undefined {
  const inodes = new Set<string>();
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // local address is ADDR:PORT; state 0A is LISTEN; field 10 is the socket's inode
      if (f.length > 9 && f[1]!.endsWith(`:${hex}`) && f[3] === '0A') inodes.add(f[9]!);
    }
  }
  if (inodes.size === 0) return undefined;
  for (const pid of allPids()) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let link: string;
      try {
        link = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const m = /^socket:\[(\d+)\]$/.exec(link);
      if (m !== null && inodes.has(m[1]!)) return pid;
    }
  }
  return undefined;
}

export interface CpuPart {
  name: string;
  pid: number;
  /** Count the process's children too (a PostgreSQL server's backends). */
  tree: boolean;
}

/** CPU seconds of each part between `start()` and `stop()`. */
export class CpuMeter {
  private readonly before = new Map<string, number>();

  constructor(private readonly parts: CpuPart[]) {}

  start(): this {
    for (const p of this.parts) this.before.set(p.name, ticks(p.pid, p.tree));
    return this;
  }

  /** A process started after start() (apply in W1): all of its time counts. */
  add(part: CpuPart): void {
    this.parts.push(part);
    this.before.set(part.name, 0);
  }

  /** Seconds per part, and their total, since start(). */
  stop(): { total: number; parts: Record<string, number> } {
    const parts: Record<string, number> = {};
    let total = 0;
    for (const p of this.parts) {
      const s = (ticks(p.pid, p.tree) - (this.before.get(p.name) ?? 0)) / TICKS_PER_SECOND;
      parts[p.name] = s;
      total += s;
    }
    return { total, parts };
  }
}

/** Seconds per 1,000,000 rows, per part and in total. */
export function perMillionRows(
  cpu: { total: number; parts: Record<string, number> },
  rows: number,
): { total: number; parts: Record<string, number> } {
  const k = rows > 0 ? 1_000_000 / rows : 0;
  const parts = Object.fromEntries(
    Object.entries(cpu.parts).map(([n, s]) => [n, Math.round(s * k * 100) / 100]),
  );
  return { total: Math.round(cpu.total * k * 100) / 100, parts };
}

/**
 * The parts of a run on a pair of databases: both PostgreSQL servers (whole trees), and when
 * Brabant runs, its services, the Kafka broker and the registry.
 */
export function runParts(
  servers: { a: { port: number }; b: { port: number } },
  brabant?: { brokers: string; registryUrl: string; services: { kind: string; pid: number }[] },
): CpuPart[] {
  const parts: CpuPart[] = [];
  const byPort = (name: string, port: number, tree: boolean) => {
    const pid = pidListeningOn(port);
    if (pid !== undefined) parts.push({ name, pid, tree });
  };
  byPort('postgres A', servers.a.port, true);
  byPort('postgres B', servers.b.port, true);
  if (brabant !== undefined) {
    byPort('kafka', Number(brabant.brokers.split(',')[0]!.split(':').pop()), false);
    byPort('registry', Number(new URL(brabant.registryUrl).port), false);
    for (const s of brabant.services) parts.push({ name: s.kind, pid: s.pid, tree: false });
  }
  return parts;
}
