/**
 * `brabant node join NODE --from PEER`: brings a new, empty node into a running cluster while
 * every node keeps writing (the steps; the decisions are join-plan.ts):
 *
 * 1. **Checks**: the node is empty (NODE_NOT_EMPTY), its id is not a member's already
 *    (NODE_ID_IN_USE: the peer applies it, or Kafka holds its events; `--rebuild` says the node's
 *    data was lost and it comes back under its id), the peer answers.
 * 2. **One snapshot of the peer** (capture/snapshot.ts): a temporary slot's exported snapshot
 *    and, fenced with it, the peer's origins' progress in that snapshot.
 * 3. **Schema** from the peer in that snapshot (schema-copy.ts: pre-data now, post-data after
 *    the rows), **rows** with their versions (apply/snapshot-copy.ts), with progress every second.
 * 4. **Positions**, in one transaction with the phase `copied`: the node's origin of the peer
 *    at the slot's consistent point (less one: a commit there is not in the snapshot), of every
 *    other node at the peer's progress of it, of the node itself (a rebuild) at the peer's
 *    progress of it with its own events up to their last in Kafka applied like a peer's
 *    (apply/own-stream.ts); its peers listed, so tombstone pruning waits for each from the start.
 *    Its consumer group has no offsets: apply reads every change topic from its start and skips
 *    what the positions say it holds.
 * 5. **Catch-up**: once its capture and apply run, the node applies every stream from Kafka; the
 *    join marks each other node's stream and waits until the node applied past every mark, and
 *    marks again until a round takes at most CAUGHT_UP_ROUND_MS (what was written meanwhile).
 * 6. **Router**: only then is it added to its region's router (it takes writes when a
 *    switchover or failover chooses it).
 *
 * A copy that fails (the peer unreachable, a restore error) is undone at once; one that was
 * interrupted is undone and begun again by the next `brabant node join`; `--undo` undoes it.
 */
import type pg from 'pg';
import { partedNodes } from '../../apply/own-stream.ts';
import { CopyWriter } from '../../apply/snapshot-copy.ts';
import { serverProblems } from '../../capture/catalog.ts';
import { type NodeSnapshot, SnapshotReader, takeSnapshot } from '../../capture/snapshot.ts';
import { formatLsn, type Lsn, lsn } from '../../protocol/lsn.ts';
import { applyGroupId, originName, slotName } from '../../protocol/names.ts';
import { ensureNodeObjects } from '../../protocol/node-schema.ts';
import { BrabantError, describeError } from '../../runtime/errors.ts';
import { regionOf, type Topology, type TopologyNode } from '../../runtime/topology.ts';
import { say } from '../nodes.ts';
import {
  appliedOf,
  callRouter,
  connectNode,
  lastEventOf,
  markStream,
  members,
  regionRouter,
  withRegionKafka,
} from './cluster-view.ts';
import { type CopyProgress, decideJoin, progressLine } from './join-plan.ts';
import {
  beginJoinState,
  checkEmpty,
  noteCopiedRows,
  readJoinState,
  setJoinPhase,
  undoJoin,
} from './join-state.ts';
import { dumpSchema } from './schema-copy.ts';

export interface JoinOptions {
  topology: Topology;
  node: string;
  from: string | undefined;
  rebuild: boolean;
  undo: boolean;
  /** How long to wait for the node to catch up once copied. */
  timeoutSeconds: number;
}

const BATCH_ROWS = 10_000;

