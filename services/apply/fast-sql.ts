/**
 * SQL of the fast path (pure): many small source transactions applied in one round trip, as one
 * simple-protocol query string of `begin; …; commit;` blocks whose statements are `EXECUTE`s of
 * statements prepared once per connection, with the values as literals (text arrays, cast
 * server-side to the target's column types as in table-sql.ts). Parsing and planning a statement
 * per transaction cost several times the insert itself; `EXECUTE` of a prepared one does not.
 *
 * Each statement applies one run of changes only if every row is in the state that needs no
 * conflict resolution (a new key without a tombstone; an existing row last written by the same
 * source, older than the change; an existing row older than the delete), and otherwise raises
 * `FAST_PATH_MISS_SQLSTATE` through `brabant.expect_rows`. PostgreSQL then skips the rest of the
 * string, the transactions before the miss stay committed, and the applier takes the missed one
 * through lookup and `resolve()` (origin-applier.ts). So the fast path never decides a conflict:
 * it only applies what `resolve()` would have applied without one.
 */
import { quoteIdent, type TargetTable } from './target-catalog.ts';

/** SQLSTATE raised by `brabant.expect_rows` when a fast-path statement touched fewer rows than sent. */
export const FAST_PATH_MISS_SQLSTATE = 'BR001';

/** `brabant.expect_rows(got, want)`: raises FAST_PATH_MISS_SQLSTATE unless they are equal. */
export const EXPECT_ROWS_FUNCTION_SQL = `
create or replace function brabant.expect_rows(got bigint, want bigint) returns void
language plpgsql as $fn$
begin
  if got is distinct from want then
    raise exception using errcode = '${FAST_PATH_MISS_SQLSTATE}',
      message = format('brabant fast path: %s of %s rows in the expected state', got, want);
  end if;
end
$fn$;
`;

/**
 * A string literal for `standard_conforming_strings = on` (apply sessions set it): quotes are
 * doubled, backslashes are plain characters. PostgreSQL text cannot hold NUL, so none arrive.
 */
export function literal(v: string): string {
  return `'${v.replace(/'/g, "''")}'`;
}

/** A `text[]` literal of PostgreSQL text forms (null → NULL), as one SQL string literal. */
export function textArrayLiteral(values: (string | null)[]): string {
  const items = values.map((v) => (v === null ? 'NULL' : `"${v.replace(/[\\"]/g, (ch) => `\\${ch}`)}"`));
  return literal(`{${items.join(',')}}`);
}

/**
 * A statement prepared once per connection (SQL `PREPARE`) and run by `EXECUTE` in scripts; the
 * full path (table-sql.ts) runs its statements the same way, `paramTypes` empty.
 */
export interface FastStatement {
  /** Body of the statement; `$n` are its parameters. */
  sql: string;
  /** SQL types of the parameters, in order. */
  paramTypes: string[];
}

export function prepareSql(name: string, st: FastStatement): string {
  // no types: PostgreSQL infers them from the statement (the full path's SQL casts every $n)
  const types = st.paramTypes.length > 0 ? `(${st.paramTypes.join(', ')})` : '';
  return `prepare ${name}${types} as ${st.sql}`;
}

/** `execute name(args)`; args are already SQL literals. */
export function executeSql(name: string, args: string[]): string {
  return `execute ${name}(${args.join(', ')})`;
}

function cast(t: TargetTable, col: string, expr: string): string {
  return `${expr}::${t.columns.get(col)!.type}`;
}

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

/** The setup of each local transaction: $1 commit LSN, $2 commit time of the source transaction. */
export const XACT_SETUP: FastStatement = {
  sql: 'select pg_replication_origin_xact_setup($1, $2)',
  paramTypes: ['pg_lsn', 'timestamptz'],
};

/** Insert new keys that have no tombstone: one text[] per column of `cols`. */
export function fastInsert(t: TargetTable, keyCols: string[], cols: string[]): FastStatement {
  const names = cols.map((_, i) => `c${i}`);
  const typedKey = (k: string) => cast(t, k, `u.c${cols.indexOf(k)}`);
  const tomb = `jsonb_build_object(${keyCols.map((k) => `${literal(k)}, ${typedKey(k)}`).join(', ')})`;
  return {
    sql: `with w as (insert into ${t.sql} (${cols.map(quoteIdent).join(', ')})
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
export function fastUpdate(
  t: TargetTable,
  keyCols: string[],
  cols: string[],
  roident: number,
): FastStatement {
  const names = [...keyCols.map((_, i) => `k${i}`), ...cols.map((_, i) => `c${i}`)];
  const ts = `$${names.length + 1}`;
  return {
    sql: `with w as (update ${t.sql} t set ${cols.map((c, i) => `${quoteIdent(c)} = ${cast(t, c, `u.c${i}`)}`).join(', ')}
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
export function fastDelete(t: TargetTable, keyCols: string[]): FastStatement {
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

/**
 * One source transaction as a local one: begin, the origin setup (an `execute` of XACT_SETUP),
 * its statements (none: take an xid so a commit record carries the origin's progress), commit.
 */
export function transactionScript(setup: string, statements: string[]): string {
  const body = statements.length > 0 ? statements : ['select txid_current()'];
  return `begin; ${setup}; ${body.join('; ')}; commit;`;
}
