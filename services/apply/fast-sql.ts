/**
 * SQL of the fast path (pure): many small source transactions applied in one round trip, as one
 * simple-protocol query string of `begin; …; commit;` blocks with the values inlined as literals.
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

function typed(t: TargetTable, col: string, v: string | null): string {
  const type = t.columns.get(col)!.type;
  return v === null ? `null::${type}` : `${literal(v)}::${type}`;
}

function valuesOf(t: TargetTable, cols: string[], rows: (string | null)[][]): string {
  return rows.map((r) => `(${r.map((v, i) => typed(t, cols[i]!, v)).join(', ')})`).join(', ');
}

function keyMatch(t: TargetTable, keyCols: string[]): string {
  return keyCols
    .map((c, i) => {
      const op = t.columns.get(c)!.notNull ? '=' : 'is not distinct from';
      return `t.${quoteIdent(c)} ${op} v.k${i}`;
    })
    .join(' and ');
}

function tombstoneKey(keyCols: string[], alias: string, names: string[]): string {
  return `jsonb_build_object(${keyCols.map((c, i) => `${literal(c)}, ${alias}.${names[i]}`).join(', ')})`;
}

function expect(cte: string, n: number): string {
  return `select brabant.expect_rows((select count(*) from ${cte}), ${n})`;
}

/** Insert new keys that have no tombstone; `rows` hold one value per column of `cols`. */
export function fastInsertSql(
  t: TargetTable,
  keyCols: string[],
  cols: string[],
  rows: (string | null)[][],
): string {
  const names = cols.map((_, i) => `c${i}`);
  const keyNames = keyCols.map((k) => `c${cols.indexOf(k)}`);
  return `with w as (insert into ${t.sql} (${cols.map(quoteIdent).join(', ')})
 select ${names.map((n) => `v.${n}`).join(', ')} from (values ${valuesOf(t, cols, rows)}) v(${names.join(', ')})
  where not exists (select 1 from brabant.tombstones tb where tb.tbl = ${literal(`${t.schema}.${t.name}`)} and tb.key = ${tombstoneKey(keyCols, 'v', keyNames)})
 on conflict do nothing returning 1) ${expect('w', rows.length)}`;
}

/**
 * Update rows last written by the source's origin (`roident`) before `commitTsText`, or earlier
 * in this same local transaction; `keys` hold the key values, `rows` one value per column of `cols`.
 */
export function fastUpdateSql(
  t: TargetTable,
  keyCols: string[],
  cols: string[],
  keys: string[][],
  rows: (string | null)[][],
  roident: number,
  commitTsText: string,
): string {
  const kNames = keyCols.map((_, i) => `k${i}`);
  const cNames = cols.map((_, i) => `c${i}`);
  const values = keys
    .map((k, r) => {
      const ks = k.map((v, i) => typed(t, keyCols[i]!, v));
      const cs = rows[r]!.map((v, i) => typed(t, cols[i]!, v));
      return `(${[...ks, ...cs].join(', ')})`;
    })
    .join(', ');
  return `with w as (update ${t.sql} t set ${cols.map((c, i) => `${quoteIdent(c)} = v.c${i}`).join(', ')}
 from (values ${values}) v(${[...kNames, ...cNames].join(', ')})
 where ${keyMatch(t, keyCols)}
   and (t.xmin = pg_current_xact_id()::xid
        or exists (select 1 from pg_xact_commit_timestamp_origin(t.xmin) o
                    where o.roident = ${roident} and o."timestamp" < ${literal(commitTsText)}::timestamptz))
 returning 1) ${expect('w', keys.length)}`;
}

/** Delete rows older than the change (whoever wrote them) and remember the deletes as tombstones. */
export function fastDeleteSql(
  t: TargetTable,
  keyCols: string[],
  keys: string[][],
  commitTsText: string,
): string {
  const kNames = keyCols.map((_, i) => `k${i}`);
  const values = keys.map((k) => `(${k.map((v, i) => typed(t, keyCols[i]!, v)).join(', ')})`).join(', ');
  return `with w as (delete from ${t.sql} t using (values ${values}) v(${kNames.join(', ')})
 where ${keyMatch(t, keyCols)}
   and (t.xmin = pg_current_xact_id()::xid or pg_xact_commit_timestamp(t.xmin) < ${literal(commitTsText)}::timestamptz)
 returning ${keyCols.map((c, i) => `t.${quoteIdent(c)} as k${i}`).join(', ')}),
 tomb as (insert into brabant.tombstones (tbl, key)
 select ${literal(`${t.schema}.${t.name}`)}, ${tombstoneKey(keyCols, 'w', kNames)} from w
 on conflict (tbl, key) do update set tbl = excluded.tbl)
 ${expect('w', keys.length)}`;
}

/**
 * One source transaction as a local one: the origin's commit LSN and time, its statements (none:
 * take an xid so a commit record carries the origin's progress), commit.
 */
export function transactionScript(commitLsnText: string, commitTsText: string, statements: string[]): string {
  const body = statements.length > 0 ? statements : ['select txid_current()'];
  return `begin; select pg_replication_origin_xact_setup(${literal(commitLsnText)}, ${literal(commitTsText)}); ${body.join('; ')}; commit;`;
}
