/**
 * Statements of the fast strategy (pure): each applies one run of changes only if every row is
 * in the state that needs no conflict resolution (a new key without a tombstone; an existing row
 * last written by the same source, older than the change; an existing row older than the
 * delete), and otherwise raises BR001 through `brabant.expect_rows` (script.ts). So the fast
 * path never decides a conflict: it applies only what `resolve()` would have applied without one.
 * Values arrive as text arrays, cast server-side to the target's column types.
 */
import { quoteIdent, type TargetTable } from '../target-catalog.ts';
import { literal, type Statement } from './script.ts';
import { cast, overriding, setList } from './sql-rows.ts';

function unnestOf(names: string[], from = 1): string {
  return `unnest(${names.map((_, i) => `$${i + from}`).join(', ')}) with ordinality as u(${[...names, 'ord'].join(', ')})`;
}

function keyMatch(t: TargetTable, keyCols: string[]): string {
  return keyCols
    .map((c, i) => {
      const op = t.columns.get(c)!.notNull ? '=' : 'is not distinct from';
      return `t.${quoteIdent(c)} ${op} ${cast(t, c, `u.k${i}`)}`;
    })
    .join(' and ');
}

function expect(cte: string): string {
  return `select brabant.expect_rows((select count(*) from ${cte}), cardinality($1))`;
}

/** Insert new keys that have no tombstone: one text[] per column of `cols`. */
export function fastInsert(t: TargetTable, keyCols: string[], cols: string[]): Statement {
  const names = cols.map((_, i) => `c${i}`);
  const typedKey = (k: string) => cast(t, k, `u.c${cols.indexOf(k)}`);
  const tomb = `jsonb_build_object(${keyCols.map((k) => `${literal(k)}, ${typedKey(k)}`).join(', ')})`;
  return {
    sql: `with w as (insert into ${t.sql} (${cols.map(quoteIdent).join(', ')})${overriding(t)}
 select ${cols.map((c, i) => cast(t, c, `u.c${i}`)).join(', ')} from ${unnestOf(names)}
  where not exists (select 1 from brabant.tombstones tb where tb.tbl = ${literal(`${t.schema}.${t.name}`)} and tb.key = ${tomb})
  order by u.ord
 on conflict do nothing returning 1) ${expect('w')}`,
    paramTypes: cols.map(() => 'text[]'),
  };
}

/**
 * Update rows last written by the source's origin (`roident`) before the change's commit time,
 * or earlier in this same local transaction: one text[] per key column, one per column of `cols`,
 * then the commit time.
 */
export function fastUpdate(t: TargetTable, keyCols: string[], cols: string[], roident: number): Statement {
  const names = [...keyCols.map((_, i) => `k${i}`), ...cols.map((_, i) => `c${i}`)];
  const ts = `$${names.length + 1}`;
  return {
    sql: `with w as (update ${t.sql} t set ${setList(t, keyCols, cols, 'c')}
 from ${unnestOf(names)}
 where ${keyMatch(t, keyCols)}
   and (t.xmin = pg_current_xact_id()::xid
        or exists (select 1 from pg_xact_commit_timestamp_origin(t.xmin) o where o.roident = ${roident} and o."timestamp" < ${ts}))
 returning 1) ${expect('w')}`,
    paramTypes: [...names.map(() => 'text[]'), 'timestamptz'],
  };
}

/**
 * Delete rows older than the change (whoever wrote them) and remember the deletes as tombstones:
 * one text[] per key column, then the commit time.
 */
export function fastDelete(t: TargetTable, keyCols: string[]): Statement {
  const names = keyCols.map((_, i) => `k${i}`);
  const ts = `$${names.length + 1}`;
  return {
    sql: `with w as (delete from ${t.sql} t using ${unnestOf(names)}
 where ${keyMatch(t, keyCols)}
   and (t.xmin = pg_current_xact_id()::xid or pg_xact_commit_timestamp(t.xmin) < ${ts})
 returning ${keyCols.map((c, i) => `t.${quoteIdent(c)} as k${i}`).join(', ')}),
 tomb as (insert into brabant.tombstones (tbl, key)
 select ${literal(`${t.schema}.${t.name}`)}, jsonb_build_object(${keyCols.map((c, i) => `${literal(c)}, w.k${i}`).join(', ')}) from w
 on conflict (tbl, key) do update set tbl = excluded.tbl)
 ${expect('w')}`,
    paramTypes: [...names.map(() => 'text[]'), 'timestamptz'],
  };
}
