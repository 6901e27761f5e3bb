/**
 * Brabant's own objects on a node (schema `brabant`): tombstones of deleted keys, the conflict
 * log, and the trigger that remembers local deletes. Idempotent; serialized by an advisory lock
 * so capture and apply starting together do not race.
 */
import type pg from 'pg';
import { EXPECT_ROWS_FUNCTION_SQL } from './planner/script.ts';

type Queryable = Pick<pg.Client, 'query'>;

const SETUP_SQL = `
create schema if not exists brabant;
create table if not exists brabant.tombstones (
  tbl text not null,
  key jsonb not null,
  primary key (tbl, key)
);
comment on table brabant.tombstones is
  'Keys deleted on this node or by a peer; the row''s xmin carries the delete''s commit time and origin. Pruned by apply once every peer has applied past them.';
create table if not exists brabant.peers (
  node text primary key,
  first_seen timestamptz not null default now()
);
comment on table brabant.peers is
  'Source nodes this database applies changes of (replication origins are per server, so this says which belong here). Tombstones are pruned once all of them applied past them.';
create table if not exists brabant.conflicts (
  id bigserial primary key,
  logged_at timestamptz not null default now(),
  kind text not null,
  resolution text not null,
  table_name text not null,
  key jsonb,
  local_row jsonb,
  local_commit_ts timestamptz,
  local_node text,
  remote_row jsonb,
  remote_commit_ts timestamptz not null,
  remote_node text not null,
  remote_commit_lsn pg_lsn not null
);
create or replace function brabant.record_delete() returns trigger
language plpgsql set timezone to 'UTC' as $fn$
declare
  r jsonb := to_jsonb(old);
  k jsonb;
begin
  select jsonb_object_agg(a, r -> a) into k from unnest(tg_argv) as a;
  insert into brabant.tombstones (tbl, key) values (tg_table_schema || '.' || tg_table_name, k)
    on conflict (tbl, key) do update set tbl = excluded.tbl;
  return old;
end
$fn$;
`;

export async function ensureNodeObjects(db: Queryable): Promise<void> {
  await db.query('begin');
  try {
    await db.query(`select pg_advisory_xact_lock(hashtext('brabant.setup'))`);
    await db.query(SETUP_SQL);
    await db.query(EXPECT_ROWS_FUNCTION_SQL);
    await db.query('commit');
  } catch (err) {
    await db.query('rollback').catch(() => {});
    throw err;
  }
}

/**
 * The delete trigger on every user table with a usable key (see below), so local deletes leave
 * tombstones that a late change from a peer cannot get past. Returns the tables it was added to.
 */
export async function ensureDeleteTriggers(db: Queryable): Promise<string[]> {
  // The same key apply finds rows by: the replica identity index (REPLICA IDENTITY USING INDEX);
  // else the primary key; else (REPLICA IDENTITY FULL without a primary key) every column.
  const res = await db.query<{ schema: string; name: string; cols: string[] | null }>(`
    select n.nspname as schema, c.relname as name,
           coalesce(
             (select array_agg(a.attname::text order by k.ord)
                from pg_index i
                cross join lateral unnest(i.indkey::int2[]) with ordinality as k(attnum, ord)
                join pg_attribute a on a.attrelid = c.oid and a.attnum = k.attnum
               where i.indrelid = c.oid and c.relreplident = 'i' and i.indisreplident),
             (select array_agg(a.attname::text order by k.ord)
                from pg_index i
                cross join lateral unnest(i.indkey::int2[]) with ordinality as k(attnum, ord)
                join pg_attribute a on a.attrelid = c.oid and a.attnum = k.attnum
               where i.indrelid = c.oid and i.indisprimary),
             case when c.relreplident = 'f' then
               (select array_agg(a.attname::text order by a.attnum) from pg_attribute a
                 where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped)
             end
           ) as cols
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where c.relkind in ('r', 'p') and not c.relispartition
       and n.nspname not in ('pg_catalog', 'information_schema', 'brabant') and n.nspname not like 'pg\\_%'
       and not exists (select 1 from pg_trigger t where t.tgrelid = c.oid and t.tgname = 'brabant_tombstone')`);
  const added: string[] = [];
  for (const r of res.rows) {
    if (r.cols === null) continue; // no replica identity: capture refuses such a table
    const args = r.cols.map((c) => `'${c.replace(/'/g, "''")}'`).join(', ');
    const table = `"${r.schema.replace(/"/g, '""')}"."${r.name.replace(/"/g, '""')}"`;
    await db.query(
      `create trigger brabant_tombstone after delete on ${table} for each row execute function brabant.record_delete(${args})`,
    );
    added.push(`${r.schema}.${r.name}`);
  }
  return added;
}
