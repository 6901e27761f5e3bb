/** Runs the services as real child processes (so tests can kill -9 it) on a test's own names. */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { NodeInfo } from '../../infra/stack.ts';
import { region, stack, uniqueName } from './stack.ts';

/** A running service process. */
export interface ServiceProcess {
  readonly pid: number;
  readonly logFile: string;
  readonly lines: string[];
  readonly exited: Promise<number | null>;
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<string>;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
  /** Peak resident memory (VmHWM) in bytes, read while the process runs. */
  peakRss(): number;
}

export interface CaptureNames {
  nodeId: string;
  region: string;
  topic: string;
  slot: string;
  publication: string;
  dbUrl: string;
}

/** Fresh names for one test: its own node id (transactional id), topic, slot and publication. */
export function captureNames(node: NodeInfo, dbUrl: string): CaptureNames {
  const id = uniqueName(node.id.replace('-', ''));
  return {
    nodeId: id,
    region: node.region,
    topic: `brabant.${uniqueName('changes')}`,
    slot: `slot_${id}`,
    publication: `pub_${id}`,
    dbUrl,
  };
}

export function startCapture(
  names: CaptureNames,
  env: Record<string, string> = {},
  root = '.',
): ServiceProcess {
  return startService(
    'capture',
    names.nodeId,
    {
      BRABANT_NODE_ID: names.nodeId,
      BRABANT_REGION: names.region,
      BRABANT_PG_URL: names.dbUrl,
      BRABANT_KAFKA_BROKERS: region(names.region).kafkaBrokers.join(','),
      BRABANT_REGISTRY_URL: stack().registryUrl,
      BRABANT_CAPTURE_TOPIC: names.topic,
      BRABANT_CAPTURE_SLOT: names.slot,
      BRABANT_CAPTURE_PUBLICATION: names.publication,
      BRABANT_CAPTURE_HEARTBEAT_MS: '0',
      ...env,
    },
    root,
  );
}

/**
 * Starts `services/<kind>/main.ts` as a child process with the given environment; `root` is the
 * checkout to run it from (another build of Brabant, for upgrade tests), this one by default.
 */
export function startService(
  kind: 'capture' | 'apply',
  name: string,
  env: Record<string, string>,
  root = '.',
): ServiceProcess {
  const logDir = resolve('.cache/test-logs');
  mkdirSync(logDir, { recursive: true });
  const logFile = join(logDir, `${kind}-${name}-${Date.now()}.log`);
  const out = createWriteStream(logFile);
  const child: ChildProcess = spawn(
    process.execPath,
    ['--import', 'tsx', resolve(root, `services/${kind}/main.ts`)],
    {
      env: { ...process.env, BRABANT_METRICS_PORT: '0', KAFKAJS_NO_PARTITIONER_WARNING: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const lines: string[] = [];
  const waiters: { pattern: RegExp; resolve: (l: string) => void }[] = [];
  const onData = (chunk: Buffer) => {
    out.write(chunk);
    for (const line of chunk.toString().split('\n')) {
      if (line === '') continue;
      lines.push(line);
      for (const w of [...waiters]) {
        if (w.pattern.test(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  void exited.then(() => out.end());
  let peak = 0;
  const sampler = setInterval(() => {
    peak = Math.max(peak, readHwm(child.pid!));
  }, 200);
  void exited.then(() => clearInterval(sampler));
  return {
    pid: child.pid!,
    logFile,
    lines,
    exited,
    waitForLog(pattern, timeoutMs = 60_000) {
      const hit = lines.find((l) => pattern.test(l));
      if (hit !== undefined) return Promise.resolve(hit);
      return new Promise((res, rej) => {
        const w = { pattern, resolve: res };
        waiters.push(w);
        const t = setTimeout(
          () => rej(new Error(`${kind} log never matched ${pattern} within ${timeoutMs} ms; see ${logFile}`)),
          timeoutMs,
        );
        void exited.then((code) => {
          if (waiters.includes(w)) {
            clearTimeout(t);
            rej(
              new Error(
                `${kind} exited (${code}) before its log matched ${pattern}; see ${logFile}:\n${lines.slice(-5).join('\n')}`,
              ),
            );
          }
        });
      });
    },
    async kill(signal = 'SIGKILL') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
    peakRss: () => Math.max(peak, readHwm(child.pid!)),
  };
}

function readHwm(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /VmHWM:\s+(\d+) kB/.exec(status);
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}
