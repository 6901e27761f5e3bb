/**
 * Statements of the strategies that look rows up and resolve them (resolve ahead, full path),
 * pure: every statement takes one text[] parameter per column (PostgreSQL text forms, NULL for
 * null) and casts server-side to the target column's type, so a batch of rows is one round trip
 * whatever its size. They cast their parameters themselves, so they are prepared untyped.
 */
import { byWholeRow, quoteIdent, type TargetTable } from '../target-catalog.ts';

/** Object identifier types whose text cast refuses what their output prints (`-` for the zero oid). */
const REG_TYPES = new Set([
  'regclass',
  'regproc',
  'regprocedure',
  'regoper',
  'regoperator',
  'regtype',
  'regconfig',
  'regdictionary',
  'regnamespace',
  'regrole',
  'regcollation',
]);

export function cast(t: TargetTable, col: string, expr: string): string {
  const { type, baseType } = t.columns.get(col)!;
  // the type's own input function, as PostgreSQL itself reads its output
  if (REG_TYPES.has(baseType))
    return baseType === type ? `${type}in(${expr}::cstring)` : `${baseType}in(${expr}::cstring)::${type}`;
  return `${expr}::${type}`;
}

/** `t.k = u.k::type` (or IS NOT DISTINCT FROM for nullable key columns, REPLICA IDENTITY FULL). */
export function keyMatch(t: TargetTable, keyCols: string[], left: string, right: string): string {
  if (byWholeRow(t, keyCols))
    return (
      keyCols
        // both sides through the type's text output: the sent text is normalised the same way
        // (a char(n)'s padding, a boolean's `t`), and types without equality compare at all
        .map(
          (c, i) =>
            `${left}.${quoteIdent(c)}::text is not distinct from (${cast(t, c, `${right}.k${i}`)})::text`,
        )
        .join(' and ')
    );
  return keyCols
    .map((c, i) => {
      const op = t.columns.get(c)!.notNull ? '=' : 'is not distinct from';
      return `${left}.${quoteIdent(c)} ${op} ${cast(t, c, `${right}.k${i}`)}`;
    })
    .join(' and ');
}

export function unnestOf(names: string[], from = 1): string {
  return `unnest(${names.map((_, i) => `$${i + from}::text[]`).join(', ')}) with ordinality as u(${[...names, 'ord'].join(', ')})`;
}

/** jsonb key of a tombstone, built from typed values (same as the delete trigger's to_jsonb). */
export function tombstoneKey(t: TargetTable, keyCols: string[], alias: string): string {
  const pairs = keyCols
    .map((c, i) => `'${c.replace(/'/g, "''")}', ${cast(t, c, `${alias}.k${i}`)}`)
    .join(', ');
  // a whole row may hold json jsonb cannot (\u0000): brabant.key_jsonb, as the delete trigger
  if (byWholeRow(t, keyCols)) return `brabant.key_jsonb(json_build_object(${pairs}))`;
  return `jsonb_build_object(${pairs})`;
}

/**
 * Local state of each key, locking the rows: $1..$k key columns, $k+1 the table name for
 * tombstones, then (when `beforeCols` is given, REPLICA IDENTITY FULL) one parameter per old-row
 * column. Answers ord, the local row as json (not jsonb: it may hold what jsonb cannot), the version (unix micros and origin name) of the
 * row or of the key's tombstone (its xmin's, or the original version a peer's resync recorded for
 * it: protocol/resync-schema.ts), and whether the local row differs from the old row sent.
 */
