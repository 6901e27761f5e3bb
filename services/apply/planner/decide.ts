/**
 * Decisions for a batch of row changes given what is known of the local rows (pure): last
 * writer wins through `resolve()`, every conflict recorded with both versions, and the column
 * drift between a source row and the target table.
 */
import type { RowChange } from '../../protocol/change-decoder.ts';
import { UNCHANGED } from '../../protocol/table-schema.ts';
import { type LookupRow, localState, lookedUpVersion } from '../outcome/answers.ts';
import { type ConflictRecord, plainRow } from '../outcome/conflict-log.ts';
import { changeVersion } from '../resync.ts';
import type { TargetTable } from '../target-catalog.ts';
import { applyPolicy, type PolicyDecision } from './policy.ts';
import { type ConflictKind, type Resolution, resolve } from './resolve.ts';

export interface Decided {
  c: RowChange;
  d: PolicyDecision;
  /** What was looked up of the row (a custom resolver weighs it). */
  local: LookupRow;
}

/** A conflict record of change `c` against what was looked up (`local`; null: nothing to compare). */
export function conflictRecord(
  c: RowChange,
  kind: ConflictKind,
  resolution: Resolution,
  local: LookupRow | null,
  localNode: string,
  policy = 'row_lww',
): ConflictRecord {
  const localVersion = local === null ? null : lookedUpVersion(local, localNode);
  const remote = changeVersion(c);
  return {
    kind,
    resolution,
    table: `${c.schema}.${c.table}`,
    key: c.key,
    localRow: local?.local_row ?? null,
    localTs: localVersion?.ts ?? null,
    localNode: local !== null && (local.found || local.tombstone) ? (localVersion?.node ?? null) : null,
    remoteRow: plainRow(c.after ?? c.before),
    // a resync row's original version (an unknown one: the resync's time)
    remoteTs: c.resync?.versionTs === null ? c.tx.commitTs : remote.ts,
    remoteNode: remote.node || c.origin.node,
    remoteCommitLsn: c.tx.commitLsn,
    policy,
  };
}

/**
 * Resolves each change of a batch against the local state looked up for it (same order): last
 * writer wins per row, then the table's conflict policy (planner/policy.ts). `keyCols`: the
 * columns rows are found by.
 */
export function decide(
  batch: RowChange[],
  looked: LookupRow[],
  localNode: string,
  t: TargetTable,
  keyCols: string[],
): { decisions: Decided[]; conflicts: ConflictRecord[] } {
  const decisions: Decided[] = [];
  const conflicts: ConflictRecord[] = [];
  for (const [i, c] of batch.entries()) {
    const local = looked[i]!;
    const after = c.after;
    const row = resolve(localState(local, localNode), {
      op: c.op as 'INSERT' | 'UPDATE' | 'DELETE',
      version: changeVersion(c),
      complete: after !== null && Object.values(after).every((v) => v !== UNCHANGED),
      ...(c.before !== null && local.differs !== null ? { beforeMatchesLocal: !local.differs } : {}),
    });
    // a resync row carries the row's version only: decided by it alone (a table with another
    // policy is refused by brabant resync; docs/capture.md)
    const d: PolicyDecision =
      c.resync === undefined
        ? applyPolicy(row, c, local, t.policy, keyCols, localNode)
        : { ...row, policy: 'resync' };
    decisions.push({ c, d, local });
    if (d.conflict)
      conflicts.push(conflictRecord(c, d.conflict.kind, d.conflict.resolution, local, localNode, d.policy));
  }
  return { decisions, conflicts };
}

export interface Drift {
  column: string;
  kind: 'source_column_missing' | 'target_column_missing';
}

/**
 * Target columns the source row lacks, and columns of the row the target lacks, not reported yet
 * (`reported` holds `schema.table.column` of those already reported once).
 */
export function columnDrift(t: TargetTable, c: RowChange, reported: ReadonlySet<string>): Drift[] {
  const row = c.after ?? c.before;
  if (row === null) return [];
  const out: Drift[] = [];
  const id = (col: string) => `${t.schema}.${t.name}.${col}`;
  // PGD's names: the incoming row lacks a column of the target (source_column_missing), the
  // target lacks a column of the incoming row (target_column_missing)
  for (const col of t.columns.keys())
    if (!(col in row) && !reported.has(id(col))) out.push({ column: col, kind: 'source_column_missing' });
  for (const col of Object.keys(row))
    if (!t.columns.has(col) && !reported.has(id(col)))
      out.push({ column: col, kind: 'target_column_missing' });
  return out;
}

/** Columns of the target that the change's shape does not have (its writer's node had not added them yet). */
export function missingFromShape(t: TargetTable, c: RowChange): string[] {
  const row = c.after ?? c.before;
  if (row === null) return [];
  return [...t.columns.keys()].filter((col) => !(col in row));
}

/**
 * A row written in a shape without some of the target's columns, as its writer's node holds it
 * once those columns reach it: each such column with the value rows had when it was added (its
 * constant default, or NULL). Under last-writer-wins per row, the newest row wins whole; keeping
 * this node's value instead would leave the nodes apart (the writer keeps its own).
 */
export function withAddedColumns(t: TargetTable, c: RowChange): RowChange {
  if (c.after === null || (c.op !== 'INSERT' && c.op !== 'UPDATE')) return c;
  const missing = missingFromShape(t, c);
  if (missing.length === 0) return c;
  return {
    ...c,
    after: { ...c.after, ...Object.fromEntries(missing.map((col) => [col, t.columns.get(col)!.addedValue])) },
  };
}

export function driftId(t: TargetTable, column: string): string {
  return `${t.schema}.${t.name}.${column}`;
}
