/**
 * `brabant start [NODE…]` and `brabant stop`: run the services of a topology — capture and apply of
 * each node named (all by default) and the router of each region that has one — as supervised
 * child processes through the launcher, the same way on the local stack and in production. The
 * supervisor stays in the foreground (Ctrl-C stops everything gracefully) or, with --detach, in
 * the background; `brabant stop` from any shell stops it and waits until every service is gone.
 *
 * Supervision: a service that dies by a signal (kill -9, out of memory) is started again with
 * backoff; one that exits with a code stopped on purpose (2: bad configuration, 1: an error that
 * needs a person, said in its log) and is not restarted — it already retries what is transient.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { readProcessInfo } from '../../infra/process-table.ts';
import { delay, isAlive, waitFor } from '../../infra/processes.ts';
import { TOPOLOGY_FILE } from '../../infra/stack-topology.ts';
import { BrabantError } from '../runtime/errors.ts';
import { TOPOLOGY_ENV } from '../runtime/service-config.ts';
import { backoffDelay } from '../runtime/supervise.ts';
import { readTopology, type Topology } from '../runtime/topology.ts';
import { type LaunchedService, launch, ROOT, type ServiceKind } from './launcher.ts';

/** The run file of `brabant start`: who supervises which services (for `brabant stop`). */
const RUN_FILE = 'services.json';

interface RunFile {
  topology: string;
  supervisor: { pid: number; startTime: number };
  services: { kind: ServiceKind; id: string; pid: number; logFile: string }[];
}

const say = (m: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${m}`);

/** The topology file a command works on: --topology, BRABANT_TOPOLOGY, or the local stack's. */
export function topologyFile(flag: string | undefined, home: string, env = process.env): string {
  const file = flag ?? env[TOPOLOGY_ENV] ?? join(resolve(home), TOPOLOGY_FILE);
  if (!existsSync(file)) {
    throw new BrabantError(
      'CONFIG_INVALID',
      `no topology file at ${file}: give one with --topology FILE (or ${TOPOLOGY_ENV}), or start the local stack with \`brabant up\`, which writes it`,
    );
  }
  return resolve(file);
}

interface Planned {
  kind: ServiceKind;
  /** Node id (capture, apply) or region (router). */
  id: string;
  args: string[];
  /**
   * The log line that says it really streams (capture: its slot is there; apply: every cluster
   * read) or that it waits for something and says what (Kafka, the node): /healthz answers as
   * soon as the process runs, before capture has made its slot, so a write right after would
   * not be captured.
   */
  ready: RegExp;
}

/** What `brabant start NODE…` runs: capture and apply of each node, and the routers of their regions. */
export function planServices(t: Topology, nodes: string[], withRouters: boolean): Planned[] {
  for (const id of nodes)
    if (!t.nodes.some((n) => n.id === id))
      throw new BrabantError(
        'CONFIG_INVALID',
        `the topology ${t.file} has no node '${id}'; its nodes are ${t.nodes.map((n) => n.id).join(', ')}`,
      );
  const chosen = t.nodes.filter((n) => nodes.length === 0 || nodes.includes(n.id));
  const out: Planned[] = [];
  for (const n of chosen) {
    for (const kind of ['capture', 'apply'] as const) {
      out.push({
        kind,
        id: n.id,
        args: ['--topology', t.file, '--node', n.id],
        ready:
          kind === 'capture'
            ? /capture session starting|session failed; retrying/
            : /apply session running|session failed; retrying|KAFKA_UNAVAILABLE: the change topics/,
      });
    }
  }
  if (withRouters) {
    const regions = new Set(chosen.map((n) => n.region));
    for (const r of t.routers)
      if (regions.has(r.region))
        out.push({
          kind: 'router',
          id: r.region,
          args: ['--topology', t.file, '--region', r.region],
          ready: /control API listening/,
        });
  }
  return out;
}

function runFilePath(home: string): string {
  return join(resolve(home), 'run', RUN_FILE);
}

function readRunFile(home: string): RunFile | undefined {
  const f = runFilePath(home);
  return existsSync(f) ? (JSON.parse(readFileSync(f, 'utf8')) as RunFile) : undefined;
}

function supervisorAlive(run: RunFile): boolean {
  return (
    isAlive(run.supervisor.pid) && readProcessInfo(run.supervisor.pid)?.startTime === run.supervisor.startTime
  );
}

