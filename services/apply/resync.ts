/**
 * Apply's side of a resync (docs/capture.md, "Resync"): a resync row is decided by its original
 * version — the commit that wrote it on its origin, carried in the record's headers — and, when
 * it wins, written with that version recorded beside it, so that later changes compare against
 * the row's true age and not against the resync's.
 *
 * A resync's rows arrive as one source transaction of the source's stream (its high watermark's),
 * applied in one local transaction under the source's origin: exactly once with the origin's
 * progress, like any other. The full path takes them (never the fast or resolve-ahead path, which
 * decide by the transaction's commit time); `decide()` reads the version through `changeVersion`,
 * and `writesFor()` adds `resyncedVersionWrites`. Only this module knows how the versions are kept
 * (brabant.resynced_versions, protocol/resync-schema.ts).
 */
import type pg from 'pg';
import type { RowChange } from '../protocol/change-decoder.ts';
import { originName } from '../protocol/names.ts';
import type { Decided } from './planner/decide.ts';
import type { RowWrite } from './planner/full.ts';
import type { Version } from './planner/resolve.ts';
import { tombstoneKey } from './planner/sql-rows.ts';
import type { TargetTable } from './target-catalog.ts';
import { pruneOlderThanHorizon } from './tombstones.ts';

/** How an unknown version (PostgreSQL no longer knows the commit: a frozen xmin) compares: oldest. */
export const OLDEST: Version = { ts: -(2n ** 63n), node: '' };

/** The version last-writer-wins gives a change: a resync row's original one, else its transaction's. */
export function changeVersion(c: RowChange): Version {
  if (c.resync === undefined) return { ts: c.tx.commitTs, node: c.origin.node };
  if (c.resync.versionTs === null) return OLDEST;
  return { ts: c.resync.versionTs, node: c.resync.versionNode };
}

export function isResync(c: RowChange): boolean {
  return c.resync !== undefined;
}

/**
 * Records the original version of every row and tombstone a batch's resync rows wrote, keyed by
 * the xmin this local transaction gives them: $1..$k the key columns, $k+1 the table, then per
 * entry its kind (row or tombstone), version time (unix micros, null: oldest) and origin name.
 */
export function resyncedVersionsSql(t: TargetTable, keyCols: string[]): string {
  const names = [...keyCols.map((_, i) => `k${i}`), 'kind', 'ts', 'origin'];
  const n = keyCols.length;
  const params = names.map((_, i) => `$${i < n ? i + 1 : i + 2}::text[]`).join(', ');
  return `insert into brabant.resynced_versions (tbl, key, kind, row_xmin, ts, origin)
    select $${n + 1}, ${tombstoneKey(t, keyCols, 'u')}, u.kind, pg_current_xact_id()::xid, u.ts::int8, u.origin
      from unnest(${params}) with ordinality as u(${[...names, 'ord'].join(', ')})
    on conflict (tbl, key, kind) do update set row_xmin = excluded.row_xmin, ts = excluded.ts, origin = excluded.origin`;
}

/** The write that keeps the versions of what a batch's resync rows wrote (none if they wrote nothing). */
export function resyncedVersionWrites(t: TargetTable, keyCols: string[], decisions: Decided[]): RowWrite[] {
  const kindOf = (x: Decided) =>
    x.c.resync === undefined
      ? undefined
      : x.d.action === 'insert' || x.d.action === 'update'
        ? 'row'
        : x.d.action === 'delete' || x.d.action === 'tombstone'
          ? 'tombstone'
          : undefined;
  const written = decisions.filter((x) => kindOf(x) !== undefined);
  if (written.length === 0) return [];
  const cs = written.map((x) => x.c);
  return [
    {
      sql: resyncedVersionsSql(t, keyCols),
      params: [
        ...keyCols.map((k) => cs.map((c) => c.key![k]!)),
        `${t.schema}.${t.name}`,
        written.map((x) => kindOf(x)!),
        cs.map((c) => (c.resync!.versionTs === null ? null : c.resync!.versionTs.toString())),
        cs.map((c) => originName(c.resync!.versionNode)),
      ],
      changes: [],
    },
  ];
}

/**
 * Removes the recorded versions no change still in flight can need: once every peer has applied
 * a transaction committed after both the row's original version and the resync (plus the
 * tombstones' clock-skew margin), every later change is newer than either, so the row's xmin
 * orders it the same. (An entry of a row written again since no longer matches its xmin and is
 * never read; it goes at the same time.)
 */
export function pruneResyncedVersions(
  db: pg.Client,
  lastCommitTs: ReadonlyMap<string, bigint>,
  marginMs: number,
): Promise<number> {
  return pruneOlderThanHorizon(
    db,
    lastCommitTs,
    marginMs,
    `delete from brabant.resynced_versions
      where greatest(coalesce(ts, 0), (extract(epoch from pg_xact_commit_timestamp(xmin)) * 1000000)::int8) < $1::int8`,
  );
}
