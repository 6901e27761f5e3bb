/**
 * DDL capture on a node (SQL here and only here): event triggers that, in the DDL's own
 * transaction, emit a transactional logical message (`brabant.ddl`, protocol/ddl.ts) with the
 * statement, search_path, role, command tags and the affected tables' shape after the change. It
 * reaches peers in the same ordered stream as the rows, exactly where it happened, and a rolled
 * back DDL is never sent. DDL that Brabant applies (a replication-origin session is set up; apply
 * also runs with session_replication_role = replica, where event triggers do not fire) is not
 * captured again.
 *
 * Refused before it commits, with the reason and the safe recipe: statements whose result depends
 * on the node — CREATE TABLE AS / SELECT INTO (rows computed on each node), ADD COLUMN with a
 * default that is not immutable (each node would compute its own value), and table-rewriting
 * ALTER COLUMN TYPE (binary-coercible changes do not rewrite and are allowed).
 */
import type pg from 'pg';
import { CATALOG_CHANNEL } from '../protocol/ddl.ts';
import {
  ensureNodeObjects,
  noteAllColumns,
  setSequencePlace,
  stepSequences,
} from '../protocol/node-schema.ts';
import {
  maySetUp,
  NOT_REPLICATED_HERE,
  type SetUpStep,
  setUpStep,
  stepVersion,
} from '../protocol/node-setup.ts';
import { BrabantError } from '../runtime/errors.ts';
import type { Logger } from '../runtime/log.ts';

type Queryable = Pick<pg.Client, 'query'>;

/** The schemas whose DDL is never replicated: the system's and Brabant's own. */
const NOT_REPLICATED = `('pg_catalog', 'information_schema', 'brabant', 'pg_toast')`;

const DESCRIBE_TABLE = `
create or replace function brabant.describe_table(rel oid) returns jsonb
language sql stable as $fn$
  with cols as (
    select coalesce(jsonb_agg(jsonb_build_object(
             'name', a.attname, 'type', format_type(a.atttypid, a.atttypmod), 'notNull', a.attnotnull,
             'default', pg_get_expr(d.adbin, d.adrelid), 'identity', a.attidentity::text,
             'generated', a.attgenerated::text) order by a.attnum), '[]'::jsonb) as columns
      from pg_attribute a left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
     where a.attrelid = rel and a.attnum > 0 and not a.attisdropped
  ), pk as (
    select coalesce(jsonb_agg(a.attname order by k.ord), '[]'::jsonb) as cols
      from pg_index i cross join lateral unnest(i.indkey::int2[]) with ordinality as k(attnum, ord)
      join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
     where i.indrelid = rel and i.indisprimary
  ), shape as (
    select jsonb_build_object('schema', n.nspname, 'name', c.relname, 'columns', cols.columns,
             'primaryKey', pk.cols, 'replicaIdentity', c.relreplident::text) as j
      from pg_class c join pg_namespace n on n.oid = c.relnamespace, cols, pk
     where c.oid = rel
  )
  select j || jsonb_build_object('fingerprint', md5(j::text)) from shape
$fn$`;

/**
 * The top-level statements of a query string: a query string may hold several, and an event
 * trigger sees the whole string (current_query()). Quotes, E'' strings, quoted names, dollar
 * quotes and (nested) comments are skipped; a semicolon outside them ends a statement.
 */
