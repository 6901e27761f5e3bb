/**
 * The schema `brabant` on a node: what every Brabant service relies on there, as much a part of
 * the contract as the records on the topics. Tombstones of deleted keys, the conflict log, the
 * peers, the operator's DDL resolutions, the trigger that remembers local deletes (installed on
 * every user table by brabant.ensure_tombstone_triggers(), at start and after each DDL), and the
 * check the fast path's statements raise BR001 through. Idempotent; serialized by an advisory lock
 * so capture and apply starting together do not race.
 */
import type pg from 'pg';
import { BrabantError } from '../runtime/errors.ts';
import { SQLSTATE } from '../runtime/sqlstate.ts';
import { CONFLICT_POLICIES_SQL } from './conflict-policies.ts';
import { NOT_REPLICATED_HERE, type SetUpStep, setUpStep, stepVersion } from './node-setup.ts';
import { RESYNC_SQL } from './resync-schema.ts';

type Queryable = Pick<pg.Client, 'query'>;

const SETUP_SQL = `
create schema if not exists brabant;
-- every role's DDL and deletes run Brabant's triggers, which call functions of this schema; its
-- tables stay closed (no grants): the functions that write them run as their owner (security
-- definer, a fixed search_path), so a role may write them only the way Brabant does
grant usage on schema brabant to public;
create table if not exists brabant.setup_steps (
  step text primary key,
  version text not null,
  done_at timestamptz not null default now(),
  done_by text not null default current_user
);
grant select on brabant.setup_steps to public;
comment on table brabant.setup_steps is
  'The set-up steps done on this node (brabant node init, or a service running as a superuser) and the version of their SQL: a service without the right to set up checks here that this build''s set-up was done.';
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
create table if not exists brabant.dead_letter_actions (
  id text primary key,
  action text not null check (action in ('reapply', 'discard')),
  source text not null,
  format text,
  payload jsonb,
  state text not null check (state in ('requested', 'done', 'failed')),
  detail text,
  requested_at timestamptz not null default now(),
  done_at timestamptz
);
comment on table brabant.dead_letter_actions is
  'What the operator did with a dead letter meant for this node (brabant deadletters reapply|discard; id <region>:<partition>@<offset> of brabant.deadletter). Apply re-applies a requested one through its normal path and marks it done in the same local transaction: exactly once.';
create table if not exists brabant.node_settings (
  only_one boolean primary key default true check (only_one),
  node_id text not null,
  sequence_index int not null,
  sequence_step int not null,
  check (sequence_step between 1 and 1024 and sequence_index >= 0 and sequence_index < sequence_step)
);
grant select on brabant.node_settings to public;
comment on table brabant.node_settings is
  'This node: its id and its place among the nodes for sequences (every replicated sequence hands out only values congruent to sequence_index modulo sequence_step, so no two nodes ever hand out the same one).';
create table if not exists brabant.join_fence (
  never_a_row boolean primary key check (false)
);
comment on table brabant.join_fence is
  'Always empty. Every local transaction apply commits under a replication origin reads it FOR UPDATE first (its origin setup), so a join that locks it EXCLUSIVE for a moment takes a snapshot with the origins'' progress exactly as in that snapshot.';
create table if not exists brabant.apply_offsets (
  topic text not null,
  part int not null,
  next_offset bigint not null,
  saved_at timestamptz not null default now(),
  primary key (topic, part)
);
comment on table brabant.apply_offsets is
  'Where apply reads each change topic partition next, as this database knows it (saved before each commit of the consumer group''s offsets): a database restored from a backup resumes from here, not from the group''s newer offsets.';
create table if not exists brabant.own_stream (
  only_one boolean primary key default true check (only_one),
  horizon pg_lsn not null,
  reason text not null,
  recognized_at timestamptz not null default now()
);
comment on table brabant.own_stream is
  'This database lost some of its own changes that are in Kafka (restored from a backup, or rebuilt by a join): apply applies this node''s own events up to horizon like a peer''s (origin brabant_<node id>), and capture moves the WAL past horizon before it streams again.';
create table if not exists brabant.parted_nodes (
  node text primary key,
  through_lsn pg_lsn not null,
  parted_at timestamptz not null default now()
);
comment on table brabant.parted_nodes is
  'Nodes that left the cluster (brabant node part): their events up to through_lsn were all applied here; apply skips them (its origin for the node is dropped) and tombstone pruning no longer waits for them.';
-- facts about the node every service reads (capture as a role of its own refuses to run for a
-- parted node, and moves its WAL past own_stream's horizon): nothing secret in them
grant select on brabant.own_stream, brabant.parted_nodes to public;
create or replace function brabant.step_sequences() returns text[]
language plpgsql security definer set search_path = pg_catalog, pg_temp as $fn$
declare
  s record;
  k int;
  n int;
  nextv bigint;
  above bigint;
  next bigint;
  done text[] := '{}';
begin
  select sequence_index, sequence_step into k, n from brabant.node_settings;
  if n is null then return done; end if;
  for s in
    select format('%I.%I', ns.nspname, c.relname) as q, sq.seqincrement as inc, sq.seqmax as max,
           d.refobjid::regclass as owner_table,
           (select a.attname from pg_attribute a where a.attrelid = d.refobjid and a.attnum = d.refobjsubid) as owner_column
      from pg_class c join pg_namespace ns on ns.oid = c.relnamespace
      join pg_sequence sq on sq.seqrelid = c.oid
      left join pg_depend d on d.classid = 'pg_class'::regclass and d.objid = c.oid and d.deptype in ('a', 'i')
                           and d.refclassid = 'pg_class'::regclass and d.refobjsubid > 0
     where c.relkind = 'S' and c.relpersistence = 'p'
       and ns.nspname not in ('pg_catalog', 'information_schema', 'brabant') and ns.nspname not like 'pg\\_%'
  loop
    continue when s.inc < 0; -- descending sequences are left as they are
    -- the value nextval() hands out next (after a RESTART it is the restart value itself)
    execute format('select case when is_called then last_value + $1 else last_value end from %s', s.q)
      into nextv using s.inc;
    -- stepped already, and its next value is this node's
    continue when s.inc = n and (nextv % n + n) % n = k;
    above := nextv - 1;
    if s.owner_column is not null then
      -- rows other nodes wrote before this sequence was stepped: stay above them
      execute format('select greatest($1, coalesce(max(%I)::bigint, $1)) from %s', s.owner_column, s.owner_table)
        into above using above;
    end if;
    next := above + 1 + ((k - (above + 1) % n) % n + n) % n;
    if next > s.max then
      raise warning 'Brabant cannot step sequence % for node index % of %: its next value % is past its maximum %', s.q, k, n, next, s.max;
      continue;
    end if;
    execute format('alter sequence %s increment by %s restart with %s', s.q, n, next);
    done := done || s.q;
  end loop;
  return done;
end
$fn$;
create table if not exists brabant.known_columns (
  relid oid not null,
  attnum int not null,
  name text not null,
  primary key (relid, attnum)
);
comment on table brabant.known_columns is
  'The column names of each replicated table as Brabant last saw them, by attnum: a DDL that renames a column is told apart from a drop and an add.';
create table if not exists brabant.column_renames (
  tbl text not null,
  old_name text not null,
  new_name text not null,
  renamed_at timestamptz not null default now(),
  primary key (tbl, old_name)
);
comment on table brabant.column_renames is
  'Columns renamed on this node: rows a peer wrote in the old shape (before the rename reached it) keep their values under the new name.';
create or replace function brabant.note_columns(rel oid) returns jsonb
language plpgsql security definer set search_path = pg_catalog, pg_temp as $fn$
declare
  renamed jsonb;
  q text;
begin
  select format('%I.%I', n.nspname, c.relname) into q from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = rel;
  if q is null then
    delete from brabant.known_columns where relid = rel;
    return '[]';
  end if;
  select coalesce(jsonb_agg(jsonb_build_object('table', q, 'from', k.name, 'to', a.attname::text)), '[]') into renamed
    from brabant.known_columns k join pg_attribute a on a.attrelid = k.relid and a.attnum = k.attnum
   where k.relid = rel and k.name <> a.attname::text and not a.attisdropped;
  insert into brabant.column_renames (tbl, old_name, new_name)
    select q, r ->> 'from', r ->> 'to' from jsonb_array_elements(renamed) r
    on conflict (tbl, old_name) do update set new_name = excluded.new_name, renamed_at = now();
  -- a chain a → b → c: rows of the oldest shape land in c too
  update brabant.column_renames c set new_name = r ->> 'to'
    from jsonb_array_elements(renamed) r where c.tbl = q and c.new_name = r ->> 'from';
  delete from brabant.known_columns where relid = rel;
  -- (capture and apply of a node start together: another may note the same table meanwhile)
  insert into brabant.known_columns (relid, attnum, name)
    select rel, a.attnum, a.attname from pg_attribute a where a.attrelid = rel and a.attnum > 0 and not a.attisdropped
    on conflict (relid, attnum) do update set name = excluded.name;
  return renamed;
end
$fn$;
create or replace function brabant.note_all_columns() returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $fn$
begin
  -- capture and apply may start together: one of them notes the tables not noted yet
  perform pg_advisory_xact_lock(hashtext('brabant.setup'));
  perform brabant.note_columns(c.oid) from pg_class c join pg_namespace n on n.oid = c.relnamespace
   where c.relkind in ('r', 'p') and not c.relispartition and c.relpersistence = 'p'
     and n.nspname not in ('pg_catalog', 'information_schema', 'brabant') and n.nspname not like 'pg\\_%'
     and not exists (select 1 from brabant.known_columns k where k.relid = c.oid);
end
$fn$;
-- A tombstone's key: the key columns' JSON, as jsonb; a json value jsonb cannot hold (a \\u0000
-- escape) has that escape written as plain text, so that no delete fails for it (apply builds
-- keys alike)
-- (plpgsql: a SQL function would be inlined, and its j::jsonb folded as a constant before the test)
create or replace function brabant.key_jsonb(j json) returns jsonb
language plpgsql immutable as $fn$
begin
  if strpos(j::text, '\\u0000') > 0 then
    -- (json_each and the like refuse it too): the escape's backslash escaped, a plain string
    return replace(j::text, '\\u0000', '\\\\u0000')::jsonb;
  end if;
  return j::jsonb;
end
$fn$;
-- A key's tombstone as apply reads it right after locking the key's row: volatile plpgsql takes
-- a new snapshot, so a local delete the lock waited for is seen (the lookup statement's own
-- snapshot is older than that delete's commit). \`after_lock\` only orders it after the lock.
-- Its version is its xmin's, or the original one a peer's resync recorded for it (resync-schema.ts).
create or replace function brabant.tombstone_of(t text, k jsonb, after_lock xid)
returns table (tomb_xmin text, tomb_ts text, tomb_origin text)
language plpgsql volatile as $fn$
begin
  return query
    select tb.xmin::text,
           case when e.tbl is null then (extract(epoch from o."timestamp") * 1000000)::int8::text else e.ts::text end,
           case when e.tbl is null then n.roname::text else e.origin end
      from brabant.tombstones tb
      left join brabant.resynced_versions e
        on e.tbl = tb.tbl and e.key = tb.key and e.kind = 'tombstone' and e.row_xmin = tb.xmin
      left join lateral pg_xact_commit_timestamp_origin(tb.xmin) o on true
      left join pg_replication_origin n on n.roident = o.roident
     where tb.tbl = t and tb.key = k;
end
$fn$;
create or replace function brabant.record_delete() returns trigger
language plpgsql set timezone to 'UTC' security definer set search_path = pg_catalog, pg_temp as $fn$
declare
  -- json, not jsonb: only the key columns are converted (a non-key json value may hold anything)
  r json := row_to_json(old);
  k jsonb;
begin
  k := brabant.key_jsonb((select json_object_agg(a, r -> a) from unnest(tg_argv) as a));
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
language plpgsql security definer set search_path = pg_catalog, pg_temp as $fn$
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

/** The set-up step of the schema brabant (see node-setup.ts). */
export const NODE_OBJECTS_STEP: SetUpStep = {
  name: 'node-objects',
  version: stepVersion(SETUP_SQL, RESYNC_SQL, CONFLICT_POLICIES_SQL),
};

/** Creates (or updates) the schema brabant; a role that may not set up finds it done (node-setup.ts). */
export async function ensureNodeObjects(db: Queryable): Promise<void> {
  await setUpStep(db, NODE_OBJECTS_STEP, async () => {
    await db.query('begin');
    try {
      await db.query(`select pg_advisory_xact_lock(hashtext('brabant.setup'))`);
      // the node's own set-up (its grants are DDL too): never replicated
      await db.query(NOT_REPLICATED_HERE);
      await db.query(SETUP_SQL);
      await db.query(RESYNC_SQL);
      await db.query(CONFLICT_POLICIES_SQL);
      await db.query('commit');
    } catch (err) {
      await db.query('rollback').catch(() => {});
      throw err;
    }
  });
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

/**
 * This node's place among the nodes for replicated sequences: every sequence then hands out only
 * values congruent to `index` modulo `step` (at most `step` nodes), stepped now and after every
 * DDL (brabant.step_sequences()).
 */
export async function setSequencePlace(
  db: Queryable,
  nodeId: string,
  place: { index: number; step: number },
): Promise<string[]> {
  await db.query(
    `insert into brabant.node_settings (node_id, sequence_index, sequence_step) values ($1, $2, $3)
     on conflict (only_one) do update set node_id = excluded.node_id, sequence_index = excluded.sequence_index,
       sequence_step = excluded.sequence_step`,
    [nodeId, place.index, place.step],
  );
  const res = await db.query<{ stepped: string[] }>('select brabant.step_sequences() as stepped');
  return res.rows[0]?.stepped ?? [];
}

/** Steps the sequences that are not yet this node's (new ones, or moved by setval or a replicated ALTER). */
export async function stepSequences(db: Queryable): Promise<string[]> {
  const res = await db.query<{ stepped: string[] }>('select brabant.step_sequences() as stepped');
  return res.rows[0]?.stepped ?? [];
}

/** Notes the columns of every replicated table not noted yet (a rename is then told apart from drop and add). */
export async function noteAllColumns(db: Queryable): Promise<void> {
  await db.query('select brabant.note_all_columns()');
}

/** A node that left the cluster (brabant node part) captures and applies nothing more. */
export async function refuseParted(db: Queryable, nodeId: string): Promise<void> {
  const res = await db.query<{ at: string }>(
    'select parted_at::text as at from brabant.parted_nodes where node = $1',
    [nodeId],
  );
  if (res.rows[0] !== undefined)
    throw new BrabantError(
      'NODE_PARTED',
      `node ${nodeId} left the cluster at ${res.rows[0].at} (brabant node part): its changes no longer replicate. ` +
        `To bring it back, empty its database and join it again: brabant node join ${nodeId} --from PEER --rebuild`,
    );
}
