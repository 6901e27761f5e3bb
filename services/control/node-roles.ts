/**
 * The PostgreSQL roles capture and apply run as, and exactly what each holds (docs/security.md
 * says why, privilege by privilege). The plan is pure (statements from what the node holds);
 * `brabant node init` runs it as a superuser. Neither role is a superuser, owns any object or may
 * create databases, roles or schemas.
 *
 * capture: LOGIN REPLICATION (a replication connection and its slot: decoding reads every
 *   table's changes from the WAL, with no table privilege), CONNECT on the database, EXECUTE on
 *   brabant.reconcile_publications (its periodic sort of tables into its publications). Schema
 *   brabant's node_settings and setup_steps are readable by every role. No SELECT on any table:
 *   capture reads none.
 * apply: LOGIN, CONNECT, SET on session_replication_role (replica, as PostgreSQL's own apply
 *   workers: no user triggers, no foreign-key checks of rows already checked on their node),
 *   EXECUTE on the replication-origin functions it uses, USAGE on every user schema and SELECT,
 *   INSERT, UPDATE, DELETE, TRUNCATE on every user table (today's and, by default privileges,
 *   those the table owners create later), the same on schema brabant's tables (conflict log,
 *   tombstones, peers) and USAGE on its sequences; membership of the roles given as DDL roles, so
 *   a replicated DDL runs as the role that ran it on its node.
 * router (only when the topology has routers): LOGIN, CONNECT, EXECUTE on brabant_auth.lookup
 *   (a SECURITY DEFINER function of the admin's that gives the SCRAM verifier of a role that may
 *   log in and is not a superuser: the auth query, without reading pg_authid itself), and EXECUTE
 *   on pg_replication_origin_progress (a switchover waits until the target applied everything).
 *   Its health checks need nothing more (pg_current_wal_lsn); clients' transactions run as their
 *   own roles, never as it.
 */
import { passwordVerifier } from '../router/scram-server.ts';
import { BrabantError } from '../runtime/errors.ts';

/** The replication-origin functions apply calls, with their argument types (GRANT needs them). */
export const ORIGIN_FUNCTIONS = [
  'pg_replication_origin_create(text)',
  'pg_replication_origin_session_setup(text)',
  'pg_replication_origin_session_reset()',
  'pg_replication_origin_session_is_setup()',
  'pg_replication_origin_session_progress(boolean)',
  'pg_replication_origin_xact_setup(pg_lsn, timestamp with time zone)',
  'pg_replication_origin_xact_reset()',
  'pg_replication_origin_progress(text, boolean)',
];

const TABLE_PRIVILEGES = 'select, insert, update, delete, truncate';

/** The tables brabant.set_conflict_policy writes, as the role that calls it (a table's owner). */
export const POLICY_TABLES = ['brabant.policies', 'brabant.column_versions', 'brabant.row_versions'];
const POLICY_TABLE_PRIVILEGES = 'select, insert, update, delete';

export interface NodeCatalog {
  database: string;
  /** Schemas holding user tables (not pg_*, information_schema, brabant). */
  schemas: string[];
  /** Roles owning user tables or schemas, and the admin running node init. */
  owners: string[];
  /** Roles that are superusers (never granted to a service role). */
  superusers: string[];
}

export interface RolePlanInput {
  capture: { role: string; password?: string };
  apply: { role: string; password?: string };
  /** The routers' role, when the topology has routers. */
  router?: { role: string; password?: string };
  /** Roles whose DDL apply replays as them (membership). */
  ddlRoles: string[];
  catalog: NodeCatalog;
}

export function ident(s: string): string {
  return `"${s.replace(/"/g, '""')}"`;
}

