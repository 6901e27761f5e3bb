/**
 * Tombstones are kept until every peer of this database has applied a transaction committed
 * after them (plus a margin for clock skew): until then a late change from a peer could still
 * need to lose against the delete. The peers are `brabant.peers` (replication origins are per
 * server and may belong to other databases).
 */
import type pg from 'pg';

/** The commit time (unix micros) before which tombstones may go, or undefined while a peer has applied nothing yet. */
export function pruneHorizon(
  peers: string[],
  lastCommitTs: ReadonlyMap<string, bigint>,
  marginMs: number,
): bigint | undefined {
  if (peers.length === 0 || peers.some((p) => !lastCommitTs.has(p))) return undefined;
  let oldest = lastCommitTs.get(peers[0]!)!;
  for (const p of peers) if (lastCommitTs.get(p)! < oldest) oldest = lastCommitTs.get(p)!;
  return oldest - BigInt(marginMs) * 1000n;
}

/**
 * Runs `deleteSql` (its `$1`: the horizon, unix micros) once every peer has applied something;
 * how many rows went.
 */
export async function pruneOlderThanHorizon(
  db: pg.Client,
  lastCommitTs: ReadonlyMap<string, bigint>,
  marginMs: number,
  deleteSql: string,
): Promise<number> {
  const peers = (await db.query<{ node: string }>('select node from brabant.peers')).rows.map((r) => r.node);
  const horizon = pruneHorizon(peers, lastCommitTs, marginMs);
  if (horizon === undefined) return 0;
  const res = await db.query(deleteSql, [horizon.toString()]);
  return res.rowCount ?? 0;
}

/** Removes the tombstones older than the horizon; how many went. */
export function pruneTombstones(
  db: pg.Client,
  lastCommitTs: ReadonlyMap<string, bigint>,
  marginMs: number,
): Promise<number> {
  return pruneOlderThanHorizon(
    db,
    lastCommitTs,
    marginMs,
    `delete from brabant.tombstones where (extract(epoch from pg_xact_commit_timestamp(xmin)) * 1000000)::int8 < $1::int8`,
  );
}