export async function join(o: JoinOptions): Promise<number> {
  const t = o.topology;
  const { node, others } = members(t, o.node);
  const target = await connectNode(node, `joining ${node.id}`);
  try {
    if (o.undo) {
      await undo(t, node, target);
      say(`join of ${node.id} undone: its database is empty again`);
      return 0;
    }
    if (o.from === undefined)
      throw new BrabantError('CONFIG_INVALID', 'say which node to join from: --from PEER');
    const peer = others.find((x) => x.id === o.from);
    if (peer === undefined)
      throw new BrabantError(
        'CONFIG_INVALID',
        `--from ${o.from}: the topology ${t.file} has no other node ${o.from} (it has ${others.map((x) => x.id).join(', ')})`,
      );
    const decision = decideJoin(await readJoinState(target), peer.id);
    switch (decision.kind) {
      case 'joined':
        say(decision.why);
        return 0;
      case 'catch-up':
        say(decision.why);
        break;
      case 'restart':
        say(decision.why);
        await undo(t, node, target);
        await copyFrom(t, node, peer, target, o.rebuild);
        break;
      case 'fresh':
        await copyFrom(t, node, peer, target, o.rebuild);
        break;
      default:
        return decision satisfies never;
    }
    await catchUp(t, node, target, o.timeoutSeconds);
    await addToRouter(t, node);
    await setJoinPhase(target, 'done');
    say(`${node.id} joined: it applies every node's changes and its own are captured`);
    return 0;
  } finally {
    await target.end().catch(() => {});
  }
}

async function undo(t: Topology, node: TopologyNode, db: pg.Client): Promise<void> {
  await withRegionKafka(t, node, (_kafka, admin) =>
    undoJoin(db, { node: node.id, cluster: t.nodes.map((n) => n.id), admins: [admin] }),
  );
}

/** Steps 1 to 4: checks, snapshot, schema, rows, positions; undone at once if anything fails. */
async function copyFrom(
  t: Topology,
  node: TopologyNode,
  peer: TopologyNode,
  target: pg.Client,
  rebuild: boolean,
): Promise<void> {
  await checkEmpty(target, node.id);
  const problems = await serverProblems(target);
  if (problems.length > 0)
    throw new BrabantError('CONFIG_INVALID', `node ${node.id} cannot join:\n  - ${problems.join('\n  - ')}`);
  const source = await connectNode(peer, `joining ${node.id} from it`);
  let ownLast: Lsn | undefined;
  try {
    const use = await idInUse(t, node, source);
    if (use !== undefined && !rebuild)
      throw new BrabantError(
        'NODE_ID_IN_USE',
        `node id ${node.id} is in use: ${use}. Give the new node an id of its own in the topology; if ${node.id}'s data ` +
          `was lost and it comes back under its id, add --rebuild`,
      );
    if (rebuild && use === undefined) say(`nothing of ${node.id} is in the cluster yet: a plain join`);
    ownLast = (await lastEventOf(t, node))?.commitLsn;
  } finally {
    await source.end().catch(() => {});
  }
  await ensureNodeObjects(target);
  await beginJoinState(target, node.id, peer.id, rebuild);
  say(`taking a snapshot of ${peer.id}`);
  let snapshot: NodeSnapshot | undefined;
  try {
    snapshot = await takeSnapshot(peer.postgres, `brabant_join_${slotName(node.id).slice(8)}`, {
      onWait: (why) => say(why),
    });
    say(
      `snapshot of ${peer.id} at ${formatLsn(snapshot.consistentPoint)} (its apply held ${snapshot.fencedMs} ms for it); ` +
        `${peer.id} has applied ${[...snapshot.applied].map(([n, l]) => `${n} to ${formatLsn(l)}`).join(', ') || 'nothing of others'}`,
    );
    const dump = await dumpSchema(peer.postgres, snapshot.name);
    let copied: { rows: number; peers: string[] };
    try {
      await dump.restore('pre-data', node.postgres);
      say(`schema of ${peer.id} restored (${dump.entries} objects; indexes and constraints after the rows)`);
      copied = await copyRows(peer, node, snapshot, target);
      await dump.restore('post-data', node.postgres);
      say(`indexes, constraints and triggers built over ${copied.rows.toLocaleString('en-US')} rows`);
    } finally {
      dump.remove();
    }
    await setPositions(t, node, peer, snapshot, copied.peers, target, ownLast);
  } catch (err) {
    await snapshot?.close();
    snapshot = undefined;
    say(`the join failed (${describeError(err)}): undoing what it copied`);
    await undo(t, node, target).catch((e) =>
      say(`undoing failed too (${describeError(e)}): run brabant node join ${node.id} --undo`),
    );
    throw err instanceof BrabantError && err.code !== 'SOURCE_UNAVAILABLE'
      ? err
      : new BrabantError(
          'JOIN_FAILED',
          `the join of ${node.id} from ${peer.id} failed during the copy (${describeError(err)}); nothing of it is kept: ` +
            `run the same command again once ${peer.id} answers (or join from another node)`,
          { cause: err },
        );
  } finally {
    await snapshot?.close();
  }
}

