/**
 * Clusters on a secured stack (TLS and authentication on every link, as `brabant up` starts it)
 * for the membership tests: a stack of the test file's own with any number of PostgreSQL servers,
 * and clusters of nodes on it that run as production does — a topology file with the stack's
 * security section, regions and node ids of the cluster's own (so its own topics, roles' password
 * files and Kafka users), each node set up by `brabant node init` (its roles, Kafka users and
 * ACLs), capture and apply started with `--topology FILE --node ID`, and the `brabant` CLI given
 * the same file and the superuser's password (PGPASSWORD), as an operator runs it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { withDatabase } from '../../infra/postgres/postgres.ts';
import { type NodeInfo, startStack, stopRecorded, withoutExternal } from '../../infra/stack.ts';
import { launch } from '../../services/control/launcher.ts';
import { initNode } from '../../services/control/node-init.ts';
import { initStackNodes } from '../../services/control/stack-commands.ts';
import { publicationName, slotName } from '../../services/protocol/names.ts';
import { readSecretFile } from '../../services/runtime/security.ts';
import { formatTopology, readTopology, type Topology } from '../../services/runtime/topology.ts';
import { kafkaUser, secretFile } from '../../services/runtime/topology-security.ts';
import type { Member } from './cluster.ts';
import type { SecuredStack } from './secured.ts';
import type { ServiceProcess } from './services.ts';
import { uniqueName } from './stack.ts';

/** A secured stack with `regions` of PostgreSQL servers (ids vl-1, vl-2, wa-1, …), every node set up. */
export async function securedServers(
  name: string,
  regions: { name: string; nodes: number }[],
): Promise<SecuredStack> {
  const workDir = resolve(`.cache/test-stack-${name}`);
  await stopRecorded(workDir);
  rmSync(workDir, { recursive: true, force: true });
  const started = Date.now();
  const stack = await startStack(
    { regions, kafka: 'shared' },
    { workDir, basePort: 0, env: withoutExternal(process.env), security: 'secured' },
  );
  if (stack.security === undefined) throw new Error('the secured stack has no security');
  process.env.PGPASSWORD = readSecretFile(stack.security.adminPasswordFile, 'the superuser');
  await initStackNodes(stack, () => {});
  console.log(
    `[${name}] secured stack ready, nodes set up, in ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
  return stack as SecuredStack;
}

export interface SecuredCluster {
  members: Member[];
  topology: Topology;
  topologyFile: string;
  /** `brabant node init` of a member (roles, Kafka users and ACLs). */
  init(m: Member): Promise<void>;
  startServices(m: Member): Promise<{ capture: ServiceProcess; apply: ServiceProcess }>;
  /** `brabant ARGS --topology FILE` left running, as the operator (the superuser's PGPASSWORD). */
  spawnCli(args: string[]): {
    output(): string;
    waitFor(p: RegExp, ms: number): Promise<void>;
    done: Promise<number>;
  };
  cleanup(): Promise<void>;
}

/**
 * A cluster of one node per server in `servers` (stack server ids), in database `t_…` on each:
 * the members in `empty` get no schema and no set-up (nodes about to join), the others get
 * `schemaSql`. Nothing is set up yet: call init() for the members that should be.
 */
export async function securedCluster(
  stack: SecuredStack,
  servers: string[],
  schemaSql: string,
  empty: string[] = [],
): Promise<SecuredCluster> {
  const base = readTopology(stack.topologyFile!);
  const sec = base.security!;
  const tag = uniqueName('c').slice(2);
  const database = `t_${tag}`;
  const regionName = (r: string) => `${r.slice(0, 2)}_${tag}`;
  const regions = base.regions.map((r) => ({ ...r, name: regionName(r.name) }));
  for (const r of base.regions)
    copyFileSync(
      secretFile(sec, { kafka: sec.kafkaAdmin, region: r.name }),
      secretFile(sec, { kafka: sec.kafkaAdmin, region: regionName(r.name) }),
    );
  const members: Member[] = [];
  const drops: (() => Promise<void>)[] = [];
  for (const [place, id] of servers.entries()) {
    const srv: NodeInfo = stack.regions.flatMap((r) => r.nodes).find((n) => n.id === id)!;
    const admin = new pg.Client({ connectionString: srv.url });
    await admin.connect();
    await admin.query(`create database ${database}`).finally(() => admin.end());
    const url = withDatabase(srv.url, database);
    drops.push(async () => {
      const c = new pg.Client({ connectionString: srv.url });
      await c.connect();
      await c.query(`drop database if exists ${database} with (force)`).finally(() => c.end());
    });
    const client = new pg.Client({ connectionString: url });
    client.on('error', () => {});
    await client.connect();
    if (!empty.includes(id)) await client.query(schemaSql);
    const nodeId = `${id.replace('-', '')}${tag}`;
    // the node is on server `id`: its roles' passwords are that server's; its Kafka users are new
    for (const role of [sec.captureRole, sec.applyRole])
      copyFileSync(
        secretFile(sec, { postgres: role, node: id }),
        secretFile(sec, { postgres: role, node: nodeId }),
      );
    for (const service of ['capture', 'apply'] as const)
      writeFileSync(
        secretFile(sec, { kafka: kafkaUser(service, nodeId) }),
        `${randomBytes(24).toString('base64url')}\n`,
        {
          mode: 0o600,
        },
      );
    const region = regionName(srv.region);
    members.push({
      id: nodeId,
      region,
      place,
      node: srv,
      url,
      client,
      names: {
        nodeId,
        region,
        topic: `brabant.${region}.changes`,
        slot: slotName(nodeId),
        publication: publicationName(nodeId),
        dbUrl: url,
      },
    });
  }
  const dir = join(stack.workDir, 'clusters');
  mkdirSync(dir, { recursive: true });
  const topologyFile = join(dir, `${tag}.yaml`);
  writeFileSync(
    topologyFile,
    formatTopology(
      {
        ...base,
        regions,
        nodes: members.map((m) => ({ id: m.id, region: m.region, postgres: m.url })),
        routers: [],
      },
      `a test cluster on ${stack.workDir}`,
    ),
  );
  const topology = readTopology(topologyFile);
  const processes: ServiceProcess[] = [];
  const clis: ChildProcess[] = [];
  const logs = resolve('.cache/test-logs');
  const start = (kind: 'capture' | 'apply', m: Member) => {
    const p = launch(
      kind,
      m.id,
      { metricsPort: 0 },
      {
        logFile: join(logs, `${kind}-${m.id}-${Date.now()}.log`),
        args: ['--topology', topologyFile, '--node', m.id],
        env:
          kind === 'capture'
            ? { BRABANT_CAPTURE_BATCH_MS: '5', BRABANT_SEQUENCE_INDEX: String(m.place) }
            : { BRABANT_APPLY_RETRY_MAX_MS: '1000' },
      },
    );
    processes.push(p);
    return p;
  };
  return {
    members,
    topology,
    topologyFile,
    async init(m) {
      await initNode({ topology, nodeId: m.id, say: () => {} });
    },
    async startServices(m) {
      const capture = start('capture', m);
      const apply = start('apply', m);
      await Promise.all([
        capture.waitForLog(/capture session starting/),
        apply.waitForLog(/apply session running/),
      ]);
      return { capture, apply };
    },
    spawnCli(args) {
      const child = spawn(resolve('bin/brabant.mjs'), [...args, '--topology', topologyFile], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env },
      });
      clis.push(child);
      let out = '';
      child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
      child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
      const done = new Promise<number>((res) => child.once('exit', (code) => res(code ?? 1)));
      return {
        output: () => out,
        done,
        async waitFor(pattern, ms) {
          const deadline = Date.now() + ms;
          while (!pattern.test(out)) {
            if (child.exitCode !== null || Date.now() > deadline)
              throw new Error(
                `brabant ${args.join(' ')} did not print ${pattern} (exit ${child.exitCode}):\n${out}`,
              );
            await new Promise((r) => setTimeout(r, 100));
          }
        },
      };
    },
    async cleanup() {
      for (const p of processes) await p.kill('SIGKILL');
      for (const c of clis) if (c.exitCode === null) c.kill('SIGKILL');
      for (const m of members) await m.client.end().catch(() => {});
      for (const d of drops) await d().catch(() => {});
    },
  };
}
