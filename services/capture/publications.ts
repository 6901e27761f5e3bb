/**
 * The node's publications (SQL here and only here): which tables are captured, and with which
 * operations. Two publications, because PostgreSQL refuses an application's UPDATE or DELETE of
 * a table without replica identity that a publication publishes updates or deletes of ("cannot
 * update table … because it does not have a replica identity and publishes updates"), and one
 * publication has one `publish` setting for all its tables:
 *
 *   <publication>          tables with a replica identity: insert, update, delete, truncate
 *   <publication>_inserts  tables without one: insert, truncate (what PostgreSQL itself would
 *                          publish of them; their updates and deletes stay local)
 *
 * FOR ALL TABLES cannot leave a table out, so the publications list tables, and a function in
 * the node (brabant.reconcile_publications) sorts every table into the right one. It runs at
 * every capture start, every minute, and, through an event trigger, at the end of every DDL that
 * can create a table or change its replica identity, inside that DDL's own transaction: a table
 * created and written in one transaction is captured from its first row, as FOR ALL TABLES did,
 * and a key added later moves its table to the first publication before any update can run.
 * The trigger fires ALWAYS, under apply's session_replication_role = replica too: a table a
 * peer's DDL creates here is published in that DDL's transaction as well.
 */
import type pg from 'pg';
import { type Lsn, parseLsn } from '../protocol/lsn.ts';
import { ensureNodeObjects } from '../protocol/node-schema.ts';
import { NOT_REPLICATED_HERE, type SetUpStep, setUpStep, stepVersion } from '../protocol/node-setup.ts';
import { BrabantError } from '../runtime/errors.ts';
import type { TableRef } from './catalog.ts';
import { quoteIdent } from './catalog.ts';

type Queryable = Pick<pg.Client, 'query'>;

export function insertsPublication(main: string): string {
  return `${main}_inserts`.slice(0, 63);
}

/** DDL whose end may change which publication a table belongs in. */
const DDL_TAGS = [
  'CREATE TABLE',
  'CREATE TABLE AS',
  'SELECT INTO',
  'ALTER TABLE',
  'DROP INDEX',
  'ALTER INDEX',
];

/** The reconcile function: one pass over the user tables (or the listed ones), set-based. */
const RECONCILE_FUNCTION = `
create or replace function brabant.reconcile_publications(main name, inserts name, listed text[])
returns void language plpgsql security definer set search_path = pg_catalog, pg_temp as $fn$
declare r record;
begin
  for r in
    select format('%I.%I', n.nspname, c.relname) as q,
           (c.relreplident = 'f'
            or (c.relreplident = 'd' and exists (select 1 from pg_index i where i.indrelid = c.oid and i.indisprimary))
            or (c.relreplident = 'i' and exists (select 1 from pg_index i where i.indrelid = c.oid and i.indisreplident))) as keyed,
           exists (select 1 from pg_publication_rel pr join pg_publication p on p.oid = pr.prpubid
                    where p.pubname = main and pr.prrelid = c.oid) as in_main,
           exists (select 1 from pg_publication_rel pr join pg_publication p on p.oid = pr.prpubid
                    where p.pubname = inserts and pr.prrelid = c.oid) as in_inserts
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where c.relkind in ('r', 'p') and not c.relispartition and c.relpersistence = 'p'
       and n.nspname not in ('pg_catalog', 'information_schema', 'brabant') and n.nspname not like 'pg\\_%'
       and (listed is null or n.nspname || '.' || c.relname = any(listed))
  loop
    if r.keyed and not r.in_main then
      if r.in_inserts then execute format('alter publication %I drop table %s', inserts, r.q); end if;
      execute format('alter publication %I add table %s', main, r.q);
    elsif not r.keyed and not r.in_inserts then
      if r.in_main then execute format('alter publication %I drop table %s', main, r.q); end if;
      execute format('alter publication %I add table %s', inserts, r.q);
    end if;
  end loop;
end $fn$;
-- it runs as its owner (a superuser: only one may add any table to a publication), so only the
-- publications' event trigger and the roles granted it (capture's) may call it
revoke all on function brabant.reconcile_publications(name, name, text[]) from public`;

