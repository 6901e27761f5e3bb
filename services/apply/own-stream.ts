/**
 * Which streams this node applies, from where, as its database knows it (I/O; the rule itself is
 * change-stream.ts `appliesEvent`):
 *
 * - **Offsets the database knows.** Before the consumer group commits offsets, apply saves them in
 *   `brabant.apply_offsets`. A database restored from a backup holds the offsets of the backup's
 *   moment, older than the group's: each partition starts from the older of the two, so the gap
 *   between the backup and now is applied (the origins' progress skips what the backup holds).
 *   When Kafka no longer holds the partition from that offset (retention), nothing can fill the
 *   gap: apply stops with RESTORE_TOO_OLD and says what to do instead.
 * - **Its own lost changes.** A restored (or rebuilt) database lacks its own transactions that
 *   capture had already put in Kafka. At start, apply looks whether the last event of its own
 *   stream is in the database: its transaction id there committed at the same time. If not, the
 *   database went back in time: the last own transaction it does hold is found the same way
 *   among its own events since its saved offset, the origin `brabant_<node id>` is set there, and
 *   `brabant.own_stream` records the horizon (the last own event in Kafka): own events up to it
 *   are applied like a peer's, under that origin, so they keep their version (commit time, this
 *   node). Capture then moves the WAL past the horizon before it streams again
 *   (capture/session.ts), so new transactions never reuse the LSNs of the lost ones.
 * - **Nodes that left** (`brabant.parted_nodes`): their events were all applied before they
 *   left; they are skipped, and the origin of each is let go and dropped.
 */
import type { Admin, Kafka } from 'kafkajs';
import type pg from 'pg';
import type { ChangeDecoder } from '../protocol/change-decoder.ts';
import { heldTransactions } from '../protocol/held-transactions.ts';
import { formatLsn, type Lsn, lsn, parseLsn } from '../protocol/lsn.ts';
import { originName } from '../protocol/names.ts';
import { partitionBounds, partitionOf, readEvents, readLastEvent } from '../protocol/read-back.ts';
import { BrabantError } from '../runtime/errors.ts';
import type { Logger } from '../runtime/log.ts';
import type { StreamMembership } from './change-stream.ts';
import type { OffsetCommit } from './offset-tracker.ts';

type Db = Pick<pg.Client, 'query'>;

/** The node's own horizon and the nodes that left, as the database says. */
export async function loadMembership(db: Db): Promise<StreamMembership> {
  const own = await db.query<{ h: string }>('select horizon::text as h from brabant.own_stream');
  return { ownHorizon: own.rows[0] ? parseLsn(own.rows[0].h) : undefined, parted: await partedNodes(db) };
}

export async function partedNodes(db: Db): Promise<Map<string, Lsn>> {
  const res = await db.query<{ node: string; through: string }>(
    'select node, through_lsn::text as through from brabant.parted_nodes',
  );
  return new Map(res.rows.map((r) => [r.node, parseLsn(r.through)]));
}

export async function saveOffsets(db: Db, commits: OffsetCommit[]): Promise<void> {
  await db.query(
    `insert into brabant.apply_offsets (topic, part, next_offset)
       select * from unnest($1::text[], $2::int[], $3::int8[])
     on conflict (topic, part) do update set next_offset = excluded.next_offset, saved_at = now()`,
    [commits.map((c) => c.topic), commits.map((c) => c.partition), commits.map((c) => c.offset)],
  );
}

/** Per `topic/partition`, the offset the database saved. */
async function savedOffsets(db: Db, topics: string[]): Promise<Map<string, bigint>> {
  const res = await db.query<{ topic: string; part: number; next_offset: string }>(
    'select topic, part, next_offset::text from brabant.apply_offsets where topic = any($1)',
    [topics],
  );
  return new Map(res.rows.map((r) => [`${r.topic}/${r.part}`, BigInt(r.next_offset)]));
}

/**
 * Where each partition of `topics` must start when the database's saved offset is before the
 * group's (or the group has none): the saved one. Refuses (RESTORE_TOO_OLD) a saved offset Kafka
 * no longer holds.
 */
