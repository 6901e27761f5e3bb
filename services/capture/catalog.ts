/**
 * What capture needs from the source node's catalog: type descriptions for the schema mapper,
 * replica identities, the publication and the slot. SQL lives here and only here.
 */
import type pg from 'pg';
import type { PgTypeInfo } from '../protocol/pg-types.ts';
import { BrabantError } from '../runtime/errors.ts';

type Queryable = Pick<pg.Client, 'query'>;

interface TypeRow {
  oid: number;
  schema: string;
  name: string;
  typtype: string;
  category: string;
  typlen: number;
  elem: number;
  base: number;
  delim: string;
  labels: string[] | null;
}

/** Describes the given type oids (and the element and base types they refer to). */
export async function resolveTypes(
  db: Queryable,
  oids: number[],
  cache = new Map<number, PgTypeInfo>(),
): Promise<Map<number, PgTypeInfo>> {
  let pending = [...new Set(oids.filter((o) => !cache.has(o)))];
  const rows = new Map<number, TypeRow>();
  while (pending.length > 0) {
    const res = await db.query<TypeRow>(
      `select t.oid::int as oid, n.nspname as schema, t.typname as name, t.typtype::text as typtype,
              t.typcategory::text as category, t.typlen::int as typlen, t.typelem::int as elem,
              t.typbasetype::int as base, t.typdelim::text as delim,
              case when t.typtype = 'e' then
                (select array_agg(e.enumlabel order by e.enumsortorder) from pg_enum e where e.enumtypid = t.oid)
              end as labels
         from pg_type t join pg_namespace n on n.oid = t.typnamespace
        where t.oid = any($1::oid[])`,
      [pending],
    );
    for (const r of res.rows) rows.set(r.oid, r);
    const missing = pending.filter((o) => !rows.has(o));
    if (missing.length > 0)
      throw new BrabantError('CATALOG_MISMATCH', `type oid(s) ${missing.join(', ')} not found in pg_type`);
    pending = res.rows
      .flatMap((r) => [r.category === 'A' ? r.elem : 0, r.typtype === 'd' ? r.base : 0])
      .filter((o) => o !== 0 && !rows.has(o) && !cache.has(o));
  }
  const build = (oid: number): PgTypeInfo => {
    const hit = cache.get(oid);
    if (hit) return hit;
    const r = rows.get(oid)!;
    const info: PgTypeInfo = {
      oid,
      schema: r.schema,
      name: r.name,
      typtype: r.typtype,
      category: r.category,
      varlena: r.typlen === -1,
      ...(r.delim !== ',' ? { delimiter: r.delim } : {}),
      ...(r.category === 'A' && r.elem !== 0 ? { elem: build(r.elem) } : {}),
      ...(r.typtype === 'd' ? { base: build(r.base) } : {}),
      ...(r.labels ? { enumLabels: r.labels } : {}),
    };
    cache.set(oid, info);
    return info;
  };
  for (const oid of oids) build(oid);
  return cache;
}

export interface TableRef {
  schema: string;
  name: string;
}

export function quoteIdent(s: string): string {
  return `"${s.replace(/"/g, '""')}"`;
}

export function qualifiedName(t: TableRef): string {
  return `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`;
}

/** `schema.table` or `table` (schema public) → TableRef; quoted identifiers are not supported here. */
export function parseTableName(text: string): TableRef {
  const parts = text.split('.');
  if (parts.length === 1) return { schema: 'public', name: parts[0]! };
  if (parts.length === 2) return { schema: parts[0]!, name: parts[1]! };
  throw new BrabantError('CONFIG_INVALID', `'${text}' is not a table name (expected schema.table or table)`);
}

/** User tables of the database (what "all tables" means): not system schemas, not Brabant's own. */
export async function userTables(db: Queryable): Promise<TableRef[]> {
  const res = await db.query<TableRef>(
    `select n.nspname as schema, c.relname as name
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where c.relkind in ('r', 'p') and not c.relispartition
        and n.nspname not in ('pg_catalog', 'information_schema', 'brabant') and n.nspname not like 'pg\\_%'
      order by 1, 2`,
  );
  return res.rows;
}

/** Configured tables that do not exist, one message each. */
export async function missingTables(db: Queryable, tables: TableRef[]): Promise<string[]> {
  if (tables.length === 0) return [];
  const res = await db.query<{ schema: string; name: string }>(
    `select t.schema, t.name from unnest($1::text[], $2::text[]) as t(schema, name)
      where not exists (select 1 from pg_class c join pg_namespace n on n.oid = c.relnamespace
                         where n.nspname = t.schema and c.relname = t.name)`,
    [tables.map((t) => t.schema), tables.map((t) => t.name)],
  );
  return res.rows.map(
    (r) => `table ${r.schema}.${r.name} does not exist: create it or remove it from BRABANT_CAPTURE_TABLES`,
  );
}

export interface SlotState {
  exists: boolean;
  plugin?: string;
  database?: string;
  active?: boolean;
  activePid?: number | null;
  confirmedFlush?: string | null;
}

export async function slotState(db: Queryable, slot: string): Promise<SlotState> {
  const res = await db.query<{
    plugin: string;
    database: string;
    active: boolean;
    active_pid: number | null;
    confirmed_flush_lsn: string | null;
  }>(
    'select plugin, database, active, active_pid, confirmed_flush_lsn::text from pg_replication_slots where slot_name = $1',
    [slot],
  );
  const r = res.rows[0];
  if (r === undefined) return { exists: false };
  return {
    exists: true,
    plugin: r.plugin,
    database: r.database,
    active: r.active,
    activePid: r.active_pid,
    confirmedFlush: r.confirmed_flush_lsn,
  };
}

/** Creates the pgoutput slot if missing; refuses one of another plugin or database. */
export async function ensureSlot(db: Queryable, slot: string): Promise<'created' | 'existing'> {
  const state = await slotState(db, slot);
  const dbName = (await db.query<{ d: string }>('select current_database() as d')).rows[0]!.d;
  if (!state.exists) {
    await db.query(`select pg_create_logical_replication_slot($1, 'pgoutput')`, [slot]);
    return 'created';
  }
  if (state.plugin !== 'pgoutput' || state.database !== dbName) {
    throw new BrabantError(
      'CONFIG_INVALID',
      `replication slot ${slot} exists for plugin ${state.plugin} on database ${state.database}, not pgoutput on ${dbName}; ` +
        'choose another BRABANT_CAPTURE_SLOT or drop that slot',
    );
  }
  return 'existing';
}

/** Server settings logical capture depends on. */
export async function serverProblems(db: Queryable): Promise<string[]> {
  const res = await db.query<{ name: string; setting: string }>(
    `select name, setting from pg_settings where name in ('wal_level', 'track_commit_timestamp', 'max_replication_slots')`,
  );
  const s = new Map(res.rows.map((r) => [r.name, r.setting]));
  const problems: string[] = [];
  if (s.get('wal_level') !== 'logical')
    problems.push(`wal_level is ${s.get('wal_level')}; set wal_level = logical and restart PostgreSQL`);
  if (s.get('track_commit_timestamp') !== 'on') {
    problems.push(
      'track_commit_timestamp is off; set track_commit_timestamp = on and restart PostgreSQL (conflict resolution needs it)',
    );
  }
  return problems;
}