export async function start(opts: {
  home: string;
  topology: string | undefined;
  nodes: string[];
  routers: boolean;
  detach: boolean;
}): Promise<number> {
  const file = topologyFile(opts.topology, opts.home);
  const t = readTopology(file);
  const plan = planServices(t, opts.nodes, opts.routers);
  const running = readRunFile(opts.home);
  if (running !== undefined && supervisorAlive(running)) {
    throw new BrabantError(
      'STACK_ALREADY_RUNNING',
      `brabant start already runs (pid ${running.supervisor.pid}) for ${running.topology}; stop it first with \`brabant stop\``,
    );
  }
  const logDir = join(resolve(opts.home), 'logs');
  mkdirSync(join(resolve(opts.home), 'run'), { recursive: true });
  if (opts.detach) return detach(opts, file, logDir);

  const services = new Map<string, LaunchedService>();
  let stopping = false;
  const writeRun = () => {
    const run: RunFile = {
      topology: file,
      supervisor: { pid: process.pid, startTime: readProcessInfo(process.pid)?.startTime ?? 0 },
      services: [...services.values()].map((s) => ({
        kind: s.kind,
        id: s.name,
        pid: s.pid,
        logFile: s.logFile,
      })),
    };
    writeFileSync(runFilePath(opts.home), `${JSON.stringify(run, null, 2)}\n`);
  };
  const launchOne = (p: Planned): LaunchedService => {
    const s = launch(
      p.kind,
      p.id,
      {},
      // the first lines (start-up, and why it died early); the log file has every line
      { logFile: join(logDir, `${p.kind}-${p.id}.log`), args: p.args, keepLine: (_, kept) => kept < 200 },
    );
    services.set(`${p.kind}:${p.id}`, s);
    writeRun();
    return s;
  };
  const supervise = async (p: Planned, first: LaunchedService) => {
    let s = first;
    let attempt = 0;
    for (;;) {
      const started = Date.now();
      const code = await s.exited;
      if (stopping) return;
      if (code !== null && code >= 0) {
        say(`${p.kind} of ${p.id} exited with ${code} and is not restarted (${s.deathReason()})`);
        return;
      }
      attempt = Date.now() - started > 60_000 ? 1 : attempt + 1;
      const wait = backoffDelay(attempt, { initialMs: 1000, maxMs: 30_000 });
      say(`${p.kind} of ${p.id} was killed (pid ${s.pid}); starting it again in ${wait} ms`);
      await delay(wait);
      if (stopping) return;
      s = launchOne(p);
    }
  };
  say(`starting ${plan.map((p) => `${p.kind} ${p.id}`).join(', ')} from ${file}`);
  const watchers: Promise<void>[] = [];
  const readiness: Promise<unknown>[] = [];
  for (const p of plan) {
    const s = launchOne(p);
    watchers.push(supervise(p, s));
    readiness.push(
      s.waitForLog(p.ready, 120_000).then((line) => {
        const waiting = /retrying|KAFKA_UNAVAILABLE/.test(line);
        say(
          `${p.kind} of ${p.id} ${waiting ? `runs and waits: ${(JSON.parse(line) as { msg?: string }).msg ?? line}` : 'running'} (pid ${s.pid}, log ${s.logFile})`,
        );
      }),
    );
  }
  try {
    await Promise.all(readiness);
  } catch (err) {
    stopping = true;
    await Promise.all([...services.values()].map((x) => x.stop()));
    rmSync(runFilePath(opts.home), { force: true });
    throw err;
  }
  say('all services running; Ctrl-C or `brabant stop` stops them');
  await new Promise<void>((done) => {
    for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => done());
  });
  stopping = true;
  say('stopping the services (graceful: capture finishes its batch, apply commits its offsets)');
  await Promise.all([...services.values()].map((s) => s.stop()));
  await Promise.allSettled(watchers);
  rmSync(runFilePath(opts.home), { force: true });
  say('stopped');
  return 0;
}

/** `brabant start --detach`: the same supervisor, in the background; returns once it says all run. */
async function detach(
  opts: { home: string; nodes: string[]; routers: boolean },
  file: string,
  logDir: string,
): Promise<number> {
  mkdirSync(logDir, { recursive: true });
  const logFile = join(logDir, 'brabant-start.log');
  const fd = openSync(logFile, 'a');
  const args = [
    '--import',
    'tsx',
    join(ROOT, 'services', 'control', 'main.ts'),
    'start',
    '--topology',
    file,
    ...(opts.routers ? [] : ['--no-routers']),
    ...opts.nodes,
  ];
  const child = spawn(process.execPath, args, {
    detached: true,
    stdio: ['ignore', fd, fd],
    env: { ...process.env, BRABANT_HOME: opts.home },
  });
  child.unref();
  await waitFor(
    async () => {
      if (child.exitCode !== null) throw new Error(`brabant start exited with ${child.exitCode}`);
      return readFileSync(logFile, 'utf8').includes('all services running');
    },
    { what: 'the services of the topology', timeoutMs: 180_000, intervalMs: 250 },
  ).catch((err: Error) => {
    throw new BrabantError('COMPONENT_START_FAILED', `${err.message}; see ${logFile}`);
  });
  say(
    `services running in the background (supervisor pid ${child.pid}, log ${logFile}); stop them with \`brabant stop\``,
  );
  return 0;
}

export async function stop(opts: { home: string }): Promise<number> {
  const run = readRunFile(opts.home);
  if (run === undefined || !supervisorAlive(run)) {
    rmSync(runFilePath(opts.home), { force: true });
    const left = (run?.services ?? []).filter((s) => isAlive(s.pid));
    for (const s of left) process.kill(s.pid, 'SIGTERM');
    if (left.length === 0)
      throw new BrabantError(
        'STACK_NOT_RUNNING',
        `no \`brabant start\` runs from ${resolve(opts.home)}; nothing to stop`,
      );
  } else {
    say(`stopping brabant start (pid ${run.supervisor.pid}) and its ${run.services.length} service(s)`);
    process.kill(run.supervisor.pid, 'SIGTERM');
  }
  await waitFor(
    async () =>
      (run?.services ?? []).every((s) => !isAlive(s.pid)) &&
      (run === undefined || !isAlive(run.supervisor.pid)),
    { what: 'the services to stop', timeoutMs: 60_000, intervalMs: 200 },
  );
  rmSync(runFilePath(opts.home), { force: true });
  say('stopped');
  return 0;
}
