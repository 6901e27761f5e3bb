/**
 * The full strategy's planner (pure): the statements of one batch of a source transaction (one
 * table, distinct keys) inside its open local transaction. New rows go in one statement when
 * their keys neither exist nor have a tombstone (the common case); the others are looked up with
 * row locks in the same transaction, resolved (decide.ts), and written with a few set-based
 * statements. The orchestration (open-transaction.ts) sends them; this says what they are.
 */
import type { RowChange } from '../../protocol/change-decoder.ts';
import { plainRow } from '../outcome/conflict-log.ts';
import { resyncedVersionWrites } from '../resync.ts';
import { byWholeRow, type TargetTable } from '../target-catalog.ts';
import type { Decided } from './decide.ts';
import { literal, type StatementNamer, textArrayLiteral, untyped } from './script.ts';
import { presentColumns, sameColumns, textOf } from './source-transactions.ts';
import { customSql, keepVersionsSql, mergeUpdateSql, touchColumnsSql } from './sql-policy.ts';
import {
  deleteByCtidSql,
  deleteSql,
  insertNewSql,
  insertSql,
  lookupSql,
  tombstoneSql,
  updateByCtidSql,
  updateSql,
} from './sql-rows.ts';

/** A set-based write: its SQL, one parameter per `$n` (arrays of text forms, or scalars), the changes it writes. */
export interface RowWrite {
  sql: string;
  params: ((string | null)[] | string)[];
  changes: RowChange[];
  /** A custom resolver runs in it: always under a savepoint, and any error of it sets the row aside. */
  custom?: boolean;
}

/**
 * The columns rows are found by: the primary key when the stream's key holds it (REPLICA
 * IDENTITY FULL sends the whole old row as key), else the stream's key; the delete trigger uses
 * the same rule.
 */
export function keyColumns(t: TargetTable, first: RowChange): string[] {
  const streamKey = Object.keys(first.key ?? {});
  return t.primaryKey.length > 0 && t.primaryKey.every((k) => streamKey.includes(k))
    ? t.primaryKey
    : streamKey;
}

/** The statement as an EXECUTE of its prepared form (shape: the SQL itself). */
export function executeWrite(t: TargetTable, w: RowWrite, statements: StatementNamer): string {
  const args = w.params.map((p) => (Array.isArray(p) ? textArrayLiteral(p) : literal(p)));
  return statements.execute(t, w.sql, () => untyped(w.sql), args);
}

/**
 * When every change of the batch is an INSERT of a whole key into a table without other unique
 * keys: the statement that inserts those whose key neither exists nor has a tombstone, answering
 * which it inserted (ord, 1-based); the rest need resolving.
 */
export function insertNewStep(
  t: TargetTable,
  keyCols: string[],
  batch: RowChange[],
  statements: StatementNamer,
): string | undefined {
  if (t.otherUniqueKeys || keyCols !== t.primaryKey || !batch.every((c) => c.op === 'INSERT'))
    return undefined;
  const cols = presentColumns(t, batch[0]!.after!);
  if (!keyCols.every((k) => cols.includes(k))) return undefined;
  if (!batch.every((c) => sameColumns(presentColumns(t, c.after!), cols))) return undefined;
  const sql = insertNewSql(t, keyCols, cols);
  return statements.execute(t, `full insert-new ${cols.join('\u0000')}`, () => untyped(sql), [
    ...cols.map((col) => textArrayLiteral(batch.map((c) => textOf(c.after![col])))),
    literal(`${t.schema}.${t.name}`),
  ]);
}

/**
 * The lookup (with row locks) of the batch's keys; with REPLICA IDENTITY FULL (an old row sent)
 * it also compares the old row with the local one (update_differing).
 */
export function lookupStep(
  t: TargetTable,
  keyCols: string[],
  batch: RowChange[],
  statements: StatementNamer,
): string {
  const withBefore = batch.find((c) => c.before !== null);
  const beforeCols = withBefore ? Object.keys(withBefore.before!).filter((col) => t.columns.has(col)) : [];
  const sql = lookupSql(t, keyCols, beforeCols);
  return statements.execute(
    t,
    `full lookup ${keyCols.join('\u0000')}\u0001${beforeCols.join('\u0000')}`,
    () => untyped(sql),
    [
      ...keyCols.map((k) => textArrayLiteral(batch.map((c) => c.key![k]!))),
      literal(`${t.schema}.${t.name}`),
      ...beforeCols.map((col) =>
        textArrayLiteral(batch.map((c) => (c.before === null ? null : textOf(c.before[col])))),
      ),
    ],
  );
}

