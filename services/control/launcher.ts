/**
 * The one way Brabant's own services are started as processes — by the demo, the tests, the
 * benchmarks and the CLI: the environment is built from each service's config declarations (an
 * option that does not exist is an error here, not a variable silently ignored), the process
 * runs `services/<kind>/main.ts` of a checkout (this one, or another build for upgrade tests),
 * its output goes to a log file and is kept for waiting on, and it can be stopped gracefully or
 * killed.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { applyConfig } from '../apply/config.ts';
import { captureConfig } from '../capture/config.ts';
import { routerConfig } from '../router/config.ts';
import { type ConfigOf, envFor } from '../runtime/config.ts';
import { BrabantError } from '../runtime/errors.ts';

const SPECS = { capture: captureConfig, apply: applyConfig, router: routerConfig } as const;

export type ServiceKind = keyof typeof SPECS;
export type ServiceOptions<K extends ServiceKind> = Partial<ConfigOf<(typeof SPECS)[K]>>;

/** This checkout's root folder. */
export const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));

/** The environment variables that give a service these options (through its config declarations). */
export function serviceEnv<K extends ServiceKind>(
  kind: K,
  options: ServiceOptions<K>,
): Record<string, string> {
  return envFor(SPECS[kind], options, kind);
}

export interface LaunchOptions {
  logFile: string;
  /** Checkout to run the service from (another build, for upgrade tests); this one by default. */
  root?: string;
  /** Raw variables on top (e.g. a test's failpoints, or a deliberately bad value). */
  env?: Record<string, string>;
  /** Arguments of the service itself, e.g. `--topology FILE --node ID`. */
  args?: string[];
  /** When set, the process runs with --cpu-prof and writes its profiles into this folder. */
  cpuProfDir?: string;
  /** Which output lines to keep in memory (all by default); the log file gets every line. */
  keepLine?: (line: string, kept: number) => boolean;
}

/** A running (or ended) service process. */
export class LaunchedService {
  readonly lines: string[] = [];
  readonly exited: Promise<number | null>;
  private exitCode: number | null | undefined;
  private peak = 0;
  private readonly waiters: { pattern: RegExp; resolve: (line: string) => void }[] = [];

  constructor(
    readonly kind: ServiceKind,
    readonly name: string,
    readonly child: ChildProcess,
    readonly logFile: string,
    keepLine: (line: string, kept: number) => boolean,
  ) {
    const out = createWriteStream(logFile, { flags: 'a' });
    this.exited = new Promise((r) =>
      child.once('exit', (code, signal) => {
        this.exitCode = code ?? (signal ? -1 : null);
        r(code);
      }),
    );
    let rest = '';
    const onData = (chunk: Buffer) => {
      out.write(chunk);
      const parts = (rest + chunk.toString()).split('\n');
      rest = parts.pop() ?? '';
      for (const line of parts) {
        if (line === '') continue;
        if (keepLine(line, this.lines.length)) this.lines.push(line);
        for (const w of [...this.waiters]) {
          if (!w.pattern.test(line)) continue;
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    const sampler = setInterval(() => this.sample(), 200);
    void this.exited.then(() => {
      clearInterval(sampler);
      out.end();
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  /** Resolves with the first output line matching `pattern`; rejects if the process ends or time runs out first. */
  waitForLog(pattern: RegExp, timeoutMs = 60_000): Promise<string> {
    const hit = this.lines.find((l) => pattern.test(l));
    if (hit !== undefined) return Promise.resolve(hit);
    return new Promise((res, rej) => {
      const w = {
        pattern,
        resolve: (line: string) => {
          clearTimeout(timer);
          res(line);
        },
      };
      this.waiters.push(w);
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        rej(
          new Error(
            `${this.kind} ${this.name} never logged ${pattern} within ${timeoutMs} ms; see ${this.logFile}`,
          ),
        );
      }, timeoutMs);
      void this.exited.then((code) => {
        if (!this.waiters.includes(w)) return;
        this.waiters.splice(this.waiters.indexOf(w), 1);
        clearTimeout(timer);
        rej(
          new Error(
            `${this.kind} ${this.name} exited (${code}) before logging ${pattern}; see ${this.logFile}:\n${this.lines.slice(-5).join('\n')}`,
          ),
        );
      });
    });
  }

  /** Sends a signal (kill -9 by default) and resolves with the exit code. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<number | null> {
    if (this.running) this.child.kill(signal);
    return this.exited;
  }

  /** SIGTERM (a graceful stop: capture finishes its batch), then SIGKILL after `graceMs`. */
  async stop(graceMs = 15_000): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((r) => {
      timer = setTimeout(() => r('late'), graceMs);
    });
    const how = await Promise.race([this.exited, late]);
    clearTimeout(timer);
    if (how === 'late' && this.running) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }

  /** Peak resident set size (VmHWM) in bytes, as sampled while the process ran. */
  peakRss(): number {
    this.sample();
    return this.peak;
  }

  /** Why the process is not running (exit code and its last error lines), or undefined while it runs. */
  deathReason(): string | undefined {
    if (this.running) return undefined;
    const last = this.lines
      .filter((l) => /"level":60/.test(l) || !l.startsWith('{'))
      .slice(-2)
      .join(' | ');
    return `${this.kind} ${this.name} exited (${this.exitCode})${last ? `: ${last.slice(0, 400)}` : ''}; log ${this.logFile}`;
  }

  private sample(): void {
    if (!this.running) return;
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${this.pid}/status`, 'utf8'));
      if (m) this.peak = Math.max(this.peak, Number(m[1]) * 1024);
    } catch {
      /* gone */
    }
  }
}

/** Starts a service of this (or `opts.root`'s) checkout with `options`. */
export function launch<K extends ServiceKind>(
  kind: K,
  name: string,
  options: ServiceOptions<K>,
  opts: LaunchOptions,
): LaunchedService {
  return new LaunchedService(
    kind,
    name,
    spawnService(kind, name, options, opts),
    opts.logFile,
    opts.keepLine ?? all,
  );
}

const all = () => true;

/** The process of a service (for classes that extend LaunchedService; others use `launch`). */
export function spawnService<K extends ServiceKind>(
  kind: K,
  name: string,
  options: ServiceOptions<K>,
  opts: LaunchOptions,
): ChildProcess {
  const root = opts.root ?? ROOT;
  mkdirSync(dirname(opts.logFile), { recursive: true });
  const nodeArgs: string[] = [];
  if (opts.cpuProfDir !== undefined) {
    // one folder per process: node writes one profile per thread (the main thread and tsx's loader)
    const dir = join(opts.cpuProfDir, `${kind}-${name}`);
    mkdirSync(dir, { recursive: true });
    nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${dir}`);
  }
  const child = spawn(
    process.execPath,
    [...nodeArgs, '--import', 'tsx', join(root, 'services', kind, 'main.ts'), ...(opts.args ?? [])],
    {
      cwd: root,
      env: { ...process.env, KAFKAJS_NO_PARTITIONER_WARNING: '1', ...serviceEnv(kind, options), ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  if (child.pid === undefined)
    throw new BrabantError('COMPONENT_START_FAILED', `could not start ${kind} ${name} (${process.execPath})`);
  return child;
}
