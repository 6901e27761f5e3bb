/**
 * Conflict policies on a node (SQL here and only here), declared in SQL on any node with
 * `brabant.set_conflict_policy(table, policy, columns)` and replicated like DDL: the function emits
 * a DDL event whose statement is the same call, so every node takes the new policy at the same
 * place in that node's stream. `brabant.conflict_policies` shows what is in force.
 *
 *   row_lww      last writer wins per row (the default)
 *   column_lww   each column keeps the value of its latest writer: per-column versions are rows of
 *                brabant.column_versions, touched by the transaction that wrote the column (its
 *                xmin carries that transaction's commit time and origin, as a tombstone's does)
 *   delta        numeric columns whose updates apply as increments (new − old), so concurrent
 *                increments add up; the rest of the row follows row_lww or column_lww
 *   <kind>:<resolver>  the resolution of one conflict kind (PGD's resolver names)
 *   custom:<function>  a SQL function (kind, local row, remote row, local version, remote version)
 *                returning the row to keep (jsonb) or null to keep the local one
 *
 * column_lww and delta need the old row of each update, so they set REPLICA IDENTITY FULL.
 */

/** What a policy can say for each conflict kind (first: the default). */
export const KIND_RESOLVERS: Record<string, string[]> = {
  insert_exists: ['update_if_newer', 'update', 'skip'],
  update_origin_change: ['update_if_newer', 'update', 'skip'],
  update_missing: ['insert_or_skip', 'skip'],
  update_recently_deleted: ['skip', 'insert_or_skip'],
  delete_recently_updated: ['skip', 'delete'],
};

const kindCases = Object.entries(KIND_RESOLVERS)
  .map(([k, rs]) => `('${k}', array[${rs.map((r) => `'${r}'`).join(', ')}])`)
  .join(', ');

