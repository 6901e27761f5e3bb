/**
 * Two nodes replicating each other for one test: a fresh database on vl-1 and on wa-1 with the
 * same schema, unique node ids, topics, slots and consumer groups, and helpers to start and
 * kill capture and apply for each side.
 */
import pg from 'pg';
import type { NodeInfo, StackInfo } from '../../infra/stack.ts';
import {
  type CaptureNames,
  captureNames,
  type ServiceProcess,
  startCapture,
  startService,
} from './services.ts';
import { createDatabase, node, regionOf, stack, uniqueName } from './stack.ts';

export interface Side {
  node: NodeInfo;
  names: CaptureNames;
  client: pg.Client;
  url: string;
}

export interface Pair {
  vl: Side;
  wa: Side;
  sides: Side[];
  /** `root`: the checkout to run the service from (another build), this one by default. */
  capture(side: Side, env?: Record<string, string>, root?: string): ServiceProcess;
  apply(side: Side, env?: Record<string, string>, root?: string): ServiceProcess;
  /** Kills every process started and drops the databases. */
  cleanup(): Promise<void>;
}

/**
 * On the test stack (one shared cluster), or `on`: a stack of the test's own — with a cluster per
 * region each apply reads its own region's topics locally and the other region's from that
 * region's cluster across the link (kafkaFromPeers), as a topology with direct peer streams says.
 */
export async function replicationPair(schemaSql: string, on: StackInfo = stack()): Promise<Pair> {
  const sides: Side[] = [];
  const drops: (() => Promise<void>)[] = [];
  // the same database name on both nodes (other servers), as in production
  const name = uniqueName('t');
  for (const id of ['vl-1', 'wa-1']) {
    const n = node(id, on);
    const db = await createDatabase(n, 't', name);
    drops.push(db.drop);
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    await client.query(schemaSql);
    sides.push({ node: n, names: captureNames(n, db.url), client, url: db.url });
  }
  const processes: ServiceProcess[] = [];
  /** Where `side`'s apply reads each side's topic: on its own cluster, or across the link. */
  const readFrom = (side: Side) => {
    const own = regionOf(on, side.node.region);
    const local: string[] = [];
    const sources: string[] = [];
    for (const s of sides) {
      const r = regionOf(on, s.node.region);
      if (r.kafkaBrokers.join() === own.kafkaBrokers.join()) local.push(s.names.topic);
      else sources.push(`${s.names.topic}=${r.kafkaFromPeers.join('|')}`);
    }
    return {
      BRABANT_KAFKA_BROKERS: own.kafkaBrokers.join(','),
      BRABANT_REGISTRY_URL: own.registryUrl,
      BRABANT_APPLY_TOPICS: local.join(','),
      ...(sources.length > 0 ? { BRABANT_APPLY_SOURCES: sources.join(',') } : {}),
    };
  };
  return {
    vl: sides[0]!,
    wa: sides[1]!,
    sides,
    capture(side, env = {}, root = '.') {
      // each node its own place for sequences, as `brabant node init` gives it
      const place = String(sides.indexOf(side));
      const p = startCapture(
        side.names,
        { BRABANT_CAPTURE_BATCH_MS: '5', BRABANT_SEQUENCE_INDEX: place, ...env },
        root,
        on,
      );
      processes.push(p);
      return p;
    },
    apply(side, env = {}, root = '.') {
      const p = startService(
        'apply',
        side.names.nodeId,
        {
          BRABANT_NODE_ID: side.names.nodeId,
          BRABANT_PG_URL: side.url,
          ...readFrom(side),
          BRABANT_APPLY_RETRY_MAX_MS: '1000',
          ...env,
        },
        root,
      );
      processes.push(p);
      return p;
    },
    async cleanup() {
      for (const p of processes) await p.kill('SIGKILL');
      for (const s of sides) await s.client.end().catch(() => {});
      for (const d of drops) await d().catch(() => {});
    },
  };
}

/** Rows of a table as sorted JSON lines (for comparing nodes). */
export async function tableRows(client: pg.Client, table: string): Promise<string[]> {
  const res = await client.query(`select to_jsonb(t) as r from ${table} t order by to_jsonb(t)::text`);
  return res.rows.map((r) => JSON.stringify(r.r));
}

/** Waits until every side holds the same rows of `table` and `check(rows)` holds, or fails with both sides' rows. */
export async function waitConverged(
  sides: Side[],
  table: string,
  check: (rows: string[]) => boolean = () => true,
  timeoutMs = 60_000,
): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  let last: string[][] = [];
  for (;;) {
    // a table that does not exist yet on a node (created by replicated DDL) holds nothing yet
    last = await Promise.all(
      sides.map((s) =>
        tableRows(s.client, table).catch((err: { code?: string }) => {
          if (err.code === '42P01') return ['(no such table)'];
          throw err;
        }),
      ),
    );
    const same = last.every((rows) => JSON.stringify(rows) === JSON.stringify(last[0]));
    if (same && check(last[0]!)) return last[0]!;
    if (Date.now() > deadline) {
      throw new Error(
        `${table} did not converge within ${timeoutMs} ms:\n${sides.map((s, i) => `${s.names.nodeId}: ${last[i]!.length} rows ${last[i]!.slice(0, 5).join(' ')}`).join('\n')}`,
      );
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Terminates the capture's walsender and drops its slot (capture reconnects at once: retried in the gap). */
export async function dropSlot(s: Side): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    await s.client.query(
      'select pg_terminate_backend(active_pid) from pg_replication_slots where slot_name = $1',
      [s.names.slot],
    );
    try {
      await s.client.query('select pg_drop_replication_slot($1)', [s.names.slot]);
      return;
    } catch (err) {
      if (attempt > 50) throw err;
    }
  }
}
