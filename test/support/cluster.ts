/**
 * Clusters of any number of nodes for one test, run the way production runs them: a topology file
 * of the test's own (regions with unique names, so their change topics `brabant.<region>.changes`
 * are the test's own; one shared or per-region Kafka; every node on a PostgreSQL server of its
 * own, since replication origins are per server), capture and apply started from that file with
 * `--topology FILE --node ID`, and the `brabant` CLI given the same file. Members can be added
 * later (a node that joins) and started empty.
 *
 * PostgreSQL servers beyond the shared stack's vl-1 and wa-1 (a third node, a node of another
 * major, a node whose data folder a test replaces) come from `nodeServers`: a stack of the test
 * file's own with PostgreSQL only, using the shared stack's Kafka and registry.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { stringify } from 'yaml';
import { withDatabase } from '../../infra/postgres/postgres.ts';
import { freePort } from '../../infra/processes.ts';
import { type NodeInfo, type Stack, type StackInfo, startStack, stopRecorded } from '../../infra/stack.ts';
import { launch } from '../../services/control/launcher.ts';
import type { Side } from './pair.ts';
import type { ServiceProcess } from './services.ts';
import { regionOf, stack, uniqueName } from './stack.ts';

/**
 * PostgreSQL servers of a test file's own, `regions` giving how many per region (ids vl-1, vl-2,
 * wa-1, …) and `majors` the PostgreSQL major of some (default 15). Kafka and the registry are the
 * shared stack's; stop them with the returned stack's stop().
 */
