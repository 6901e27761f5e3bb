/** The target node's view of a replicated table: its columns and their types, cached. */
import type pg from 'pg';

/** The connection the catalog reads through (the control connection, or an applier's session). */
export interface CatalogReader {
  query<R extends pg.QueryResultRow>(
    sql: string,
    values?: unknown[],
  ): Promise<{ rows: R[]; rowCount: number | null }>;
}

export interface TargetColumn {
  name: string;
  /** format_type(): what a text value is cast to, e.g. `numeric(10,2)`, `integer[]`. */
  type: string;
  notNull: boolean;
  /** attidentity: '' none, 'a' GENERATED ALWAYS AS IDENTITY, 'd' BY DEFAULT. */
  identity: string;
  /**
   * Base type when the column is a domain (over domains): the object identifier types read
   * their text through their input function, not a text cast (which refuses `-`).
   */
  baseType: string;
  /**
   * The value rows that were there when the column was added hold (its constant default, or
   * NULL): what a row written in a shape without the column holds on its writer's node once the
   * column reaches it.
   */
  addedValue: string | null;
}

export interface TargetTable {
  schema: string;
  name: string;
  /** Quoted `"schema"."name"`. */
  sql: string;
  columns: Map<string, TargetColumn>;
  /** Primary key columns (empty without a primary key): rows are found by them when the stream's key has them. */
  primaryKey: string[];
  /** Unique indexes other than the primary key: writes may then collide on another key. */
  otherUniqueKeys: boolean;
  /** Name of the primary key's index (what a unique violation on the key itself names). */
  primaryKeyIndex: string | undefined;
  /** A GENERATED ALWAYS identity column: inserts of the source's values need OVERRIDING SYSTEM VALUE. */
  identityAlways: boolean;
  /** Old column name → current name, for columns renamed here (brabant.column_renames). */
  renames: Map<string, string>;
  /** Its conflict policy (brabant.policies; row_lww when it has none). */
  policy: TablePolicy;
  /** relreplident: d default (the primary key), n nothing, f full (the whole old row), i an index. */
  replicaIdentity: string;
}

/**
 * Rows of this table are found by the whole old row (REPLICA IDENTITY FULL, no primary key):
 * identical rows may exist (each a row of its own), and values are compared as text (some
 * types, json or point, have no equality).
 */
export function byWholeRow(t: TargetTable, keyCols: string[]): boolean {
  return keyCols !== t.primaryKey && t.replicaIdentity === 'f';
}

/** A table's conflict policy, as brabant.set_conflict_policy declared it. */
export interface TablePolicy {
  rows: 'row_lww' | 'column_lww';
  /** Numeric columns whose updates apply as increments. */
  delta: string[];
  /** Per conflict kind, its resolver (services/protocol/conflict-policies.ts). */
  resolutions: Record<string, string>;
  /** A custom resolver function (regprocedure text), or null. */
  custom: string | null;
}

export const DEFAULT_POLICY: TablePolicy = { rows: 'row_lww', delta: [], resolutions: {}, custom: null };

/** Whether the table resolves conflicts by row last-writer-wins only (what the group strategies do). */
export function hasDefaultPolicy(t: TargetTable): boolean {
  const p = t.policy;
  return (
    p.rows === 'row_lww' &&
    p.delta.length === 0 &&
    Object.keys(p.resolutions).length === 0 &&
    p.custom === null
  );
}

export function quoteIdent(s: string): string {
  return `"${s.replace(/"/g, '""')}"`;
}

export class TargetCatalog {
  private readonly tables = new Map<string, Promise<TargetTable | undefined>>();
  constructor(private readonly db: CatalogReader) {}

  table(schema: string, name: string): Promise<TargetTable | undefined> {
    const k = `${schema}.${name}`;
    let t = this.tables.get(k);
    if (t === undefined) {
      t = this.load(schema, name);
      this.tables.set(k, t);
      // a table that is not there is looked for again next time (it may be created here by hand)
      t.then(
        (found) => found === undefined && this.tables.delete(k),
        () => this.tables.delete(k),
      );
    }
    return t;
  }

