/** What every scenario gets: the stack, the options, and helpers to run Brabant and clean up after a run. */
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import type { Stack } from '../../infra/stack.ts';
import type { DebeziumInstall } from './debezium.ts';
import { adminQuery, type Db, type Server } from './pg.ts';
import type { SecuredBench } from './secured.ts';
import { metricSum, type Service, startService } from './services.ts';
import { say, tag } from './util.ts';

export type System = 'brabant' | 'native' | 'pglogical' | 'debezium' | 'pgdump';

export interface BenchOptions {
  runs: number;
  w1Rows: number;
  w1TxRows: number;
  w2Seconds: number;
  w2Clients: number;
  /** Total insert rate of W2's clients (rows/s); 0 = as fast as they go. */
  w2Rate: number;
  w3Rows: number;
  w4Seconds: number;
  w4Keys: number;
  /** Updating clients per region in W4. */
  w4Writers: number;
  /** W4 with qty a `delta` column for Brabant (docs/policies.md). */
  w4Delta: boolean;
  /** Seconds of W7's load before and after its schema change. */
  w7Seconds: number;
  w5Rows: number;
  /** Clients writing through W6's router. */
  w6Clients: number;
  /** Total rate of W6's clients (tx/s), paced; 0 = each waits W6_THINK_MS between transactions. */
  w6Rate: number;
  /** Rows the peer holds before W8's node joins from it. */
  w8Rows: number;
  /** How long W9 cuts the link between the regions. */
  w9CutSeconds: number;
  /** W10's pgbench run length, per phase (without and with Brabant). */
  w10Seconds: number;
  /** W10 with pgbench's balances declared delta columns. */
  w10Delta: boolean;
  pollMs: number;
  systems: Set<System>;
  profile: boolean;
  /** A Brabant wait fails once nothing moved for this long (baselines: at least 10 minutes). */
  stallSeconds: number;
  /** Extra environment of every capture and apply (e.g. BRABANT_CAPTURE_BATCH_BYTES), shown in the report. */
  serviceEnv: Record<string, string>;
  /** Settings of W5's Debezium connector over the defaults (--debezium-set), shown in the report. */
  debeziumSettings: Record<string, string>;
  /** Folder of this run's logs, profiles and JSON. */
  outDir: string;
}

export interface PglogicalNodes {
  a: Server;
  b: Server;
  version: string;
}

export interface Ctx {
  stack: Stack;
  opts: BenchOptions;
  a: Server;
  b: Server;
  regionA: string;
  regionB: string;
  brokers: string;
  registryUrl: string;
  /** The pglogical pair, or why there is none. */
  pglogical: PglogicalNodes | { unavailable: string };
  /** Kafka Connect + the Debezium PostgreSQL connector (W5's baseline), or why there is none. */
  debezium: DebeziumInstall | { unavailable: string };
  /** Set when this context is the secured stack's (W2S): services run from a topology of the run's. */
  secured?: SecuredBench;
}

/** Names of one Brabant node in one run: unique node id, topic, slot, publication. */
export interface BrabantNames {
  nodeId: string;
  region: string;
  topic: string;
  slot: string;
  publication: string;
}

export function brabantNames(prefix: string, region: string): BrabantNames {
  const id = `${prefix}${tag()}`;
  return {
    nodeId: id,
    region,
    topic: `brabant.bench_${id}.changes`,
    slot: `bench_slot_${id}`,
    publication: `bench_pub_${id}`,
  };
}

/** Capture and apply of one run, and their cleanup (slots, origins, topics). */
export class BrabantRun {
  readonly services: Service[] = [];
  private readonly names: BrabantNames[] = [];
  private readonly applyIds: string[] = [];
  private readonly servers: Server[] = [];

  constructor(
    private readonly ctx: Ctx,
    readonly label: string,
  ) {}

  private logDir(): string {
    return join(this.ctx.opts.outDir, 'logs', this.label);
  }

  /**
   * On the secured stack: node `nodeId` set up by node init in `db`'s database, and the service's
   * arguments (--topology, --node) with no other option (it reads all from the topology).
   */
  private async securedArgs(db: Db, nodeId: string): Promise<string[] | undefined> {
    const s = this.ctx.secured;
    if (s === undefined) return undefined;
    return s.addNode(join(this.logDir(), 'topology.yaml'), db.server.id, db.name, nodeId);
  }

