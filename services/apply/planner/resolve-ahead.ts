/**
 * The resolve-ahead strategy's planner (pure). A group of complete small source transactions is
 * planned in two steps: the lookups of every key (one round trip, in a transaction that is rolled
 * back), then, from what they found, one local transaction per source transaction that first
 * checks and locks that its keys are still in the state looked up (the row's and the tombstone's
 * xmin), then writes what `resolve()` decided, its conflict log, and commits. A local write in
 * between makes the check raise BR001: that transaction and the rest of the script do not run —
 * unless the decision was to keep that local row (it was newer than the change), which a newer
 * local write leaves true: hot rows local writers keep changing (pgbench's branches) then need
 * no full path.
 *
 * A key may come again in a later transaction of the group when that change is an update
 * following an insert or update of the key, committed later at the source (TPC-B updates its
 * branch row in every transaction). What the earlier change left is then known without a lookup:
 * the looked-up row if it was kept, or the row at the earlier change's version (its commit time
 * and this origin) if it was written; the later transaction's check asks for exactly that (the
 * row's version, not its xmin, which the script's own commit gives). Where the earlier decision
 * leaves the key in a state the planner cannot know (an insert over a tombstone), the plan ends
 * after that transaction and the next group looks the key up again.
 *
 * The lookups never commit: their row locks take an xid, so a commit in this session could carry
 * the origin progress of a transaction that did not commit (the origin setup of one that failed),
 * which is how the outcome reader counts what committed.
 */
import type { DecodedChange, RowChange } from '../../protocol/change-decoder.ts';
import type { Lsn } from '../../protocol/lsn.ts';
import { codecFromAvro } from '../../protocol/pg-types.ts';
import { UNCHANGED } from '../../protocol/table-schema.ts';
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
  /** Its row changes (key changes split), each with its table and key ('' in a table without one). */
  rows: { c: RowChange; t: TargetTable; key: string }[];
}

export interface AheadInput {
  applied: Lsn;
  groupTransactions: number;
  chunkRows: number;
  table: (c: RowChange) => TargetTable | undefined;
}

/**
 * Complete small source transactions from `from` on that resolve against the primary key, up to
 * the group limits; a key comes twice only where `mayFollow` allows it. `next` is where planning
 * stopped.
 */
export function planAheadGroup(
  changes: DecodedChange[],
  from: number,
  input: AheadInput,
): { txs: AheadTx[]; next: number } {
  const txs: AheadTx[] = [];
  /** Each key of the group: the last change to it, and when that committed. */
  const keys = new Map<string, { c: RowChange; ts: bigint }>();
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
      const key = t && aheadKey(t, c);
      const earlier = key === undefined ? undefined : keys.get(key);
      if (
        t === undefined ||
        key === undefined ||
        planned.some((p) => p.key === key) ||
        (earlier !== undefined && !mayFollow(earlier, c))
      ) {
        ok = false;
        break;
      }
      planned.push({ c, t, key });
    }
    if (!ok) break;
    for (const p of planned) if (p.key !== '') keys.set(p.key, { c: p.c, ts: first.tx.commitTs });
    txs.push({
      start: i,
      end,
      commitLsn: first.tx.commitLsn,
      commitTs: first.tx.commitTs,
      sourceRows: source.length,
      rows: planned,
    });
    rows += source.length;
    i = end;
  }
  return { txs, next: i };
}

/** A row change's key in a resolve-ahead group: its table and primary key values. */
function aheadKey(t: TargetTable, c: RowChange): string | undefined {
  if (c.key === null || c.key === undefined) return undefined;
  return `${t.sql}\u0000${JSON.stringify(t.primaryKey.map((k) => c.key![k]))}`;
}

/**
 * Whether change `c` may follow `earlier` (a change of the same key in an earlier transaction of
 * the group): an update after an insert or update, committed later at the source, neither a
 * resync row (those carry versions of their own). What the earlier one leaves is then one of
 * two states the planner knows (planAheadTransactions).
 */
