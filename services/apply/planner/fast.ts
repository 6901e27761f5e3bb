/**
 * The fast strategy's planner (pure): it assumes every row of a transaction is in the state
 * that needs no conflict resolution, and plans the complete small source transactions of a run,
 * many per round trip, each as its own local transaction whose statements check that assumption
 * (sql-fast.ts). The first statement that finds it false stops the script; the outcome reader
 * says which transactions committed before it, and the missed one goes to a strategy that looks
 * its rows up.
 */
import type { DecodedChange, RowChange } from '../../protocol/change-decoder.ts';
import { formatLsn, type Lsn } from '../../protocol/lsn.ts';
import { codecFromAvro } from '../../protocol/pg-types.ts';
import type { TargetTable } from '../target-catalog.ts';
import {
  addAction,
  literal,
  type StatementNamer,
  type TxPlan,
  textArrayLiteral,
  transactionScript,
  XACT_SETUP,
} from './script.ts';
import {
  expandKeyChanges,
  presentColumns,
  sameColumns,
  textOf,
  wholeTransactionAt,
} from './source-transactions.ts';
import { fastDelete, fastInsert, fastUpdate } from './sql-fast.ts';

export interface FastPlanInput {
  /** The source's last applied commit LSN: events at or below it are passed over. */
  applied: Lsn;
  /** Most transactions in the group. */
  limit: number;
  /** Most rows in the group (a transaction with more is not taken). */
  chunkRows: number;
  statements: StatementNamer;
  /** This node's replication origin id for the source (the fast update's "same origin" test). */
  roident: number;
  /** The target table of a change if a group strategy may take it, else undefined. */
  table: (c: RowChange) => TargetTable | undefined;
}

/** Upper bound of the SQL text sent in one fast-path round trip. */
const FAST_SCRIPT_MAX_CHARS = 4 * 1024 * 1024;

const timestamptz = codecFromAvro({ type: 'long', logicalType: 'timestamp-micros' });

/**
 * Complete source transactions from `from` on whose every row the fast path can apply, up to
 * the group limits; `next` is where planning stopped (events already applied are passed over).
 */
export function planFast(
  changes: DecodedChange[],
  from: number,
  input: FastPlanInput,
): { txs: TxPlan[]; next: number } {
  const txs: TxPlan[] = [];
  let i = from;
  let rows = 0;
  let chars = 0;
  while (i < changes.length && txs.length < input.limit) {
    const first = changes[i]!;
    if (first.tx.commitLsn <= input.applied) {
      i++; // applied before (redelivery after a restart)
      continue;
    }
    const whole = wholeTransactionAt(changes, i);
    if (whole === undefined || whole.ddl) break; // not whole in this run, or it changes the schema
    const { end } = whole;
    const txRows = end - i;
    if (txs.length > 0 && rows + txRows > input.chunkRows) break;
    const planned = planTransaction(first, i, end, whole.rows, input);
    if (planned === undefined) break;
    if (txs.length > 0 && chars + planned.script.length > FAST_SCRIPT_MAX_CHARS) break;
    txs.push(planned);
    rows += txRows;
    chars += planned.script.length;
    i = end;
  }
  return { txs, next: i };
}

/** The fast-path plan of one source transaction, or undefined when a row needs another strategy. */
function planTransaction(
  first: DecodedChange,
  start: number,
  end: number,
  rowChanges: RowChange[],
  input: FastPlanInput,
): TxPlan | undefined {
  if (rowChanges.length > input.chunkRows) return undefined;
  const ts = literal(timestamptz.toText(first.tx.commitTs));
  const statements: string[] = [];
  const actions = new Map<string, number>();
  // runs of one table, operation and column set with distinct keys become one statement each
  let run:
    | { t: TargetTable; op: string; cols: string[]; sig: string; items: RowChange[]; keys: Set<string> }
    | undefined;

  const flush = () => {
    if (run === undefined) return;
    const { t, cols, items } = run;
    const pk = t.primaryKey;
    const keys = pk.map((k) => textArrayLiteral(items.map((c) => c.key![k]!)));
    const values = cols.map((col) => textArrayLiteral(items.map((c) => textOf(c.after![col]))));
    const s = input.statements;
    if (run.op === 'INSERT') {
      statements.push(s.execute(t, run.sig, () => fastInsert(t, pk, cols), values));
      addAction(actions, 'insert', items.length);
    } else if (run.op === 'UPDATE') {
      statements.push(
        s.execute(t, run.sig, () => fastUpdate(t, pk, cols, input.roident), [...keys, ...values, ts]),
      );
      addAction(actions, 'update', items.length);
    } else {
      statements.push(s.execute(t, run.sig, () => fastDelete(t, pk), [...keys, ts]));
      addAction(actions, 'delete', items.length);
    }
    run = undefined;
  };
  for (const c of expandKeyChanges(rowChanges)) {
    const t = input.table(c);
    if (t === undefined) return undefined;
    let cols: string[] = [];
    if (c.op !== 'DELETE') {
      cols = presentColumns(t, c.after!);
      if (c.op === 'INSERT' && !t.primaryKey.every((k) => cols.includes(k))) return undefined;
      if (cols.length === 0) return undefined;
    }
    // rows of a table without a key never repeat one (each is a row of its own); a key's
    // values are strings (table() takes no other)
    const keyCols = t.primaryKey;
    const key =
      keyCols.length === 0
        ? `#${run?.items.length ?? 0}`
        : keyCols.length === 1
          ? c.key![keyCols[0]!]!
          : JSON.stringify(keyCols.map((k) => c.key![k]));
    if (
      run !== undefined &&
      (run.t.sql !== t.sql || run.op !== c.op || !sameColumns(run.cols, cols) || run.keys.has(key))
    )
      flush();
    if (run === undefined)
      run = {
        t,
        op: c.op,
        cols,
        sig: `${t.sql}\u0000${c.op}\u0000${cols.join('\u0000')}`,
        items: [],
        keys: new Set(),
      };
    run.items.push(c);
    run.keys.add(key);
  }
  flush();
  const setup = input.statements.execute(XACT_SETUP, 'setup', () => XACT_SETUP, [
    literal(formatLsn(first.tx.commitLsn)),
    ts,
  ]);
  return {
    start,
    end,
    commitLsn: first.tx.commitLsn,
    commitTs: first.tx.commitTs,
    sourceRows: rowChanges.length,
    script: transactionScript(setup, statements),
    conflicts: [],
    deadLetters: [],
    actions,
  };
}
