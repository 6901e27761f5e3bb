/**
 * Capture of a database that went back in time: restored from a backup, or rebuilt by a join.
 * It lacks own changes that Kafka holds (apply recognizes it and records the horizon in
 * brabant.own_stream, apply/own-stream.ts, then applies them again from Kafka), and new changes
 * must not reuse their LSNs: peers skip what is at or below what they applied of this node, and
 * capture skips what is at or below its last event in Kafka.
 */
import type pg from 'pg';
import { ChangeDecoder, type SchemaSource } from '../protocol/change-decoder.ts';
import { heldTransactions } from '../protocol/held-transactions.ts';
import { formatLsn, type Lsn, parseLsn } from '../protocol/lsn.ts';
import type { ReadEvent } from '../protocol/read-back.ts';
import { BrabantError } from '../runtime/errors.ts';
import type { Logger } from '../runtime/log.ts';

async function slotExists(db: pg.Client, slot: string): Promise<boolean> {
  return (
    ((await db.query('select 1 from pg_replication_slots where slot_name = $1', [slot])).rowCount ?? 0) > 0
  );
}

function restorePending(nodeId: string, at: Lsn, last: Lsn, why: string): BrabantError {
  return new BrabantError(
    'RESTORE_PENDING',
    `the database of ${nodeId} ${why} its own last change in Kafka (${formatLsn(last)}; its WAL is at ${formatLsn(at)}): ` +
      'it was restored from a backup. Capture waits until apply has taken over the changes the database lost ' +
      '(start apply of this node); keep the node away from applications until then',
  );
}

/**
 * Before capture streams: when apply has recorded a horizon, the WAL is moved past it and past
 * the last own event in Kafka (one `pg_switch_wal()` per 16 MB segment) and the slot, if the
 * database has one from before, is made again. Until apply has recorded one, a database that
 * lacks its own last transaction in Kafka (its id committed at that time: behind it in WAL, or
 * ahead but without it, as after a pg_basebackup, which has no slots, once something was written)
 * is refused with RESTORE_PENDING, which capture retries; without the check it would take the
 * missing slot for a dropped one (SLOT_LOST). Returns the horizon while nothing newer of this
 * node is in Kafka (a new slot is then no loss: its lost changes come from Kafka), else undefined.
 */
export async function movePastLostChanges(
  db: pg.Client,
  o: { nodeId: string; slot: string; registry: SchemaSource; log: Logger },
  last: ReadEvent,
): Promise<Lsn | undefined> {
  const lastLsn = last.position.commitLsn;
  const own = await db.query<{ h: string }>('select horizon::text as h from brabant.own_stream');
  const horizon = own.rows[0] ? parseLsn(own.rows[0].h) : undefined;
  const wal = async () =>
    parseLsn((await db.query<{ l: string }>('select pg_current_wal_insert_lsn()::text as l')).rows[0]!.l);
  const at = await wal();
  if (horizon === undefined) {
    if (at <= lastLsn) throw restorePending(o.nodeId, at, lastLsn, 'is behind');
    const tx = (await new ChangeDecoder(o.registry).decode(last.message.value!)).tx;
    const held = await heldTransactions(db, [{ xid: tx.xid, commitTs: tx.commitTs, commitLsn: lastLsn }]);
    if (held.size === 0) throw restorePending(o.nodeId, at, lastLsn, 'does not hold');
    return undefined;
  }
  if (at > lastLsn) {
    if (horizon < lastLsn) return undefined; // it streams again since the horizon
    o.log.warn(
      { at: formatLsn(at), past: formatLsn(lastLsn), horizon: formatLsn(horizon) },
      'the database went back in time (restore or rebuild): its WAL is already past its lost changes, so no new change reuses their LSNs',
    );
    return horizon;
  }
  let target = lastLsn;
  if (horizon > target) target = horizon;
  const hadSlot = await slotExists(db, o.slot);
  if (hadSlot) await db.query('select pg_drop_replication_slot($1)', [o.slot]);
  let switches = 0;
  while ((await wal()) <= target) {
    // a switch with nothing written since the last one does nothing
    await db.query(`select pg_logical_emit_message(false, 'brabant.wal-advance', ''), pg_switch_wal()`);
    switches++;
  }
  o.log.warn(
    { from: formatLsn(at), past: formatLsn(target), switches, slotDropped: hadSlot },
    'the database went back in time (restore or rebuild): WAL moved past its lost changes, so no new change reuses their LSNs',
  );
  return horizon;
}
