/**
 * `brabant node init NODE`: sets a node up once, as a superuser, so that its capture and apply
 * can run as roles that are not — also a database that already holds data and takes writes
 * (issue 15's "existing database as the first node"), without stopping it:
 *
 *   1. checks the server (wal_level, track_commit_timestamp, slots) and every table's replica
 *      identity, naming the fix of each table that has none (it is captured insert-only);
 *   2. the node's set-up, the same steps capture and apply do when they run as a superuser:
 *      schema brabant, the publications and their event trigger, DDL capture's event triggers,
 *      the node's place for sequences, the tombstone trigger on every table with a key;
 *   3. the replication slot (changes from here on are kept for capture) and the replication
 *      origins of every peer the topology names;
 *   4. the roles capture and apply log in as, holding exactly what node-roles.ts lists;
 *   5. with a secured topology: the topics, the services' Kafka users and their ACLs
 *      (kafka-access.ts) on every cluster they use.
 *
 * Writes go on meanwhile: each step waits for a table's lock at most LOCK_TIMEOUT (so it never
 * queues the application's writes behind a long transaction) and is tried again.
 */
import pg from 'pg';
import { pgClientConfig, withDatabase } from '../../infra/postgres/postgres.ts';
import { ensureSlot, parseTableName, quoteIdent, serverProblems, type TableRef } from '../capture/catalog.ts';
import { ensureDdlCapture } from '../capture/ddl-capture.ts';
import { ensurePublications, type PublicationState } from '../capture/publications.ts';
import { originName, publicationName, slotName } from '../protocol/names.ts';
import { ensureDeleteTriggers, setSequencePlace } from '../protocol/node-schema.ts';
import { maySetUp } from '../protocol/node-setup.ts';
import { BrabantError } from '../runtime/errors.ts';
import { readSecretFile } from '../runtime/security.ts';
import { SQLSTATE, sqlstateOf } from '../runtime/sqlstate.ts';
import { nodeOf, type Topology } from '../runtime/topology.ts';
import { routerSecretFile, secretFile } from '../runtime/topology-security.ts';
import { grantNodeKafka } from './node-kafka.ts';
import { type NodeCatalog, rolePlan } from './node-roles.ts';

/** How long a set-up statement waits for a table's lock before the step is tried again. */
const LOCK_TIMEOUT = '2s';
const LOCK_ATTEMPTS = 30;

export interface NodeInitOptions {
  topology: Topology;
  nodeId: string;
  /** A superuser's URL; default: the node's URL as user postgres. Its password: PGPASSWORD or the secrets folder's. */
  adminUrl?: string;
  /** The database to set up; default: the node URL's. */
  database?: string;
  /** This node's place for sequences; default: its place in the topology's node list. */
  sequenceIndex?: number;
  sequenceStep?: number;
  /** Roles whose DDL apply replays as them (membership; never a superuser). */
  ddlRoles?: string[];
  /** Tables to replicate (schema.table); default all. */
  tables?: string[];
  /** Roles and Kafka are set up too unless false (a test sets up only the node). */
  roles?: boolean;
  kafka?: boolean;
  say: (m: string) => void;
}

export interface NodeInitReport {
  database: string;
  tables: number;
  insertOnly: string[];
  slot: 'created' | 'existing';
  origins: string[];
  roles: string[];
  kafkaUsers: string[];
  acls: number;
}

/** The node's URL for the admin: the topology's (or --admin-url), in the database set up. */
function adminTarget(o: NodeInitOptions): { url: string; password: string | undefined } {
  const n = nodeOf(o.topology, o.nodeId);
  const u = new URL(o.adminUrl ?? n.postgres);
  if (o.adminUrl === undefined) {
    u.username = 'postgres';
    u.password = '';
  }
  const url = o.database === undefined ? u.toString() : withDatabase(u.toString(), o.database);
  const sec = o.topology.security;
  const file =
    sec === undefined
      ? undefined
      : secretFile(sec, { postgres: decodeURIComponent(u.username), node: o.nodeId });
  let password = process.env.PGPASSWORD;
  if (password === undefined && file !== undefined) {
    try {
      password = readSecretFile(file, `the password of ${u.username}`);
    } catch {
      password = undefined; // none there: the server may not ask (trust), or it says so
    }
  }
  return { url, password };
}

