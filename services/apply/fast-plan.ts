/**
 * The fast path's plan (no I/O of its own): which complete small source transactions of a run go
 * in one round trip, and the script of each (`begin; execute setup; execute <statement>…;
 * commit;`), with statements named through the connection's prepared statements. Each statement
 * applies only rows that need no conflict resolution, else raises BR001 (fast-sql.ts).
 */
import type { DecodedChange, RowChange } from '../protocol/change-decoder.ts';
import { formatLsn, type Lsn } from '../protocol/lsn.ts';
import { codecFromAvro } from '../protocol/pg-types.ts';
import {
  fastDelete,
  fastInsert,
  fastUpdate,
  literal,
  textArrayLiteral,
  transactionScript,
  XACT_SETUP,
} from './fast-sql.ts';
import type { PreparedStatements } from './prepared-statements.ts';
import { expandKeyChanges, presentColumns, textOf, wholeTransactionAt } from './source-transactions.ts';
import type { TargetTable } from './target-catalog.ts';

/** A complete small source transaction planned for the fast path: events [start, end) of a run. */
export interface FastTx {
  start: number;
  end: number;
  commitLsn: Lsn;
  commitTs: bigint;
  script: string;
  rows: { insert: number; update: number; delete: number };
}

export interface FastPlanDeps {
  /** The source's last applied commit LSN: events at or below it are passed over. */
  applied: Lsn;
  /** Most transactions in the group. */
  limit: number;
  /** Most rows in the group (a transaction with more is not taken). */
  chunkRows: number;
  statements: PreparedStatements;
  /** This node's replication origin id for the source (the fast update's "same origin" test). */
  roident: number;
  /** The target table of a change if the group paths may take it, else undefined. */
  table: (c: RowChange) => Promise<TargetTable | undefined>;
}

/** Upper bound of the SQL text sent in one fast-path round trip. */
const FAST_SCRIPT_MAX_CHARS = 4 * 1024 * 1024;

const timestamptz = codecFromAvro({ type: 'long', logicalType: 'timestamp-micros' });

/**
 * Complete source transactions from `from` on whose every row the fast path can apply, up to
 * the group limits; `next` is where planning stopped (events already applied are passed over).
 */
export async function planFast(
  changes: DecodedChange[],
  from: number,
  deps: FastPlanDeps,
): Promise<{ txs: FastTx[]; next: number }> {
  const txs: FastTx[] = [];
  let i = from;
  let rows = 0;
  let chars = 0;
  while (i < changes.length && txs.length < deps.limit) {
    const first = changes[i]!;
    if (first.tx.commitLsn <= deps.applied) {
      i++; // applied before (redelivery after a restart)
      continue;
    }
    const whole = wholeTransactionAt(changes, i);
    if (whole === undefined) break; // not whole in this run
    const { end } = whole;
    const txRows = end - i;
    if (txs.length > 0 && rows + txRows > deps.chunkRows) break;
    const planned = await planTransaction(first, i, end, whole.rows, deps);
    if (planned === undefined) break;
    if (txs.length > 0 && chars + planned.script.length > FAST_SCRIPT_MAX_CHARS) break;
    txs.push(planned);
    rows += txRows;
    chars += planned.script.length;
    i = end;
  }
  return { txs, next: i };
}

/** The fast-path script of one source transaction, or undefined when a row needs the full path. */
async function planTransaction(
  first: DecodedChange,
  start: number,
  end: number,
  rowChanges: RowChange[],
  deps: FastPlanDeps,
): Promise<FastTx | undefined> {
  if (rowChanges.length > deps.chunkRows) return undefined;
  const commitTsText = timestamptz.toText(first.tx.commitTs);
  const ts = literal(commitTsText);
  const statements: string[] = [];
  const counts = { insert: 0, update: 0, delete: 0 };
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
    if (run.op === 'INSERT') {
      statements.push(deps.statements.execute(t, run.sig, () => fastInsert(t, pk, cols), values));
      counts.insert += items.length;
    } else if (run.op === 'UPDATE') {
      statements.push(
        deps.statements.execute(t, run.sig, () => fastUpdate(t, pk, cols, deps.roident), [
          ...keys,
          ...values,
          ts,
        ]),
      );
      counts.update += items.length;
    } else {
      statements.push(deps.statements.execute(t, run.sig, () => fastDelete(t, pk), [...keys, ts]));
      counts.delete += items.length;
    }
    run = undefined;
  };
  for (const c of expandKeyChanges(rowChanges)) {
    const t = await deps.table(c);
    if (t === undefined) return undefined;
    let cols: string[] = [];
    if (c.op !== 'DELETE') {
      cols = presentColumns(t, c.after!);
      if (c.op === 'INSERT' && !t.primaryKey.every((k) => cols.includes(k))) return undefined;
      if (cols.length === 0) return undefined;
    }
    const sig = `${t.sql}\u0000${c.op}\u0000${cols.join('\u0000')}`;
    const key = JSON.stringify(t.primaryKey.map((k) => c.key![k]));
    if (run !== undefined && (run.sig !== sig || run.keys.has(key))) flush();
    if (run === undefined) run = { t, op: c.op, cols, sig, items: [], keys: new Set() };
    run.items.push(c);
    run.keys.add(key);
  }
  flush();
  return {
    start,
    end,
    commitLsn: first.tx.commitLsn,
    commitTs: first.tx.commitTs,
    script: transactionScript(
      deps.statements.execute(XACT_SETUP, 'setup', () => XACT_SETUP, [
        literal(formatLsn(first.tx.commitLsn)),
        ts,
      ]),
      statements,
    ),
    rows: counts,
  };
}
