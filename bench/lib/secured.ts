/**
 * The benchmark's secured stack (TLS and authentication on every link, as `brabant up` starts
 * it), beside the plaintext one in the same run: W2S measures the cost of security by running W2
 * on both. Its nodes are set up by `brabant node init`, and every capture and apply of a run on
 * it gets a topology file of its own (its node in a region of its own, so its change topic is
 * the run's), is set up by node init (roles, slot, origins, Kafka users and ACLs) and runs with
 * `--topology FILE --node ID` — as production does: its own role over verify-full TLS with
 * SCRAM, its own SCRAM Kafka user over SASL_SSL, the registry over mutual TLS.
 *
 * The benchmark's own connections (databases, writers, the visibility poller) are the stack's
 * superuser's, over verify-full TLS with its password: the writers pay for TLS as applications
 * would.
 */
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { KafkaConfig, SASLOptions } from 'kafkajs';
import { pgClientConfig } from '../../infra/postgres/postgres.ts';
import { type Stack, startStack, stopRecorded, withoutExternal } from '../../infra/stack.ts';
import { initNode } from '../../services/control/node-init.ts';
import { initStackNodes } from '../../services/control/stack-commands.ts';
import { readSecretFile } from '../../services/runtime/security.ts';
import { formatTopology, readTopology, type Topology } from '../../services/runtime/topology.ts';
import { kafkaUser, secretFile } from '../../services/runtime/topology-security.ts';
import type { Server } from './pg.ts';
import { say } from './util.ts';

export class SecuredBench {
  private constructor(
    readonly stack: Stack,
    private readonly base: Topology,
    private readonly adminPassword: string,
  ) {}

  /** Starts the secured stack in `workDir` (whatever an earlier run left there is cleared first). */
  static async start(workDir: string): Promise<SecuredBench> {
    await stopRecorded(workDir);
    rmSync(workDir, { recursive: true, force: true });
    say(`starting the secured stack in ${workDir}`);
    const stack = await startStack(
      {
        regions: [
          { name: 'vlaanderen', nodes: 1 },
          { name: 'wallonie', nodes: 1 },
        ],
        kafka: 'shared',
      },
      {
        workDir,
        basePort: 0,
        env: withoutExternal(process.env),
        security: 'secured',
        onProgress: (m) => say(`secured: ${m}`),
      },
    );
    try {
      if (stack.security === undefined || stack.topologyFile === undefined)
        throw new Error('the secured stack has no security section');
      await initStackNodes(stack, (m) => say(`secured: ${m}`));
      const admin = readSecretFile(stack.security.adminPasswordFile, 'the superuser');
      return new SecuredBench(stack, readTopology(stack.topologyFile), admin);
    } catch (err) {
      await stack.stop().catch(() => {});
      throw err;
    }
  }

  /** The two nodes as the benchmark's Servers: URLs with the superuser's password and verify-full TLS. */
  servers(): { a: Server; b: Server } {
    const [ra, rb] = this.stack.regions;
    const server = (n: { id: string; url: string; port: number }): Server => ({
      id: n.id,
      url: pgClientConfig(n.url, this.adminPassword).connectionString!,
      port: n.port,
      logFile: join(this.stack.workDir, 'logs', `${n.id}.log`),
    });
    return { a: server(ra!.nodes[0]!), b: server(rb!.nodes[0]!) };
  }

  get brokers(): string {
    return this.base.regions[0]!.kafka.join(',');
  }

  /**
   * Node `nodeId` of a run, in database `database` of the stack's node `on`, in region
   * `bench_<nodeId>` (its change topic `brabant.bench_<nodeId>.changes`, as brabantNames says),
   * added to the run's topology `runFile` (with the run's earlier nodes, so an apply sees their
   * topics), set up by node init; returns the service arguments.
   */
  async addNode(runFile: string, on: string, database: string, nodeId: string): Promise<string[]> {
    const sec = this.base.security!;
    const home = this.base.regions.find((r) =>
      this.base.nodes.some((n) => n.id === on && n.region === r.name),
    );
    const baseNode = this.base.nodes.find((n) => n.id === on);
    if (home === undefined || baseNode === undefined) throw new Error(`no node ${on} on the secured stack`);
    const earlier: Omit<Topology, 'file'> = existsSync(runFile)
      ? readTopology(runFile)
      : { ...this.base, regions: [], nodes: [], routers: [] };
    const region = { ...home, name: `bench_${nodeId}` };
    const u = new URL(baseNode.postgres);
    u.pathname = `/${database}`;
    // its roles are the server's (one role per cluster): their passwords (and the superuser's,
    // for node init) are its node's; its Kafka users are new, the cluster's admin the same
    for (const role of [sec.captureRole, sec.applyRole, 'postgres'])
      copyFileSync(
        secretFile(sec, { postgres: role, node: on }),
        secretFile(sec, { postgres: role, node: nodeId }),
      );
    for (const service of ['capture', 'apply'] as const)
      writeFileSync(
        secretFile(sec, { kafka: kafkaUser(service, nodeId) }),
        `${randomBytes(24).toString('base64url')}\n`,
        { mode: 0o600 },
      );
    copyFileSync(
      secretFile(sec, { kafka: sec.kafkaAdmin, region: home.name }),
      secretFile(sec, { kafka: sec.kafkaAdmin, region: region.name }),
    );
    const topology: Omit<Topology, 'file'> = {
      ...earlier,
      regions: [...earlier.regions, region],
      nodes: [...earlier.nodes, { id: nodeId, region: region.name, postgres: u.toString() }],
      routers: [],
    };
    mkdirSync(join(runFile, '..'), { recursive: true });
    writeFileSync(runFile, formatTopology(topology, `a benchmark run on ${this.stack.workDir}`));
    // the new node only: its apply's ACLs cover the earlier nodes' topics; theirs need nothing of it
    await initNode({ topology: readTopology(runFile), nodeId, say: () => {} });
    return ['--topology', runFile, '--node', nodeId];
  }

  /** The Kafka admin's client settings (SASL_SSL), for deleting a run's topics and groups. */
  kafkaAdmin(): Pick<KafkaConfig, 'ssl' | 'sasl'> {
    const sec = this.base.security!;
    const sasl: SASLOptions = {
      mechanism: sec.kafkaSasl === 'scram-sha-256' ? 'scram-sha-256' : 'scram-sha-512',
      username: sec.kafkaAdmin,
      password: readSecretFile(
        secretFile(sec, { kafka: sec.kafkaAdmin, region: this.base.regions[0]!.name }),
        'the Kafka admin',
      ),
    };
    return { ssl: { ca: [readFileSync(sec.ca, 'utf8')] }, sasl };
  }

  async stop(): Promise<void> {
    await this.stack.stop();
  }
}
