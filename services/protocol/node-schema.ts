/**
 * The schema `brabant` on a node: what every Brabant service relies on there, as much a part of
 * the contract as the records on the topics. Tombstones of deleted keys, the conflict log, the
 * peers, the operator's DDL resolutions, the trigger that remembers local deletes (installed on
 * every user table by brabant.ensure_tombstone_triggers(), at start and after each DDL), and the
 * check the fast path's statements raise BR001 through. Idempotent; serialized by an advisory lock
 * so capture and apply starting together do not race.
 */
import type pg from 'pg';
import { SQLSTATE } from '../runtime/sqlstate.ts';

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
create table if not exists brabant.ddl_resolutions (
  source text not null,
  commit_lsn pg_lsn not null,
  action text not null check (action in ('skip', 'retry')),
  requested_at timestamptz not null default now(),
  primary key (source, commit_lsn)
);
comment on table brabant.ddl_resolutions is
  'What the operator said of a DDL that failed on this node (brabant ddl resolve): skip it (the schema was changed by hand) or retry it.';
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
create or replace function brabant.expect_rows(got bigint, want bigint) returns void
language plpgsql as $fn$
begin
  if got is distinct from want then
    raise exception using errcode = '${SQLSTATE.BRABANT_EXPECTATION_FAILED}',
      message = format('brabant fast path: %s of %s rows in the expected state', got, want);
  end if;
end
$fn$;
create or replace function brabant.tombstone_key(rel oid) returns text[]
language sql stable as $fn$
  -- the key apply finds rows by: the replica identity index (REPLICA IDENTITY USING INDEX);
  -- else the primary key; else (REPLICA IDENTITY FULL without a primary key) every column
  select coalesce(
    (select array_agg(a.attname::text order by k.ord)
       from pg_class c join pg_index i on i.indrelid = c.oid
       cross join lateral unnest(i.indkey::int2[]) with ordinality as k(attnum, ord)
       join pg_attribute a on a.attrelid = c.oid and a.attnum = k.attnum
      where c.oid = rel and c.relreplident = 'i' and i.indisreplident),
    (select array_agg(a.attname::text order by k.ord)
       from pg_index i cross join lateral unnest(i.indkey::int2[]) with ordinality as k(attnum, ord)
       join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
      where i.indrelid = rel and i.indisprimary),
    (select array_agg(a.attname::text order by a.attnum) from pg_attribute a join pg_class c on c.oid = a.attrelid
      where c.oid = rel and c.relreplident = 'f' and a.attnum > 0 and not a.attisdropped))
$fn$;
create or replace function brabant.ensure_tombstone_triggers() returns text[]
language plpgsql as $fn$
declare
  r record;
  done text[] := '{}';
begin
  for r in
    select c.oid, format('%I.%I', n.nspname, c.relname) as q, brabant.tombstone_key(c.oid) as cols,
           (select t.tgargs from pg_trigger t where t.tgrelid = c.oid and t.tgname = 'brabant_tombstone') as args
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where c.relkind in ('r', 'p') and not c.relispartition and c.relpersistence = 'p'
       and n.nspname not in ('pg_catalog', 'information_schema', 'brabant') and n.nspname not like 'pg\\_%'
  loop
    -- no usable key: nothing to find rows by (such a table replicates its inserts only)
    continue when r.cols is null;
    -- the trigger's arguments are its key columns, each ended by a zero byte in tgargs
    continue when r.args is not null and r.args = (
      select string_agg(convert_to(x, 'UTF8') || '\\x00'::bytea, ''::bytea order by o)
        from unnest(r.cols) with ordinality as u(x, o));
    if r.args is not null then execute format('drop trigger brabant_tombstone on %s', r.q); end if;
    execute format('create trigger brabant_tombstone after delete on %s for each row execute function brabant.record_delete(%s)',
                   r.q, (select string_agg(quote_literal(x), ', ') from unnest(r.cols) x));
    done := done || r.q;
  end loop;
  return done;
end
$fn$;
`;

export async function ensureNodeObjects(db: Queryable): Promise<void> {
  await db.query('begin');
  try {
    await db.query(`select pg_advisory_xact_lock(hashtext('brabant.setup'))`);
    await db.query(SETUP_SQL);
    await db.query('commit');
  } catch (err) {
    await db.query('rollback').catch(() => {});
    throw err;
  }
}

/**
 * The delete trigger on every user table with a usable key (see brabant.tombstone_key), so local
 * deletes leave tombstones that a late change from a peer cannot get past; a table whose key
 * changed gets it again with its new key. Returns the tables it was added to.
 */
export async function ensureDeleteTriggers(db: Queryable): Promise<string[]> {
  const res = await db.query<{ added: string[] }>('select brabant.ensure_tombstone_triggers() as added');
  return res.rows[0]?.added ?? [];
}