  private profDir(): string | undefined {
    return this.ctx.opts.profile ? join(this.ctx.opts.outDir, 'profiles', this.label) : undefined;
  }

  async capture(db: Db, names: BrabantNames, env: Record<string, string> = {}): Promise<Service> {
    if (!this.names.includes(names)) this.names.push(names);
    if (!this.servers.includes(db.server)) this.servers.push(db.server);
    const prof = this.profDir();
    const args = await this.securedArgs(db, names.nodeId);
    const svc = await startService(
      'capture',
      names.nodeId,
      args !== undefined
        ? {}
        : {
            nodeId: names.nodeId,
            region: names.region,
            pgUrl: db.url,
            kafkaBrokers: this.ctx.brokers.split(','),
            registryUrl: this.ctx.registryUrl,
            topic: names.topic,
            slot: names.slot,
            publication: names.publication,
          },
      { ...this.ctx.opts.serviceEnv, ...env },
      { logDir: this.logDir(), ...(prof ? { cpuProfDir: prof } : {}), ...(args ? { args } : {}) },
    );
    this.services.push(svc);
    return svc;
  }

  /**
   * Apply on `db`'s node. `nodeId` is that node's id, shared with its capture (apply skips the
   * events of its own node); a node without a capture gets a fresh id.
   */
  async apply(
    db: Db,
    topics: string[],
    nodeId = `ap${tag()}`,
    env: Record<string, string> = {},
  ): Promise<Service> {
    this.applyIds.push(nodeId);
    if (!this.servers.includes(db.server)) this.servers.push(db.server);
    const prof = this.profDir();
    const args = await this.securedArgs(db, nodeId);
    const svc = await startService(
      'apply',
      nodeId,
      args !== undefined
        ? {}
        : {
            nodeId,
            pgUrl: db.url,
            kafkaBrokers: this.ctx.brokers.split(','),
            registryUrl: this.ctx.registryUrl,
            topics,
          },
      { ...this.ctx.opts.serviceEnv, ...env },
      { logDir: this.logDir(), ...(prof ? { cpuProfDir: prof } : {}), ...(args ? { args } : {}) },
    );
    this.services.push(svc);
    return svc;
  }

  /** A figure that grows while Brabant works: row changes captured and rows applied. */
  async progress(): Promise<number> {
    let sum = 0;
    for (const s of this.services) {
      if (!s.running) continue;
      const text = await s.metrics().catch(() => '');
      // Row changes only: heartbeats move even when nothing else does.
      for (const kind of ['insert', 'update', 'delete', 'truncate'])
        sum += metricSum(text, 'brabant_capture_events_total', { kind });
      sum += metricSum(text, 'brabant_apply_rows_total');
    }
    return sum;
  }

  /** Why a service of this run died, if one did (so waits fail fast instead of timing out). */
  deathReason(): string | undefined {
    for (const s of this.services) {
      const r = s.deathReason();
      if (r !== undefined) return r;
    }
    return undefined;
  }

  async stopServices(): Promise<void> {
    await Promise.all(this.services.map((s) => s.stop()));
  }

  /** Stops the services, drops the replication origins and deletes the topics of this run. */
  async cleanup(): Promise<void> {
    await this.stopServices();
    for (const server of this.servers) {
      for (const n of this.names) {
        await adminQuery(
          server,
          'select pg_replication_origin_drop(roname) from pg_replication_origin where roname = $1',
          [`brabant_${n.nodeId}`],
        ).catch(() => {});
      }
    }
    const topics = this.names.map((n) => n.topic);
    if (topics.length > 0) {
      const admin = new Kafka({
        clientId: 'brabant-bench',
        brokers: this.ctx.brokers.split(','),
        logLevel: logLevel.NOTHING,
        ...this.ctx.secured?.kafkaAdmin(),
      }).admin();
      try {
        await admin.connect();
        await admin.deleteTopics({ topics, timeout: 10_000 });
        const groups = this.applyIds.map((id) => `brabant-apply-${id}`);
        await admin.deleteGroups(groups).catch(() => {});
      } catch (err) {
        say(`could not delete topics ${topics.join(', ')}: ${(err as Error).message}`);
      } finally {
        await admin.disconnect().catch(() => {});
      }
    }
  }
}