/**
 * Why `node`'s id is taken (a peer applied changes of it, lists it as a peer, or Kafka holds its
 * events), or undefined. An origin of it without progress is not use: `brabant node init` of a
 * peer makes an origin for every node of the topology, the one about to join included.
 */
async function idInUse(t: Topology, node: TopologyNode, peer: pg.Client): Promise<string | undefined> {
  const seen = await peer.query<{ why: string }>(
    `select 'a peer applies its changes (origin ' || roname || ' at ' || p || ')' as why
       from (select roname, pg_replication_origin_progress(roname, false)::text as p
               from pg_replication_origin where roname = $1) o
      where p is not null and p <> '0/0'
     union all
     select 'a peer lists it among its peers' from brabant.peers where node = $2`,
    [originName(node.id), node.id],
  );
  if (seen.rows[0] !== undefined) return seen.rows[0].why;
  const last = await lastEventOf(t, node);
  return last === undefined
    ? undefined
    : `Kafka holds its events (the last committed at ${formatLsn(last.commitLsn)} in ${node.region}'s topic)`;
}

/** Copies every table's rows with their versions; the number of rows. */
async function copyRows(
  peer: TopologyNode,
  node: TopologyNode,
  snapshot: NodeSnapshot,
  target: pg.Client,
): Promise<{ rows: number; peers: string[] }> {
  const reader = new SnapshotReader(peer.postgres, snapshot.name, peer.id);
  const writer = new CopyWriter(node.postgres, node.id);
  await reader.open();
  await writer.open();
  try {
    const tables = await reader.tables();
    const peers = await reader.peers();
    const p: CopyProgress = {
      tablesDone: 0,
      tables: tables.length,
      table: undefined,
      rows: 0,
      estimatedRows: tables.reduce((n, x) => n + x.estimatedRows, 0),
      transactions: 0,
      startedAt: Date.now(),
    };
    const ticker = setInterval(() => {
      const line = progressLine(p, Date.now());
      void noteCopiedRows(target, p.rows)
        .catch(() => {})
        .finally(() => say(line));
    }, 1000);
    try {
      for (const table of tables) {
        p.table = `${table.schema}.${table.name}`;
        const into = await writer.table(table.schema, table.name);
        // the next batch is read while this one is written
        let writing: Promise<void> = Promise.resolve();
        try {
          for await (const rows of reader.rows(table, BATCH_ROWS)) {
            await writing;
            writing = writer.write(into, rows).then((w) => {
              p.rows += rows.length;
              p.transactions += w.transactions;
            });
            // seen here or below; a read that fails meanwhile must not leave it unobserved
            writing.catch(() => {});
          }
          await writing;
        } catch (err) {
          await writing.catch(() => {});
          throw err;
        }
        p.tablesDone++;
      }
    } finally {
      clearInterval(ticker);
    }
    p.table = undefined;
    say(progressLine(p, Date.now()));
    await writer.finish(new Map());
    return { rows: p.rows, peers };
  } finally {
    await reader.close();
    await writer.close();
  }
}