export async function initNode(o: NodeInitOptions): Promise<NodeInitReport> {
  const { url, password } = adminTarget(o);
  const db = new pg.Client({ ...pgClientConfig(url, password), application_name: 'brabant-node-init' });
  try {
    await db.connect();
  } catch (err) {
    throw new BrabantError(
      sqlstateOf(err)?.startsWith('28') ? 'CONFIG_INVALID' : 'SOURCE_UNAVAILABLE',
      `brabant node init ${o.nodeId}: cannot connect as a superuser (${(err as Error).message}); give --admin-url of one, its password in PGPASSWORD`,
      { cause: err },
    );
  }
  try {
    return await initWith(db, o);
  } finally {
    await db.end().catch(() => {});
  }
}

async function initWith(db: pg.Client, o: NodeInitOptions): Promise<NodeInitReport> {
  const say = o.say;
  if (!(await maySetUp(db)))
    throw new BrabantError(
      'CONFIG_INVALID',
      `brabant node init ${o.nodeId} needs a superuser (only one may create event triggers and publish every table): give --admin-url of one`,
    );
  const info = (
    await db.query<{ v: number; d: string; u: string }>(
      "select current_setting('server_version_num')::int as v, current_database() as d, current_user as u",
    )
  ).rows[0]!;
  if (info.v < 150000)
    throw new BrabantError(
      'CONFIG_INVALID',
      `node ${o.nodeId} runs PostgreSQL ${Math.floor(info.v / 10000)}: apply's role needs PostgreSQL 15 or newer (GRANT SET ON PARAMETER session_replication_role)`,
    );
  const problems = await serverProblems(db);
  if (problems.length > 0)
    throw new BrabantError(
      'CONFIG_INVALID',
      `node ${o.nodeId} cannot be captured:\n  - ${problems.join('\n  - ')}`,
    );
  await db.query(`set lock_timeout = '${LOCK_TIMEOUT}'`);
  // everything node init does is this node's own (its grants and roles too): never replicated
  await db.query('set brabant.ddl_replication = off');
  const tables: TableRef[] | 'all' =
    o.tables === undefined || o.tables.length === 0 ? 'all' : o.tables.map(parseTableName);

  say(`setting up node ${o.nodeId} in database ${info.d} (as ${info.u}; writes go on)`);
  const publications = await patiently(say, 'the publications', () =>
    ensurePublications(db, publicationName(o.nodeId), tables),
  );
  for (const t of publications.insertOnly) say(insertOnlyLine(t));
  await patiently(say, "DDL capture's event triggers", () => ensureDdlCapture(db));
  const index = o.sequenceIndex ?? o.topology.nodes.findIndex((n) => n.id === o.nodeId);
  const step = o.sequenceStep ?? 16;
  const stepped = await patiently(say, 'the sequences', () =>
    setSequencePlace(db, o.nodeId, { index, step }),
  );
  if (stepped.length > 0) say(`sequences stepped for place ${index} of ${step}: ${stepped.join(', ')}`);
  const triggers = await patiently(say, 'the tombstone triggers', () => ensureDeleteTriggers(db));
  if (triggers.length > 0) say(`tombstone triggers on ${triggers.length} table(s)`);
  const slot = await ensureSlot(db, slotName(o.nodeId));
  say(
    `replication slot ${slotName(o.nodeId)} ${slot === 'created' ? 'created: changes from now on wait for capture' : 'already there'}`,
  );
  const origins: string[] = [];
  for (const peer of o.topology.nodes.filter((n) => n.id !== o.nodeId)) {
    const origin = originName(peer.id);
    await db.query(
      'select pg_replication_origin_create($1) where not exists (select 1 from pg_replication_origin where roname = $1)',
      [origin],
    );
    origins.push(origin);
  }
  if (origins.length > 0) say(`replication origins: ${origins.join(', ')}`);

  const roles = o.roles === false ? [] : await grantRoles(db, o, info.d);
  const kafka =
    o.kafka === false || o.topology.security === undefined
      ? { users: [], acls: 0 }
      : await grantNodeKafka(o.topology, o.nodeId, say);
  const count = (
    await db.query<{ n: number }>(
      `select count(*)::int as n from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where c.relkind in ('r', 'p') and not c.relispartition
        and n.nspname not in ('pg_catalog', 'information_schema', 'brabant') and n.nspname not like 'pg\\_%'`,
    )
  ).rows[0]!.n;
  say(`node ${o.nodeId} is set up: ${count} table(s), ${publications.insertOnly.length} insert-only`);
  return {
    database: info.d,
    tables: count,
    insertOnly: publications.insertOnly.map((t) => `${t.schema}.${t.name}`),
    slot,
    origins,
    roles,
    kafkaUsers: kafka.users,
    acls: kafka.acls,
  };
}