export function lookupSql(t: TargetTable, keyCols: string[], beforeCols: string[] = []): string {
  const tomb = tombstoneKey(t, keyCols, 'u');
  const table = `$${keyCols.length + 1}`;
  // a table's policy may need more of what is known of each row (planner/policy.ts)
  // read after the row is locked, through volatile functions (a new snapshot: a local write
  // the lock waited for is seen)
  const colVersions =
    t.policy.rows === 'column_lww' ? `brabant.column_versions_of(${table}, ${tomb})` : 'null::jsonb';
  const rowFloor =
    t.policy.rows === 'row_lww' && t.policy.delta.length > 0
      ? `brabant.row_version_of(${table}, ${tomb})`
      : 'null::jsonb';
  const ks = keyCols.map((_, i) => `k${i}`);
  const bs = beforeCols.map((_, i) => `b${i}`);
  // column by column through the types' text output (types without equality compare too)
  const differs =
    beforeCols.length === 0
      ? 'null::boolean'
      : `not (${beforeCols
          .map((c, i) => `t.${quoteIdent(c)}::text is not distinct from (${cast(t, c, `u.b${i}`)})::text`)
          .join(' and ')})`;
  return `
    select u.ord::int as ord, r.row as local_row,
           rv.row_ts, rv.row_origin, r.x is not null as found,
           tb.tomb_ts, tb.tomb_origin, tb.tomb_xmin is not null as tombstone,
           r.differs,
           r.x::text as row_xmin, tb.tomb_xmin,
           case when r.x is not null then ${colVersions} end as col_versions,
           case when r.x is not null then ${rowFloor} end as row_floor,
           r.ctid::text as row_ctid
      from unnest(${[...ks, ...bs].map((_, i) => `$${i < ks.length ? i + 1 : i + 2}::text[]`).join(', ')}) with ordinality as u(${[...ks, ...bs, 'ord'].join(', ')})
      left join lateral (select row_to_json(t) as row, t.xmin as x, t.ctid, ${differs} as differs from ${t.sql} t where ${keyMatch(t, keyCols, 't', 'u')}${byWholeRow(t, keyCols) ? ' limit 1' : ''} for update) r on true
      left join lateral brabant.row_version_at(${table}, ${tomb}, r.x) rv on true
      left join lateral brabant.tombstone_of(${table}, ${tomb}, r.x) tb on true
     order by u.ord`;
}

/**
 * Checks, inside the local transaction, that each key is still in the state a decision rests on,
 * locking the rows; raises SQLSTATE BR001 (fast-sql.ts) if not. $1..$k key columns, $k+1 the
 * table name, $k+2 the rows' xmins, $k+3 the tombstones' xmins (as looked up), $k+4 whether the
 * decision keeps the local row, $k+5 the change's commit time, $k+6 the version (unix micros) an
 * earlier transaction of the same script wrote the row at (null: the looked-up state), $k+7 this
 * applier's origin.
 */
export function verifySql(t: TargetTable, keyCols: string[]): string {
  const ks = keyCols.map((_, i) => `k${i}`);
  const n = keyCols.length;
  const tomb = tombstoneKey(t, keyCols, 'u');
  // a decision to keep the local row (it was newer than the change) still holds when a local
  // write changed the row since: it is newer still. So for those the row need only be there and
  // be newer than the change ($n+5, its commit time); a row an earlier transaction of the script
  // wrote must still be at that version (its xmin is not known when the script is planned); any
  // other decision needs the state looked up.
  return `select brabant.expect_rows((
      select count(*)
        from unnest(${[...ks.map((_, i) => `$${i + 1}::text[]`), `$${n + 2}::text[]`, `$${n + 3}::text[]`, `$${n + 4}::boolean[]`, `$${n + 6}::text[]`].join(', ')}) as u(${[...ks, 'rx', 'tx', 'keep', 'wts'].join(', ')})
        left join lateral (select t.xmin::text as x, t.xmin as xid, pg_xact_commit_timestamp(t.xmin) as ts from ${t.sql} t where ${keyMatch(t, keyCols, 't', 'u')} for update) r on true
        left join brabant.tombstones tb on tb.tbl = $${n + 1} and tb.key = ${tomb}
       where case when u.wts is null
                  then r.x is not distinct from u.rx or (u.keep and r.ts > $${n + 5}::timestamptz)
                  else r.x is not null and exists (select 1 from brabant.row_version_at($${n + 1}, ${tomb}, r.xid) v
                                                    where v.row_ts = u.wts and v.row_origin = $${n + 7}::text)
             end
         and tb.xmin::text is not distinct from u.tx
    ), cardinality($1::text[]))`;
}

/** Insert whole rows: one parameter per column. */
export function insertSql(t: TargetTable, cols: string[]): string {
  const vs = cols.map((_, i) => `v${i}`);
  return `insert into ${t.sql} (${cols.map(quoteIdent).join(', ')})${overriding(t)}
    select ${cols.map((c, i) => cast(t, c, `u.v${i}`)).join(', ')} from ${unnestOf(vs)} order by u.ord`;
}

/**
 * Insert the rows whose key neither exists nor has a tombstone: one parameter per column, then the
 * table name. Answers the ord (1-based) of each row inserted; the others need resolving.
 */
