/**
 * The cluster as `brabant node join` and `part` see it (I/O helpers): the nodes of the topology
 * file, a connection to one for the length of a step (with a message that names it when it
 * cannot be reached), the Kafka cluster of a region, where a node's events are, the origins'
 * progress on a node, and the region's router.
 */
import type { Admin, Kafka } from 'kafkajs';
import pg from 'pg';
import { type Lsn, parseLsn, type StreamPosition } from '../../protocol/lsn.ts';
import { originName } from '../../protocol/names.ts';
import { partitionOf, readLastPosition } from '../../protocol/read-back.ts';
import { changeTopic } from '../../protocol/topics.ts';
import { BrabantError } from '../../runtime/errors.ts';
import { createKafka } from '../../runtime/kafka.ts';
import { createLogger } from '../../runtime/log.ts';
import { redactUrl } from '../../runtime/redact.ts';
import { nodeOf, regionOf, type Topology, type TopologyNode } from '../../runtime/topology.ts';
import { commandKafkaAuth } from '../command-access.ts';
import { routerUrl } from '../router-commands.ts';

/** kafkajs and the read-back log here; the command's own output is its progress lines. */
export const quietLog = createLogger('brabant', process.env.BRABANT_LOG_LEVEL ?? 'error');

/** A connection to a node, or SOURCE_UNAVAILABLE naming it and saying `doing`. */
export async function connectNode(n: TopologyNode, doing: string): Promise<pg.Client> {
  const db = new pg.Client({ connectionString: n.postgres, application_name: 'brabant-node-command' });
  db.on('error', () => {});
  try {
    await db.connect();
    return db;
  } catch (err) {
    await db.end().catch(() => {});
    throw new BrabantError(
      'SOURCE_UNAVAILABLE',
      `node ${n.id} (${redactUrl(n.postgres)}) cannot be reached while ${doing}: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

/** The Kafka cluster of a node's region, with an admin client, for the length of `fn`. */
export async function withRegionKafka<T>(
  t: Topology,
  node: TopologyNode,
  fn: (kafka: Kafka, admin: Admin) => Promise<T>,
): Promise<T> {
  const r = regionOf(t, node.region);
  const kafka = createKafka({
    brokers: r.kafka,
    clientId: 'brabant-node-command',
    log: quietLog,
    ...commandKafkaAuth(t, r.name),
  });
  const admin = kafka.admin();
  await admin.connect();
  try {
    return await fn(kafka, admin);
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

/** The last event of `node` in its region's change topic, if any. */
export async function lastEventOf(t: Topology, node: TopologyNode): Promise<StreamPosition | undefined> {
  return withRegionKafka(t, node, async (kafka, admin) => {
    const topic = changeTopic(node.region);
    if (!(await admin.listTopics()).includes(topic)) return undefined;
    const partitions = (await admin.fetchTopicOffsets(topic)).length;
    return readLastPosition(kafka, admin, {
      topic,
      partition: partitionOf(node.id, topic, partitions),
      nodeId: node.id,
      timeoutMs: 60_000,
      log: quietLog,
    });
  });
}

/** What `db` has applied of `source` (its origin's progress, flushed), or undefined. */
export async function appliedOf(db: pg.Client, source: string): Promise<Lsn | undefined> {
  const r = await db.query<{ p: string | null }>(
    'select pg_replication_origin_progress(roname, true)::text as p from pg_replication_origin where roname = $1',
    [originName(source)],
  );
  const p = r.rows[0]?.p;
  return p ? parseLsn(p) : undefined;
}

/** A transactional mark in a node's stream now; its LSN (the commit that carries it is later). */
export async function markStream(db: pg.Client, prefix: string, content: string): Promise<Lsn> {
  const r = await db.query<{ l: string }>('select pg_logical_emit_message(true, $1, $2)::text as l', [
    prefix,
    content,
  ]);
  return parseLsn(r.rows[0]!.l);
}

/** The router of a node's region as the topology declares it, if it does. */
export function regionRouter(t: Topology, node: TopologyNode): string | undefined {
  if (!t.routers.some((r) => r.region === node.region)) return undefined;
  return routerUrl({ region: node.region, topology: t }, {});
}

/** Calls a router's control API; its JSON answer, or the router's error as a BrabantError. */
export async function callRouter(url: string, method: 'GET' | 'POST' | 'DELETE'): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(url, { method, signal: AbortSignal.timeout(30_000) });
  } catch (err) {
    throw new BrabantError(
      'COMPONENT_START_FAILED',
      `the router at ${new URL(url).origin} does not answer: ${(err as Error).message}`,
    );
  }
  const body = (await res.json()) as { error?: string; code?: string };
  if (!res.ok) {
    const code = body.code === 'NODE_IS_LEADER' ? 'NODE_IS_LEADER' : 'CONFIG_INVALID';
    throw new BrabantError(
      code,
      (body.error ?? `the router answered ${res.status}`).replace(/^[A-Z_]+: /, ''),
    );
  }
  return body;
}

/** The topology's node `id`, and every other node. */
export function members(t: Topology, id: string): { node: TopologyNode; others: TopologyNode[] } {
  return { node: nodeOf(t, id), others: t.nodes.filter((n) => n.id !== id) };
}
