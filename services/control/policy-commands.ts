/**
 * `brabant policy set|show`: the conflict policies of a node's tables (brabant.set_conflict_policy
 * and the brabant.conflict_policies view). A policy set on one node replicates like DDL; `set`
 * waits until every other node shows it.
 */
import type pg from 'pg';
import type { ConfigOf } from '../runtime/config.ts';
import { BrabantError } from '../runtime/errors.ts';
import { sqlstateOf } from '../runtime/sqlstate.ts';
import type { controlConfig } from './config.ts';
import { connected, type NodeTarget, pickNode, say, stackNodes } from './nodes.ts';

export interface PolicyOptions {
  config: ConfigOf<typeof controlConfig>;
  action: string | undefined;
  node: string | undefined;
  database: string;
  table: string | undefined;
  policy: string | undefined;
  /** Comma-separated column names (delta, no_delta). */
  columns: string | undefined;
  timeoutSeconds: number;
}

interface PolicyRow {
  table_name: string;
  rows: string;
  delta_columns: string[];
  resolutions: Record<string, string>;
  custom_resolver: string | null;
  set_at: Date | null;
}

const SHOW = `select table_name, rows, delta_columns, resolutions, custom_resolver, set_at
                from brabant.conflict_policies`;
/** The view's name of the table given as $1 (any form regclass reads). */
const NAMED = `where table_name = (select format('%I.%I', n.nspname, c.relname)
                                 from pg_class c join pg_namespace n on n.oid = c.relnamespace
                                where c.oid = $1::regclass)`;

export async function policy(o: PolicyOptions): Promise<number> {
  switch (o.action) {
    case 'set':
      return set(o);
    case 'show':
      return show(o);
    default:
      throw new BrabantError('CONFIG_INVALID', `brabant policy needs set or show, not '${o.action ?? ''}'`);
  }
}

async function set(o: PolicyOptions): Promise<number> {
  if (o.table === undefined || o.policy === undefined)
    throw new BrabantError(
      'CONFIG_INVALID',
      'give the table and the policy: brabant policy set --node N TABLE POLICY [--columns a,b] (POLICY: row_lww, column_lww, delta, no_delta, <kind>:<resolver>, custom:<function>)',
    );
  const { nodes } = stackNodes(o.config.home, o.database);
  const node = pickNode(nodes, o.node);
  const columns = o.columns
    ?.split(',')
    .map((c) => c.trim())
    .filter((c) => c !== '');
  const want = await connected(node.url, async (db) => {
    await db
      .query('select brabant.set_conflict_policy($1::regclass, $2, $3::name[])', [
        o.table,
        o.policy,
        columns ?? null,
      ])
      .catch((err: unknown) => {
        throw refused(err, o.table!, node);
      });
    const res = await db.query<PolicyRow>(`${SHOW} ${NAMED}`, [o.table]);
    return res.rows[0];
  });
  if (want === undefined)
    throw new BrabantError('POLICY_INVALID', `${o.table} is not a replicated table on ${node.id}`);
  say(`set on ${node.id}: ${describe(want)}; waiting until every other node has it`);
  const peers = nodes.filter((n) => n.id !== node.id);
  const deadline = Date.now() + o.timeoutSeconds * 1000;
  for (;;) {
    const waiting: string[] = [];
    for (const p of peers) {
      const got = await connected(p.url, (db) => policyOf(db, want.table_name)).catch(
        (err: Error) => `unreachable: ${err.message}`,
      );
      if (typeof got === 'string') waiting.push(`${p.id} (${got})`);
      else if (got === undefined || describe(got) !== describe(want)) waiting.push(p.id);
    }
    if (waiting.length === 0) {
      say(`in force on every node (${nodes.map((n) => n.id).join(', ')})`);
      return 0;
    }
    if (Date.now() > deadline) {
      console.error(
        `brabant policy: not every node has the policy after ${o.timeoutSeconds} s: ${waiting.join(', ')}; it takes it in stream order once its apply runs`,
      );
      return 1;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function show(o: PolicyOptions): Promise<number> {
  const { nodes } = stackNodes(o.config.home, o.database);
  const node = pickNode(nodes, o.node);
  const rows = await connected(node.url, async (db) => {
    const res =
      o.table === undefined
        ? await db.query<PolicyRow>(`${SHOW} order by 1`)
        : await db.query<PolicyRow>(`${SHOW} ${NAMED}`, [o.table]).catch((err: unknown) => {
            throw refused(err, o.table!, node);
          });
    return res.rows;
  });
  if (rows.length === 0) {
    say(`no replicated tables on ${node.id}`);
    return 0;
  }
  const width = Math.max(...rows.map((r) => r.table_name.length));
  for (const r of rows) console.log(`${r.table_name.padEnd(width)}  ${describe(r)}`);
  return 0;
}

async function policyOf(db: pg.Client, table: string): Promise<PolicyRow | undefined> {
  const res = await db.query<PolicyRow>(`${SHOW} where table_name = $1`, [table]);
  return res.rows[0];
}

/** One line: `row_lww, delta (abalance), update_missing: skip, custom brabant_demo.resolve(…)`. */
export function describe(
  r: Pick<PolicyRow, 'rows' | 'delta_columns' | 'resolutions' | 'custom_resolver'>,
): string {
  const parts = [r.rows];
  if (r.delta_columns.length > 0) parts.push(`delta (${r.delta_columns.join(', ')})`);
  for (const [kind, resolver] of Object.entries(r.resolutions).sort()) parts.push(`${kind}: ${resolver}`);
  if (r.custom_resolver !== null) parts.push(`custom ${r.custom_resolver}`);
  return parts.join(', ');
}

function refused(err: unknown, table: string, node: NodeTarget): BrabantError {
  const state = sqlstateOf(err);
  const message = (err as Error).message;
  if (state === '42P01')
    return new BrabantError(
      'POLICY_INVALID',
      `no table ${table} on ${node.id}: ${message}; name it as schema.table (the search_path of the command is the node's default)`,
    );
  if (state === '42883' || state === '3F000')
    return new BrabantError(
      'PREREQUISITE_MISSING',
      `${node.id} has no brabant.set_conflict_policy (${message}): start the node's apply once, it creates Brabant's objects`,
    );
  if (state !== undefined) return new BrabantError('POLICY_INVALID', `refused on ${node.id}: ${message}`);
  return err as BrabantError;
}
