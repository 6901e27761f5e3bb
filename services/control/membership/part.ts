/**
 * `brabant node part NODE`: a node leaves the cluster while the others go on (I/O):
 *
 * 1. **Refusals.** Its region's router must not point at it (NODE_IS_LEADER, with the
 *    switchover to run, or — the region's last node — the join to run first). Its capture and
 *    apply must have stopped, and everything it committed must be in Kafka: its slot holds no
 *    transaction of its own not yet sent (NODE_STILL_RUNNING; `--force` parts it without them,
 *    lost to the others).
 * 2. **The others apply all of it**: part waits until every other node's origin of it has passed
 *    its last event in Kafka (their applies keep running; nothing pauses).
 * 3. **The others let go**: each records it in brabant.parted_nodes (its events up to there are
 *    skipped from now on, also after a restart) and removes it from brabant.peers, so tombstone
 *    pruning no longer waits for it; its origin there is dropped (by apply, if its session holds
 *    it). Its consumer groups go, its slot and publications on its own database, and its router
 *    entry; its database records that it left (its services refuse to start).
 */

import { formatLsn, lsn } from '../../protocol/lsn.ts';
import { applyGroupId, originName, publicationName, slotName } from '../../protocol/names.ts';
import { BrabantError, describeError } from '../../runtime/errors.ts';
import { regionOf, type Topology, type TopologyNode } from '../../runtime/topology.ts';
import { say } from '../nodes.ts';
import {
  appliedOf,
  callRouter,
  connectNode,
  lastEventOf,
  members,
  regionRouter,
  withRegionKafka,
} from './cluster-view.ts';
import { unsentTransactions } from './unsent.ts';

export interface PartOptions {
  topology: Topology;
  node: string;
  force: boolean;
  timeoutSeconds: number;
}

export async function part(o: PartOptions): Promise<number> {
  const t = o.topology;
  const { node, others } = members(t, o.node);
  const router = regionRouter(t, node);
  if (router !== undefined) await refuseLeader(router, node, others);

  const db = await connectNode(node, `parting ${node.id}`).catch((err) => {
    if (!o.force) throw err;
    say(`${node.id} cannot be reached (${describeError(err)}); --force: parting it without it`);
    return undefined;
  });
  try {
    if (db !== undefined) {
      const running = await db.query(
        `select 1 from pg_replication_slots where slot_name = $1 and active
         union all
         select 1 from pg_stat_activity where datname = current_database()
            and (application_name = $2 or application_name like $2 || '-from-%')`,
        [slotName(node.id), `brabant-apply-${node.id}`],
      );
      if ((running.rowCount ?? 0) > 0)
        throw new BrabantError(
          'NODE_STILL_RUNNING',
          `${node.id}'s capture or apply is running: stop them first (brabant stop, or your supervisor), then part it`,
        );
      const unsent = await unsentTransactions(db, slotName(node.id), publicationName(node.id));
      if (unsent > 0 && !o.force)
        throw new BrabantError(
          'NODE_STILL_RUNNING',
          `${node.id} committed ${unsent} transaction(s) its capture has not put in Kafka yet: start its capture until ` +
            `they are sent (its slot catches up), stop it, then part it; or part with --force (they are lost to the others)`,
        );
    }
    const last = (await lastEventOf(t, node))?.commitLsn ?? lsn(0n);
    say(`${node.id}'s last change in Kafka: ${formatLsn(last)}; waiting until every other node applied it`);
    const pending: string[] = [];
    for (const other of others) {
      try {
        await letGo(other, node, last, o.timeoutSeconds);
      } catch (err) {
        pending.push(other.id);
        say(`${other.id}: ${describeError(err)}`);
      }
    }
    if (db !== undefined) {
      await db.query(
        `insert into brabant.parted_nodes (node, through_lsn) values ($1, $2::pg_lsn) on conflict (node) do nothing`,
        [node.id, formatLsn(last)],
      );
      await db.query(
        'select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = $1 and not active',
        [slotName(node.id)],
      );
      for (const p of [publicationName(node.id), `${publicationName(node.id)}_inserts`])
        await db.query(`drop publication if exists "${p}"`);
      say(`${node.id}'s slot and publications dropped; its data stays, and its services refuse to start`);
    }
    const clusters = new Map<string, TopologyNode>();
    for (const n of t.nodes) clusters.set([...regionOf(t, n.region).kafka].sort().join(','), n);
    for (const n of clusters.values())
      await withRegionKafka(t, n, (_k, admin) => admin.deleteGroups([applyGroupId(node.id)])).catch(() => {
        /* no group on that cluster */
      });
    if (router !== undefined)
      await callRouter(`${router}/nodes?id=${encodeURIComponent(node.id)}`, 'DELETE').catch((err) =>
        say(`the router of ${node.region} still lists ${node.id} (${describeError(err)})`),
      );
    if (pending.length > 0) {
      say(
        `${pending.join(', ')} could not let go of ${node.id} yet: run brabant node part ${node.id} again once they answer`,
      );
      return 1;
    }
    say(`${node.id} parted: remove it from the topology file ${t.file}`);
    return 0;
  } finally {
    await db?.end().catch(() => {});
  }
}

