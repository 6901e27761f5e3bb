/**
 * The resolve-ahead strategy's planner (pure). A group of complete small source transactions,
 * no key twice in the group (so no transaction depends on another's writes), is planned in two
 * steps: the lookups of every key (one round trip, in a transaction that is rolled back), then,
 * from what they found, one local transaction per source transaction that first checks and locks
 * that its keys are still in the state looked up (the row's and the tombstone's xmin), then writes
 * what `resolve()` decided, its conflict log, and commits. A local write in between makes the
 * check raise BR001: that transaction and the rest of the script do not run — unless the
 * decision was to keep that local row (it was newer than the change), which a newer local write
 * leaves true: hot rows local writers keep changing (pgbench's branches) then need no full path.
 *
 * The lookups never commit: their row locks take an xid, so a commit in this session could carry
 * the origin progress of a transaction that did not commit (the origin setup of one that failed),
 * which is how the outcome reader counts what committed.
 */
import type { DecodedChange, RowChange } from '../../protocol/change-decoder.ts';
import type { Lsn } from '../../protocol/lsn.ts';
import { codecFromAvro } from '../../protocol/pg-types.ts';
import type { LookupRow } from '../outcome/answers.ts';
import type { TargetTable } from '../target-catalog.ts';
import { decide } from './decide.ts';
import { executeWrite, plainInserts, planWrites } from './full.ts';
import type { Decision } from './resolve.ts';
import {
  addAction,
  literal,
  rolledBack,
  type StatementNamer,
  TAKE_XID,
  type TxPlan,
  textArrayLiteral,
  untyped,
} from './script.ts';
import { expandKeyChanges, wholeTransactionAt } from './source-transactions.ts';
import { lookupSql, verifySql } from './sql-rows.ts';

const commitTime = codecFromAvro({ type: 'long', logicalType: 'timestamp-micros' });

/**
 * Whether a decision keeps a local row that was there and newer than the change (nothing is
 * written): it holds for any later version of that row too (insert_exists, update_origin_change
 * and delete_recently_updated keep their kind while the row is there and newer). The conflict
 * log then holds the local row as it was looked up.
 */
export function keepsLocalRow(d: Decision, looked: LookupRow): boolean {
  return d.action === 'skip' && d.conflict?.resolution === 'keep_local' && looked.found;
}

/** A complete small source transaction of a resolve-ahead group. */
export interface AheadTx {
  start: number;
  end: number;
  commitLsn: Lsn;
  commitTs: bigint;
  sourceRows: number;
  /** Its row changes (key changes split), each with its table. */
  rows: { c: RowChange; t: TargetTable }[];
}

export interface AheadInput {
  applied: Lsn;
  groupTransactions: number;
  chunkRows: number;
  table: (c: RowChange) => TargetTable | undefined;
}

/**
 * Complete small source transactions from `from` on that resolve against the primary key, no
 * key twice in the group, up to the group limits; `next` is where planning stopped.
 */
export function planAheadGroup(
  changes: DecodedChange[],
  from: number,
  input: AheadInput,
): { txs: AheadTx[]; next: number } {
  const txs: AheadTx[] = [];
  const keys = new Set<string>();
  let i = from;
  let rows = 0;
  while (i < changes.length && txs.length < input.groupTransactions) {
    const first = changes[i]!;
    if (first.tx.commitLsn <= input.applied) {
      i++;
      continue;
    }
    const whole = wholeTransactionAt(changes, i);
    if (whole === undefined || whole.ddl) break;
    const { end, rows: source } = whole;
    if (txs.length > 0 && rows + source.length > input.chunkRows) break;
    if (source.length > input.chunkRows) break;
    const planned: { c: RowChange; t: TargetTable; key: string }[] = [];
    let ok = true;
    for (const c of expandKeyChanges(source)) {
      const t = input.table(c);
      // an insert into a table without a key (the group tables give only those) looks nothing up
      if (t !== undefined && t.primaryKey.length === 0) {
        planned.push({ c, t, key: '' });
        continue;
      }
      const key = t && `${t.sql}\u0000${JSON.stringify(t.primaryKey.map((k) => c.key![k]))}`;
      if (t === undefined || key === undefined || keys.has(key) || planned.some((p) => p.key === key)) {
        ok = false;
        break;
      }
      planned.push({ c, t, key });
    }
    if (!ok) break;
    for (const p of planned) if (p.key !== '') keys.add(p.key);
    txs.push({
      start: i,
      end,
      commitLsn: first.tx.commitLsn,
      commitTs: first.tx.commitTs,
      sourceRows: source.length,
      rows: planned.map(({ c, t }) => ({ c, t })),
    });
    rows += source.length;
    i = end;
  }
  return { txs, next: i };
}

/** The row changes to look up of resolve-ahead transactions by table (keyed tables), in order of first appearance. */
export function byTable(txs: AheadTx[]): Map<TargetTable, RowChange[]> {
  const tables = new Map<TargetTable, RowChange[]>();
  for (const x of txs)
    for (const { c, t } of x.rows) {
      if (t.primaryKey.length === 0) continue;
      const list = tables.get(t);
      if (list === undefined) tables.set(t, [c]);
      else list.push(c);
    }
  return tables;
}

