/**
 * Conflict policies as planner decisions (pure): on top of the row's last-writer-wins decision
 * (resolve.ts), a table's policy (services/protocol/conflict-policies.ts) may choose another
 * resolver for a conflict kind, merge an update column by column (column_lww), add numeric
 * columns' increments whatever the row decision (delta), or hand the conflict to a custom SQL
 * function. The decision says what to write; the writes carry it out (full.ts).
 */
import type { RowChange } from '../../protocol/change-decoder.ts';
import { UNCHANGED } from '../../protocol/table-schema.ts';
import { type LookupRow, rowVersion, versionOf } from '../outcome/answers.ts';
import type { TablePolicy } from '../target-catalog.ts';
import { type ConflictKind, type Decision, isNewer, type Resolution, type Version } from './resolve.ts';

export interface PolicyDecision extends Decision {
  /** The columns to set (an update of some columns only); undefined: every column the change carries. */
  columns?: string[];
  /** Delta columns, set to the local value plus the change's increment (new − old). */
  increments?: string[];
  /** Columns whose version this write records (column_lww). */
  touch?: string[];
  /** The version the row keeps for its other columns when only increments were added (delta under row_lww). */
  keepVersion?: Version;
  /** The custom resolver that decides this conflict (the write runs it). */
  custom?: string;
  /** The policy that decided, for the conflict log ('row_lww' by default). */
  policy: string;
}

/** Kinds a custom resolver decides (a local row to weigh the remote one against). */
const CUSTOM_KINDS: ConflictKind[] = ['insert_exists', 'update_origin_change', 'update_differing'];

/** The value of a row's column as text, or undefined when it was not sent (unchanged TOAST) or is absent. */
function sentValue(row: RowChange['after'], col: string): string | null | undefined {
  if (row === null || !(col in row)) return undefined;
  const v = row[col];
  return v === UNCHANGED ? undefined : (v as string | null);
}

/** Another resolver for the conflict's kind, if the policy names one. */
function byKind(d: Decision, c: RowChange, policy: TablePolicy): PolicyDecision | undefined {
  if (d.conflict === undefined) return undefined;
  const kind = d.conflict.kind;
  const resolver = policy.resolutions[kind];
  if (resolver === undefined) return undefined;
  const label = `${kind}:${resolver}`;
  const decided = (action: Decision['action'], resolution: Resolution): PolicyDecision => ({
    action,
    conflict: { kind, resolution },
    policy: label,
  });
  switch (resolver) {
    case 'update':
      return decided('update', 'apply_remote');
    case 'skip':
      return decided('skip', kind === 'update_missing' ? 'skip' : 'keep_local');
    case 'insert_or_skip': {
      const complete = c.after !== null && Object.values(c.after).every((v) => v !== UNCHANGED);
      return complete ? decided('insert', 'apply_remote') : decided('skip', 'skip');
    }
    case 'delete':
      return decided('delete', 'apply_remote');
    default:
      // update_if_newer: last writer wins, as decided
      return { ...d, policy: label };
  }
}

/**
 * The decision for change `c` under `policy`, from the row-level decision `d` and what was looked
 * up (`local`, with per-column versions for column_lww tables). `keyCols`: the columns rows are
 * found by (never written).
 */
export function applyPolicy(
  d: Decision,
  c: RowChange,
  local: LookupRow,
  policy: TablePolicy,
  keyCols: string[],
  localNode: string,
): PolicyDecision {
  const kinded = byKind(d, c, policy) ?? { ...d, policy: 'row_lww' };
  if (
    policy.custom !== null &&
    d.conflict !== undefined &&
    local.found &&
    CUSTOM_KINDS.includes(d.conflict.kind)
  ) {
    return {
      action: 'custom',
      conflict: { kind: d.conflict.kind, resolution: 'custom' },
      custom: policy.custom,
      policy: `custom:${policy.custom}`,
    };
  }
  const merging = policy.rows === 'column_lww' || policy.delta.length > 0;
  if (!merging) return kinded;
  const incoming: Version = { ts: c.tx.commitTs, node: c.origin.node };
  const others = (cols: string[]) => cols.filter((x) => !keyCols.includes(x) && !policy.delta.includes(x));
  if (c.op === 'INSERT' && kinded.action === 'update' && policy.rows === 'column_lww') {
    // a newer insert over a row: every column is the insert's now
    const cols = others(Object.keys(c.after ?? {}).filter((x) => sentValue(c.after, x) !== undefined));
    return { ...kinded, touch: cols, policy: 'column_lww' };
  }
  if (c.op === 'INSERT' && kinded.action === 'insert' && policy.rows === 'column_lww') {
    const cols = others(Object.keys(c.after ?? {}).filter((x) => sentValue(c.after, x) !== undefined));
    return { ...kinded, touch: cols };
  }
  // an update of a row that is here, with its old row (REPLICA IDENTITY FULL): merge it
  if (c.op !== 'UPDATE' || !local.found || c.before === null || kinded.action === 'delete') return kinded;
  const increments = policy.delta.filter((x) => {
    const before = sentValue(c.before, x);
    const after = sentValue(c.after, x);
    return (
      before !== undefined && after !== undefined && before !== null && after !== null && before !== after
    );
  });
  let columns: string[];
  let touch: string[] | undefined;
  if (policy.rows === 'column_lww') {
    // each column the update changed, where its writer is newer than the column's local version
    const changed = others(Object.keys(c.after ?? {})).filter((x) => {
      const after = sentValue(c.after, x);
      return after !== undefined && after !== sentValue(c.before, x);
    });
    const versions = local.col_versions ?? {};
    columns = changed.filter((x) => {
      const v = versions[x];
      return isNewer(incoming, v === undefined ? null : versionOf(v.ts, v.origin, localNode));
    });
    touch = columns;
  } else {
    columns =
      kinded.action === 'update'
        ? others(Object.keys(c.after ?? {}).filter((x) => sentValue(c.after, x) !== undefined))
        : [];
  }
  if (columns.length === 0 && increments.length === 0) {
    return kinded.action === 'update' ? { ...kinded, action: 'skip' } : kinded;
  }
  const keepVersion =
    policy.rows === 'row_lww' && kinded.action !== 'update'
      ? (rowVersion(local, localNode) ?? undefined)
      : undefined;
  return {
    action: 'update',
    columns,
    increments,
    ...(touch === undefined ? {} : { touch }),
    ...(keepVersion === undefined ? {} : { keepVersion }),
    ...(kinded.conflict === undefined
      ? {}
      : { conflict: { kind: kinded.conflict.kind, resolution: 'merge' } }),
    policy:
      policy.rows === 'column_lww'
        ? increments.length > 0
          ? 'column_lww+delta'
          : 'column_lww'
        : 'row_lww+delta',
  };
}