const SPLIT_STATEMENTS = `
create or replace function brabant.split_statements(q text) returns text[]
language plpgsql immutable as $fn$
declare
  out text[] := '{}';
  n int := length(q);
  i int := 1;
  start int := 1;
  c text;
  esc boolean;
  depth int;
  tag text;
  j int;
begin
  while i <= n loop
    c := substr(q, i, 1);
    if c = '''' or (lower(c) = 'e' and substr(q, i + 1, 1) = '''' and (i = 1 or substr(q, i - 1, 1) !~ '[A-Za-z0-9_]')) then
      -- a string: '' is a quote inside it; in an E'' string a backslash escapes the next character
      esc := c <> '''';
      if esc then i := i + 1; end if;
      i := i + 1;
      while i <= n loop
        if esc and substr(q, i, 1) = '\\' then i := i + 2; continue; end if;
        if substr(q, i, 1) = '''' then
          if substr(q, i + 1, 1) = '''' then i := i + 2; continue; end if;
          exit;
        end if;
        i := i + 1;
      end loop;
    elsif c = '"' then
      i := i + 1;
      while i <= n loop
        if substr(q, i, 1) = '"' then
          if substr(q, i + 1, 1) = '"' then i := i + 2; continue; end if;
          exit;
        end if;
        i := i + 1;
      end loop;
    elsif c = '-' and substr(q, i + 1, 1) = '-' then
      while i <= n and substr(q, i, 1) <> chr(10) loop i := i + 1; end loop;
    elsif c = '/' and substr(q, i + 1, 1) = '*' then
      depth := 1;
      i := i + 2;
      while i <= n and depth > 0 loop
        if substr(q, i, 2) = '/*' then depth := depth + 1; i := i + 2;
        elsif substr(q, i, 2) = '*/' then depth := depth - 1; i := i + 2;
        else i := i + 1; end if;
      end loop;
      continue;
    elsif c = '$' and (i = 1 or substr(q, i - 1, 1) !~ '[A-Za-z0-9_]') then
      tag := substring(substr(q, i) from '^(\\$([A-Za-z_][A-Za-z0-9_]*)?\\$)');
      if tag is not null then
        j := strpos(substr(q, i + length(tag)), tag);
        i := case when j = 0 then n + 1 else i + length(tag) + j + length(tag) - 2 end;
      end if;
    elsif c = ';' then
      out := out || btrim(substr(q, start, i - start), E' \\t\\r\\n');
      start := i + 1;
    end if;
    i := i + 1;
  end loop;
  out := out || btrim(substr(q, start), E' \\t\\r\\n');
  return array(select s from unnest(out) s where s <> '');
end $fn$`;

/**
 * The ddl_command_end and sql_drop function: one event per top-level DDL statement. sql_drop
 * (which fires first) keeps what the statement dropped for its ddl_command_end. The statement
 * replicated is the one of the query string that ran this command: the whole string when it has
 * one statement (transaction control aside); else the k-th DDL statement of the string, k the
 * events it emitted so far, which must start with this command's verb — if not (DDL run inside a
 * DO block of a longer string, say), the DDL is refused with the fix, rather than replicated wrong.
 */
