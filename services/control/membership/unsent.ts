/**
 * Whether a stopped node's slot still holds transactions of its own that capture has not put in
 * Kafka (I/O): the slot is peeked (nothing is consumed) through pgoutput and the transactions
 * decoded; those that carry a replication origin were applied from peers and need no capture.
 */
import type pg from 'pg';
import { decodePgoutput } from '../../capture/pgoutput/decoder.ts';

/** How many changes a peek reads at most (a stopped capture leaves little behind). */
const PEEK_CHANGES = 100_000;

export async function unsentTransactions(db: pg.Client, slot: string, publication: string): Promise<number> {
  const exists = await db.query('select 1 from pg_replication_slots where slot_name = $1', [slot]);
  if ((exists.rowCount ?? 0) === 0) return 0;
  const pubs = await db.query<{ p: string }>(
    "select string_agg(pubname, ',') as p from pg_publication where pubname::text in ($1::text, $1::text || '_inserts')",
    [publication],
  );
  if (pubs.rows[0]?.p === null || pubs.rows[0]?.p === undefined) return 0;
  const res = await db.query<{ data: Buffer }>(
    `select data from pg_logical_slot_peek_binary_changes($1, null, $2,
        'proto_version', '1', 'publication_names', $3, 'messages', 'false')`,
    [slot, PEEK_CHANGES, pubs.rows[0].p],
  );
  let own = 0;
  let inTx = false;
  let applied = false;
  for (const r of res.rows) {
    const m = decodePgoutput(r.data);
    if (m.tag === 'begin') {
      inTx = true;
      applied = false;
    } else if (m.tag === 'origin') applied = true;
    else if (m.tag === 'commit' && inTx) {
      if (!applied) own++;
      inTx = false;
    }
  }
  return own;
}