export interface LookupPlan {
  /** The lookups as a script in a transaction that is rolled back. */
  script: string;
  /** How many answers the script gives after its `begin`. */
  count: number;
  /** What the answers say of each row change. */
  read: (results: { rows: LookupRow[] }[]) => Map<RowChange, LookupRow>;
}

/** The lookups of a group (one statement per table), or undefined when it has no rows. */
export function planLookups(txs: AheadTx[], statements: StatementNamer): LookupPlan | undefined {
  const tables = [...byTable(txs)];
  if (tables.length === 0) return undefined;
  const sql = tables.map(([t, cs]) =>
    statements.execute(
      t,
      `full lookup ${t.primaryKey.join('\u0000')}\u0001`,
      () => untyped(lookupSql(t, t.primaryKey, [])),
      [
        ...t.primaryKey.map((k) => textArrayLiteral(cs.map((c) => c.key![k]!))),
        literal(`${t.schema}.${t.name}`),
      ],
    ),
  );
  return {
    script: rolledBack(sql),
    count: sql.length,
    read: (results) => {
      const state = new Map<RowChange, LookupRow>();
      for (const [n, [, cs]] of tables.entries())
        for (const [k, c] of cs.entries()) state.set(c, results[n]!.rows[k]!);
      return state;
    },
  };
}

/**
 * One local transaction per source transaction of the group, resting on `state` (the lookups):
 * begin and origin setup (`begin` gives them), the check of the state, the writes `resolve()`
 * decided, the conflict log, commit.
 */
export function planAheadTransactions(
  txs: AheadTx[],
  state: Map<RowChange, LookupRow>,
  ctx: {
    statements: StatementNamer;
    localNode: string;
    begin: (commitLsn: Lsn) => string[];
    /** The origin setup, just before the commit (script.ts XACT_SETUP). */
    commitSetup: (commitLsn: Lsn, commitTs: bigint) => string;
    conflictsInsert: (plan: TxPlan) => string;
  },
): TxPlan[] {
  return txs.map((x) => {
    const statements = ctx.begin(x.commitLsn);
    const plan: TxPlan = {
      start: x.start,
      end: x.end,
      commitLsn: x.commitLsn,
      commitTs: x.commitTs,
      sourceRows: x.sourceRows,
      script: '',
      conflicts: [],
      deadLetters: [],
      actions: new Map(),
    };
    if (x.rows.length === 0) statements.push(TAKE_XID);
    // consecutive changes of one table are one batch, as in the full path: decided first, since
    // the check of each key depends on its decision
    const keeps = new Set<RowChange>();
    const writes: string[] = [];
    let batch: RowChange[] = [];
    let table: TargetTable | undefined;
    const flush = () => {
      if (table === undefined || batch.length === 0) return;
      const { decisions, conflicts } = decide(
        batch,
        batch.map((c) => state.get(c)!),
        ctx.localNode,
        table,
        table.primaryKey,
      );
      plan.conflicts.push(...conflicts);
      writes.push(...planWrites(table, table.primaryKey, decisions, ctx.statements).deferred);
      for (const d of decisions) {
        addAction(plan.actions, d.d.action, 1);
        if (d.c.before === null && keepsLocalRow(d.d, state.get(d.c)!)) keeps.add(d.c);
      }
      batch = [];
    };
    for (const { c, t } of x.rows) {
      if (t !== table) flush();
      if (t.primaryKey.length === 0) {
        // a row of its own, inserted as it comes
        table = undefined;
        writes.push(...plainInserts(t, [c]).map((w) => executeWrite(t, w, ctx.statements)));
        addAction(plan.actions, 'insert', 1);
        continue;
      }
      table = t;
      batch.push(c);
    }
    flush();
    // the state each decision rests on, checked and locked first
    for (const [t, cs] of byTable([x])) {
      statements.push(
        ctx.statements.execute(
          t,
          `full verify ${t.primaryKey.join('\u0000')}`,
          () => untyped(verifySql(t, t.primaryKey)),
          [
            ...t.primaryKey.map((k) => textArrayLiteral(cs.map((c) => c.key![k]!))),
            literal(`${t.schema}.${t.name}`),
            textArrayLiteral(cs.map((c) => state.get(c)!.row_xmin)),
            textArrayLiteral(cs.map((c) => state.get(c)!.tomb_xmin)),
            textArrayLiteral(cs.map((c) => (keeps.has(c) ? 't' : 'f'))),
            literal(commitTime.toText(x.commitTs)),
          ],
        ),
      );
    }
    statements.push(...writes);
    if (plan.conflicts.length > 0) statements.push(ctx.conflictsInsert(plan));
    statements.push(ctx.commitSetup(x.commitLsn, x.commitTs), 'commit');
    plan.script = statements.join(';\n');
    return plan;
  });
}