/** Step 4 (see the module comment). */
async function setPositions(
  t: Topology,
  node: TopologyNode,
  peer: TopologyNode,
  snapshot: NodeSnapshot,
  peerSources: string[],
  target: pg.Client,
  ownLast: Lsn | undefined,
): Promise<void> {
  const parted = await partedNodes(target);
  if (ownLast !== undefined) await forgetGroupOffsets(t, node);
  // the peer's origins of the nodes its database applies (a server's origins may be other databases')
  const belongs = new Set([...peerSources, ...t.nodes.map((n) => n.id)]);
  const progress = new Map<string, Lsn>([...snapshot.applied].filter(([n]) => belongs.has(n)));
  for (const n of t.nodes) if (n.id !== node.id && !progress.has(n.id)) progress.set(n.id, lsn(0n));
  // a commit at the consistent point itself is not in the snapshot
  progress.set(peer.id, lsn(snapshot.consistentPoint - 1n));
  if (ownLast === undefined) progress.delete(node.id);
  else {
    // a rebuild: its own events the peer had not applied (or applied before it parted) come back
    // from Kafka, as a peer's would
    const through = parted.get(node.id);
    let from = progress.get(node.id) ?? lsn(0n);
    if (through !== undefined && through > from) from = through;
    progress.set(node.id, from);
  }
  await target.query('begin');
  try {
    for (const [source, at] of progress) {
      const origin = originName(source);
      await target.query(
        'select pg_replication_origin_create($1) where not exists (select 1 from pg_replication_origin where roname = $1)',
        [origin],
      );
      await target.query('select pg_replication_origin_advance($1, $2::pg_lsn)', [origin, formatLsn(at)]);
    }
    if (ownLast !== undefined)
      await target.query(
        `insert into brabant.own_stream (horizon, reason) values ($1::pg_lsn, 'rebuilt')
         on conflict (only_one) do update set horizon = excluded.horizon, reason = excluded.reason, recognized_at = now()`,
        [formatLsn(ownLast)],
      );
    await target.query('insert into brabant.peers (node) select unnest($1::text[]) on conflict do nothing', [
      t.nodes.filter((n) => n.id !== node.id).map((n) => n.id),
    ]);
    await setJoinPhase(target, 'copied');
    await target.query('commit');
  } catch (err) {
    await target.query('rollback').catch(() => {});
    throw err;
  }
  say(
    `positions set: ${node.id} applies ${[...progress].map(([n, l]) => `${n} after ${formatLsn(l)}`).join(', ')}` +
      (ownLast === undefined ? '' : `; its own changes up to ${formatLsn(ownLast)} come back from Kafka`),
  );
}

/**
 * A rebuilt node's consumer group still has the offsets its lost database's apply committed:
 * past its own lost events and past the other streams' events since the peer's snapshot. It is
 * deleted, so apply reads every topic from its start (the origins skip what the copy holds). An
 * apply of the lost database killed a moment ago is still a member until its session times out.
 */