export function insertNewSql(t: TargetTable, keyCols: string[], cols: string[]): string {
  const vs = cols.map((_, i) => `v${i}`);
  const keyOf = (c: string) => `u.v${cols.indexOf(c)}`;
  const tomb = `jsonb_build_object(${keyCols.map((c) => `'${c.replace(/'/g, "''")}', ${cast(t, c, keyOf(c))}`).join(', ')})`;
  return `with ins as (
      insert into ${t.sql} (${cols.map(quoteIdent).join(', ')})${overriding(t)}
      select ${cols.map((c, i) => cast(t, c, `u.v${i}`)).join(', ')}
        from ${unnestOf(vs)}
       where not exists (select 1 from brabant.tombstones tb where tb.tbl = $${cols.length + 1} and tb.key = ${tomb})
       order by u.ord
      on conflict do nothing
      returning ${keyCols.map(quoteIdent).join(', ')}
    )
    select u.ord::int as ord from ${unnestOf(vs)} join ins on ${keyCols.map((c) => `ins.${quoteIdent(c)} = ${cast(t, c, keyOf(c))}`).join(' and ')}`;
}

/** Update rows found by key: $1..$k key columns, then one parameter per updated column. */
export function updateSql(t: TargetTable, keyCols: string[], cols: string[]): string {
  const names = [...keyCols.map((_, i) => `k${i}`), ...cols.map((_, i) => `v${i}`)];
  return `update ${t.sql} t set ${setList(t, keyCols, cols, 'v')}
      from ${unnestOf(names)} where ${keyMatch(t, keyCols, 't', 'u')}`;
}

/** Delete rows by key: $1..$k key columns. */
export function deleteSql(t: TargetTable, keyCols: string[]): string {
  return `delete from ${t.sql} t using ${unnestOf(keyCols.map((_, i) => `k${i}`))} where ${keyMatch(t, keyCols, 't', 'u')}`;
}

/** Remember deletes: $1..$k key columns, $k+1 table name. Re-touching a tombstone gives it the new version. */
export function tombstoneSql(t: TargetTable, keyCols: string[]): string {
  return `insert into brabant.tombstones (tbl, key)
    select $${keyCols.length + 1}, ${tombstoneKey(t, keyCols, 'u')} from ${unnestOf(keyCols.map((_, i) => `k${i}`))}
    on conflict (tbl, key) do update set tbl = excluded.tbl`;
}

/** The source's values go into GENERATED ALWAYS identity columns as they are (they are its ids). */
export function overriding(t: TargetTable): string {
  return t.identityAlways ? ' overriding system value' : '';
}

/**
 * The SET list of an update: every column it carries, but not the primary key when rows are found
 * by it (its values are unchanged by construction: key changes are a delete and an insert, and an
 * identity column may not be set); a row with nothing else to set still gets a new version, so
 * its first key column is set to itself. Found by another key (REPLICA IDENTITY FULL: the old
 * row), every column is set.
 */
export function setList(t: TargetTable, keyCols: string[], cols: string[], prefix: string): string {
  const byPrimaryKey = keyCols === t.primaryKey;
  const set = cols
    .map((c, i) => ({ c, i }))
    .filter(({ c }) => !(byPrimaryKey && keyCols.includes(c)))
    .map(({ c, i }) => `${quoteIdent(c)} = ${cast(t, c, `u.${prefix}${i}`)}`);
  if (set.length === 0) return `${quoteIdent(keyCols[0]!)} = t.${quoteIdent(keyCols[0]!)}`;
  return set.join(', ');
}

/** Delete rows by their ctid (found by the whole old row, one each): $1 the ctids. */
export function deleteByCtidSql(t: TargetTable): string {
  return `delete from ${t.sql} t where t.ctid = any($1::text[]::tid[])`;
}

/** Update rows by their ctid: $1 the ctids, then one parameter per updated column. */
export function updateByCtidSql(t: TargetTable, cols: string[]): string {
  const names = ['ctid', ...cols.map((_, i) => `v${i}`)];
  return `update ${t.sql} t set ${cols.map((c, i) => `${quoteIdent(c)} = ${cast(t, c, `u.v${i}`)}`).join(', ')}
      from ${unnestOf(names)} where t.ctid = u.ctid::tid`;
}