/**
 * The writes that carry out the decisions of a batch: deletes and their tombstones; updates by
 * the columns they set and add to (a policy may set some columns only, and add increments to
 * delta columns); inserts; then what policies record: per-column versions, the version a row
 * keeps, and custom resolvers' rows.
 */
export function writesFor(t: TargetTable, keyCols: string[], decisions: Decided[]): RowWrite[] {
  const qualified = `${t.schema}.${t.name}`;
  const of = (a: string) => decisions.filter((x) => x.d.action === a);
  const changes = (ds: Decided[]) => ds.map((x) => x.c);
  const keys = (cs: RowChange[]) => keyCols.map((k) => cs.map((c) => c.key![k]!));
  const out: RowWrite[] = [];
  if (byWholeRow(t, keyCols)) return wholeRowWrites(t, decisions);
  const deletes = changes(of('delete'));
  if (deletes.length > 0) out.push({ sql: deleteSql(t, keyCols), params: keys(deletes), changes: deletes });
  const tombs = [...deletes, ...changes(of('tombstone'))];
  if (tombs.length > 0)
    out.push({ sql: tombstoneSql(t, keyCols), params: [...keys(tombs), qualified], changes: [] });
  // updates, grouped by which columns they set (unchanged TOAST values are left alone) and add to
  const groups = new Map<string, { set: string[]; inc: string[]; cs: RowChange[] }>();
  for (const { c, d } of of('update')) {
    const set = d.columns ?? presentColumns(t, c.after!);
    const inc = d.increments ?? [];
    const sig = `${set.join('\u0000')}\u0001${inc.join('\u0000')}`;
    const g = groups.get(sig) ?? { set, inc, cs: [] };
    g.cs.push(c);
    groups.set(sig, g);
  }
  for (const { set, inc, cs } of groups.values()) {
    const values = set.map((col) => cs.map((c) => textOf(c.after![col])));
    if (inc.length === 0) {
      out.push({ sql: updateSql(t, keyCols, set), params: [...keys(cs), ...values], changes: cs });
      continue;
    }
    out.push({
      sql: mergeUpdateSql(t, keyCols, set, inc),
      params: [
        ...keys(cs),
        ...values,
        ...inc.map((col) => cs.map((c) => textOf(c.after![col]))),
        ...inc.map((col) => cs.map((c) => textOf(c.before![col]))),
      ],
      changes: cs,
    });
  }
  const inserts = changes(of('insert'));
  if (inserts.length > 0) {
    const cols = presentColumns(t, inserts[0]!.after!);
    out.push({
      sql: insertSql(t, cols),
      params: cols.map((col) => inserts.map((c) => textOf(c.after![col]))),
      changes: inserts,
    });
  }
  const touched = decisions.flatMap((x) => (x.d.touch ?? []).map((col) => ({ c: x.c, col })));
  if (touched.length > 0) {
    out.push({
      sql: touchColumnsSql(t, keyCols),
      params: [...keyCols.map((k) => touched.map((p) => p.c.key![k]!)), touched.map((p) => p.col), qualified],
      changes: [],
    });
  }
  const kept = decisions.filter((x) => x.d.keepVersion !== undefined);
  if (kept.length > 0) {
    out.push({
      sql: keepVersionsSql(t, keyCols),
      params: [
        ...keys(changes(kept)),
        kept.map((x) => x.d.keepVersion!.ts.toString()),
        kept.map((x) => x.d.keepVersion!.node),
        qualified,
      ],
      changes: [],
    });
  }
  for (const { c, d, local } of of('custom')) {
    out.push({
      sql: customSql(t, keyCols, d.custom!),
      params: [
        ...keyCols.map((k) => c.key![k]!),
        d.conflict!.kind,
        JSON.stringify(local.local_row),
        JSON.stringify(plainRow(c.after)),
        JSON.stringify({ ts: local.row_ts, origin: local.row_origin }),
        JSON.stringify({ ts: c.tx.commitTs.toString(), node: c.origin.node }),
      ],
      changes: [c],
      custom: true,
    });
  }
  // the original versions of what resync rows wrote (apply/resync.ts)
  out.push(...resyncedVersionWrites(t, keyCols, decisions));
  return out;
}