const CAPTURE_DDL = `
create or replace function brabant.first_word(stmt text) returns text
language sql immutable as $fn$
  select lower(substring(regexp_replace(stmt, '^(\\s+|--[^\\n]*(\\n|$)|/\\*([^*]|\\*[^/])*\\*/)*', '') from '^[A-Za-z]+'))
$fn$;
create or replace function brabant.capture_ddl() returns event_trigger
language plpgsql as $fn$
declare
  r record;
  objects jsonb := '[]';
  dropped jsonb := coalesce(nullif(current_setting('brabant.ddl_dropped', true), '')::jsonb, '[]');
  tags jsonb := '[]';
  tables jsonb := '[]';
  renames jsonb := '[]';
  rels oid[] := '{}';
  q text := current_query();
  query_id text := md5(q) || ':' || statement_timestamp()::text;
  last text := current_setting('brabant.ddl_query', true);
  k int := 0;
  stmts text[];
  candidates text[];
  stmt text;
  relid oid;
begin
  if pg_replication_origin_session_is_setup() then return; end if;
  -- Brabant's own upkeep below (its triggers on new tables) is this node's, not replicated
  if current_setting('brabant.upkeep', true) = 'on' then return; end if;
  -- the operator's local-only DDL (SET brabant.ddl_replication = off): this node's alone
  if current_setting('brabant.ddl_replication', true) = 'off' then return; end if;
  if tg_event = 'sql_drop' then
    for r in select * from pg_event_trigger_dropped_objects() loop
      continue when r.schema_name is not null
        and (r.schema_name in ${NOT_REPLICATED} or r.schema_name like 'pg\\_temp%' or r.schema_name like 'pg\\_toast%');
      continue when r.is_temporary or not r.original;
      continue when r.object_type in ('publication', 'publication relation', 'publication namespace', 'subscription', 'event trigger');
      dropped := dropped || jsonb_build_object('type', r.object_type, 'identity', r.object_identity);
    end loop;
    perform set_config('brabant.ddl_dropped', dropped::text, true);
    return;
  end if;
  perform set_config('brabant.ddl_dropped', '', true);
  for r in select * from pg_event_trigger_ddl_commands() loop
    continue when r.in_extension;
    -- a node's publications, subscriptions and event triggers are its own (Brabant sorts tables
    -- into its publications from an event trigger, inside the user's DDL)
    continue when r.object_type in ('publication', 'publication relation', 'publication namespace', 'subscription', 'event trigger');
    continue when r.schema_name is not null
      and (r.schema_name in ${NOT_REPLICATED} or r.schema_name like 'pg\\_temp%');
    relid := case
      when r.classid = 'pg_class'::regclass then
        (select case when c.relkind = 'i' then (select indrelid from pg_index where indexrelid = c.oid)
                     when c.relkind in ('r', 'p') then c.oid end
           from pg_class c where c.oid = r.objid)
      when r.classid = 'pg_constraint'::regclass then (select conrelid from pg_constraint where oid = r.objid)
      when r.classid = 'pg_trigger'::regclass then (select tgrelid from pg_trigger where oid = r.objid)
    end;
    if relid is not null and exists (select 1 from pg_class where oid = relid and relpersistence <> 'p') then
      continue; -- temporary and unlogged tables stay local
    end if;
    if r.command_tag in ('CREATE TABLE AS', 'SELECT INTO') then
      raise exception using
        message = format('Brabant refuses %s %s: its rows would be computed on each node separately', r.command_tag, r.object_identity),
        hint = 'create the table with CREATE TABLE (its columns), then fill it with INSERT … SELECT: the rows then replicate as rows',
        errcode = 'feature_not_supported';
    end if;
    if r.command_tag = 'ALTER TABLE' and relid is not null then
      perform brabant.refuse_node_dependent_default(relid);
    end if;
    objects := objects || jsonb_build_object('type', r.object_type, 'identity', r.object_identity);
    if not tags ? r.command_tag then tags := tags || to_jsonb(r.command_tag); end if;
    if relid is not null and not relid = any(rels) then rels := rels || relid; end if;
  end loop;
  if jsonb_array_length(objects) = 0 and jsonb_array_length(dropped) = 0 then return; end if;
  if jsonb_array_length(tags) = 0 then tags := jsonb_build_array(tg_tag); end if;

  -- which statement of the query string this is
  stmts := array(select x from unnest(brabant.split_statements(q)) x
                  where brabant.first_word(x) not in ('begin', 'start', 'commit', 'end', 'rollback', 'abort', 'savepoint', 'release')
                    and x !~* '^\\s*(prepare|commit|rollback)\\s+prepared\\M' and x !~* '^\\s*prepare\\s+transaction\\M');
  if last is not null and split_part(last, '#', 1) = query_id then k := split_part(last, '#', 2)::int + 1; end if;
  perform set_config('brabant.ddl_query', query_id || '#' || k, true);
  if coalesce(array_length(stmts, 1), 0) = 1 then
    stmt := stmts[1];
  else
    candidates := array(select x from unnest(stmts) x where brabant.first_word(x) in
      ('create', 'alter', 'drop', 'comment', 'grant', 'revoke', 'security', 'import', 'reindex', 'refresh'));
    stmt := candidates[k + 1];
    if stmt is null or brabant.first_word(stmt) <> lower(split_part(tg_tag, ' ', 1)) then
      raise exception using
        message = format('Brabant cannot tell which statement of this query string ran %s, so it cannot replicate it', tg_tag),
        hint = 'send each DDL statement in a query string of its own (psql and migration tools do), or use brabant ddl apply',
        errcode = 'feature_not_supported';
    end if;
  end if;

  -- this node's upkeep, in the same transaction: a new table (or one whose key changed) gets its
  -- tombstone trigger, a new sequence (serial, identity, CREATE SEQUENCE) this node's step
  perform set_config('brabant.upkeep', 'on', true);
  if array_length(rels, 1) > 0 then perform brabant.ensure_tombstone_triggers(); end if;
  perform brabant.step_sequences();
  perform set_config('brabant.upkeep', 'off', true);
  foreach relid in array rels loop
    tables := tables || brabant.describe_table(relid);
    renames := renames || brabant.note_columns(relid);
  end loop;
  perform pg_logical_emit_message(true, 'brabant.ddl', jsonb_build_object(
    'version', 1, 'statement', stmt, 'searchPath', current_setting('search_path'), 'role', current_user::text,
    'tags', tags, 'seq', k, 'concurrently', stmt ~* '\\mconcurrently\\M' and tg_tag in ('CREATE INDEX', 'DROP INDEX', 'REINDEX'),
    'objects', objects, 'dropped', dropped, 'tables', tables, 'renames', renames)::text);
end $fn$`;

