/**
 * The record of a resolved conflict and of a change that could not be applied (pure): as rows of
 * `brabant.conflicts` (written in the local transaction that resolved it) and as the JSON
 * messages of the `brabant.conflicts` and `brabant.deadletter` topics.
 */
import type { Row, RowChange } from '../../protocol/change-decoder.ts';
import { formatLsn, type Lsn } from '../../protocol/lsn.ts';
import { codecFromAvro } from '../../protocol/pg-types.ts';
import { UNCHANGED } from '../../protocol/table-schema.ts';
import type { ConflictKind, Resolution } from '../planner/resolve.ts';
import type { Statement } from '../planner/script.ts';

export interface ConflictRecord {
  kind: ConflictKind;
  resolution: Resolution;
  table: string;
  key: Record<string, string | null> | null;
  localRow: unknown;
  localTs: bigint | null;
  localNode: string | null;
  remoteRow: Record<string, string | null> | null;
  remoteTs: bigint;
  remoteNode: string;
  remoteCommitLsn: Lsn;
  /** The policy that decided (row_lww unless the table declares another). */
  policy?: string;
}

export interface DeadLetter {
  reason: string;
  change: RowChange;
}

const timestamptz = codecFromAvro({ type: 'long', logicalType: 'timestamp-micros' });

/** Appends conflict records ($1: a jsonb array of `conflictLogRows`) to brabant.conflicts. */
export const CONFLICTS_INSERT: Statement = {
  sql: `insert into brabant.conflicts (kind, resolution, table_name, key, local_row, local_commit_ts, local_node, remote_row, remote_commit_ts, remote_node, remote_commit_lsn, policy)
       select kind, resolution, table_name, key, local_row, local_commit_ts, local_node, remote_row, remote_commit_ts, remote_node, remote_commit_lsn::pg_lsn, policy
         from jsonb_to_recordset($1) as x(kind text, resolution text, table_name text, key jsonb, local_row jsonb, local_commit_ts timestamptz,
              local_node text, remote_row jsonb, remote_commit_ts timestamptz, remote_node text, remote_commit_lsn text, policy text)`,
  paramTypes: ['jsonb'],
};

/** The conflict log rows as the jsonb CONFLICTS_INSERT reads. */
export function conflictLogRows(conflicts: ConflictRecord[]) {
  return conflicts.map((c) => ({
    kind: c.kind,
    resolution: c.resolution,
    table_name: c.table,
    key: c.key,
    local_row: c.localRow,
    local_commit_ts: c.localTs === null ? null : timestamptz.toText(c.localTs),
    local_node: c.localNode,
    remote_row: c.remoteRow,
    remote_commit_ts: timestamptz.toText(c.remoteTs),
    remote_node: c.remoteNode,
    remote_commit_lsn: formatLsn(c.remoteCommitLsn),
    policy: c.policy ?? 'row_lww',
  }));
}

/** A conflict as the JSON message of the `brabant.conflicts` topic (key: the node id). */
export function conflictMessage(node: string, x: ConflictRecord) {
  return {
    node,
    kind: x.kind,
    resolution: x.resolution,
    policy: x.policy ?? 'row_lww',
    table: x.table,
    key: x.key,
    local: { row: x.localRow, commitTs: x.localTs?.toString() ?? null, node: x.localNode },
    remote: {
      row: x.remoteRow,
      commitTs: x.remoteTs.toString(),
      node: x.remoteNode,
      commitLsn: formatLsn(x.remoteCommitLsn),
    },
  };
}

/** A decoded change as the JSON of a dead letter (bigints as text, unchanged TOAST named). */
export function changeMessage(c: RowChange) {
  return JSON.parse(
    JSON.stringify(c, (_k, v) =>
      typeof v === 'bigint' ? v.toString() : typeof v === 'symbol' ? '(unchanged toast)' : v,
    ),
  );
}

/** A row's values for the conflict log: unchanged TOAST values named, not lost. */
export function plainRow(row: Row | null): Record<string, string | null> | null {
  if (row === null) return null;
  return Object.fromEntries(
    Object.entries(row).map(([k, v]) => [k, v === UNCHANGED ? '(unchanged toast)' : v]),
  );
}
