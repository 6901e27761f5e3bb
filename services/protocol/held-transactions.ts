/**
 * Whether a database holds transactions it once committed, known by their id and commit time as
 * capture put them in Kafka: a database restored from a backup (or rebuilt) lacks the ones after
 * its backup, and reuses their ids for new ones, so the id alone says nothing.
 */
import type pg from 'pg';
import { formatLsn, type Lsn, parseLsn } from './lsn.ts';

type Db = Pick<pg.Client, 'query'>;

/**
 * Which of the transactions (transaction id, commit time) the database holds: the id is not in
 * its future and committed at that very time (a restored database reuses ids of lost ones).
 */
export async function heldTransactions(
  db: Db,
  txs: { xid: bigint; commitTs: bigint; commitLsn: Lsn }[],
): Promise<Set<Lsn>> {
  if (txs.length === 0) return new Set();
  const res = await db.query<{ l: string }>(
    `select t.l from unnest($1::text[], $2::int8[], $3::text[]) as t(x, ts, l)
      where age(t.x::xid) > 0
        and (extract(epoch from pg_xact_commit_timestamp(t.x::xid)) * 1000000)::int8 = t.ts`,
    [
      txs.map((t) => String(t.xid)),
      txs.map((t) => String(t.commitTs)),
      txs.map((t) => formatLsn(t.commitLsn)),
    ],
  );
  return new Set(res.rows.map((r) => parseLsn(r.l)));
}
