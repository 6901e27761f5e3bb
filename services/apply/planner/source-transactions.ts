/**
 * How apply reads a run of one source's events (pure): where a source transaction lies whole in
 * a run, key changes split into delete + insert, and the values a row carries.
 */
import type { DecodedChange, Row, RowChange } from '../../protocol/change-decoder.ts';
import { UNCHANGED } from '../../protocol/table-schema.ts';
import type { TargetTable } from '../target-catalog.ts';

/**
 * The source transaction starting at `start` when the run holds it whole (its first event to its
 * last, none missing): where it ends (exclusive), its row changes, and whether it changes the
 * schema (a DDL event: only the full path runs DDL, at its place among the rows); else undefined.
 */
export function wholeTransactionAt(
  changes: DecodedChange[],
  start: number,
): { end: number; rows: RowChange[]; ddl: boolean } | undefined {
  const first = changes[start]!;
  if (first.tx.index !== 0) return undefined;
  let end = start;
  while (end < changes.length && changes[end]!.tx.commitLsn === first.tx.commitLsn) end++;
  const last = changes[end - 1]!;
  if (!last.tx.last || last.tx.index !== end - 1 - start) return undefined;
  const rows: RowChange[] = [];
  let ddl = false;
  for (let j = start; j < end; j++) {
    const c = changes[j]!;
    if (c.kind === 'row') rows.push(c);
    else if (c.control === 'DDL') ddl = true;
  }
  return { end, rows, ddl };
}

/**
 * An UPDATE that changes the key becomes a DELETE of the old key and an INSERT of the new one
 * (same version), so each key is resolved on its own.
 */
export function expandKeyChanges(changes: RowChange[]): RowChange[] {
  const out: RowChange[] = [];
  for (const c of changes) {
    // With an old row ('O', REPLICA IDENTITY FULL) the key is the whole old row: not a key change.
    if (c.op !== 'UPDATE' || c.key === null || c.after === null || c.before !== null) {
      out.push(c);
      continue;
    }
    const newKey: Record<string, string> = {};
    let moved = false;
    for (const [k, v] of Object.entries(c.key)) {
      const nv = c.after[k];
      if (typeof nv === 'string') newKey[k] = nv;
      if (nv !== v) moved = true;
    }
    if (!moved) {
      out.push(c);
      continue;
    }
    out.push({ ...c, op: 'DELETE', after: null });
    out.push({ ...c, op: 'INSERT', key: newKey, before: null });
  }
  return out;
}

/** Columns of a new row that the target has and that carry a value (not unchanged TOAST). */
export function presentColumns(t: TargetTable, row: Row): string[] {
  const out: string[] = [];
  for (const c in row) if (t.columns.has(c) && row[c] !== UNCHANGED) out.push(c);
  return out;
}

/** Whether two column lists are the same, in the same order. */
export function sameColumns(a: string[], b: string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A column value as text for a statement parameter (unchanged TOAST and absent: null). */
export function textOf(v: Row[string] | undefined): string | null {
  return v === undefined || v === UNCHANGED ? null : v;
}

/**
 * A row change as the target's current shape names its columns: a column renamed here since the
 * source wrote the row (an old-shape row from a region the rename had not reached) carries its
 * value under the new name. A row that has the new name already is of the new shape: unchanged.
 */
export function withRenames(renames: ReadonlyMap<string, string>, c: RowChange): RowChange {
  if (renames.size === 0) return c;
  const rename = <V>(row: Record<string, V> | null): Record<string, V> | null => {
    if (row === null) return null;
    let moved = false;
    const out: Record<string, V> = {};
    for (const [k, v] of Object.entries(row)) {
      const to = renames.get(k);
      if (to !== undefined && !(to in row)) {
        out[to] = v;
        moved = true;
      } else out[k] = v;
    }
    return moved ? out : row;
  };
  const after = rename(c.after);
  const before = rename(c.before);
  const key = rename(c.key);
  return after === c.after && before === c.before && key === c.key ? c : { ...c, after, before, key };
}
