/**
 * Where a join stands, kept on the joining node (brabant.join_state, see join-plan.ts for the
 * phases), whether the node may be joined at all (empty, its id not in use), and undoing a join
 * (I/O).
 */
import type { Admin } from 'kafkajs';
import type pg from 'pg';
import { applyGroupId, originName, publicationName, slotName } from '../../protocol/names.ts';
import { BrabantError } from '../../runtime/errors.ts';
import type { JoinPhase, JoinRecord } from './join-plan.ts';

const STATE_SQL = `
create table if not exists brabant.join_state (
  only_one boolean primary key default true check (only_one),
  node text not null,
  peer text not null,
  phase text not null check (phase in ('copying', 'copied', 'done')),
  rebuild boolean not null,
  started_at timestamptz not null default now(),
  copied_rows bigint not null default 0,
  updated_at timestamptz not null default now()
);
comment on table brabant.join_state is
  'How far brabant node join got on this node: copying (from one snapshot of the peer), copied (every stream''s position set: its services may run), done (caught up, in its router).';
`;

export async function readJoinState(db: pg.Client): Promise<JoinRecord | undefined> {
  const exists = await db.query(`select to_regclass('brabant.join_state') is not null as ok`);
  if (!exists.rows[0]?.ok) return undefined;
  const r = await db.query<{
    node: string;
    peer: string;
    phase: JoinPhase;
    rebuild: boolean;
    started_at: string;
    copied_rows: string;
  }>('select node, peer, phase, rebuild, started_at::text, copied_rows::text from brabant.join_state');
  const row = r.rows[0];
  return row === undefined
    ? undefined
    : {
        node: row.node,
        peer: row.peer,
        phase: row.phase,
        rebuild: row.rebuild,
        startedAt: row.started_at,
        copiedRows: Number(row.copied_rows),
      };
}

export async function beginJoinState(
  db: pg.Client,
  node: string,
  peer: string,
  rebuild: boolean,
): Promise<void> {
  await db.query(STATE_SQL);
  await db.query(
    `insert into brabant.join_state (node, peer, phase, rebuild) values ($1, $2, 'copying', $3)
     on conflict (only_one) do update set node = excluded.node, peer = excluded.peer, phase = 'copying',
       rebuild = excluded.rebuild, started_at = now(), copied_rows = 0, updated_at = now()`,
    [node, peer, rebuild],
  );
}

export async function setJoinPhase(db: Pick<pg.Client, 'query'>, phase: JoinPhase): Promise<void> {
  await db.query('update brabant.join_state set phase = $1, updated_at = now()', [phase]);
}

export async function noteCopiedRows(db: pg.Client, rows: number): Promise<void> {
  await db.query('update brabant.join_state set copied_rows = $1, updated_at = now()', [rows]);
}

/**
 * What the database holds of its own beyond an empty one: user schemas with objects, tables,
 * sequences, views, functions, types. Empty means nothing.
 */
export async function userObjects(db: pg.Client): Promise<string[]> {
  const res = await db.query<{ what: string }>(
    `select format('%s %I.%I', case c.relkind when 'r' then 'table' when 'p' then 'table' when 'v' then 'view'
                   when 'm' then 'materialized view' when 'S' then 'sequence' when 'f' then 'foreign table' else 'relation' end,
                   n.nspname, c.relname) as what
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')
        and n.nspname not in ('pg_catalog', 'information_schema', 'brabant') and n.nspname not like 'pg\\_%'
     union all
     select format('function %I.%I', n.nspname, p.proname) from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname not in ('pg_catalog', 'information_schema', 'brabant') and n.nspname not like 'pg\\_%'
        and not exists (select 1 from pg_depend d where d.objid = p.oid and d.deptype = 'e')
     order by 1 limit 20`,
  );
  return res.rows.map((r) => r.what);
}

/** Refuses a node that holds anything (NODE_NOT_EMPTY), naming what. */
export async function checkEmpty(db: pg.Client, node: string): Promise<void> {
  const found = await userObjects(db);
  if (found.length > 0)
    throw new BrabantError(
      'NODE_NOT_EMPTY',
      `node ${node} is not empty (${found.slice(0, 5).join(', ')}${found.length > 5 ? ', …' : ''}): a join copies the ` +
        "peer's schema and rows into an empty database. Join it into a new, empty database (createdb), or, if its " +
        'data is an earlier copy of this cluster you mean to throw away, drop those objects first',
    );
}

/**
 * Undoes a join on the node (its services must be stopped): its slot and publications, the
 * event triggers and schema brabant, every user schema's objects, the origins of the cluster's
 * nodes, and its consumer group. Its database is empty afterwards, as before the join.
 */
export async function undoJoin(
  db: pg.Client,
  o: { node: string; cluster: string[]; admins: Admin[] },
): Promise<void> {
  const slot = slotName(o.node);
  const active = await db.query<{ pid: number | null }>(
    'select active_pid as pid from pg_replication_slots where slot_name = $1 and active',
    [slot],
  );
  const held = await db.query(
    `select 1 from pg_stat_activity where datname = current_database()
        and (application_name = $1 or application_name like $1 || '-from-%')`,
    [`brabant-apply-${o.node}`],
  );
  if (active.rows.length > 0 || (held.rowCount ?? 0) > 0)
    throw new BrabantError(
      'NODE_STILL_RUNNING',
      `node ${o.node}'s capture or apply is running: stop them first (brabant stop, or your supervisor), then undo the join`,
    );
  await db.query(
    'select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = $1 and database = current_database()',
    [slot],
  );
  for (const p of [publicationName(o.node), `${publicationName(o.node)}_inserts`])
    await db.query(`drop publication if exists "${p}"`);
  const schemas = await db.query<{ n: string }>(
    `select nspname as n from pg_namespace
      where nspname not in ('pg_catalog', 'information_schema', 'public') and nspname not like 'pg\\_%'`,
  );
  for (const s of schemas.rows) await db.query(`drop schema "${s.n.replace(/"/g, '""')}" cascade`);
  await db.query('drop schema if exists public cascade');
  await db.query('create schema public authorization pg_database_owner');
  await db.query('grant usage on schema public to public');
  await db.query(
    `select pg_replication_origin_drop(roname) from pg_replication_origin where roname = any($1)`,
    [o.cluster.map(originName)],
  );
  for (const admin of o.admins)
    await admin.deleteGroups([applyGroupId(o.node)]).catch(() => {
      /* no such group: nothing to remove */
    });
}