export const CONFLICT_POLICIES_SQL = `
create table if not exists brabant.policies (
  tbl text primary key,
  rows text not null default 'row_lww' check (rows in ('row_lww', 'column_lww')),
  delta text[] not null default '{}',
  resolutions jsonb not null default '{}',
  custom text,
  set_at timestamptz not null default now()
);
comment on table brabant.policies is
  'Conflict policies of tables (brabant.set_conflict_policy); a table without a row is row_lww.';
create table if not exists brabant.column_versions (
  tbl text not null,
  key jsonb not null,
  col text not null,
  primary key (tbl, key, col)
);
comment on table brabant.column_versions is
  'Per-column versions of column_lww tables: the row''s xmin is the commit time and origin of the last write of that column.';
create table if not exists brabant.row_versions (
  tbl text not null,
  key jsonb not null,
  ts bigint not null,
  node text not null,
  primary key (tbl, key)
);
comment on table brabant.row_versions is
  'Of a delta table under row_lww: the version a row keeps for its other columns when a remote update older than it only added its increments (the row''s xmin is then that older update''s).';
alter table brabant.conflicts add column if not exists policy text;
create or replace view brabant.conflict_policies as
  select format('%I.%I', n.nspname, c.relname) as table_name,
         coalesce(p.rows, 'row_lww') as rows, coalesce(p.delta, '{}') as delta_columns,
         coalesce(p.resolutions, '{}') as resolutions, p.custom as custom_resolver, p.set_at
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    left join brabant.policies p on p.tbl = format('%I.%I', n.nspname, c.relname)
   where c.relkind in ('r', 'p') and not c.relispartition and c.relpersistence = 'p'
     and n.nspname not in ('pg_catalog', 'information_schema', 'brabant') and n.nspname not like 'pg\\\\_%';
-- Versions apply reads after it locked the row: volatile plpgsql takes a new snapshot for its
-- query, so a local write that held the row's lock until it committed is seen (the lookup
-- statement's own snapshot is older than that commit)
create or replace function brabant.column_versions_of(t text, k jsonb) returns jsonb
language plpgsql volatile as $fn$
begin
  return (select jsonb_object_agg(cv.col, jsonb_build_object('ts', (extract(epoch from cvo."timestamp") * 1000000)::int8::text, 'origin', cvn.roname))
            from brabant.column_versions cv left join lateral pg_xact_commit_timestamp_origin(cv.xmin) cvo on true
            left join pg_replication_origin cvn on cvn.roident = cvo.roident
           where cv.tbl = t and cv.key = k);
end
$fn$;
create or replace function brabant.row_version_of(t text, k jsonb) returns jsonb
language plpgsql volatile as $fn$
begin
  return (select jsonb_build_object('ts', rv.ts::text, 'node', rv.node) from brabant.row_versions rv where rv.tbl = t and rv.key = k);
end
$fn$;
create or replace function brabant.record_column_versions() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $fn$
declare
  k jsonb;
  r jsonb := case when tg_op = 'UPDATE' then to_jsonb(old) end;
  n jsonb := to_jsonb(new);
begin
  select jsonb_object_agg(a, n -> a) into k from unnest(tg_argv) as a;
  -- an insert writes every column; an update the ones it changed
  insert into brabant.column_versions (tbl, key, col)
    select format('%I.%I', tg_table_schema, tg_table_name), k, e.key
      from jsonb_each(n) e where (r is null or e.value is distinct from r -> e.key) and not e.key = any(tg_argv)
    on conflict (tbl, key, col) do update set col = excluded.col;
  return new;
end
$fn$;
create or replace function brabant.set_conflict_policy(tbl regclass, policy text, columns name[] default null)
returns void language plpgsql as $fn$
declare
  q text;
  key text[];
  c name;
  kind text;
  resolver text;
  allowed text[];
  fn regprocedure;
  numeric_types text[] := array['smallint', 'integer', 'bigint', 'numeric', 'real', 'double precision'];
begin
  select format('%I.%I', n.nspname, r.relname) into q from pg_class r join pg_namespace n on n.oid = r.relnamespace where r.oid = tbl;
  -- a table's owner decides its policy (the roles node init gives the policy tables to are
  -- DDL roles, each owner of its own tables only)
  if not pg_has_role(current_user, (select relowner from pg_class where oid = tbl), 'USAGE') then
    raise exception 'only the owner of % (or a member of its role) may set its conflict policy; % is not', q, current_user
      using errcode = '42501';
  end if;
  key := brabant.tombstone_key(tbl);
  if policy in ('row_lww', 'column_lww') then
    if columns is not null then
      raise exception 'policy % applies to the whole table %: call it without columns', policy, q;
    end if;
    insert into brabant.policies (tbl, rows) values (q, policy)
      on conflict on constraint policies_pkey do update set rows = excluded.rows, set_at = now();
  elsif policy in ('delta', 'no_delta') then
    if columns is null or cardinality(columns) = 0 then
      raise exception 'policy % of % needs its columns: brabant.set_conflict_policy(%L, %L, array[''balance''])', policy, q, q, policy;
    end if;
    foreach c in array columns loop
      if not exists (select 1 from pg_attribute a where a.attrelid = tbl and a.attname = c and a.attnum > 0 and not a.attisdropped) then
        raise exception 'table % has no column %', q, c;
      end if;
      if policy = 'delta' and (select format_type(a.atttypid, null) from pg_attribute a where a.attrelid = tbl and a.attname = c) <> all(numeric_types) then
        raise exception 'delta column %.% is %, not a number: delta applies to smallint, integer, bigint, numeric, real and double precision',
          q, c, (select format_type(a.atttypid, a.atttypmod) from pg_attribute a where a.attrelid = tbl and a.attname = c);
      end if;
      if policy = 'delta' and exists (select 1 from pg_index i join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
                                       where i.indrelid = tbl and i.indisprimary and a.attname = c) then
        raise exception 'delta column %.% is part of the primary key: a key is found by, not added to', q, c;
      end if;
    end loop;
    insert into brabant.policies (tbl) values (q) on conflict on constraint policies_pkey do nothing;
    update brabant.policies p set set_at = now(), delta = case when policy = 'delta'
        then (select array_agg(distinct x order by x) from unnest(p.delta || columns::text[]) x)
        else (select coalesce(array_agg(x order by x), '{}') from unnest(p.delta) x where not x = any(columns::text[])) end
      where p.tbl = q;
  elsif policy like 'custom:%' then
    begin
      fn := (substr(policy, 8) || '(text, jsonb, jsonb, jsonb, jsonb)')::regprocedure;
    exception when others then
      raise exception 'custom resolver of %: no function %(text, jsonb, jsonb, jsonb, jsonb): create it first (kind, local row, remote row, local version, remote version) returning jsonb', q, substr(policy, 8);
    end;
    if (select prorettype from pg_proc where oid = fn) <> 'jsonb'::regtype then
      raise exception 'custom resolver % of % must return jsonb (the row to keep, or null to keep the local one)', fn, q;
    end if;
    -- schema-qualified, the same text on every node whatever its search_path
    insert into brabant.policies (tbl, custom)
      values (q, (select format('%I.%I(text,jsonb,jsonb,jsonb,jsonb)', n.nspname, p.proname)
                    from pg_proc p join pg_namespace n on n.oid = p.pronamespace where p.oid = fn))
      on conflict on constraint policies_pkey do update set custom = excluded.custom, set_at = now();
  elsif policy like '%:%' then
    kind := split_part(policy, ':', 1);
    resolver := split_part(policy, ':', 2);
    select a into allowed from (values ${kindCases}) as v(k, a) where v.k = kind;
    if allowed is null then
      raise exception 'no conflict kind % to resolve on %: the kinds are insert_exists, update_origin_change, update_missing, update_recently_deleted, delete_recently_updated', kind, q;
    end if;
    if not resolver = any(allowed) then
      raise exception '% cannot be resolved with % on %: choose one of %', kind, resolver, q, array_to_string(allowed, ', ');
    end if;
    insert into brabant.policies (tbl, resolutions) values (q, jsonb_build_object(kind, resolver))
      on conflict on constraint policies_pkey do update set resolutions = policies.resolutions || excluded.resolutions, set_at = now();
  else
    raise exception 'no conflict policy %: the policies are row_lww, column_lww, delta, no_delta, <kind>:<resolver> and custom:<function>', policy;
  end if;
  -- column_lww and delta need each update's old row; column_lww its per-column versions
  if exists (select 1 from brabant.policies p where p.tbl = q and (p.rows = 'column_lww' or cardinality(p.delta) > 0))
     and (select relreplident from pg_class where oid = tbl) <> 'f' then
    perform set_config('brabant.upkeep', 'on', true);
    execute format('alter table %s replica identity full', q);
    perform set_config('brabant.upkeep', 'off', true);
  end if;
  perform set_config('brabant.upkeep', 'on', true);
  execute format('drop trigger if exists brabant_column_versions on %s', q);
  if (select p.rows from brabant.policies p where p.tbl = q) = 'column_lww' then
    execute format('create trigger brabant_column_versions after insert or update on %s for each row execute function brabant.record_column_versions(%s)',
                   q, (select string_agg(quote_literal(x), ', ') from unnest(key) x));
    -- the rows already there: a version for each of their columns, this transaction's (on the
    -- peer, apply runs this call under the origin session: the same commit time and origin)
    if policy = 'column_lww' then
      execute format(
        'insert into brabant.column_versions (tbl, key, col)
           select %L, (select jsonb_object_agg(k, r -> k) from unnest(%L::text[]) k), e.key
             from (select to_jsonb(t) as r from %s t) x cross join lateral jsonb_each(x.r) e
            where not e.key = any(%L::text[])
         on conflict (tbl, key, col) do update set col = excluded.col', q, key, q, key);
    end if;
  end if;
  perform set_config('brabant.upkeep', 'off', true);
  -- replicated like DDL: every node takes it at this place of this node's stream
  if not pg_replication_origin_session_is_setup() then
    perform pg_logical_emit_message(true, 'brabant.ddl', jsonb_build_object(
      'version', 1,
      'statement', format('select brabant.set_conflict_policy(%L, %L, %L)', q, policy, columns),
      'searchPath', 'pg_catalog', 'role', current_user::text, 'tags', jsonb_build_array('SET CONFLICT POLICY'),
      'seq', 0, 'concurrently', false, 'objects', jsonb_build_array(jsonb_build_object('type', 'table', 'identity', q)), 'dropped', '[]'::jsonb, 'tables', '[]'::jsonb,
      'renames', '[]'::jsonb)::text);
  end if;
end
$fn$;
`;