/**
 * A column added with a default that is not immutable would get each node's own value for the
 * rows already there: PostgreSQL computes a non-volatile default once per node and stores it as
 * the value of existing rows (a volatile one rewrites the table: refuse_rewrite). Dependencies on
 * built-in functions are not recorded in pg_depend, so the expression's text is read: function
 * calls that are not immutable, SQL value functions (CURRENT_TIMESTAMP, CURRENT_USER, …) and
 * casts of the special date/time inputs ('now', 'today', …).
 */
const REFUSE_NODE_DEPENDENT_DEFAULT = `
create or replace function brabant.node_dependent_expr(expr text) returns boolean
language sql stable as $fn$
  select expr ~* '\\m(current_(timestamp|date|time|user|role|catalog|schema)|localtime(stamp)?|session_user|user)\\M'
      or expr ~* $$'(now|today|tomorrow|yesterday)'::$$
      or exists (select 1 from regexp_matches(expr, '([A-Za-z_][A-Za-z0-9_$]*)\\s*\\(', 'g') as m(f)
                   join pg_proc p on p.proname = lower(m.f[1])
                  where p.provolatile <> 'i')
$fn$;
create or replace function brabant.refuse_node_dependent_default(rel oid) returns void
language plpgsql as $fn$
declare r record;
begin
  for r in
    select a.attname, pg_get_expr(d.adbin, d.adrelid) as expr
      from pg_attribute a join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
     where a.attrelid = rel and a.atthasmissing and not a.attisdropped
       and brabant.node_dependent_expr(pg_get_expr(d.adbin, d.adrelid))
  loop
    raise exception using
      message = format('Brabant refuses ADD COLUMN %I of %s with DEFAULT %s: each node would fill the existing rows with its own value',
                       r.attname, rel::regclass, r.expr),
      hint = 'add the column without a default, then ALTER COLUMN … SET DEFAULT for new rows, and backfill the existing rows with an UPDATE (it replicates as rows)',
      errcode = 'feature_not_supported';
  end loop;
end $fn$`;