export async function startOffsets(
  db: Db,
  admin: Admin,
  o: { groupId: string; topics: string[]; nodeId: string },
): Promise<Map<string, bigint>> {
  const saved = await savedOffsets(db, o.topics);
  const out = new Map<string, bigint>();
  if (saved.size === 0) return out;
  const group = new Map<string, bigint>();
  for (const t of await admin.fetchOffsets({ groupId: o.groupId, topics: o.topics }))
    for (const p of t.partitions) group.set(`${t.topic}/${p.partition}`, BigInt(p.offset));
  for (const [key, offset] of saved) {
    const committed = group.get(key) ?? -1n;
    const at = key.lastIndexOf('/');
    const topic = key.slice(0, at);
    const partition = Number(key.slice(at + 1));
    // also when the group is at or behind the database: Kafka would silently reset an offset it
    // no longer holds to the partition's start, past the gap
    const { low } = await partitionBounds(admin, topic, partition);
    if (offset < low)
      throw new BrabantError(
        'RESTORE_TOO_OLD',
        `the database of ${o.nodeId} read ${topic} partition ${partition} up to offset ${offset}, but Kafka holds that ` +
          `partition only from offset ${low} on (retention removed the rest), so changes in between may be missing: the ` +
          `database is older than Kafka's retention (restored from an old backup, or apply was away too long). Rebuild the ` +
          `node from a peer instead: empty its database and run \`brabant node join ${o.nodeId} --from PEER --rebuild\` ` +
          '(docs/nodes.md), or restore a newer backup',
      );
    if (committed >= 0n && offset >= committed) continue;
    out.set(key, offset);
  }
  return out;
}

/**
 * Looks whether the database lost own changes that are in Kafka (see the module comment) and, if
 * so, sets the origin of its own stream and records the horizon. Nothing to do once recorded.
 */
export async function recognizeLostChanges(
  db: Db,
  kafka: Kafka,
  admin: Admin,
  decoder: ChangeDecoder,
  o: { nodeId: string; topics: string[]; log: Logger },
): Promise<void> {
  if ((await db.query('select 1 from brabant.own_stream')).rowCount) return;
  const existing = new Set(await admin.listTopics());
  for (const topic of o.topics.filter((t) => existing.has(t))) {
    const partitions = (await admin.fetchTopicOffsets(topic)).length;
    if (partitions === 0) continue;
    const where = {
      topic,
      partition: partitionOf(o.nodeId, topic, partitions),
      nodeId: o.nodeId,
      timeoutMs: 60_000,
      log: o.log,
    };
    const last = await readLastEvent(kafka, admin, where);
    if (last === undefined) continue;
    const lastTx = await decoder.decode(last.message.value!);
    const held = await heldTransactions(db, [{ ...lastTx.tx, commitLsn: last.position.commitLsn }]);
    if (held.size > 0) return; // its last own transaction is here: nothing lost
    // Lost: its own events since the offset it saved (or the partition's start), oldest first.
    const saved = (await savedOffsets(db, [topic])).get(`${topic}/${where.partition}`);
    const { low, high } = await partitionBounds(admin, topic, where.partition);
    const from = saved !== undefined && saved > low ? saved : low;
    const txs: { xid: bigint; commitTs: bigint; commitLsn: Lsn }[] = [];
    await readEvents(kafka, admin, { ...where, start: from, end: high }, async (e) => {
      if (txs.length > 0 && txs[txs.length - 1]!.commitLsn === e.position.commitLsn) return;
      const c = await decoder.decode(e.message.value!);
      txs.push({ xid: c.tx.xid, commitTs: c.tx.commitTs, commitLsn: e.position.commitLsn });
    });
    const present = await heldTransactions(db, txs);
    // committed in LSN order: the ones the database holds come first
    let progress = lsn(0n);
    for (const t of txs) if (present.has(t.commitLsn) && t.commitLsn > progress) progress = t.commitLsn;
    if (progress === 0n && txs.length > 0 && from > low) progress = lsn(txs[0]!.commitLsn - 1n);
    const origin = originName(o.nodeId);
    await db.query(
      'select pg_replication_origin_create($1) where not exists (select 1 from pg_replication_origin where roname = $1)',
      [origin],
    );
    await db.query('select pg_replication_origin_advance($1, $2::pg_lsn)', [origin, formatLsn(progress)]);
    await db.query(
      `insert into brabant.own_stream (horizon, reason) values ($1::pg_lsn, 'restored') on conflict do nothing`,
      [formatLsn(last.position.commitLsn)],
    );
    o.log.warn(
      {
        topic,
        partition: where.partition,
        heldThrough: formatLsn(progress),
        horizon: formatLsn(last.position.commitLsn),
        lost: txs.filter((t) => !present.has(t.commitLsn)).length,
      },
      `this database lacks ${o.nodeId}'s own transactions that are in Kafka (restored from a backup?): they are applied ` +
        'again from Kafka with their original version, and capture moves the WAL past them before it streams',
    );
    return;
  }
}
