/**
 * Brabant's capture and apply as child processes for the benchmarks (as `brabant demo` and the
 * tests run them): own environment, log file, readiness by /healthz and the session log line,
 * /metrics scraping, peak RSS (VmHWM) sampled while they run, optional CPU profile, and a
 * registry of everything started so that an error or Ctrl-C never leaves one behind.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../infra/processes.ts';
import { sleep, until } from './util.ts';

export const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));

export interface ServiceOptions {
  logDir: string;
  /** When set, the process runs with --cpu-prof and writes its profile into this folder on exit. */
  cpuProfDir?: string;
}

export class Service {
  readonly lines: string[] = [];
  private peak = 0;
  private readonly sampler: NodeJS.Timeout;
  readonly exited: Promise<number | null>;
  private exitCode: number | null | undefined;
  /** stop() was called: its exit is no failure. */
  private stopRequested = false;

  constructor(
    readonly kind: 'capture' | 'apply',
    readonly name: string,
    readonly child: ChildProcess,
    readonly metricsPort: number,
    readonly logFile: string,
  ) {
    this.exited = new Promise((r) =>
      child.once('exit', (code, signal) => {
        this.exitCode = code ?? (signal ? -1 : null);
        r(code);
      }),
    );
    this.sampler = setInterval(() => this.sample(), 100);
    void this.exited.then(() => clearInterval(this.sampler));
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  /** Why this process is no longer running, or undefined while it runs. */
  deathReason(): string | undefined {
    if (this.running || this.stopRequested) return undefined;
    const last = this.lines
      .filter((l) => /"level":60/.test(l) || !l.startsWith('{'))
      .slice(-2)
      .join(' | ');
    return `${this.kind} ${this.name} exited (${this.exitCode})${last ? `: ${last.slice(0, 400)}` : ''}; log ${this.logFile}`;
  }

  private sample(): void {
    if (!this.running) return;
    try {
      const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
      const m = /VmHWM:\s+(\d+) kB/.exec(status);
      if (m) this.peak = Math.max(this.peak, Number(m[1]) * 1024);
    } catch {
      /* gone */
    }
  }

  /** Peak resident set size (VmHWM) in bytes, as last sampled while the process ran. */
  peakRss(): number {
    this.sample();
    return this.peak;
  }

  async metrics(): Promise<string> {
    const res = await fetch(`http://127.0.0.1:${this.metricsPort}/metrics`);
    return res.text();
  }

  /** Sum of every series of a metric whose labels contain all of `labels`. */
  async metric(name: string, labels: Record<string, string> = {}): Promise<number> {
    return metricSum(await this.metrics(), name, labels);
  }

  async waitForLog(pattern: RegExp, timeoutMs: number): Promise<void> {
    await until(
      `${this.kind} ${this.name} to log ${pattern}`,
      async () => this.lines.some((l) => pattern.test(l)),
      {
        timeoutMs,
        intervalMs: 50,
        abort: () => this.deathReason(),
      },
    );
  }

  /** SIGTERM (graceful: capture flushes its batch), then SIGKILL after graceMs. */
  async stop(graceMs = 15_000): Promise<void> {
    this.stopRequested = true;
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const t = await Promise.race([this.exited.then(() => 'exited'), sleep(graceMs).then(() => 'timeout')]);
    if (t === 'timeout' && this.running) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
    live.delete(this);
  }

  kill(): void {
    if (this.running) this.child.kill('SIGKILL');
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

/** Starts services/<kind>/main.ts and waits until /healthz answers and its session is running. */
export async function startService(
  kind: 'capture' | 'apply',
  name: string,
  env: Record<string, string>,
  opts: ServiceOptions,
): Promise<Service> {
  mkdirSync(opts.logDir, { recursive: true });
  const metricsPort = await freePort();
  const logFile = join(opts.logDir, `${kind}-${name}.log`);
  const out = createWriteStream(logFile, { flags: 'a' });
  const nodeArgs: string[] = [];
  if (opts.cpuProfDir !== undefined) {
    // One folder per process: node writes one profile per thread (the main thread and tsx's loader).
    const dir = join(opts.cpuProfDir, `${kind}-${name}`);
    mkdirSync(dir, { recursive: true });
    nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${dir}`);
  }
  const child = spawn(
    process.execPath,
    [...nodeArgs, '--import', 'tsx', join(ROOT, 'services', kind, 'main.ts')],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        KAFKAJS_NO_PARTITIONER_WARNING: '1',
        ...env,
        BRABANT_METRICS_PORT: String(metricsPort),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const svc = new Service(kind, name, child, metricsPort, logFile);
  live.add(svc);
  let rest = '';
  const onData = (chunk: Buffer) => {
    out.write(chunk);
    const text = rest + chunk.toString();
    const parts = text.split('\n');
    rest = parts.pop() ?? '';
    // Keep the lines that matter for readiness and errors, not every line of a long run.
    for (const l of parts)
      if (l !== '' && (svc.lines.length < 200 || !/"level":30/.test(l))) svc.lines.push(l);
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  void svc.exited.then(() => out.end());
  try {
    await until(
      `${kind} ${name} /healthz`,
      async () => (await fetch(`http://127.0.0.1:${metricsPort}/healthz`)).ok,
      { timeoutMs: 60_000, intervalMs: 100, abort: () => svc.deathReason() },
    );
    await svc.waitForLog(kind === 'capture' ? /capture session starting/ : /apply session running/, 90_000);
  } catch (err) {
    await svc.stop(2_000);
    throw err;
  }
  return svc;
}
