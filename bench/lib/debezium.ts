/**
 * The W5 baseline: the Debezium PostgreSQL connector (io.debezium 3.6.1.Final) in Kafka Connect
 * standalone (org.apache.kafka:connect-runtime 4.3.x: the Kafka Debezium 3.6.1 is built against;
 * on Connect 4.4.0 its task fails, see bench/debezium/connect.pom.xml), producing into the
 * benchmark's 4.4.0 broker. Both are fetched from Maven Central with the poms in bench/debezium/
 * the first time they are needed, into .cache/debezium/<debezium>-connect-<connect>/
 * (connect-libs/ is the worker's classpath, plugins/ its plugin.path), and run as a plain JVM
 * process (`org.apache.kafka.connect.cli.ConnectStandalone worker.properties connector.properties`).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { copyDependencies } from '../../infra/maven.ts';
import {
  freePort,
  type ManagedProcess,
  signalGroup,
  spawnManaged,
  tail,
  which,
} from '../../infra/processes.ts';
import { ROOT } from './services.ts';
import { nowMs, until } from './util.ts';

const HERE = join(ROOT, 'bench', 'debezium');
const PLUGIN_POM = join(HERE, 'plugin.pom.xml');
const CONNECT_POM = join(HERE, 'connect.pom.xml');

function pomProperty(pom: string, name: string): string {
  const m = new RegExp(`<${name.replace(/\./g, '\\.')}>([^<]+)</`).exec(readFileSync(pom, 'utf8'));
  if (m === null) throw new Error(`${pom} has no <${name}>`);
  return m[1]!;
}

export function debeziumVersion(): string {
  return pomProperty(PLUGIN_POM, 'debezium.version');
}

/** Version of Kafka Connect the baseline runs: connect.pom.xml's, or BRABANT_BENCH_CONNECT_VERSION. */
export function connectVersion(): string {
  return process.env.BRABANT_BENCH_CONNECT_VERSION || pomProperty(CONNECT_POM, 'connect.version');
}

export interface DebeziumInstall {
  /** io.debezium version of the connector. */
  version: string;
  /** Version of Kafka Connect (connect-runtime). */
  connectVersion: string;
  java: string;
  javaVersion: string;
  /** The worker's classpath folder (connect-runtime, connect-json, logging). */
  connectLibs: string;
  /** plugin.path: one folder per plugin (debezium-connector-postgres/). */
  pluginPath: string;
}

function javaPath(): string {
  const home = process.env.JAVA_HOME;
  if (home && existsSync(join(home, 'bin', 'java'))) return join(home, 'bin', 'java');
  const found = which('java');
  if (found === undefined)
    throw new Error(
      'java was not found (Kafka Connect runs on the JVM): install a Java 17+ runtime (apt-get install openjdk-17-jre-headless) or set JAVA_HOME',
    );
  return found;
}

function javaVersionOf(java: string): string {
  // `java -version` writes to stderr
  const r = spawnSync(java, ['-version'], { encoding: 'utf8' });
  return /version "([^"]+)"/.exec(`${r.stderr ?? ''}${r.stdout ?? ''}`)?.[1] ?? 'unknown';
}

/**
 * Makes sure Kafka Connect and the Debezium PostgreSQL connector are on disk (fetched with Maven
 * the first time, a few tens of MB); throws an error that says what failed otherwise.
 */