/** A table rewrite that each node would do on its own: a volatile default, or a column type change. */
const REFUSE_REWRITE = `
create or replace function brabant.refuse_rewrite() returns event_trigger
language plpgsql as $fn$
declare
  rel oid := pg_event_trigger_table_rewrite_oid();
  reason int := pg_event_trigger_table_rewrite_reason();
begin
  if pg_replication_origin_session_is_setup() then return; end if;
  if current_setting('brabant.ddl_replication', true) = 'off' then return; end if;
  if exists (select 1 from pg_class c join pg_namespace n on n.oid = c.relnamespace
              where c.oid = rel and (c.relpersistence <> 'p' or n.nspname in ${NOT_REPLICATED} or n.nspname like 'pg\\_temp%')) then
    return;
  end if;
  -- A rewrite gives every row a new xmin: each row's version (its commit timestamp and origin,
  -- what last-writer-wins compares) becomes this DDL's, on each node, and a peer's concurrent
  -- change to the row would then lose to it. So no rewrite is let through.
  if reason & 2 <> 0 and exists (
       -- a new column (one Brabant has not noted yet, see brabant.known_columns) with a default
       -- each node computes for itself
       select 1 from pg_attribute a join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
        where a.attrelid = rel and a.attnum > 0 and not a.attisdropped
          and a.attnum > coalesce((select max(k.attnum) from brabant.known_columns k where k.relid = rel), 0)
          and brabant.node_dependent_expr(pg_get_expr(d.adbin, d.adrelid))) then
    raise exception using
      message = format('Brabant refuses to rewrite %s for a volatile default: each node would compute its own values', rel::regclass),
      hint = 'add the column without a default, then SET DEFAULT for new rows and backfill the existing ones with an UPDATE (it replicates as rows)',
      errcode = 'feature_not_supported';
  elsif reason & 2 <> 0 then
    raise exception using
      message = format('Brabant refuses to rewrite %s (a new column of a domain with constraints, or a default PostgreSQL cannot store once): a rewrite makes every row look just written on each node, and conflict resolution would then drop the other regions'' concurrent changes', rel::regclass),
      hint = 'add the column as the base type with a CHECK constraint (ADD COLUMN n integer CHECK (n > 0)), or with a constant default',
      errcode = 'feature_not_supported';
  elsif reason & 4 <> 0 then
    raise exception using
      message = format('Brabant refuses ALTER COLUMN … TYPE on %s: it rewrites every row on each node separately, under an exclusive lock', rel::regclass),
      hint = 'expand and contract: add a column of the new type, backfill it with an UPDATE (replicated), move readers and writers to it, then drop the old column; binary-coercible changes (e.g. varchar(10) to varchar(20)) are allowed',
      errcode = 'feature_not_supported';
  elsif reason <> 0 then
    -- SET LOGGED / UNLOGGED, SET ACCESS METHOD
    raise exception using
      message = format('Brabant refuses to rewrite %s: a rewrite makes every row look just written on each node, and conflict resolution would then drop the other regions'' concurrent changes', rel::regclass),
      hint = 'make a new table the way you want it, copy the rows with INSERT … SELECT (replicated), and switch to it; or run it on this node alone with SET LOCAL brabant.ddl_replication = off while no region writes the table',
      errcode = 'feature_not_supported';
  end if;
end $fn$`;

/**
 * Any DDL on the node, replicated or local-only (`brabant.ddl_replication = off`), tells apply
 * to read the tables it holds in its catalog again (NOTIFY is sent at commit): a column dropped
 * or added here by hand must not meet a cached shape. Apply's own DDL invalidates its catalog itself.
 */
const CATALOG_CHANGED = `
create or replace function brabant.catalog_changed() returns event_trigger
language plpgsql as $fn$
begin
  perform pg_notify('${CATALOG_CHANNEL}', tg_tag);
end $fn$`;

const DDL_TRIGGERS = [
  ['brabant_capture_ddl', 'ddl_command_end', 'brabant.capture_ddl'],
  ['brabant_capture_ddl_drop', 'sql_drop', 'brabant.capture_ddl'],
  ['brabant_refuse_rewrite', 'table_rewrite', 'brabant.refuse_rewrite'],
  ['brabant_catalog_changed', 'ddl_command_end', 'brabant.catalog_changed'],
] as const;

const DDL_FUNCTIONS = [
  DESCRIBE_TABLE,
  SPLIT_STATEMENTS,
  REFUSE_NODE_DEPENDENT_DEFAULT,
  CAPTURE_DDL,
  REFUSE_REWRITE,
  CATALOG_CHANGED,
];

/**
 * The event triggers run in the DDL's own session, as its role: every role that runs DDL calls
 * these. pg_replication_origin_session_is_setup() is revoked from PUBLIC by PostgreSQL; it only
 * says whether the session applies a peer's changes, so every role may ask.
 */
const GRANTS = 'grant execute on function pg_replication_origin_session_is_setup() to public';

