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
}

/** A version from (unix micros text, origin name): no origin = this node; no time = unknown. */
export function versionOf(ts: string | null, origin: string | null, localNode: string): Version | null {
  if (ts === null) return null;
  const node = origin === null ? localNode : (nodeOfOrigin(origin) ?? origin);
  return { ts: BigInt(ts), node };
}

export function localState(r: LookupRow, localNode: string): LocalState {
  if (r.found) return { kind: 'row', version: versionOf(r.row_ts, r.row_origin, localNode) };
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
  return versionOf(r.found ? r.row_ts : r.tomb_ts, r.found ? r.row_origin : r.tomb_origin, localNode);
}