/** The fix of a table captured insert-only, named. */
function insertOnlyLine(t: PublicationState['insertOnly'][number]): string {
  const q = `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`;
  return `table ${t.schema}.${t.name} has no replica identity: only its inserts and truncates replicate; fix: ALTER TABLE ${q} ADD PRIMARY KEY (…), or ALTER TABLE ${q} REPLICA IDENTITY FULL`;
}

/** A step tried again while a table's lock is held by the application (lock_timeout). */
async function patiently<T>(say: (m: string) => void, what: string, step: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await step();
    } catch (err) {
      const cause = (err as { cause?: unknown }).cause ?? err;
      const waiting =
        sqlstateOf(err) === SQLSTATE.LOCK_NOT_AVAILABLE || sqlstateOf(cause) === SQLSTATE.LOCK_NOT_AVAILABLE;
      if (!waiting || attempt >= LOCK_ATTEMPTS) throw err;
      say(
        `${what}: a table is busy (${(cause as Error).message}); trying again (${attempt}/${LOCK_ATTEMPTS})`,
      );
      await new Promise((r) => setTimeout(r, 200 * Math.min(attempt, 10)));
    }
  }
}

async function nodeCatalog(db: pg.Client, database: string): Promise<NodeCatalog> {
  const schemas = await db.query<{ s: string }>(
    `select nspname as s from pg_namespace
      where nspname not in ('information_schema', 'brabant', 'brabant_auth') and nspname not like 'pg\\_%' order by 1`,
  );
  const owners = await db.query<{ o: string }>(
    `select distinct r.rolname as o from pg_class c join pg_namespace n on n.oid = c.relnamespace
       join pg_roles r on r.oid = c.relowner
      where c.relkind in ('r', 'p') and n.nspname not in ('pg_catalog', 'information_schema', 'brabant')
        and n.nspname not like 'pg\\_%'
     union select current_user::text order by 1`,
  );
  const supers = await db.query<{ r: string }>('select rolname as r from pg_roles where rolsuper');
  return {
    database,
    schemas: schemas.rows.map((r) => r.s),
    owners: owners.rows.map((r) => r.o),
    superusers: supers.rows.map((r) => r.r),
  };
}

/** The services' roles: created or corrected, their passwords from the secrets folder when there is one. */
async function grantRoles(db: pg.Client, o: NodeInitOptions, database: string): Promise<string[]> {
  const sec = o.topology.security;
  const captureRole = sec?.captureRole ?? 'brabant_capture';
  const applyRole = sec?.applyRole ?? 'brabant_apply';
  const password = (role: string) =>
    sec === undefined
      ? undefined
      : readSecretFile(secretFile(sec, { postgres: role, node: o.nodeId }), `the password of ${role}`);
  const catalog = await nodeCatalog(db, database);
  // the routers' role, with one password on every node (a router logs in to each)
  const routerRole = o.topology.routers.length > 0 ? (sec?.routerRole ?? 'brabant_router') : undefined;
  const routerPassword =
    routerRole === undefined || sec === undefined
      ? undefined
      : readSecretFile(routerSecretFile(sec), `the password of ${routerRole}`);
  const statements = rolePlan({
    capture: { role: captureRole, ...optional(password(captureRole)) },
    apply: { role: applyRole, ...optional(password(applyRole)) },
    ...(routerRole === undefined ? {} : { router: { role: routerRole, ...optional(routerPassword) } }),
    ddlRoles: o.ddlRoles ?? [],
    catalog,
  });
  await db.query('begin');
  try {
    for (const sql of statements) await db.query(sql);
    await db.query('commit');
  } catch (err) {
    await db.query('rollback').catch(() => {});
    throw new BrabantError(
      'PERMISSION_DENIED',
      `granting the services' roles failed: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  const owned = catalog.owners.filter(
    (r) => !catalog.superusers.includes(r) && !(o.ddlRoles ?? []).includes(r),
  );
  o.say(
    `roles ${captureRole} (replication) and ${applyRole} hold what docs/security.md lists; neither is a superuser${sec === undefined ? ' (no passwords: the topology has no security section)' : ''}`,
  );
  if (owned.length > 0)
    o.say(
      `tables here belong to ${owned.join(', ')}: give --ddl-roles ${owned.join(',')} so that a peer's DDL on them runs as their owner (else it runs as ${applyRole}, which owns nothing and fails)`,
    );
  if (routerRole !== undefined)
    o.say(
      `role ${routerRole} for the routers: login, its auth query (brabant_auth.lookup) and origin progress only`,
    );
  return routerRole === undefined ? [captureRole, applyRole] : [captureRole, applyRole, routerRole];
}

function optional(password: string | undefined): { password?: string } {
  return password === undefined ? {} : { password };
}