export function mayFollow(earlier: { c: RowChange; ts: bigint }, c: RowChange): boolean {
  return (
    c.op === 'UPDATE' &&
    (earlier.c.op === 'INSERT' || earlier.c.op === 'UPDATE') &&
    c.tx.commitTs > earlier.ts &&
    c.resync === undefined &&
    earlier.c.resync === undefined
  );
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

/** What an earlier transaction of the group left of a key: the row at its version, written by this origin. */
interface Written {
  ts: bigint;
  row: Record<string, unknown>;
  /** What was looked up of the key before the group (its tombstone stays as it was). */
  looked: LookupRow;
}

/** The state a change rests on when an earlier transaction of the group wrote its key. */
function afterWrite(w: Written, origin: string): LookupRow {
  return {
    ...w.looked,
    row_xmin: null,
    local_row: w.row,
    row_ts: String(w.ts),
    row_origin: origin,
    found: true,
    differs: null,
    col_versions: null,
    row_floor: null,
    row_ctid: null,
  };
}

/** The row a decision to write a change leaves: its present columns over what was there. */
function writtenRow(c: RowChange, before: LookupRow): Record<string, unknown> {
  const row: Record<string, unknown> =
    before.found && before.local_row !== null ? { ...before.local_row } : {};
  for (const [k, v] of Object.entries(c.after ?? {})) if (v !== UNCHANGED) row[k] = v;
  return row;
}

/**
 * One local transaction per source transaction of the group, resting on `state` (the lookups)
 * and, for a key an earlier transaction of the group changed, on what that one left: begin and
 * origin setup (`begin` gives them), the check of the state, the writes `resolve()` decided, the
 * conflict log, commit. Fewer plans than transactions when a decision leaves a key that a later
 * transaction changes in a state it cannot know: the rest is planned again after a new lookup.
 */
export function planAheadTransactions(
  txs: AheadTx[],
  state: Map<RowChange, LookupRow>,
  ctx: {
    statements: StatementNamer;
    localNode: string;
    /** This applier's replication origin: the origin of the rows it writes. */
    origin: string;
    begin: (commitLsn: Lsn) => string[];
    /** The origin setup, just before the commit (script.ts XACT_SETUP). */
    commitSetup: (commitLsn: Lsn, commitTs: bigint) => string;
    conflictsInsert: (plan: TxPlan) => string;
  },
): TxPlan[] {
  const later = keysChangedAgain(txs);
  const written = new Map<string, Written>();
  const plans: TxPlan[] = [];
  for (const x of txs) {
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
    const keyOf = new Map(x.rows.map((r) => [r.c, r.key]));
    // what each change rests on: an earlier transaction's write of its key, or the lookup
    const restsOn = new Map<RowChange, { local: LookupRow; writtenTs?: bigint }>();
    for (const { c, key } of x.rows) {
      const w = key === '' ? undefined : written.get(key);
      restsOn.set(
        c,
        w === undefined ? { local: state.get(c)! } : { local: afterWrite(w, ctx.origin), writtenTs: w.ts },
      );
    }
    let unknowable = false;
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
        batch.map((c) => restsOn.get(c)!.local),
        ctx.localNode,
        table,
        table.primaryKey,
      );
      plan.conflicts.push(...conflicts);
      writes.push(...planWrites(table, table.primaryKey, decisions, ctx.statements).deferred);
      for (const d of decisions) {
        addAction(plan.actions, d.d.action, 1);
        const local = restsOn.get(d.c)!.local;
        if (d.c.before === null && keepsLocalRow(d.d, local)) keeps.add(d.c);
        const key = keyOf.get(d.c)!;
        if (!later.has(key)) continue;
        // what this decision leaves of a key a later transaction changes again
        if (d.d.action === 'update' || (d.d.action === 'insert' && !local.tombstone))
          written.set(key, { ts: x.commitTs, row: writtenRow(d.c, local), looked: state.get(d.c)! });
        else if (d.d.action !== 'skip') unknowable = true;
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
    // the state each decision rests on, checked and locked first: the looked-up xmins, or the
    // version an earlier transaction of the group wrote
    for (const [t, cs] of byTable([x])) {
      const on = cs.map((c) => restsOn.get(c)!);
      statements.push(
        ctx.statements.execute(
          t,
          `full verify ${t.primaryKey.join('\u0000')}`,
          () => untyped(verifySql(t, t.primaryKey)),
          [
            ...t.primaryKey.map((k) => textArrayLiteral(cs.map((c) => c.key![k]!))),
            literal(`${t.schema}.${t.name}`),
            textArrayLiteral(on.map((r) => r.local.row_xmin)),
            textArrayLiteral(on.map((r) => r.local.tomb_xmin)),
            textArrayLiteral(cs.map((c) => (keeps.has(c) ? 't' : 'f'))),
            literal(commitTime.toText(x.commitTs)),
            textArrayLiteral(on.map((r) => (r.writtenTs === undefined ? null : String(r.writtenTs)))),
            literal(ctx.origin),
          ],
        ),
      );
    }
    statements.push(...writes);
    if (plan.conflicts.length > 0) statements.push(ctx.conflictsInsert(plan));
    statements.push(ctx.commitSetup(x.commitLsn, x.commitTs), 'commit');
    plan.script = statements.join(';\n');
    plans.push(plan);
    if (unknowable) break;
  }
  return plans;
}

/** Keys a later transaction of the group changes again. */
function keysChangedAgain(txs: AheadTx[]): Set<string> {
  const seen = new Set<string>();
  const again = new Set<string>();
  for (const x of txs)
    for (const { key } of x.rows) {
      if (key === '') continue;
      if (seen.has(key)) again.add(key);
      seen.add(key);
    }
  return again;
}
