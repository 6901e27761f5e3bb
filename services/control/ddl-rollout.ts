/**
 * A registry-gated schema change (`brabant ddl apply` and `brabant ddl check`): the change runs
 * first in a transaction that is rolled back, to learn the tables it creates or alters; each
 * table's new version is mapped to its Avro record and checked with the registry's
 * compatibility API under the subject's rule; an incompatible change is refused, naming the
 * field and the rule, before any node changes. A compatible one then runs on its node (its event
 * triggers put it in the stream), and the rollout waits, bounded and with progress, until every
 * other node holds the same table shapes.
 */
import pg from 'pg';
import { resolveTypes } from '../capture/catalog.ts';
import type { PgTypeInfo } from '../protocol/pg-types.ts';
import type { SchemaRegistryClient } from '../protocol/schema-registry.ts';
import { buildTableSchema } from '../protocol/table-schema.ts';
import { BrabantError } from '../runtime/errors.ts';

/** A table whose shape the change creates or alters, as its node describes it inside the change. */
export interface ChangedTable {
  schema: string;
  name: string;
  fingerprint: string;
  columns: { name: string; typeOid: number; typeMod: number; isKey: boolean }[];
}

export interface Proposal {
  table: ChangedTable;
  subject: string;
  schema: Record<string, unknown>;
}

export interface CompatibilityProblem {
  subject: string;
  table: string;
  messages: string[];
}

/** Every user table's shape fingerprint (brabant.describe_table), by `schema.name`. */
async function fingerprints(db: pg.Client): Promise<Map<string, string>> {
  const res = await db.query<{ t: string; f: string }>(
    `select format('%s.%s', n.nspname, c.relname) as t, brabant.describe_table(c.oid) ->> 'fingerprint' as f
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where c.relkind in ('r', 'p') and not c.relispartition and c.relpersistence = 'p'
        and n.nspname not in ('pg_catalog', 'information_schema', 'brabant') and n.nspname not like 'pg\\_%'`,
  );
  return new Map(res.rows.map((r) => [r.t, r.f]));
}

/** The statements of a script, as the node's own splitter sees them (the one the event triggers use). */
export async function splitStatements(db: pg.Client, sql: string): Promise<string[]> {
  const res = await db.query<{ s: string[] }>('select brabant.split_statements($1) as s', [sql]);
  return res.rows[0]!.s;
}

/**
 * Runs the statements in a transaction that is rolled back, and answers the tables whose shape
 * they change (created or altered). A statement the node refuses fails here, before anything runs.
 */
export async function dryRun(
  db: pg.Client,
  statements: string[],
): Promise<{ tables: ChangedTable[]; types: Map<number, PgTypeInfo> }> {
  await db.query('begin');
  try {
    const before = await fingerprints(db);
    for (const s of statements) await db.query(s);
    const after = await fingerprints(db);
    const changed = [...after].filter(([t, f]) => before.get(t) !== f).map(([t]) => t);
    const out: ChangedTable[] = [];
    for (const t of changed) {
      const res = await db.query<{
        schema: string;
        name: string;
        col: string;
        oid: number;
        mod: number;
        key: boolean;
      }>(
        `select n.nspname as schema, c.relname as name, a.attname as col, a.atttypid::int as oid, a.atttypmod as mod,
                a.attname::text = any(coalesce(brabant.tombstone_key(c.oid), '{}')) as key
           from pg_class c join pg_namespace n on n.oid = c.relnamespace
           join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
          where format('%s.%s', n.nspname, c.relname) = $1 and a.attgenerated = ''
          order by a.attnum`,
        [t],
      );
      out.push({
        schema: res.rows[0]!.schema,
        name: res.rows[0]!.name,
        fingerprint: after.get(t)!,
        columns: res.rows.map((r) => ({ name: r.col, typeOid: r.oid, typeMod: r.mod, isKey: r.key })),
      });
    }
    const types = await resolveTypes(
      db,
      out.flatMap((t) => t.columns.map((c) => c.typeOid)),
    );
    return { tables: out, types };
  } finally {
    await db.query('rollback').catch(() => {});
  }
}

/** The Avro record of each changed table's new version, under its subject on `topic`. */
export function proposals(tables: ChangedTable[], types: Map<number, PgTypeInfo>, topic: string): Proposal[] {
  return tables.map((t) => {
    const ts = buildTableSchema({
      schema: t.schema,
      name: t.name,
      columns: t.columns.map((c) => ({
        name: c.name,
        type: types.get(c.typeOid)!,
        typeMod: c.typeMod,
        isKey: c.isKey,
      })),
    });
    return { table: t, subject: `${topic}-${ts.fullName}`, schema: ts.schema };
  });
}

/** Checks each proposal with the registry; what it refuses. An unreachable registry is an error, never a guess. */
export async function compatibilityProblems(
  registry: SchemaRegistryClient,
  proposed: Proposal[],
): Promise<CompatibilityProblem[]> {
  const problems: CompatibilityProblem[] = [];
  for (const p of proposed) {
    const verdict = await registry.isCompatible(p.subject, p.schema);
    if (!verdict.compatible)
      problems.push({
        subject: p.subject,
        table: `${p.table.schema}.${p.table.name}`,
        messages: verdict.messages,
      });
  }
  return problems;
}

/** Runs the statements on the node in one transaction (each its own query string, as the event triggers expect). */
export async function runChange(db: pg.Client, statements: string[]): Promise<void> {
  await db.query('begin');
  try {
    for (const s of statements) await db.query(s);
    await db.query('commit');
  } catch (err) {
    await db.query('rollback').catch(() => {});
    throw err;
  }
}

/** Which of `peers` hold every table at its expected fingerprint (a node that cannot be reached holds nothing). */
export async function appliedOn(
  peers: { id: string; url: string }[],
  expected: ChangedTable[],
): Promise<{ applied: string[]; waiting: { id: string; why: string }[] }> {
  const applied: string[] = [];
  const waiting: { id: string; why: string }[] = [];
  for (const p of peers) {
    const db = new pg.Client({ connectionString: p.url, connectionTimeoutMillis: 3000 });
    try {
      await db.connect();
      const have = await fingerprints(db);
      const behind = expected.filter((t) => have.get(`${t.schema}.${t.name}`) !== t.fingerprint);
      if (behind.length === 0) applied.push(p.id);
      else
        waiting.push({
          id: p.id,
          why: `not yet applied to ${behind.map((t) => `${t.schema}.${t.name}`).join(', ')}`,
        });
    } catch (err) {
      waiting.push({ id: p.id, why: `unreachable (${(err as Error).message})` });
    } finally {
      await db.end().catch(() => {});
    }
  }
  return { applied, waiting };
}

/** The refusal of an incompatible change: each subject, its table and what the registry said. */
export function incompatible(problems: CompatibilityProblem[]): BrabantError {
  return new BrabantError(
    'SCHEMA_INCOMPATIBLE',
    `the change is refused before any node changed: ${problems
      .map((p) => `table ${p.table} (subject ${p.subject}): ${p.messages.join('; ') || 'incompatible'}`)
      .join(
        ' | ',
      )}; make it compatible (e.g. add columns as nullable, keep the ones older readers need) or set the subject's rule knowingly`,
  );
}
