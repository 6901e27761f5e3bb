/**
 * What the node answered about its rows (pure): a lookup's row per key, and the local state and
 * version last-writer-wins reads from it. A row's version is `pg_xact_commit_timestamp_origin` of
 * its xmin: when and where its current content was first committed; no origin = this node.
 */
import { nodeOfOrigin } from '../../protocol/names.ts';
import type { LocalState, Version } from '../planner/resolve.ts';

/** One key's answer to a lookup (sql-rows.ts `lookupSql`). */
export interface LookupRow {
  ord: number;
  /** Version tokens of what was looked up: the row's and the tombstone's xmin (text). */
  row_xmin: string | null;
  tomb_xmin: string | null;
  local_row: Record<string, unknown> | null;
  row_ts: string | null;
  row_origin: string | null;
  found: boolean;
  tomb_ts: string | null;
  tomb_origin: string | null;
  tombstone: boolean;
  differs: boolean | null;
  /** column_lww tables: each column's version (unix micros, origin name), from brabant.column_versions. */
  col_versions?: Record<string, { ts: string | null; origin: string | null }> | null;
  /** delta tables under row_lww: the version the row kept for its other columns (brabant.row_versions). */
  row_floor?: { ts: string; node: string } | null;
  /** The row's ctid (rows found by the whole old row are written by it: identical rows are each their own). */
  row_ctid?: string | null;
}

/** A version from (unix micros text, origin name): no origin = this node; no time = unknown. */
export function versionOf(ts: string | null, origin: string | null, localNode: string): Version | null {
  if (ts === null) return null;
  const node = origin === null ? localNode : (nodeOfOrigin(origin) ?? origin);
  return { ts: BigInt(ts), node };
}

/**
 * A row's version for last-writer-wins: its xmin's, or the version it kept for its other columns
 * (a delta table's row to which an older update only added its increments), whichever is newer.
 */
export function rowVersion(r: LookupRow, localNode: string): Version | null {
  const own = versionOf(r.row_ts, r.row_origin, localNode);
  if (r.row_floor === null || r.row_floor === undefined) return own;
  const kept = { ts: BigInt(r.row_floor.ts), node: r.row_floor.node };
  if (own === null) return kept;
  return kept.ts > own.ts || (kept.ts === own.ts && kept.node > own.node) ? kept : own;
}

export function localState(r: LookupRow, localNode: string): LocalState {
  if (r.found) return { kind: 'row', version: rowVersion(r, localNode) };
  if (r.tombstone) {
    // a tombstone whose commit time is unknown (frozen) is the oldest possible delete
    return {
      kind: 'absent',
      tombstone: versionOf(r.tomb_ts, r.tomb_origin, localNode) ?? { ts: -(2n ** 63n), node: '' },
    };
  }
  return { kind: 'absent', tombstone: null };
}

/** The version of what a lookup found (the row, else its tombstone), or null. */
export function lookedUpVersion(r: LookupRow, localNode: string): Version | null {
  return r.found ? rowVersion(r, localNode) : versionOf(r.tomb_ts, r.tomb_origin, localNode);
}