export async function ensureDebeziumJars(progress: (m: string) => void): Promise<DebeziumInstall> {
  const java = javaPath();
  const version = debeziumVersion();
  const connect = connectVersion();
  const base =
    process.env.BRABANT_BENCH_DEBEZIUM_CACHE ??
    join(ROOT, '.cache', 'debezium', `${version}-connect-${connect}`);
  const connectLibs = join(base, 'connect-libs');
  const pluginPath = join(base, 'plugins');
  await copyDependencies({
    what: `Kafka Connect ${connect} (org.apache.kafka:connect-runtime, connect-json)`,
    pom: CONNECT_POM,
    dir: connectLibs,
    args: [`-Dconnect.version=${connect}`],
    expect: /^connect-runtime-/,
    progress,
  });
  await copyDependencies({
    what: `the Debezium PostgreSQL connector (io.debezium:debezium-connector-postgres:${version})`,
    pom: PLUGIN_POM,
    dir: join(pluginPath, 'debezium-connector-postgres'),
    args: [`-Ddebezium.version=${version}`],
    expect: /^debezium-connector-postgres-/,
    progress,
  });
  return {
    version,
    connectVersion: connect,
    java,
    javaVersion: javaVersionOf(java),
    connectLibs,
    pluginPath,
  };
}

/** JVM options of Kafka's connect-standalone.sh / kafka-run-class.sh, as shipped. */
export const CONNECT_JVM_FLAGS = [
  '-Xms256M',
  '-Xmx2G',
  '-server',
  '-XX:+UseG1GC',
  '-XX:MaxGCPauseMillis=20',
  '-XX:InitiatingHeapOccupancyPercent=35',
  '-XX:+ExplicitGCInvokesConcurrent',
  '-Djava.awt.headless=true',
];

function properties(p: Record<string, string>): string {
  return `${Object.entries(p)
    .map(([k, v]) => `${k}=${v.replace(/\\/g, '\\\\')}`)
    .join('\n')}\n`;
}

interface ConnectorStatus {
  connector?: { state: string; trace?: string };
  tasks?: { id: number; state: string; trace?: string }[];
}

const live = new Set<ConnectWorker>();

/** One Kafka Connect standalone worker running one connector. */
export class ConnectWorker {
  private constructor(
    readonly proc: ManagedProcess,
    readonly restUrl: string,
    readonly connectorName: string,
    /** When the JVM was spawned (ms, nowMs clock). */
    readonly spawnedAt: number,
    readonly workerConfig: Record<string, string>,
  ) {}

  /** Writes worker.properties and connector.properties into `dir` and starts the JVM (does not wait). */
  static async start(
    install: DebeziumInstall,
    opts: {
      dir: string;
      logFile: string;
      brokers: string;
      connector: Record<string, string> & { name: string };
      /** Extra worker settings (override the defaults below). */
      worker?: Record<string, string>;
    },
  ): Promise<ConnectWorker> {
    mkdirSync(opts.dir, { recursive: true });
    const port = await freePort();
    const worker: Record<string, string> = {
      'bootstrap.servers': opts.brokers,
      'key.converter': 'org.apache.kafka.connect.json.JsonConverter',
      'value.converter': 'org.apache.kafka.connect.json.JsonConverter',
      'key.converter.schemas.enable': 'false',
      'value.converter.schemas.enable': 'false',
      'offset.storage.file.filename': join(opts.dir, 'connect.offsets'),
      'offset.flush.interval.ms': '10000',
      'plugin.path': install.pluginPath,
      // Both the worker's jars and Debezium's carry ServiceLoader manifests: no class scanning.
      'plugin.discovery': 'service_load',
      listeners: `http://127.0.0.1:${port}`,
      'rest.advertised.host.name': '127.0.0.1',
      ...opts.worker,
    };
    const workerFile = join(opts.dir, 'worker.properties');
    const connectorFile = join(opts.dir, 'connector.properties');
    writeFileSync(workerFile, properties(worker));
    writeFileSync(connectorFile, properties(opts.connector));
    mkdirSync(join(opts.logFile, '..'), { recursive: true });
    const spawnedAt = nowMs();
    const proc = spawnManaged({
      name: `kafka-connect ${opts.connector.name}`,
      command: install.java,
      args: [
        ...CONNECT_JVM_FLAGS,
        `-Dlog4j2.configurationFile=${join(HERE, 'log4j2.properties')}`,
        '-cp',
        `${install.connectLibs}/*`,
        'org.apache.kafka.connect.cli.ConnectStandalone',
        workerFile,
        connectorFile,
      ],
      logFile: opts.logFile,
    });
    const w = new ConnectWorker(proc, `http://127.0.0.1:${port}`, opts.connector.name, spawnedAt, worker);
    live.add(w);
    void proc.exited.then(() => live.delete(w));
    return w;
  }

