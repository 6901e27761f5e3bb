/**
 * A write that may fail on one of its rows (a table with other unique keys, a custom resolver, a
 * transaction applied in isolation), under a savepoint in its own round trip. When it fails on
 * the data, it is tried again row by row: a unique violation on another key is that row's
 * multiple_unique_conflicts, a row the error policy calls a dead letter (its values do not fit
 * the target; in isolation) and any error of a custom resolver set that row aside; the other rows
 * are applied. Anything else is thrown (the transaction is applied again, or apply stops).
 */
import type { RowChange } from '../protocol/change-decoder.ts';
import { directiveFor } from '../runtime/error-policy.ts';
import { SQLSTATE, sqlstateOf } from '../runtime/sqlstate.ts';
import { type Executor, namedQuery } from './executor/executor.ts';
import { oneRow, type RowWrite } from './planner/full.ts';
import type { TargetTable } from './target-catalog.ts';

export interface GuardedSink {
  /** A row that violates another unique key than the one rows are found by. */
  otherKey(change: RowChange, message: string): void;
  /** A row set aside (a dead letter), with why. */
  setAside(change: RowChange, reason: string): void;
}

export async function writeGuarded(
  exec: Executor,
  t: TargetTable,
  w: RowWrite,
  isolated: boolean,
  sink: GuardedSink,
): Promise<void> {
  // a violation of the key itself is a concurrent local insert (a collision), not another key
  const otherKey = (err: unknown) =>
    sqlstateOf(err) === SQLSTATE.UNIQUE_VIOLATION &&
    (err as { constraint?: string }).constraint !== t.primaryKeyIndex;
  const custom = w.custom === true;
  const dataError = (err: unknown) => {
    const kind = directiveFor(err, { doing: 'applying', ownKeyViolation: () => !otherKey(err) }).kind;
    // a custom resolver's own error (it raised, it returned what is not a row) is its change's
    // dead letter whatever its SQLSTATE; what may go through on a retry is not
    if (custom && sqlstateOf(err) !== undefined) return kind === 'deadletter' || kind === 'stop';
    return isolated && kind === 'deadletter';
  };
  const whole = await exec.underSavepoint('brabant_stmt', namedQuery(w.sql, w.params));
  if (whole.ok) return;
  if (!(otherKey(whole.error) || dataError(whole.error)) || w.changes.length === 0) throw whole.error;
  // one row at a time, to find the row(s) at fault
  for (let i = 0; i < w.changes.length; i++) {
    const one = await exec.underSavepoint('brabant_row', { text: w.sql, values: oneRow(w, i) });
    if (one.ok) continue;
    const c = w.changes[i]!;
    if (otherKey(one.error)) sink.otherKey(c, one.error.message);
    else if (dataError(one.error)) sink.setAside(c, setAsideReason(one.error, custom));
    else throw one.error;
  }
}

/** Why a row was set aside: the error policy's reason, or the custom resolver's failure. */
function setAsideReason(err: Error, custom: boolean): string {
  if (custom) return `the custom conflict resolver failed: ${err.message}`;
  const d = directiveFor(err, { doing: 'applying' });
  return d.kind === 'deadletter' ? d.reason : err.message;
}