/** Refuses to part the node its region's router points at. */
async function refuseLeader(router: string, node: TopologyNode, others: TopologyNode[]): Promise<void> {
  const status = (await callRouter(`${router}/status`, 'GET')) as {
    leader?: string;
    nodes: { id: string; region: string; healthy?: boolean }[];
  };
  if (status.leader !== node.id) return;
  const other =
    status.nodes.find((n) => n.id !== node.id && n.region === node.region && n.healthy) ??
    others.find((n) => n.region === node.region);
  throw new BrabantError(
    'NODE_IS_LEADER',
    `the router of ${node.region} points at ${node.id}: ${
      other
        ? `move its writes first (brabant switchover --region ${node.region} --to ${other.id}), then part it`
        : `it is the last node of ${node.region}: join another node into ${node.region} first ` +
          `(brabant node join NEW --from ${node.id}), switch the router over to it, then part ${node.id}`
    }`,
  );
}

/** One other node applies the parting node's stream through `last`, then lets go of it. */
async function letGo(
  other: TopologyNode,
  node: TopologyNode,
  last: bigint,
  timeoutSeconds: number,
): Promise<void> {
  const db = await connectNode(other, `letting go of ${node.id}`);
  try {
    const deadline = Date.now() + timeoutSeconds * 1000;
    for (;;) {
      const at = await appliedOf(db, node.id);
      if (last === 0n || (at !== undefined && at >= last)) break;
      if (Date.now() > deadline)
        throw new BrabantError(
          'TIMEOUT',
          `has applied ${node.id} only to ${at === undefined ? 'nothing' : formatLsn(at)} of ${formatLsn(lsn(last))} after ${timeoutSeconds} s: is its apply running?`,
        );
      await new Promise((r) => setTimeout(r, 250));
    }
    await db.query('begin');
    await db.query(
      `insert into brabant.parted_nodes (node, through_lsn) values ($1, $2::pg_lsn)
       on conflict (node) do update set through_lsn = greatest(brabant.parted_nodes.through_lsn, excluded.through_lsn)`,
      [node.id, formatLsn(lsn(last))],
    );
    await db.query('delete from brabant.peers where node = $1', [node.id]);
    await db.query('commit');
    const dropped = await db
      .query('select pg_replication_origin_drop(roname) from pg_replication_origin where roname = $1', [
        originName(node.id),
      ])
      .then(() => true)
      .catch(() => false);
    say(
      `${other.id} applied all of ${node.id} and let go of it${dropped ? '' : ' (its apply drops the origin at its next tick)'}`,
    );
  } finally {
    await db.end().catch(() => {});
  }
}