/**
 * The writes of a table whose rows are found by the whole old row (REPLICA IDENTITY FULL, no
 * primary key): updates and deletes of the one row each lookup locked (by its ctid: identical rows
 * are each their own), no tombstones (there is no key to remember a delete by).
 */
function wholeRowWrites(t: TargetTable, decisions: Decided[]): RowWrite[] {
  const out: RowWrite[] = [];
  const deletes = decisions.filter((x) => x.d.action === 'delete');
  if (deletes.length > 0)
    out.push({
      sql: deleteByCtidSql(t),
      params: [deletes.map((x) => x.local.row_ctid!)],
      changes: deletes.map((x) => x.c),
    });
  const groups = new Map<string, Decided[]>();
  for (const x of decisions.filter((d) => d.d.action === 'update')) {
    const sig = presentColumns(t, x.c.after!).join('\u0000');
    groups.set(sig, [...(groups.get(sig) ?? []), x]);
  }
  for (const [sig, xs] of groups) {
    const cols = sig.split('\u0000');
    out.push({
      sql: updateByCtidSql(t, cols),
      params: [
        xs.map((x) => x.local.row_ctid!),
        ...cols.map((col) => xs.map((x) => textOf(x.c.after![col]))),
      ],
      changes: xs.map((x) => x.c),
    });
  }
  return out;
}

/** Inserts of whole rows, one statement per set of columns present (a row of its own each). */
export function plainInserts(t: TargetTable, rows: RowChange[]): RowWrite[] {
  const groups = new Map<string, RowChange[]>();
  for (const c of rows) {
    const sig = presentColumns(t, c.after!).join('\u0000');
    groups.set(sig, [...(groups.get(sig) ?? []), c]);
  }
  return [...groups].map(([sig, cs]) => {
    const cols = sig.split('\u0000');
    return {
      sql: insertSql(t, cols),
      params: cols.map((col) => cs.map((c) => textOf(c.after![col]))),
      changes: cs,
    };
  });
}

/**
 * The writes of a batch on a table without other unique keys, as EXECUTEs that go with the next
 * statement that answers (only another unique key can make a write fail: the rows of this key
 * are locked or known). Tables with other unique keys write under savepoints instead.
 */
export function planWrites(
  t: TargetTable,
  keyCols: string[],
  decisions: Decided[],
  statements: StatementNamer,
): { deferred: string[] } {
  return { deferred: writesFor(t, keyCols, decisions).map((w) => executeWrite(t, w, statements)) };
}

/** One row of a set-based write, to find which rows of a failed one are at fault. */
export function oneRow(w: RowWrite, i: number): unknown[] {
  return w.params.map((p) => (Array.isArray(p) ? [p[i]] : p));
}

/** The batches of a chunk of a source transaction, in order, and what decides how they are sent. */
export interface Batches {
  /** One table and distinct keys each; a TRUNCATE is a batch of its own. */
  batches: RowChange[][];
  /** A key of a table comes twice in the chunk (a later batch depends on an earlier one's writes). */
  keysRepeat: boolean;
  truncates: boolean;
}

/**
 * Splits changes (key changes expanded) into batches: a batch ends where the table changes or a
 * key comes again. When no key comes twice in the whole chunk, no batch depends on what another
 * writes, so all their lookups can go in one round trip before any of their writes.
 */
export function splitBatches(changes: RowChange[]): Batches {
  const batches: RowChange[][] = [];
  const seen = new Set<string>();
  let keysRepeat = false;
  let truncates = false;
  let batch: RowChange[] = [];
  let keys = new Set<string>();
  const end = () => {
    if (batch.length > 0) batches.push(batch);
    batch = [];
    keys = new Set();
  };
  for (const c of changes) {
    if (c.op === 'TRUNCATE') {
      end();
      batches.push([c]);
      truncates = true;
      continue;
    }
    const k = `${c.schema}.${c.table}\u0000${JSON.stringify(c.key)}`;
    // rows without a key are inserted as they come (nothing looked up)
    if (c.key !== null && Object.keys(c.key).length > 0 && seen.has(k)) keysRepeat = true;
    seen.add(k);
    if (batch.length > 0 && (batch[0]!.schema !== c.schema || batch[0]!.table !== c.table || keys.has(k)))
      end();
    batch.push(c);
    keys.add(k);
  }
  end();
  return { batches, keysRepeat, truncates };
}