/** The set-up step of DDL capture (node-setup.ts). */
export const DDL_CAPTURE_STEP: SetUpStep = {
  name: 'ddl-capture',
  version: stepVersion(...DDL_FUNCTIONS, JSON.stringify(DDL_TRIGGERS), GRANTS),
};

/**
 * Creates (or replaces) the functions and the event triggers; idempotent. Needs a superuser: a
 * role that may not set up finds it done by `brabant node init` (node-setup.ts).
 */
export async function ensureDdlCapture(db: Queryable): Promise<void> {
  await ensureNodeObjects(db);
  const how = await setUpStep(db, DDL_CAPTURE_STEP, async () => {
    await db.query('begin');
    try {
      await db.query(`select pg_advisory_xact_lock(hashtext('brabant.setup'))`);
      // the node's own set-up (its grants are DDL too): never replicated
      await db.query(NOT_REPLICATED_HERE);
      for (const sql of DDL_FUNCTIONS) await db.query(sql);
      for (const [name, event, fn] of DDL_TRIGGERS) {
        await db.query(`drop event trigger if exists ${name}`);
        await db.query(`create event trigger ${name} on ${event} execute function ${fn}()`);
      }
      await db.query(GRANTS);
      await noteAllColumns(db);
      await db.query('commit');
    } catch (err) {
      await db.query('rollback').catch(() => {});
      throw err;
    }
  });
  // tables made while no trigger saw them (brabant.note_columns runs as its owner)
  if (how === 'found') await noteAllColumns(db);
}

/**
 * This node's place for sequences (BRABANT_SEQUENCE_INDEX of BRABANT_SEQUENCE_STEP): its
 * sequences are stepped now, and after every DDL by the event trigger (and by apply for
 * replicated DDL). Without an index, sequences are left alone, and inserts of generated ids in two
 * regions can collide: said once, at start.
 */
export async function placeSequences(
  db: Queryable,
  c: { nodeId: string; sequenceIndex: number; sequenceStep: number },
  log: Logger,
): Promise<void> {
  const set = await db.query<{ node_id: string; sequence_index: number; sequence_step: number }>(
    'select node_id, sequence_index, sequence_step from brabant.node_settings',
  );
  const current = set.rows[0];
  if (c.sequenceIndex < 0) {
    if (current !== undefined) {
      log.info(
        { index: current.sequence_index, step: current.sequence_step },
        'sequences are stepped for this node as its set-up placed it (brabant node init)',
      );
      await stepSequences(db);
      return;
    }
    log.warn(
      'sequences are not stepped for this node: set BRABANT_SEQUENCE_INDEX (unique per node, below BRABANT_SEQUENCE_STEP) so generated ids never collide between regions',
    );
    return;
  }
  if (c.sequenceIndex >= c.sequenceStep) {
    throw new BrabantError(
      'CONFIG_INVALID',
      `BRABANT_SEQUENCE_INDEX=${c.sequenceIndex} must be below BRABANT_SEQUENCE_STEP=${c.sequenceStep}`,
    );
  }
  const same =
    current?.node_id === c.nodeId &&
    current.sequence_index === c.sequenceIndex &&
    current.sequence_step === c.sequenceStep;
  if (!same && !(await maySetUp(db)))
    throw new BrabantError(
      'PERMISSION_DENIED',
      `node ${c.nodeId} is given sequence place ${c.sequenceIndex} of ${c.sequenceStep}, but its set-up placed it ` +
        `${current === undefined ? 'nowhere' : `${current.sequence_index} of ${current.sequence_step} (as ${current.node_id})`}, and capture's role may not change that: ` +
        `run \`brabant node init ${c.nodeId} --sequence-index ${c.sequenceIndex}\`, or leave BRABANT_SEQUENCE_INDEX unset to keep the set-up's place`,
    );
  const stepped = same
    ? await stepSequences(db)
    : await setSequencePlace(db, c.nodeId, { index: c.sequenceIndex, step: c.sequenceStep });
  if (stepped.length > 0)
    log.info(
      { sequences: stepped, index: c.sequenceIndex, step: c.sequenceStep },
      'sequences stepped for this node',
    );
}