export async function nodeServers(
  name: string,
  regions: { name: string; nodes: number }[],
  majors: Record<string, number> = {},
): Promise<Stack> {
  const workDir = resolve(`.cache/test-nodes-${name}`);
  await stopRecorded(workDir);
  rmSync(workDir, { recursive: true, force: true });
  const shared = stack();
  const started = Date.now();
  const s = await startStack(
    { regions, kafka: 'shared', postgresMajors: majors },
    {
      workDir,
      basePort: 0,
      env: {
        ...process.env,
        BRABANT_PG_URLS: undefined,
        BRABANT_KAFKA_BROKERS: shared.regions[0]!.kafkaBrokers.join(','),
        BRABANT_REGISTRY_URL: shared.registryUrl,
      },
    },
  );
  console.log(`[${name}] PostgreSQL servers ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return s;
}

/** The server of node `id` (vl-1, …) in a stack. */
export function server(on: StackInfo, id: string): NodeInfo {
  for (const r of on.regions) for (const n of r.nodes) if (n.id === id) return n;
  throw new Error(`no server ${id} in ${on.workDir}`);
}

/** A member of a cluster: a node (its own database on its own server) and how to reach it. */
export interface Member extends Side {
  id: string;
  /** The cluster's name of its region (unique to the test). */
  region: string;
  /** Its place for replicated sequences (BRABANT_SEQUENCE_INDEX). */
  place: number;
}

export interface RunningCli {
  output(): string;
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
  done: Promise<{ code: number; out: string }>;
  kill(signal?: NodeJS.Signals): void;
}

export interface AddOptions {
  /** No schema: a node about to join. */
  empty?: boolean;
  /** The stack region it is in (default its server's). */
  region?: string;
  /** Its node id (a rebuilt node keeps the one it had); a new one by default. */
  id?: string;
}

export interface Cluster {
  /** The regions' names in this test (e.g. vlaanderen_3fa2c1), by the stack's region name. */
  regions: Map<string, string>;
  members: Member[];
  topologyFile: string;
  /**
   * A new member: a database on `server` (the same name as the others'), with the cluster's
   * schema unless `empty` (a node about to join). It is written into the topology file.
   */
  add(server: NodeInfo, opts?: AddOptions): Promise<Member>;
  /** Removes a member from the topology file (after `brabant node part`) and drops its database. */
  remove(m: Member): Promise<void>;
  capture(m: Member, env?: Record<string, string>): ServiceProcess;
  apply(m: Member, env?: Record<string, string>): ServiceProcess;
  /** Capture and apply of a member, each waited for until it streams. */
  startServices(
    m: Member,
    env?: { capture?: Record<string, string>; apply?: Record<string, string> },
  ): Promise<{
    capture: ServiceProcess;
    apply: ServiceProcess;
  }>;
  /** `brabant ARGS --topology FILE`; resolves with the exit code and the output. */
  cli(args: string[], timeoutMs?: number): Promise<{ code: number; out: string }>;
  /** The same, left running: its output so far, a wait for a line, and its end. */
  spawnCli(args: string[]): RunningCli;
  /**
   * Starts the router of a region (the stack region's name) from the topology file: its port
   * for clients, its control API, the process; its nodes are the topology's at that moment.
   */
  router(region: string, env?: Record<string, string>): Promise<ClusterRouter>;
  /** Kills every process started and drops the databases. */
  cleanup(): Promise<void>;
}

export interface ClusterRouter {
  port: number;
  control: string;
  process: ServiceProcess;
  /** A client URL of the router (the cluster's database). */
  url: string;
}

const CLI = resolve('bin/brabant.mjs');

/**
 * A cluster of the members on `servers` (one each), all with `schemaSql`. Every region of `on`
 * (and `extraRegions`) is declared up front: an apply reads every region's topic from its start,
 * so a node joining in a region without nodes yet is read too.
 */
export async function replicationCluster(
  schemaSql: string,
  servers: NodeInfo[],
  opts: { on?: StackInfo; extraRegions?: string[] } = {},
): Promise<Cluster> {
  const on = opts.on ?? stack();
  const suffix = uniqueName('c').slice(2);
  const database = `t_${suffix}`;
  const regions = new Map<string, string>();
  for (const r of [...on.regions.map((x) => x.name), ...(opts.extraRegions ?? [])])
    regions.set(r, `${r}_${suffix}`);
  const dir = resolve('.cache/test-clusters');
  mkdirSync(dir, { recursive: true });
  const topologyFile = join(dir, `${suffix}.yaml`);
  const members: Member[] = [];
  const drops: (() => Promise<void>)[] = [];
  const processes: ServiceProcess[] = [];
  let places = 0;
  const routers: { region: string; port: number; controlPort: number; database: string }[] = [];
  const clis: ChildProcess[] = [];

  const writeTopology = () => {
    const shared = regionOf(on, on.regions[0]!.name);
    const doc = {
      regions: [...regions].map(([base, name]) => {
        const r = on.regions.find((x) => x.name === base) ?? shared;
        return {
          name,
          kafka: r.kafkaBrokers,
          kafkaFromPeers: r.kafkaFromPeers,
          registry: r.registryUrl,
          registryPrimary: r.registryPrimaryUrl,
        };
      }),
      nodes: members.map((m) => ({ id: m.id, region: m.region, postgres: m.url })),
      ...(routers.length > 0 ? { routers } : {}),
    };
    writeFileSync(topologyFile, stringify(doc));
  };

  const dropDatabase = async (srv: NodeInfo) => {
    const c = new pg.Client({ connectionString: srv.url });
    await c.connect();
    try {
      await c.query(`drop database if exists ${database} with (force)`);
    } finally {
      await c.end();
    }
  };
  let ids = 0;
  const add = async (srv: NodeInfo, o: AddOptions = {}): Promise<Member> => {
    const admin = new pg.Client({ connectionString: srv.url });
    await admin.connect();
    try {
      await admin.query(`create database ${database}`);
    } finally {
      await admin.end();
    }
    const url = withDatabase(srv.url, database);
    drops.push(() => dropDatabase(srv));
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    client.on('error', () => {});
    if (!o.empty) await client.query(schemaSql);
    const region = regions.get(o.region ?? srv.region);
    if (region === undefined) throw new Error(`cluster has no region ${o.region ?? srv.region}`);
    const id = o.id ?? `${srv.id.replace('-', '')}_${suffix}_${ids++}`;
    const m: Member = {
      id,
      region,
      place: places++,
      node: srv,
      url,
      client,
      names: {
        nodeId: id,
        region,
        topic: `brabant.${region}.changes`,
        slot: `brabant_${id}`,
        publication: `brabant_${id}`,
        dbUrl: url,
      },
    };
    members.push(m);
    writeTopology();
    return m;
  };

  const service = (kind: 'capture' | 'apply', m: Member, env: Record<string, string>) => {
    const p = launch(
      kind,
      m.id,
      { metricsPort: 0 },
      {
        logFile: join(resolve('.cache/test-logs'), `${kind}-${m.id}-${Date.now()}.log`),
        args: ['--topology', topologyFile, '--node', m.id],
        env:
          kind === 'capture'
            ? {
                BRABANT_CAPTURE_BATCH_MS: '5',
                BRABANT_CAPTURE_HEARTBEAT_MS: '0',
                BRABANT_SEQUENCE_INDEX: String(m.place),
                ...env,
              }
            : { BRABANT_APPLY_RETRY_MAX_MS: '1000', ...env },
      },
    );
    processes.push(p);
    return p;
  };

  const cluster: Cluster = {
    regions,
    members,
    topologyFile,
    add,
    async remove(m) {
      members.splice(members.indexOf(m), 1);
      writeTopology();
      await m.client.end().catch(() => {});
      await dropDatabase(m.node);
    },
    capture: (m, env = {}) => service('capture', m, env),
    apply: (m, env = {}) => service('apply', m, env),
    async startServices(m, env = {}) {
      const capture = service('capture', m, env.capture ?? {});
      const apply = service('apply', m, env.apply ?? {});
      await Promise.all([
        capture.waitForLog(/capture session starting/),
        apply.waitForLog(/apply session running/),
      ]);
      return { capture, apply };
    },
    cli(args, timeoutMs = 300_000) {
      return new Promise((res) => {
        execFile(
          CLI,
          [...args, '--topology', topologyFile],
          { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 },
          (err, stdout, stderr) =>
            res({
              code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1,
              out: `${stdout}${stderr}`,
            }),
        );
      });
    },
    async router(region, env = {}) {
      const name = regions.get(region);
      if (name === undefined) throw new Error(`cluster has no region ${region}`);
      const port = await freePort();
      const controlPort = await freePort();
      routers.push({ region: name, port, controlPort, database });
      writeTopology();
      const p = launch(
        'router',
        name,
        {},
        {
          logFile: join(resolve('.cache/test-logs'), `router-${name}-${Date.now()}.log`),
          args: ['--topology', topologyFile, '--region', name],
          env: { BRABANT_ROUTER_CHECK_MS: '200', ...env },
        },
      );
      processes.push(p);
      await p.waitForLog(/router started/);
      return {
        port,
        control: `http://127.0.0.1:${controlPort}`,
        process: p,
        url: `postgres://postgres@127.0.0.1:${port}/${database}`,
      };
    },
    spawnCli(args) {
      const child = spawn(CLI, [...args, '--topology', topologyFile], { stdio: ['ignore', 'pipe', 'pipe'] });
      clis.push(child);
      let out = '';
      const listeners: (() => void)[] = [];
      const onData = (c: Buffer) => {
        out += c.toString();
        for (const l of [...listeners]) l();
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', onData);
      const done = new Promise<{ code: number; out: string }>((res) =>
        child.once('exit', (code) => {
          for (const l of [...listeners]) l();
          res({ code: code ?? 1, out });
        }),
      );
      return {
        output: () => out,
        done,
        kill: (signal = 'SIGKILL') => child.kill(signal),
        waitFor(pattern, timeoutMs = 300_000) {
          return new Promise((res, rej) => {
            const check = () => {
              const line = out.split('\n').find((l) => pattern.test(l));
              if (line !== undefined) {
                finish();
                res(line);
              } else if (child.exitCode !== null) {
                finish();
                rej(
                  new Error(
                    `brabant ${args.join(' ')} exited (${child.exitCode}) before printing ${pattern}:\n${out}`,
                  ),
                );
              }
            };
            const timer = setTimeout(() => {
              finish();
              rej(
                new Error(
                  `brabant ${args.join(' ')} did not print ${pattern} within ${timeoutMs} ms:\n${out}`,
                ),
              );
            }, timeoutMs);
            const finish = () => {
              clearTimeout(timer);
              listeners.splice(listeners.indexOf(check), 1);
            };
            listeners.push(check);
            check();
          });
        },
      };
    },
    async cleanup() {
      for (const p of processes) await p.kill('SIGKILL');
      for (const c of clis) if (c.exitCode === null) c.kill('SIGKILL');
      for (const m of members) await m.client.end().catch(() => {});
      for (const d of drops) await d().catch(() => {});
      rmSync(topologyFile, { force: true });
    },
  };
  for (const s of servers) await add(s);
  return cluster;
}