async function forgetGroupOffsets(t: Topology, node: TopologyNode): Promise<void> {
  const group = applyGroupId(node.id);
  const clusters = new Map<string, TopologyNode>();
  for (const n of t.nodes) clusters.set([...regionOf(t, n.region).kafka].sort().join(','), n);
  for (const n of clusters.values()) {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const type = await withRegionKafka(t, n, (_k, admin) => admin.deleteGroups([group])).then(
        () => undefined,
        (err: { groups?: { error?: { type?: string } }[] }) => err.groups?.[0]?.error?.type ?? 'unknown',
      );
      if (type === undefined || type === 'GROUP_ID_NOT_FOUND') break;
      if (Date.now() > deadline)
        throw new BrabantError(
          'NODE_STILL_RUNNING',
          `the consumer group ${group} of ${node.id} cannot be deleted (${type}): an apply of ${node.id} still reads ` +
            'with it. Stop every apply of the lost node, then run the same command again',
        );
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  say(
    `${node.id}'s consumer group offsets from before the loss deleted: its apply reads every topic from its start`,
  );
}

/**
 * A catch-up round ends when the node has applied past marks made at its start: writes made
 * meanwhile are still queued then. The node counts as caught up once a round takes no longer
 * than this (it is then at most about this far behind every stream); else it goes again.
 */
const CAUGHT_UP_ROUND_MS = 5000;

/** Step 5 (see the module comment). */
async function catchUp(
  t: Topology,
  node: TopologyNode,
  target: pg.Client,
  timeoutSeconds: number,
): Promise<void> {
  // on a secured topology its services log in as roles and Kafka users node init makes
  const setUp =
    t.security === undefined
      ? ''
      : `set up ${node.id}'s roles and Kafka users (brabant node init ${node.id}), then `;
  say(
    `the copy is complete: ${setUp}start capture and apply of ${node.id} now (brabant start --topology ${t.file} ${node.id}); ` +
      `waiting up to ${timeoutSeconds} s for it to catch up`,
  );
  const deadline = Date.now() + timeoutSeconds * 1000;
  for (let round = 1; ; round++) {
    const started = Date.now();
    const marks = await markStreams(t, node, round === 1);
    await waitPastMarks(node, target, marks, { deadline, timeoutSeconds });
    const took = Date.now() - started;
    if (round > 1 && took <= CAUGHT_UP_ROUND_MS) {
      say(`${node.id} caught up with ${[...marks.keys()].join(', ') || 'no reachable node'}`);
      return;
    }
    if (round > 1)
      say(
        `catch-up: ${node.id} applied past marks made ${(took / 1000).toFixed(1)} s ago; what was written meanwhile is ` +
          'still queued: marking again',
      );
  }
}

/** A mark in every other reachable node's stream now (those that cannot be reached are said once). */
async function markStreams(
  t: Topology,
  node: TopologyNode,
  sayUnreachable: boolean,
): Promise<Map<string, Lsn>> {
  const marks = new Map<string, Lsn>();
  for (const other of t.nodes) {
    if (other.id === node.id) continue;
    try {
      const db = await connectNode(other, 'marking its stream');
      try {
        marks.set(other.id, await markStream(db, 'brabant.join', node.id));
      } finally {
        await db.end().catch(() => {});
      }
    } catch (err) {
      if (sayUnreachable)
        say(
          `${other.id} cannot be reached (${describeError(err)}): ${node.id} applies its changes once it is back`,
        );
    }
  }
  return marks;
}

/** Waits until the node applied past every mark and its capture streams, or JOIN_FAILED at the deadline. */
async function waitPastMarks(
  node: TopologyNode,
  target: pg.Client,
  marks: Map<string, Lsn>,
  o: { deadline: number; timeoutSeconds: number },
): Promise<void> {
  let lastSaid = Date.now();
  for (;;) {
    const behind: string[] = [];
    for (const [source, mark] of marks) {
      const at = await appliedOf(target, source);
      if (at === undefined || at < mark)
        behind.push(
          `${source} (applied ${at === undefined ? 'nothing' : formatLsn(at)} of ${formatLsn(mark)})`,
        );
    }
    const slot = await target.query('select 1 from pg_replication_slots where slot_name = $1 and active', [
      slotName(node.id),
    ]);
    if (behind.length === 0 && (slot.rowCount ?? 0) > 0) return;
    if (Date.now() > o.deadline)
      throw new BrabantError(
        'JOIN_FAILED',
        `${node.id} has not caught up within ${o.timeoutSeconds} s: behind ${behind.join(', ') || 'nothing, but its capture does not stream'}. ` +
          `Are its capture and apply running? Run the same command again to go on waiting`,
      );
    if (Date.now() - lastSaid >= 2000) {
      lastSaid = Date.now();
      say(
        `catch-up: ${behind.length === 0 ? 'every stream applied' : `behind ${behind.join(', ')}`}` +
          ((slot.rowCount ?? 0) > 0 ? '' : `; capture of ${node.id} not streaming yet`),
      );
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Step 6: the node joins its region's router (if the topology has one). */
async function addToRouter(t: Topology, node: TopologyNode): Promise<void> {
  const url = regionRouter(t, node);
  if (url === undefined) return;
  const q = new URLSearchParams({ id: node.id, region: node.region, url: node.postgres });
  try {
    const r = (await callRouter(`${url}/nodes?${q}`, 'POST')) as { nodes: string[] };
    say(
      `${node.id} added to the router of ${node.region} (nodes ${r.nodes.join(', ')}); it takes writes once a switchover or failover chooses it`,
    );
  } catch (err) {
    if (/already one of/.test((err as Error).message)) return;
    say(
      `the router of ${node.region} was not told (${describeError(err)}): add it with POST ${url}/nodes?${q}`,
    );
  }
}
