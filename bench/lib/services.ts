/**
 * Brabant's capture and apply as child processes for the benchmarks, through the launcher the
 * demo and the tests use: readiness by /healthz and the session log line, /metrics scraping, and
 * a registry of everything started so that an error or Ctrl-C never leaves one behind.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, waitFor } from '../../infra/processes.ts';
import { LaunchedService, type ServiceOptions, spawnService } from '../../services/control/launcher.ts';

export { ROOT } from '../../services/control/launcher.ts';

export interface BenchServiceOptions {
  logDir: string;
  /** When set, the process runs with --cpu-prof and writes its profile into this folder on exit. */
  cpuProfDir?: string;
  /** Arguments of the service itself, e.g. `--topology FILE --node ID` (W8's cluster, the secured stack). */
  args?: string[];
}

/** A service the benchmark started: the launcher's process, its /metrics port, and the bench's registry of live services. */
export class Service extends LaunchedService {
  /** stop() was called: its exit is no failure. */
  private stopRequested = false;

  constructor(
    kind: 'capture' | 'apply',
    name: string,
    child: ChildProcess,
    logFile: string,
    readonly metricsPort: number,
  ) {
    // the lines that matter for readiness and errors, not every line of a long run
    super(kind, name, child, logFile, (l, kept) => kept < 200 || !/"level":30/.test(l));
  }

  override deathReason(): string | undefined {
    return this.stopRequested ? undefined : super.deathReason();
  }

  async metrics(): Promise<string> {
    const res = await fetch(`http://127.0.0.1:${this.metricsPort}/metrics`);
    return res.text();
  }

  /** Sum of every series of a metric whose labels contain all of `labels`. */
  async metric(name: string, labels: Record<string, string> = {}): Promise<number> {
    return metricSum(await this.metrics(), name, labels);
  }

  override async stop(graceMs = 15_000): Promise<void> {
    this.stopRequested = true;
    await super.stop(graceMs);
    live.delete(this);
  }
}

const live = new Set<Service>();

/** Kills every service still running (error paths, signals, exit). */
export function killAllServices(): void {
  for (const s of live) s.kill();
  live.clear();
}

export async function stopAllServices(): Promise<void> {
  await Promise.all([...live].map((s) => s.stop(5_000)));
}

export function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? ([^ ]+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const have = m[3] ?? '';
    if (Object.entries(labels).every(([k, v]) => have.includes(`${k}="${v}"`))) sum += Number(m[4]);
  }
  return sum;
}

/** Starts a service through the launcher and waits until /healthz answers and its session is running. */
export async function startService<K extends 'capture' | 'apply'>(
  kind: K,
  name: string,
  options: ServiceOptions<K>,
  env: Record<string, string>,
  opts: BenchServiceOptions,
): Promise<Service> {
  mkdirSync(opts.logDir, { recursive: true });
  const metricsPort = await freePort();
  const logFile = join(opts.logDir, `${kind}-${name}.log`);
  const child = spawnService(kind, name, { ...options, metricsPort } as ServiceOptions<K>, {
    logFile,
    env,
    ...(opts.cpuProfDir === undefined ? {} : { cpuProfDir: opts.cpuProfDir }),
    ...(opts.args === undefined ? {} : { args: opts.args }),
  });
  const svc = new Service(kind, name, child, logFile, metricsPort);
  live.add(svc);
  try {
    await waitFor(async () => (await fetch(`http://127.0.0.1:${metricsPort}/healthz`)).ok, {
      what: `${kind} ${name} /healthz`,
      timeoutMs: 60_000,
      abort: () => svc.deathReason(),
    });
    await svc.waitForLog(kind === 'capture' ? /capture session starting/ : /apply session running/, 90_000);
  } catch (err) {
    await svc.stop(2_000);
    throw err;
  }
  return svc;
}