  /** Forget what is cached (after DDL, or an error that says the table changed). */
  invalidate(): void {
    this.tables.clear();
  }

  private async load(schema: string, name: string): Promise<TargetTable | undefined> {
    // generated columns are computed here from the others; the source does not send them
    const res = await this.db.query<{
      name: string;
      type: string;
      not_null: boolean;
      identity: string;
      base_type: string;
      added_value: string | null;
    }>(
      `select a.attname as name, format_type(a.atttypid, a.atttypmod) as type, a.attnotnull as not_null,
              a.attidentity::text as identity,
              (with recursive d(oid, base) as (
                 select t.oid, t.typbasetype from pg_type t where t.oid = a.atttypid
                 union all select t.oid, t.typbasetype from pg_type t join d on t.oid = d.base where d.base <> 0)
               select format_type(oid, null) from d where base = 0) as base_type,
              case when a.atthasmissing then (a.attmissingval::text::text[])[1] end as added_value
         from pg_attribute a
         join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = $1 and c.relname = $2 and a.attnum > 0 and not a.attisdropped and a.attgenerated = ''
        order by a.attnum`,
      [schema, name],
    );
    if (res.rowCount === 0) return undefined;
    const pk = await this.db.query<{ name: string }>(
      `select a.attname::text as name
         from pg_index i
         join pg_class c on c.oid = i.indrelid join pg_namespace n on n.oid = c.relnamespace
         cross join lateral unnest(i.indkey::int2[]) with ordinality as k(attnum, ord)
         join pg_attribute a on a.attrelid = c.oid and a.attnum = k.attnum
        where n.nspname = $1 and c.relname = $2 and i.indisprimary
        order by k.ord`,
      [schema, name],
    );
    const unique = await this.db.query<{ n: number; pk: string | null; ident: string }>(
      `select (count(*) filter (where not i.indisprimary))::int as n,
              max(ic.relname::text) filter (where i.indisprimary) as pk,
              (select relreplident::text from pg_class r join pg_namespace rn on rn.oid = r.relnamespace
                where rn.nspname = $1 and r.relname = $2) as ident
         from pg_index i join pg_class c on c.oid = i.indrelid join pg_namespace n on n.oid = c.relnamespace
         join pg_class ic on ic.oid = i.indexrelid
        where n.nspname = $1 and c.relname = $2 and i.indisunique`,
      [schema, name],
    );
    const renames = await this.db.query<{ old_name: string; new_name: string }>(
      `select old_name, new_name from brabant.column_renames where tbl = format('%I.%I', $1::text, $2::text)`,
      [schema, name],
    );
    const policy = await this.db.query<TablePolicy>(
      `select rows, delta, resolutions, custom from brabant.policies where tbl = format('%I.%I', $1::text, $2::text)`,
      [schema, name],
    );
    return {
      policy: policy.rows[0] ?? DEFAULT_POLICY,
      replicaIdentity: unique.rows[0]?.ident ?? 'd',
      renames: new Map(renames.rows.map((r) => [r.old_name, r.new_name])),
      primaryKey: pk.rows.map((r) => r.name),
      otherUniqueKeys: (unique.rows[0]?.n ?? 0) > 0,
      primaryKeyIndex: unique.rows[0]?.pk ?? undefined,
      schema,
      name,
      sql: `${quoteIdent(schema)}.${quoteIdent(name)}`,
      columns: new Map(
        res.rows.map((r) => [
          r.name,
          {
            name: r.name,
            type: r.type,
            notNull: r.not_null,
            identity: r.identity,
            baseType: r.base_type,
            addedValue: r.added_value,
          },
        ]),
      ),
      identityAlways: res.rows.some((r) => r.identity === 'a'),
    };
  }
}