function literal(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

function listedLiteral(tables: TableRef[] | 'all'): string {
  return tables === 'all'
    ? 'null'
    : `array[${tables.map((t) => literal(`${t.schema}.${t.name}`)).join(', ') || ''}]::text[]`;
}

/** Name of the event trigger (and its function) of one capture's publications. */
function triggerName(main: string): string {
  return `brabant_publish_${main}`.slice(0, 63);
}

export interface PublicationState {
  main: string;
  inserts: string;
  /** Transactions committed from here on may be decoded with both publications (see usableFrom). */
  insertsUsableFrom: Lsn;
  /** Tables captured insert-only (no replica identity). */
  insertOnly: TableRef[];
}

/**
 * Creates or repairs both publications, the reconcile function and the event trigger, and sorts
 * every table. A main publication made FOR ALL TABLES by an earlier build is recreated under the
 * same name in one transaction (decoding of older changes still sees the old one in its
 * historic catalog snapshot).
 */
/** The event trigger function of one capture's publications. */
function triggerFunctionSql(main: string, inserts: string, tables: TableRef[] | 'all'): string {
  return (
    // A failure here must not fail the application's DDL (a publication dropped by hand, say):
    // it warns, and capture's periodic pass sorts the table later. It runs as its owner, as the
    // reconcile function does: the DDL's role needs no right on the publications.
    `create or replace function brabant.${quoteIdent(triggerName(main))}() returns event_trigger
     language plpgsql security definer set search_path = pg_catalog, pg_temp as $fn$
     begin
       perform brabant.reconcile_publications(${literal(main)}, ${literal(inserts)}, ${listedLiteral(tables)});
     exception when others then
       raise warning 'Brabant could not sort tables into publications ${main.replace(/'/g, "''")} and ${inserts.replace(/'/g, "''")}: %', sqlerrm
         using hint = 'capture does it again within a minute; if these publications were dropped on purpose, drop event trigger ${triggerName(main).replace(/'/g, "''")}';
     end $fn$`
  );
}

/** The set-up step of one capture's publications (node-setup.ts): its SQL and its tables. */
export function publicationsStep(main: string, tables: TableRef[] | 'all'): SetUpStep {
  const inserts = insertsPublication(main);
  return {
    name: `publications:${main}`,
    version: stepVersion(RECONCILE_FUNCTION, triggerFunctionSql(main, inserts, tables), DDL_TAGS.join()),
  };
}

/**
 * Creates or repairs both publications, the reconcile function and the event trigger, and sorts
 * every table (a role that may not set up finds this done by `brabant node init`, and only sorts
 * the tables). A main publication made FOR ALL TABLES by an earlier build is recreated under the
 * same name in one transaction (decoding of older changes still sees the old one in its
 * historic catalog snapshot).
 */
export async function ensurePublications(
  db: Queryable,
  main: string,
  tables: TableRef[] | 'all',
): Promise<PublicationState> {
  const inserts = insertsPublication(main);
  // the node's schema first, under the set-up lock (apply may be setting it up at the same time)
  await ensureNodeObjects(db);
  const how = await setUpStep(db, publicationsStep(main, tables), async () => {
    await setUpPublications(db, main, inserts, tables);
    await usableFrom(db, inserts, true);
  });
  if (how === 'found') await reconcile(db, main, tables);
  return {
    main,
    inserts,
    insertsUsableFrom: await usableFrom(db, inserts, false),
    insertOnly: await publicationTables(db, inserts),
  };
}

async function setUpPublications(
  db: Queryable,
  main: string,
  inserts: string,
  tables: TableRef[] | 'all',
): Promise<void> {
  const existing = await db.query<{ pubname: string; puballtables: boolean }>(
    'select pubname, puballtables from pg_publication where pubname = any($1)',
    [[main, inserts]],
  );
  const has = new Map(existing.rows.map((r) => [r.pubname, r]));
  await db.query('begin');
  try {
    await db.query(`select pg_advisory_xact_lock(hashtext('brabant.setup'))`);
    // the node's own set-up (its grants are DDL too): never replicated
    await db.query(NOT_REPLICATED_HERE);
    await db.query(RECONCILE_FUNCTION);
    if (has.get(main)?.puballtables) await db.query(`drop publication ${quoteIdent(main)}`);
    if (!has.has(main) || has.get(main)?.puballtables)
      await db.query(`create publication ${quoteIdent(main)}`);
    if (!has.has(inserts))
      await db.query(`create publication ${quoteIdent(inserts)} with (publish = 'insert, truncate')`);
    await db.query(triggerFunctionSql(main, inserts, tables));
    const fn = `brabant.${quoteIdent(triggerName(main))}`;
    await db.query(`drop event trigger if exists ${quoteIdent(triggerName(main))}`);
    await db.query(
      `create event trigger ${quoteIdent(triggerName(main))} on ddl_command_end
         when tag in (${DDL_TAGS.map(literal).join(', ')}) execute function ${fn}()`,
    );
    // also under session_replication_role = replica: a table that apply creates from a peer's
    // DDL is published in the same transaction, before this node's applications write to it
    await db.query(`alter event trigger ${quoteIdent(triggerName(main))} enable always`);
    await reconcile(db, main, tables);
    await db.query('commit');
  } catch (err) {
    await db.query('rollback').catch(() => {});
    throw new BrabantError(
      'CONFIG_INVALID',
      `cannot set up publications ${main} and ${inserts}: ${(err as Error).message}; set-up needs a superuser ` +
        '(brabant node init), and every captured table needs a replica identity or is captured insert-only',
      { cause: err },
    );
  }
}

/** Sorts every table into its publication (also run periodically: a safety net for the trigger). */
export async function reconcile(db: Queryable, main: string, tables: TableRef[] | 'all'): Promise<void> {
  await db.query(
    `select brabant.reconcile_publications($1, $2, ${tables === 'all' ? 'null' : '$3::text[]'})`,
    tables === 'all'
      ? [main, insertsPublication(main)]
      : [main, insertsPublication(main), tables.map((t) => `${t.schema}.${t.name}`)],
  );
}

export async function publicationTables(db: Queryable, publication: string): Promise<TableRef[]> {
  const res = await db.query<TableRef>(
    `select n.nspname as schema, c.relname as name from pg_publication_rel pr
       join pg_publication p on p.oid = pr.prpubid join pg_class c on c.oid = pr.prrelid
       join pg_namespace n on n.oid = c.relnamespace where p.pubname = $1 order by 1, 2`,
    [publication],
  );
  return res.rows;
}

const USABLE = /^brabant: usable from (\S+)$/;

/**
 * PostgreSQL 15's pgoutput fails ("publication … does not exist") on a change committed before a
 * listed publication existed. The inserts publication is new to a node upgraded from a build
 * with one publication, whose slot may hold older changes. So its comment records a WAL position
 * after its creation: a session whose slot is before it streams with the main publication only,
 * and starts again with both once it reaches it.
 */
async function usableFrom(db: Queryable, publication: string, mayWrite: boolean): Promise<Lsn> {
  const res = await db.query<{ c: string | null }>(
    `select obj_description(oid, 'pg_publication') as c from pg_publication where pubname = $1`,
    [publication],
  );
  const m = USABLE.exec(res.rows[0]?.c ?? '');
  if (m) return parseLsn(m[1]!);
  if (!mayWrite)
    throw new BrabantError(
      'CATALOG_MISMATCH',
      `publication ${publication} has no "brabant: usable from" comment (it was not made by Brabant's set-up): run \`brabant node init\` again`,
    );
  // after the creating transaction committed: any later position is safe
  const now = await db.query<{ l: string }>('select pg_current_wal_insert_lsn()::text as l');
  const l = now.rows[0]!.l;
  await db.query(
    `comment on publication ${quoteIdent(publication)} is ${literal(`brabant: usable from ${l}`)}`,
  );
  return parseLsn(l);
}
