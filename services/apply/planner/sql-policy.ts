/**
 * Statements of the writes conflict policies ask for (pure; planner/policy.ts decides them):
 * updates that set some columns and add increments to others, per-column versions, the version a
 * row keeps, and a custom resolver's row. Parameters are text arrays cast server-side, as in
 * sql-rows.ts.
 */
import { quoteIdent, type TargetTable } from '../target-catalog.ts';
import { cast, keyMatch, tombstoneKey, unnestOf } from './sql-rows.ts';

/**
 * Update rows found by key, setting `setCols` and adding to `incCols` the change's increment:
 * $1..$k key columns, then one parameter per set column, then per delta column its new and its
 * old value (the increment is new − old, added to whatever the row holds here).
 */
export function mergeUpdateSql(
  t: TargetTable,
  keyCols: string[],
  setCols: string[],
  incCols: string[],
): string {
  const names = [
    ...keyCols.map((_, i) => `k${i}`),
    ...setCols.map((_, i) => `v${i}`),
    ...incCols.map((_, i) => `n${i}`),
    ...incCols.map((_, i) => `o${i}`),
  ];
  const sets = [
    ...setCols.map((c, i) => `${quoteIdent(c)} = ${cast(t, c, `u.v${i}`)}`),
    ...incCols.map(
      (c, i) =>
        `${quoteIdent(c)} = t.${quoteIdent(c)} + (${cast(t, c, `u.n${i}`)} - ${cast(t, c, `u.o${i}`)})`,
    ),
  ];
  return `update ${t.sql} t set ${sets.join(', ')} from ${unnestOf(names)} where ${keyMatch(t, keyCols, 't', 'u')}`;
}

/**
 * Record the versions of columns written by this transaction (column_lww): $1..$k the key columns
 * of each (row, column) pair, $k+1 the column names, $k+2 the table name.
 */
export function touchColumnsSql(t: TargetTable, keyCols: string[]): string {
  const names = [...keyCols.map((_, i) => `k${i}`), 'col'];
  return `insert into brabant.column_versions (tbl, key, col)
    select $${keyCols.length + 2}, ${tombstoneKey(t, keyCols, 'u')}, u.col from ${unnestOf(names)}
    on conflict (tbl, key, col) do update set col = excluded.col`;
}

/**
 * The version rows keep for their other columns when an older update only added its
 * increments: $1..$k key columns, $k+1 the versions' unix micros, $k+2 their nodes, $k+3 the table.
 */
export function keepVersionsSql(t: TargetTable, keyCols: string[]): string {
  const names = [...keyCols.map((_, i) => `k${i}`), 'ts', 'node'];
  return `insert into brabant.row_versions (tbl, key, ts, node)
    select $${keyCols.length + 3}, ${tombstoneKey(t, keyCols, 'u')}, u.ts::bigint, u.node from ${unnestOf(names)}
    on conflict (tbl, key) do update set ts = excluded.ts, node = excluded.node`;
}

/**
 * One row's conflict decided by the table's custom resolver: $1..$k key values, then the kind,
 * the local row, the remote row (its values as the table's types), the local and the remote
 * version (jsonb). A row returned replaces every column but the key; null keeps the local row.
 */
export function customSql(t: TargetTable, keyCols: string[], fn: string): string {
  const n = keyCols.length;
  const cols = [...t.columns.keys()].filter((c) => !keyCols.includes(c));
  const keys = keyCols.map((c, i) => `t.${quoteIdent(c)} = ${cast(t, c, `$${i + 1}::text`)}`).join(' and ');
  const remote = `to_jsonb(jsonb_populate_record(null::${t.sql}, $${n + 3}::jsonb))`;
  return `with r as (select ${fn.replace(/\(.*$/, '')}($${n + 1}::text, $${n + 2}::jsonb, ${remote}, $${n + 4}::jsonb, $${n + 5}::jsonb) as row)
    update ${t.sql} t set (${cols.map(quoteIdent).join(', ')}) =
      (select ${cols.map((c) => `x.${quoteIdent(c)}`).join(', ')} from jsonb_populate_record(null::${t.sql}, r.row) x)
      from r where r.row is not null and ${keys}`;
}