  /** Why the worker is gone (it exited), with the end of its log; undefined while it runs. */
  deathReason(): string | undefined {
    if (!this.proc.hasExited()) return undefined;
    const last = tail(this.proc.logFile, 40)
      .split('\n')
      .filter((l) => /ERROR|Exception|Caused by/.test(l))
      .slice(-2)
      .join(' | ');
    return `Kafka Connect exited${last ? `: ${last.slice(0, 300)}` : ''}; log ${this.proc.logFile}`;
  }

  async status(): Promise<ConnectorStatus | undefined> {
    const res = await fetch(`${this.restUrl}/connectors/${this.connectorName}/status`);
    if (res.status === 404) return undefined;
    if (!res.ok) throw new Error(`GET /connectors/${this.connectorName}/status answered ${res.status}`);
    return (await res.json()) as ConnectorStatus;
  }

  /** Why the connector or its task failed (state FAILED, with the first lines of the trace). */
  static failure(s: ConnectorStatus | undefined): string | undefined {
    const failed = [s?.connector, ...(s?.tasks ?? [])].find((x) => x?.state === 'FAILED');
    if (failed === undefined) return undefined;
    const trace = (failed.trace ?? '')
      .split('\n')
      .filter((l) => !/^\s+at /.test(l))
      .slice(0, 3)
      .join(' | ');
    return `the Debezium connector failed: ${trace.slice(0, 400)}`;
  }

  /** Waits until the REST API answers (the worker is up); returns when (nowMs). */
  async waitRestUp(timeoutMs = 180_000): Promise<number> {
    return until(
      'Kafka Connect REST API',
      async () => ((await fetch(`${this.restUrl}/`)).ok ? nowMs() : undefined),
      { timeoutMs, intervalMs: 50, abort: () => this.deathReason() },
    );
  }

  /** Waits until the connector's task is RUNNING; fails at once when it FAILED or the JVM exited. */
  async waitTaskRunning(timeoutMs = 180_000): Promise<number> {
    let failed: string | undefined;
    return until(
      `Debezium connector ${this.connectorName} to run`,
      async () => {
        const s = await this.status();
        failed = ConnectWorker.failure(s);
        return s?.tasks?.some((t) => t.state === 'RUNNING') ? nowMs() : undefined;
      },
      { timeoutMs, intervalMs: 50, abort: () => this.deathReason() ?? failed },
    );
  }

  /** Fails a wait when the JVM died or (checked every second) the connector failed. */
  watch(): { abort: () => string | undefined; stop: () => void } {
    let failed: string | undefined;
    const timer = setInterval(() => {
      void this.status()
        .then((s) => {
          failed ??= ConnectWorker.failure(s);
        })
        .catch(() => {});
    }, 1000);
    return { abort: () => this.deathReason() ?? failed, stop: () => clearInterval(timer) };
  }

  /** SIGTERM (Connect stops the task and commits its offsets), SIGKILL after graceMs. */
  async stop(graceMs = 20_000): Promise<void> {
    await this.proc.stop(graceMs);
    live.delete(this);
  }

  kill(): void {
    if (!this.proc.hasExited()) signalGroup(this.proc.pid, 'SIGKILL');
    live.delete(this);
  }
}

/** Kills every Connect worker still running (error paths, signals, exit). */
export function killAllConnect(): void {
  for (const w of [...live]) w.kill();
}

export async function stopAllConnect(): Promise<void> {
  await Promise.all([...live].map((w) => w.stop(5_000)));
}