function literal(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

const ROLE_ATTRIBUTES = 'nosuperuser nocreatedb nocreaterole noinherit nobypassrls';

/** A role made if missing, then given exactly these attributes (a verifier, never a password). */
function roleStatements(role: string, attributes: string, verifier: string | undefined): string[] {
  return [
    `do $$ begin if not exists (select 1 from pg_roles where rolname = ${literal(role)}) then create role ${ident(role)}; end if; end $$`,
    `alter role ${ident(role)} with login ${attributes} ${ROLE_ATTRIBUTES}${verifier === undefined ? '' : ` password ${literal(verifier)}`}`,
  ];
}

/** The statements that make both roles hold what they need and nothing more (idempotent). */
export function rolePlan(input: RolePlanInput, salt?: () => Buffer): string[] {
  const { capture, apply, catalog } = input;
  for (const r of input.ddlRoles)
    if (catalog.superusers.includes(r))
      throw new BrabantError(
        'CONFIG_INVALID',
        `--ddl-roles ${r}: ${r} is a superuser, and a member of it could become one; give the roles that own the application's tables instead`,
      );
  const db = ident(catalog.database);
  const ap = ident(apply.role);
  const cap = ident(capture.role);
  const out: string[] = [
    ...roleStatements(
      capture.role,
      'replication',
      capture.password === undefined ? undefined : passwordVerifier(capture.password, salt?.()),
    ),
    ...roleStatements(
      apply.role,
      'noreplication',
      apply.password === undefined ? undefined : passwordVerifier(apply.password, salt?.()),
    ),
    `grant connect on database ${db} to ${cap}, ${ap}`,
    // capture
    `grant execute on function brabant.reconcile_publications(name, name, text[]) to ${cap}`,
    // apply: the session setting, the origins
    `grant set on parameter session_replication_role to ${ap}`,
    `grant execute on function ${ORIGIN_FUNCTIONS.map((f) => `pg_catalog.${f}`).join(', ')} to ${ap}`,
    // apply: Brabant's own tables (conflict log, tombstones, peers, DDL resolutions, versions)
    `grant select, insert, update, delete on all tables in schema brabant to ${ap}`,
    `grant usage on all sequences in schema brabant to ${ap}`,
  ];
  for (const s of catalog.schemas)
    out.push(
      `grant usage on schema ${ident(s)} to ${ap}`,
      `grant ${TABLE_PRIVILEGES} on all tables in schema ${ident(s)} to ${ap}`,
    );
  // tables (and schemas) their owners make later, by DDL here or replicated from a peer; a DDL
  // role is a future owner even while it owns nothing yet (the tables its DDL creates on a peer
  // are its own there, and apply must write them)
  for (const o of [...new Set([...catalog.owners, ...input.ddlRoles])])
    out.push(
      `alter default privileges for role ${ident(o)} grant ${TABLE_PRIVILEGES} on tables to ${ap}`,
      `alter default privileges for role ${ident(o)} grant usage on schemas to ${ap}`,
    );
  for (const r of input.ddlRoles)
    out.push(
      `grant ${ident(r)} to ${ap}`,
      // a DDL role sets its own tables' conflict policies (set_conflict_policy checks ownership)
      `grant ${POLICY_TABLE_PRIVILEGES} on ${POLICY_TABLES.join(', ')} to ${ident(r)}`,
    );
  if (input.router !== undefined) out.push(...routerStatements(input.router, db, salt));
  return out;
}

function routerStatements(r: { role: string; password?: string }, db: string, salt?: () => Buffer): string[] {
  const ro = ident(r.role);
  return [
    ...roleStatements(
      r.role,
      'noreplication',
      r.password === undefined ? undefined : passwordVerifier(r.password, salt?.()),
    ),
    `grant connect on database ${db} to ${ro}`,
    'create schema if not exists brabant_auth',
    'revoke all on schema brabant_auth from public',
    `create or replace function brabant_auth.lookup(role_name text, out rolname text, out rolpassword text)
       returns setof record language sql security definer set search_path = pg_catalog
       as $$ select rolname::text, rolpassword from pg_authid
             where rolname = role_name and rolcanlogin and not rolsuper
               and (rolvaliduntil is null or rolvaliduntil > now()) $$`,
    'revoke all on function brabant_auth.lookup(text) from public',
    `grant usage on schema brabant_auth to ${ro}`,
    `grant execute on function brabant_auth.lookup(text) to ${ro}`,
    `grant execute on function pg_catalog.pg_replication_origin_progress(text, boolean) to ${ro}`,
  ];
}
